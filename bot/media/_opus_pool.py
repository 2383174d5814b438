"""The bot's side of the Opus decoder processes (`_opus_worker`): start, ask, kill, replace.

Each worker decodes one file at a time. A scan borrows an idle worker, sends it one request
line and waits for its answer under the same deadline ffmpeg gets. A worker that overruns
the deadline, is cancelled mid-decode, or dies is killed (its whole process group) and
replaced by a fresh one on the next request, so one hostile file costs one process, never
the bot's. When the workers cannot start (no libopus), the pool switches itself off and every
transcode goes to ffmpeg, as before it existed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from bot import metrics
from bot.errors import MediaTimeout

log = logging.getLogger(__name__)

_WORKER = Path(__file__).with_name("_opus_worker.py")
#: The worker's address-space limit: its Python, libopus, a 256 KiB read buffer and 1 MiB of
#: decoded samples fit in a fraction of this; a file that makes it grab more kills the
#: worker, not the bot.
_ADDRESS_SPACE = 512 * 1024 * 1024
#: A reply line is a few dozen bytes; anything longer is not the worker speaking.
_MAX_REPLY = 4096
_START_TIMEOUT_S = 30.0


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def ask(self, request: Mapping[str, object]) -> dict[str, object] | None:
        """Send one request; the reply, or None when the worker died or spoke nonsense."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            await self.proc.stdin.drain()
            line = await self.proc.stdout.readline()
        except (ConnectionError, ValueError):
            return None
        if not line.endswith(b"\n") or len(line) > _MAX_REPLY:
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


class OpusDecoders:
    """Up to `processes` decoder processes, started on first use.

    `decode` answers True when the WAV was written, False when this file must go to ffmpeg
    instead (not plain Ogg Opus, a packet libopus refused, a worker that died, no libopus).
    """

    def __init__(self, processes: int) -> None:
        self._size = processes
        self._idle: list[_Worker] = []
        self._slots = asyncio.Semaphore(max(processes, 1))
        self._all: set[_Worker] = set()
        self._enabled = processes > 0
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self._enabled and not self._closed

    async def start(self) -> None:
        """Start every worker now (at start-up) rather than on the first voice message."""
        if not self.enabled:
            return
        started = await asyncio.gather(
            *(self._spawn() for _ in range(self._size - len(self._all))), return_exceptions=True
        )
        for worker in started:
            if isinstance(worker, _Worker):
                self._idle.append(worker)
            elif isinstance(worker, BaseException) and not isinstance(worker, Exception):
                raise worker

    async def decode(
        self, src: Path, dst: Path, *, timeout_s: float, max_duration_s: float | None
    ) -> bool:
        """Write `src` (Ogg Opus) to `dst` as 16 kHz mono WAV; False to use ffmpeg instead.

        Raises `MediaTimeout` after `timeout_s`, as ffmpeg's path does; on any failure `dst`
        does not exist.
        """
        if not self.enabled:
            return False
        max_samples = None if max_duration_s is None else int(max_duration_s * 16_000)
        request = {"src": str(src), "dst": str(dst), "max_samples": max_samples}
        async with self._slots:
            worker = await self._borrow()
            if worker is None:
                return False
            healthy = False
            try:
                async with asyncio.timeout(timeout_s):
                    reply = await worker.ask(request)
                healthy = reply is not None
            except TimeoutError:
                log.warning("opus decoder (pid %s) killed after %.1f s", worker.proc.pid, timeout_s)
                metrics.decoder_restarted("timeout")
                raise MediaTimeout(
                    f"Decoding the file took longer than {timeout_s:g} s and was stopped."
                ) from None
            finally:
                if healthy:
                    self._idle.append(worker)
                else:
                    await self._discard(worker)
                    _remove(dst)
        if reply is None:
            log.warning("opus decoder died on %s; using ffmpeg", src.name)
            metrics.decoder_restarted("died")
            return False
        if reply.get("ok") is True:
            return True
        _remove(dst)
        log.info(
            "opus decoder passed %s to ffmpeg (%s: %s)",
            src.name,
            reply.get("reason"),
            reply.get("detail"),
        )
        return False

    async def close(self) -> None:
        """Stop every worker (they would also exit on their own when stdin closes)."""
        self._closed = True
        workers = list(self._all)
        self._idle.clear()
        for worker in workers:
            await self._discard(worker)

    async def _borrow(self) -> _Worker | None:
        if self._idle:
            return self._idle.pop()
        try:
            return await self._spawn()
        except Exception:  # logged in _spawn; the caller falls back to ffmpeg
            return None

    async def _spawn(self) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",  # isolated: no environment variables, user site or current directory
            "-S",  # no site-packages: the worker needs the standard library alone
            str(_WORKER),
            str(_ADDRESS_SPACE),
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
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
        if hello.get("ready") is not True:
            await self._discard(worker)
            self._enabled = False
            log.warning(
                "Opus decoder processes unavailable (%s); voice messages are transcoded "
                "with ffmpeg",
                hello.get("detail", "no answer"),
            )
            raise RuntimeError("opus decoder did not start")
        log.debug("opus decoder started (pid %s)", proc.pid)
        return worker

    async def _discard(self, worker: _Worker) -> None:
        self._all.discard(worker)
        with contextlib.suppress(ValueError):
            self._idle.remove(worker)
        await worker.kill()


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
