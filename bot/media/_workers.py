"""The bot's side of the media worker processes (`_worker`): start, ask, kill, replace.

Untrusted media is only ever opened in these processes. Each worker handles one request at a
time. A request borrows an idle worker, sends it one line and waits for the answer under the
scan's media deadline. A worker that overruns the deadline or is cancelled mid-request is
killed (its whole process group) and replaced by a fresh one on the next request; a worker
that dies is replaced at once and the request tried once more in the fresh one, so one
hostile file costs a process or two, never the bot's.

`MediaWorkers(n)` keeps up to n workers alive between requests. With n = 0 every request gets
a process of its own, started for it and stopped after it (slower: a Python start and PyAV's
import, ~0.1 s of CPU, per request), which is also what `probe` and `transcode_to_wav` do when
no pool is passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from bot import metrics
from bot.errors import CorruptMedia, MediaTimeout, SettingsError

log = logging.getLogger(__name__)

_WORKER = Path(__file__).with_name("_worker.py")
#: The worker's address-space limit. Python, PyAV's libraries and a decode of a voice message
#: peak at ~140 MiB of address space; a file that makes FFmpeg grab far more kills the
#: worker, not the bot.
ADDRESS_SPACE = 1024 * 1024 * 1024
#: A description is a few KiB; a file with absurd numbers of streams must not make the bot
#: buffer without bound.
_MAX_REPLY = 1024 * 1024
_START_TIMEOUT_S = 30.0
#: A worker that died is replaced and the request tried once more: a worker can be killed
#: for reasons that are not the file's (the OOM killer, an operator); twice is the file.
_ATTEMPTS = 2


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def ask(self, request: Mapping[str, object]) -> dict[str, Any] | None:
        """Send one request; the reply, or None when the worker died or spoke nonsense."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            await self.proc.stdin.drain()
            line = await self.proc.stdout.readline()
        except (ConnectionError, ValueError):  # ValueError: a line over the stream's limit
            return None
        if not line.endswith(b"\n"):
            return None
        try:
            reply = json.loads(line)
        except ValueError:
            return None
        return reply if isinstance(reply, dict) else None

    async def kill(self) -> None:
        if self.proc.returncode is None:
            # The worker leads its own session, so its pid is its process group's id.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        await asyncio.shield(self.proc.wait())


class MediaWorkers:
    """Up to `processes` media worker processes, started on first use (or by `start`)."""

    def __init__(self, processes: int) -> None:
        self._size = processes
        self._idle: list[_Worker] = []
        self._slots = asyncio.Semaphore(processes) if processes > 0 else None
        self._all: set[_Worker] = set()
        self._closed = False

    @property
    def processes(self) -> int:
        return self._size

    async def start(self) -> None:
        """Start every worker now (at start-up) rather than on the first file.

        Raises `SettingsError` when a worker cannot start (PyAV missing or broken).
        """
        started = await asyncio.gather(
            *(self._spawn() for _ in range(self._size - len(self._all))), return_exceptions=True
        )
        for worker in started:
            if isinstance(worker, _Worker):
                self._idle.append(worker)
        for worker in started:
            if isinstance(worker, BaseException):
                raise worker

    async def ask(self, request: Mapping[str, object], *, timeout_s: float) -> dict[str, Any]:
        """Send `request` to a worker and return its reply.

        Raises `MediaTimeout` after `timeout_s` (the worker is killed) and `CorruptMedia`
        when the worker died on it twice.
        """
        if self._closed:
            raise RuntimeError("the media workers are closed")
        async with contextlib.AsyncExitStack() as stack:
            if self._slots is not None:
                await stack.enter_async_context(self._slots)
            try:
                async with asyncio.timeout(timeout_s):
                    for _ in range(_ATTEMPTS):
                        reply = await self._ask_once(request)
                        if reply is not None:
                            return reply
                        metrics.decoder_restarted("died")
            except TimeoutError:
                metrics.decoder_restarted("timeout")
                raise MediaTimeout(
                    f"Decoding the file took longer than {timeout_s:g} s and was stopped."
                ) from None
        log.warning("media worker died twice on %s", request.get("src"))
        raise CorruptMedia("The file could not be decoded (the decoder stopped on it).")

    async def close(self) -> None:
        """Stop every worker (they would also exit on their own when stdin closes)."""
        self._closed = True
        workers = list(self._all)
        self._idle.clear()
        for worker in workers:
            await self._discard(worker)

    async def _ask_once(self, request: Mapping[str, object]) -> dict[str, Any] | None:
        worker = self._idle.pop() if self._idle else await self._spawn()
        try:
            reply = await worker.ask(request)
        except BaseException:
            # Timed out or cancelled mid-request: the worker may still be on the file.
            await self._discard(worker)
            raise
        if reply is None:
            log.warning("media worker (pid %s) died mid-request", worker.proc.pid)
        if reply is not None and self._slots is not None and not self._closed:
            self._idle.append(worker)
        else:  # dead, or a process for this one request
            await self._discard(worker)
        return reply

    async def _spawn(self) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",  # isolated: no environment variables, user site or current directory
            str(_WORKER),
            str(ADDRESS_SPACE),
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            limit=_MAX_REPLY,
        )
        worker = _Worker(proc)
        self._all.add(worker)
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(_START_TIMEOUT_S):
                line = await proc.stdout.readline()
            hello = json.loads(line) if line else {}
        except (TimeoutError, ValueError):
            hello = {}
        except BaseException:
            await self._discard(worker)
            raise
        if not isinstance(hello, dict) or hello.get("ready") is not True:
            await self._discard(worker)
            detail = hello.get("detail", "no answer") if isinstance(hello, dict) else "no answer"
            raise SettingsError(
                f"The media worker process did not start ({detail}); Spoofwatch needs PyAV "
                "(the `av` package in requirements.lock)."
            )
        log.debug("media worker started (pid %s)", proc.pid)
        return worker

    async def _discard(self, worker: _Worker) -> None:
        self._all.discard(worker)
        with contextlib.suppress(ValueError):
            self._idle.remove(worker)
        await worker.kill()


@contextlib.asynccontextmanager
async def one_off_or(workers: MediaWorkers | None) -> AsyncIterator[MediaWorkers]:
    """`workers`, or a pool that starts one process per request, closed on exit."""
    if workers is not None:
        yield workers
        return
    own = MediaWorkers(0)
    try:
        yield own
    finally:
        await own.close()


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")
_ADDRESS = re.compile(r"\s*@ 0x[0-9a-f]+")
_SPACES = re.compile(r"\s+")


def short_reason(detail: object, *paths: Path, limit: int = 160) -> str:
    """A worker's reason, safe to show a user: one line, printable ASCII, no host paths.

    Temp-file paths become their last component and memory addresses go, so nothing about
    the host leaks into a Discord reply or the audit log.
    """
    text = str(detail or "")
    for path in paths:
        text = text.replace(str(path), path.name)
    text = _ANSI_ESCAPE.sub("", _ADDRESS.sub("", text))
    text = _SPACES.sub(" ", _UNPRINTABLE.sub(" ", text)).strip()
    if not text:
        return "unknown decoder error"
    return text if len(text) <= limit else text[: limit - 1] + "…"
