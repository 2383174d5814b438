"""A bounded pool of scan workers, so a burst of uploads never stalls the gateway."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


class WorkerPool:
    """`size` workers take jobs from a queue; event handlers only enqueue."""

    def __init__(self, size: int, *, name: str = "scan") -> None:
        self._size = size
        self._name = name
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._workers:
            return
        self._workers = [
            asyncio.create_task(self._work(), name=f"{self._name}-worker-{i}")
            for i in range(self._size)
        ]

    def submit(self, job: Job) -> None:
        """Queue a job. Never blocks: the queue holds every accepted scan (each is in the DB)."""
        self._queue.put_nowait(job)

    async def join(self) -> None:
        """Wait until every queued job has finished (tests, benchmarks)."""
        await self._queue.join()

    async def stop(self) -> None:
        """Cancel the workers; unfinished scans stay in the database and resume on restart."""
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A job handles its own failures; anything here is a bug, and the pool goes on.
                log.exception("%s job failed", self._name)
            finally:
                self._queue.task_done()
