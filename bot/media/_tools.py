"""Running ffmpeg/ffprobe: one subprocess helper with a deadline and bounded output."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
from collections.abc import Sequence
from pathlib import Path

from bot.errors import MediaTimeout, SettingsError

log = logging.getLogger(__name__)

#: ffprobe's JSON for a sane file is a few KiB; a file with absurd numbers of streams must
#: not be able to make us buffer without bound.
MAX_STDOUT = 8 * 1024 * 1024
#: A corrupt file can make ffmpeg print one error per packet for minutes; keep the start
#: (what went wrong first) and the end (the final verdict), never the whole flood.
MAX_STDERR = 64 * 1024
_READ_SIZE = 64 * 1024


async def run_tool(
    args: Sequence[str],
    *,
    timeout_s: float,
    max_stdout: int = MAX_STDOUT,
    max_stderr: int = MAX_STDERR,
) -> tuple[int, bytes, bytes]:
    """Run a media tool and return `(returncode, stdout, stderr)`.

    The tool gets no stdin and its own process group, so that on timeout or cancellation
    the whole group is killed with SIGKILL and reaped before this returns: a stuck ffmpeg
    must never outlive the scan that started it. stdout beyond `max_stdout` is dropped;
    stderr keeps its first and last `max_stderr / 2` bytes. Both pipes are drained to the
    end so the tool never blocks on a full pipe.

    Raises `MediaTimeout` after `timeout_s` seconds, and `SettingsError` when the tool is
    not installed.
    """
    tool = Path(args[0]).name
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise SettingsError(
            f"{tool} was not found on PATH; Spoofwatch needs ffmpeg (with ffprobe) installed."
        ) from exc
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(timeout_s):
            stdout, stderr = await asyncio.gather(
                _read_head(proc.stdout, max_stdout),
                _read_head_and_tail(proc.stderr, max_stderr),
            )
            returncode = await proc.wait()
    except TimeoutError:
        await _kill(proc)
        log.warning("%s (pid %s) killed after %.1f s", tool, proc.pid, timeout_s)
        raise MediaTimeout(
            f"Decoding the file took longer than {timeout_s:g} s and was stopped."
        ) from None
    except BaseException:
        # Cancelled (shutdown, the scan was abandoned) or a bug: never leave it running.
        await _kill(proc)
        raise
    return returncode, stdout, stderr


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        # The tool leads its own session (start_new_session), so its pid is the group id.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    # Reap it even if this task is being cancelled: SIGKILL makes the wait short.
    await asyncio.shield(proc.wait())


async def _read_head(stream: asyncio.StreamReader, limit: int) -> bytes:
    kept = bytearray()
    while chunk := await stream.read(_READ_SIZE):
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return bytes(kept)


async def _read_head_and_tail(stream: asyncio.StreamReader, limit: int) -> bytes:
    half = max(limit // 2, 1)
    head = bytearray()
    tail = bytearray()
    skipped = False
    while chunk := await stream.read(_READ_SIZE):
        if len(head) < half:
            take = half - len(head)
            head += chunk[:take]
            chunk = chunk[take:]
        if chunk:
            tail += chunk
            if len(tail) > half:
                del tail[: len(tail) - half]
                skipped = True
    return bytes(head + (b"\n...\n" if skipped else b"") + tail)


# "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d9c2fe41c0] moov atom not found" → "mov,mp4,...: moov ..."
_CONTEXT_PREFIX = re.compile(r"\[([^\]@]+?) @ 0x[0-9a-f]+\]\s*")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")
# Lines that say only that something failed, not what.
_GENERIC = ("conversion failed", "to ignore this", "error opening output files")


def short_reason(stderr: bytes, *paths: Path, limit: int = 160) -> str:
    """One line from a tool's stderr that says what went wrong, safe to show a user.

    Temp-file paths are replaced by their last component and memory addresses, control
    characters and non-ASCII bytes are removed, so nothing about the host leaks into a
    Discord reply or the audit log.
    """
    text = stderr.decode("utf-8", errors="replace")
    for path in paths:
        text = text.replace(str(path), path.name)
    lines = []
    for raw in text.splitlines():
        line = _CONTEXT_PREFIX.sub(r"\1: ", _ANSI_ESCAPE.sub("", raw))
        line = _UNPRINTABLE.sub(" ", line).strip()
        if line and line != "..." and not line.lower().startswith(_GENERIC):
            lines.append(line)
    if not lines:
        return "unknown decoder error"
    # The last specific line is usually the one that made the tool give up.
    reason = lines[-1]
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"
