"""Durable scans without Discord: resuming after a crash never sends the same file twice.

Real SQLite, real ffmpeg, provider stand-ins. The crash itself is simulated by leaving the
database as a killed process leaves it; `tests/bench/test_crash.py` kills a real one.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp

from bot.detectors import Detector, SubmitOptions, Upload
from bot.detectors.behavioral_signals import BehavioralSignalsClient
from bot.detectors.resemble import ResembleClient
from bot.errors import ScanInProgress
from bot.scanning import MediaSource, ScanLimits, ScanRequest, ScanService, provider_meta
from bot.storage import AuditLog, NewScan, ScanRecord, ScanStatus, Trigger
from bot.verdict import MediaKind, ProviderName
from testkit.media_factory import MediaFiles
from testkit.scan_support import make_service
from testkit.standins import BehavioralSignalsStandIn, ResembleStandIn

LIMITS = ScanLimits(max_file_bytes=50 * 1024 * 1024, max_duration_s=600)
GUILD, CHANNEL, MESSAGE, ATTACHMENT = 10, 20, 30, 40


def service(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    detector: Detector,
    temp_dir: Path | None = None,
) -> ScanService:
    return make_service(audit, http_session, detector, temp_dir=temp_dir)


def voice_request(path: Path, provider: ProviderName) -> ScanRequest:
    """An automatic scan of a voice message, as the autoscan cog builds it."""
    return ScanRequest(
        new=NewScan(
            guild_id=GUILD,
            channel_id=CHANNEL,
            message_id=MESSAGE,
            attachment_id=ATTACHMENT,
            filename=path.name,
            content_type="audio/ogg",
            trigger=Trigger.AUTO,
            provider=provider,
        ),
        source=MediaSource(path=path),
        limits=LIMITS,
        voice_flag=True,
        meta=provider_meta(
            guild_id=GUILD, channel_id=CHANNEL, message_id=MESSAGE, attachment_id=ATTACHMENT
        ),
    )


async def died_after_probe(audit: AuditLog, request: ScanRequest) -> ScanRecord:
    """The row a process killed inside `submit` leaves: media recorded, no job id."""
    record, _ = await audit.scans.create_scan(request.new)
    await audit.scans.set_media(
        record.id, sha256="ab" * 32, size=1234, content_type="audio/ogg", duration_s=3.0
    )
    [unfinished] = await audit.scans.unfinished_scans()
    return unfinished


def wav_upload(path: Path) -> Upload:
    return Upload(
        path=path,
        filename=path.name,
        content_type="audio/wav",
        kind=MediaKind.AUDIO,
        format_name="wav",
    )


async def test_lost_upload_answer_is_recovered_from_the_provider(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    bs_standin: BehavioralSignalsStandIn,
    media: MediaFiles,
) -> None:
    """Fails if a scan that died after its upload arrived is uploaded again on resume instead
    of adopting the provider's job (found by the ids sent in `meta`)."""
    scans = service(audit, http_session, bs_client)
    request = voice_request(media.voice_ogg, ProviderName.BEHAVIORAL_SIGNALS)
    record = await died_after_probe(audit, request)
    # The dying process's upload: the provider has the job; its answer never came back.
    lost = await bs_client.submit(
        wav_upload(media.tone_wav), SubmitOptions(meta=dict(request.meta))
    )
    outcome = await scans.resume(record, request)
    assert outcome.verdict is not None and outcome.error is None
    assert outcome.record.provider_job_id == lost.job_id
    assert bs_standin.submissions == 1


async def test_job_of_another_attachment_is_not_adopted(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    bs_standin: BehavioralSignalsStandIn,
    media: MediaFiles,
) -> None:
    """Fails if the lookup matches a job sent for a different attachment; the file never
    arrived, so it must be sent (once) now."""
    scans = service(audit, http_session, bs_client)
    request = voice_request(media.voice_ogg, ProviderName.BEHAVIORAL_SIGNALS)
    record = await died_after_probe(audit, request)
    other = provider_meta(guild_id=GUILD, channel_id=CHANNEL, message_id=MESSAGE, attachment_id=41)
    foreign = await bs_client.submit(wav_upload(media.tone_wav), SubmitOptions(meta=other))
    outcome = await scans.resume(record, request)
    assert outcome.verdict is not None
    assert outcome.record.provider_job_id != foreign.job_id
    assert bs_standin.submissions == 2  # the foreign job, and this file's one upload


async def test_provider_that_cannot_be_asked_is_not_sent_the_file_twice(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    resemble_client: ResembleClient,
    resemble_standin: ResembleStandIn,
    media: MediaFiles,
) -> None:
    """Fails if a Resemble scan that may have died inside `submit` is uploaded again: Resemble
    keeps nothing to find the job by, so the case must end as `interrupted_in_flight`."""
    scans = service(audit, http_session, resemble_client)
    request = voice_request(media.voice_ogg, ProviderName.RESEMBLE)
    record = await died_after_probe(audit, request)
    outcome = await scans.resume(record, request)
    assert outcome.error is not None and outcome.error.kind == "interrupted_in_flight"
    assert outcome.record.status is ScanStatus.FAILED
    assert resemble_standin.submissions == 0


async def test_scan_killed_before_its_media_was_recorded_runs_again(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    resemble_client: ResembleClient,
    resemble_standin: ResembleStandIn,
    media: MediaFiles,
) -> None:
    """Fails if a scan that died before reaching the provider is not simply run again."""
    scans = service(audit, http_session, resemble_client)
    request = voice_request(media.voice_ogg, ProviderName.RESEMBLE)
    await audit.scans.create_scan(request.new)
    [record] = await audit.scans.unfinished_scans()
    outcome = await scans.resume(record, request)
    assert outcome.verdict is not None
    assert resemble_standin.submissions == 1


async def test_resume_leaves_a_scan_this_process_is_running_alone(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    bs_standin: BehavioralSignalsStandIn,
    media: MediaFiles,
) -> None:
    """Fails if `resume` with a stale snapshot starts a second run of a scan in progress."""
    scans = service(audit, http_session, bs_client)
    bs_standin.processing_polls = 10**6  # the job stays pending until released
    request = voice_request(media.voice_ogg, ProviderName.BEHAVIORAL_SIGNALS)
    running = asyncio.create_task(scans.scan(request))
    while bs_standin.status_polls == 0:
        await asyncio.sleep(0.01)
    [stale] = await audit.scans.unfinished_scans()
    second = await scans.resume(stale, request)
    assert isinstance(second.error, ScanInProgress)
    bs_standin.processing_polls = 0
    first = await running
    assert first.verdict is not None
    assert bs_standin.submissions == 1


def _dead_pid() -> int:
    """The pid of a process that has exited (not reused this quickly in practice)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


async def test_work_directories_of_dead_processes_are_swept(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    tmp_path: Path,
) -> None:
    """Fails if a start leaves a SIGKILLed process's temp files, or deletes a live one's."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    dead = temp / f"spoofwatch-{_dead_pid()}-abc-scan"
    alive = temp / f"spoofwatch-{os.getppid()}-def-scan"
    unrelated = temp / "someone-else"
    for directory in (dead, alive, unrelated):
        directory.mkdir()
        (directory / "media").write_bytes(b"x")
    removed = await service(audit, http_session, bs_client, temp_dir=temp).sweep_workdirs()
    assert removed == 1
    assert sorted(p.name for p in temp.iterdir()) == sorted([alive.name, unrelated.name])
