"""The scan worker pool: a scan that only waits on its provider hands its worker on."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import aiohttp

from bot.detectors.behavioral_signals import BehavioralSignalsClient
from bot.detectors.resemble import ResembleClient
from bot.scanning import ScanOutcome, ScanRequest
from bot.storage import AuditLog, ScanStatus
from bot.verdict import ProviderName
from bot.worker_pool import Job, Worker, WorkerPool
from testkit.discord_emulator.waiting import Waiter
from testkit.media_factory import make_tone_wav
from testkit.scan_support import cli_request, make_service
from testkit.standins import BehavioralSignalsStandIn, ResembleStandIn


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the loop run until `condition` holds (a generous bound, not a timing assertion)."""
    await Waiter().wait_for(condition, describe=what)


async def test_a_job_that_hands_off_frees_its_worker() -> None:
    """One worker: the first job waits without it, so the second runs meanwhile."""
    pool = WorkerPool(1)
    pool.start()
    release = asyncio.Event()
    done: list[str] = []

    async def waits(worker: Worker) -> None:
        worker.hand_off()
        await release.wait()
        done.append("waiter")

    async def quick(worker: Worker) -> None:
        done.append("quick")

    pool.submit(waits)
    pool.submit(quick)
    await until(lambda: done == ["quick"], "the second job ran while the first waited")
    assert pool.waiting == 1
    join = asyncio.create_task(pool.join())
    await asyncio.sleep(0.01)
    assert not join.done()  # join waits for handed-off jobs too
    release.set()
    await join
    assert done == ["quick", "waiter"]
    assert pool.waiting == 0
    await pool.stop()


async def test_a_job_that_does_not_hand_off_keeps_its_worker() -> None:
    pool = WorkerPool(1)
    pool.start()
    release = asyncio.Event()
    started: list[str] = []

    async def busy(worker: Worker) -> None:
        started.append("busy")
        await release.wait()

    async def next_one(worker: Worker) -> None:
        started.append("next")

    pool.submit(busy)
    pool.submit(next_one)
    await until(lambda: started == ["busy"], "the first job started")
    await asyncio.sleep(0.02)
    assert started == ["busy"]  # the only worker is still busy
    release.set()
    await pool.join()
    assert started == ["busy", "next"]
    await pool.stop()


async def test_past_the_waiting_cap_a_job_keeps_its_worker() -> None:
    """Once `max_waiting` jobs wait, another hand-off is refused and intake slows."""
    pool = WorkerPool(1, max_waiting=1)
    pool.start()
    releases = [asyncio.Event(), asyncio.Event()]
    started: list[int] = []

    def waiter(index: int) -> Job:
        async def job(worker: Worker) -> None:
            started.append(index)
            worker.hand_off()
            await releases[index].wait()

        return job

    async def last(worker: Worker) -> None:
        started.append(2)

    pool.submit(waiter(0))
    pool.submit(waiter(1))
    pool.submit(last)
    await until(lambda: started == [0, 1], "the second job got the freed worker")
    await asyncio.sleep(0.02)
    assert started == [0, 1]  # job 1 could not hand off: it still holds the worker
    assert pool.waiting == 1
    releases[1].set()
    await until(lambda: started == [0, 1, 2], "the worker came back when job 1 finished")
    releases[0].set()
    await pool.join()
    assert pool.waiting == 0
    await pool.stop()


async def test_a_job_handing_off_twice_is_counted_waiting_once() -> None:
    """Fails if a second hand-off (the upload's, then the wait's) frees a second worker or
    counts the job twice among the waiting."""
    pool = WorkerPool(1)
    pool.start()
    release = asyncio.Event()
    started: list[str] = []

    async def twice(worker: Worker) -> None:
        started.append("twice")
        worker.hand_off()
        worker.hand_off()
        await release.wait()

    async def other(worker: Worker) -> None:
        started.append("other")
        await release.wait()

    async def third(worker: Worker) -> None:
        started.append("third")

    for job in (twice, other, third):
        pool.submit(job)
    await until(lambda: started == ["twice", "other"], "the freed worker took the next job")
    await asyncio.sleep(0.02)
    assert pool.waiting == 1
    assert started == ["twice", "other"]  # `other` holds the only worker
    release.set()
    await pool.join()
    assert started == ["twice", "other", "third"]
    await pool.stop()


async def test_stop_cancels_jobs_that_handed_off() -> None:
    pool = WorkerPool(2)
    pool.start()
    cancelled = asyncio.Event()

    async def waits_forever(worker: Worker) -> None:
        worker.hand_off()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    pool.submit(waits_forever)
    await until(lambda: pool.waiting == 1, "the job handed off")
    await pool.stop()
    assert cancelled.is_set()


