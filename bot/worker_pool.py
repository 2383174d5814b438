"""A bounded pool of scan workers, so a burst of uploads never stalls the gateway.

A worker stays with a scan while the scan uses this machine: the download, the probe, the
transcode and sending the file. Once the file is sent the scan only waits for the provider,
which takes seconds to minutes, so it calls `hand_off()` on the `Worker` the pool gave its
job, and the worker takes the next queued scan while this one waits on its own. Without
that, a slow provider would hold every worker and the queue would grow while the machine
sat idle: 16 workers and 60 s jobs allow 16 scans a minute. Waiting scans are capped too
(`max_waiting`): past the cap a scan keeps its worker, so a provider that stops answering
slows intake instead of piling up polls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from bot import metrics

log = logging.getLogger(__name__)


class Worker(Protocol):
    """The worker running a job, as the job sees it."""

    def hand_off(self) -> None:
        """The job now only waits on the network: let its worker take the next job.

        A no-op when the job already handed off or the pool's waiting cap is reached.
        """
        ...


class _NoWorker:
    def hand_off(self) -> None:
        return None


#: For work that runs outside a pool (a `/check` runs in its interaction): nothing to free.
NO_WORKER: Worker = _NoWorker()

#: A job is given its worker, to hand off once it only waits on the network.
Job = Callable[[Worker], Awaitable[None]]

#: Scans that may wait on their provider without a worker, per worker.
WAITING_PER_WORKER = 8


class _Slot:
    """One job's claim on a worker (its `Worker`); the worker is free again once `freed` is
    done."""

    __slots__ = ("_pool", "freed", "waiting")

    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool
        self.freed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting = False

    def hand_off(self) -> None:
        if self.freed.done() or self._pool.waiting >= self._pool.max_waiting:
            return
        self.waiting = True
        self.freed.set_result(None)

    def finish(self) -> None:
        self.waiting = False
        if not self.freed.done():
            self.freed.set_result(None)


class WorkerPool:
    """`size` workers take jobs from a queue; event handlers only enqueue."""

    def __init__(self, size: int, *, name: str = "scan", max_waiting: int | None = None) -> None:
        self._size = size
        self._name = name
        self.max_waiting = size * WAITING_PER_WORKER if max_waiting is None else max_waiting
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._jobs: dict[asyncio.Task[None], _Slot] = {}

    @property
    def waiting(self) -> int:
        """Jobs handed off by their worker and still running."""
        return sum(slot.waiting for slot in self._jobs.values())

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
        """Wait until every queued job has finished, handed off or not (tests, benchmarks)."""
        await self._queue.join()

    async def stop(self, *, grace_s: float = 0.0) -> None:
        """Stop taking jobs, give those waiting on the network `grace_s` to finish, then
        cancel the rest; unfinished scans stay in the database and resume on restart.

        The grace is for the jobs that handed off: their file is with the provider, and for
        one that cannot be looked up again (Resemble, which keeps nothing to find a detect
        by) being cancelled means a recorded failure rather than a resumed scan.
        """
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        waiting = [task for task, slot in self._jobs.items() if slot.waiting]
        if waiting and grace_s > 0:
            log.info("waiting up to %.0f s for %d scan(s) at the provider", grace_s, len(waiting))
            await asyncio.wait(waiting, timeout=grace_s)
        tasks = list(self._jobs)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            slot = _Slot(self)
            task = asyncio.create_task(self._run(job, slot), name=f"{self._name}-job")
            self._jobs[task] = slot
            task.add_done_callback(self._forget)
            await slot.freed

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._jobs.pop(task, None)

    async def _run(self, job: Job, slot: _Slot) -> None:
        try:
            await job(slot)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A job handles its own failures; anything here is a bug, and the pool goes on.
            log.exception("%s job failed", self._name)
            metrics.worker_job_crashed(self._name)
        finally:
            slot.finish()
            self._queue.task_done()
