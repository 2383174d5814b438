"""Per-scan temporary directories: created per scan, deleted after it, swept after a crash.

Each scan works in its own directory, `spoofwatch-<pid>-<random>-scan`. The pid in the name
lets a later start tell a dead process's leftovers (SIGKILL, OOM kills and power loss skip
every `finally`) from a live process's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

_PREFIX = "spoofwatch-"
_SUFFIX = "-scan"


@contextlib.asynccontextmanager
async def scan_workdir(parent: Path | None) -> AsyncIterator[Path]:
    """A fresh directory for one scan, deleted afterwards whatever happens."""
    workdir = Path(
        await asyncio.to_thread(tempfile.mkdtemp, _SUFFIX, f"{_PREFIX}{os.getpid()}-", parent)
    )
    try:
        yield workdir
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)


async def sweep(parent: Path | None) -> tuple[Path, int]:
    """Delete the work directories of dead processes under `parent` (default: system temp).

    A directory is left alone while the process named in it is alive (another shard sharing
    the temp dir); this process's own pid counts as dead, since nothing has run yet (in a
    container the bot is often pid 1 on every start).
    """
    root = parent or Path(tempfile.gettempdir())
    return root, await asyncio.to_thread(_sweep, root)


def _sweep(root: Path) -> int:
    removed = 0
    with contextlib.suppress(OSError):
        for path in root.glob(f"{_PREFIX}*{_SUFFIX}"):
            pid = path.name.removeprefix(_PREFIX).split("-", 1)[0]
            if not pid.isdigit() or (int(pid) != os.getpid() and _process_alive(int(pid))):
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