async def test_a_failing_job_does_not_cost_a_worker() -> None:
    pool = WorkerPool(1)
    pool.start()
    ran: list[str] = []

    async def broken(worker: Worker) -> None:
        raise RuntimeError("a bug in a job")

    async def fine(worker: Worker) -> None:
        ran.append("fine")

    pool.submit(broken)
    pool.submit(fine)
    await pool.join()
    assert ran == ["fine"]
    await pool.stop()


async def test_scans_waiting_on_the_provider_do_not_hold_the_workers(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    bs_standin: BehavioralSignalsStandIn,
    tmp_path: Path,
) -> None:
    """With one worker, three scans are all uploaded while the provider still works on the
    first; their temporary files are gone while they wait; all three end with a verdict."""
    bs_standin.processing_polls = 1_000_000  # nothing finishes until the test says so
    temp_dir = tmp_path / "work"
    temp_dir.mkdir()
    scans = make_service(audit, http_session, bs_client, temp_dir=temp_dir)
    outcomes: list[ScanOutcome] = []
    pool = WorkerPool(1)
    pool.start()
    for index in range(3):
        path = make_tone_wav(tmp_path / f"tone-{index}.wav", duration_s=1.0 + index / 4)
        scan = cli_request(path, content_type="audio/wav", message_id=100 + index)

        async def job(worker: Worker, scan: ScanRequest = scan) -> None:
            outcomes.append(await scans.scan(scan, worker=worker))

        pool.submit(job)

    await until(lambda: bs_standin.submissions == 3, "all three files reached the provider")
    await until(lambda: not os.listdir(temp_dir), "the waiting scans' files were removed")
    assert pool.waiting == 3
    assert outcomes == []  # nothing finished: they were all waiting together

    bs_standin.processing_polls = 0
    await pool.join()
    await pool.stop()
    assert [o.record.status for o in outcomes] == [ScanStatus.DONE] * 3
    assert all(o.verdict is not None for o in outcomes)
    assert pool.waiting == 0


async def test_a_held_resemble_upload_hands_off_once_its_file_is_sent(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    resemble_client: ResembleClient,
    resemble_standin: ResembleStandIn,
    tmp_path: Path,
) -> None:
    """An upload whose answer is slow to come keeps its request open: the worker moves on
    once the file's last byte is sent, not when the answer comes."""
    resemble_standin.answer_delay_s = 3.0  # each upload's answer is held this long
    scans = make_service(audit, http_session, resemble_client)
    outcomes: list[ScanOutcome] = []
    pool = WorkerPool(1)
    pool.start()
    for index in range(3):
        path = make_tone_wav(tmp_path / f"tone-{index}.wav", duration_s=1.0 + index / 4)

        async def job(worker: Worker, path: Path = path, index: int = index) -> None:
            outcomes.append(
                await scans.scan(
                    cli_request(
                        path,
                        ProviderName.RESEMBLE,
                        content_type="audio/wav",
                        message_id=200 + index,
                    ),
                    worker=worker,
                )
            )

        pool.submit(job)

    await until(lambda: len(resemble_standin.jobs) == 3, "all three files reached Resemble")
    answered = [call for call in resemble_standin.calls if call.route == "submit"]
    assert answered == []  # ...while the first upload's answer was still held
    await pool.join()
    await pool.stop()
    assert [o.record.status for o in outcomes] == [ScanStatus.DONE] * 3


async def test_stop_lets_jobs_at_the_provider_finish_within_the_grace() -> None:
    """A job that handed off and finishes during the grace ends normally; the pool takes
    no new job meanwhile."""
    pool = WorkerPool(1)
    pool.start()
    answer = asyncio.Event()
    finished: list[str] = []

    async def at_provider(worker: Worker) -> None:
        worker.hand_off()
        await answer.wait()
        finished.append("verdict")

    async def later(worker: Worker) -> None:
        finished.append("later")

    pool.submit(at_provider)
    await until(lambda: pool.waiting == 1, "the job handed off")
    stopping = asyncio.create_task(pool.stop(grace_s=60))
    await asyncio.sleep(0)
    pool.submit(later)  # arrives while stopping: stays queued, for the next start
    answer.set()
    await stopping
    assert finished == ["verdict"]
    assert pool.pending == 1


async def test_stop_cancels_what_the_grace_does_not_cover() -> None:
    """After the grace, jobs at the provider are cancelled, and so are jobs still using the
    machine (not handed off), which the grace does not wait for."""
    pool = WorkerPool(2)
    pool.start()
    cancelled: list[str] = []

    def forever(name: str, *, hands_off: bool) -> Job:
        async def job(worker: Worker) -> None:
            if hands_off:
                worker.hand_off()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(name)
                raise

        return job

    pool.submit(forever("busy", hands_off=False))
    pool.submit(forever("waiting", hands_off=True))
    await until(lambda: pool.waiting == 1, "one job handed off")
    await pool.stop(grace_s=0.05)
    assert sorted(cancelled) == ["busy", "waiting"]
