"""The scan lifecycle without Discord: real media, real SQLite, provider stand-ins."""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from bot.detectors import Detector, SubmitOptions, Upload
from bot.detectors.behavioral_signals import BehavioralSignalsClient
from bot.detectors.resemble import ResembleClient
from bot.errors import ProviderOutOfCredits, QuotaReached
from bot.media import MediaProbe, MediaWorkers, Transcoder
from bot.media._probe import FirstLook
from bot.scanning import ScanLimits, ScanService
from bot.storage import AuditLog, ScanStatus, open_audit_log
from bot.verdict import Label, MediaKind, ProviderName
from testkit.media_factory import MediaFiles
from testkit.scan_support import NOON, cli_request, make_service
from testkit.standins import BehavioralSignalsStandIn, ResembleStandIn
from testkit.standins.behavioral_signals import utterance
from testkit.standins.resemble import metrics


def service(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    detectors: dict[ProviderName, Detector],
    clock=lambda: NOON,
) -> ScanService:
    return make_service(audit, http_session, *detectors.values(), clock=clock)


@pytest.mark.parametrize("decoders", [0, 1], ids=["process-per-file", "long-lived-worker"])
async def test_voice_message_is_transcoded_for_behavioral_signals(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    bs_standin: BehavioralSignalsStandIn,
    media: MediaFiles,
    decoders: int,
) -> None:
    """An OGG/Opus voice message reaches Behavioral Signals as WAV, from a long-lived media
    worker or a process started for the file."""
    # The stand-in fails anything that is not WAV/MP3, as the real service documents; the
    # verdict is scripted on the WAV the scan sends, so it arrives only if we transcoded.
    pool = MediaWorkers(decoders)
    scans = make_service(audit, http_session, bs_client, transcoder=Transcoder(pool))
    try:
        outcome = await scans.scan(cli_request(media.voice_ogg))
        assert len(pool._all) == decoders  # the worker was used, and survived
    finally:
        await pool.close()
    assert outcome.error is None, outcome.error
    assert outcome.verdict is not None
    assert outcome.record.status is ScanStatus.DONE
    assert bs_standin.submissions == 1
    [job] = bs_standin.jobs.values()
    assert job.upload.head.startswith(b"RIFF")
    assert job.upload.filename is not None and job.upload.filename.endswith(".wav")
    assert job.duration == pytest.approx(outcome.record.duration_s, abs=0.05)


async def test_utterances_become_one_verdict(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    bs_standin: BehavioralSignalsStandIn,
    media: MediaFiles,
) -> None:
    """Two utterances, one spoofed: the file is spoofed at the highest utterance probability."""
    bs_standin.script_result(
        media.speech_wav,
        [*utterance(0, 0.0, 2.0, spoofed=0.97), *utterance(1, 2.0, 3.0, spoofed="1e-04")],
    )
    scans = service(audit, http_session, {ProviderName.BEHAVIORAL_SIGNALS: bs_client})
    outcome = await scans.scan(cli_request(media.speech_wav, content_type="audio/wav"))
    assert outcome.verdict is not None
    assert outcome.verdict.label is Label.SPOOFED
    assert outcome.verdict.spoofed_probability == pytest.approx(0.97)
    assert len(outcome.verdict.segments) == 2


async def test_scripted_verdict_is_recorded_with_its_case(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    resemble_client: ResembleClient,
    resemble_standin: ResembleStandIn,
    media: MediaFiles,
) -> None:
    """Resemble's fake verdict is stored on the case: label, probability, job id, sha256."""
    resemble_standin.script_result(media.voice_ogg, metrics=metrics([0.9, 0.95], label="fake"))
    scans = service(audit, http_session, {ProviderName.RESEMBLE: resemble_client})
    outcome = await scans.scan(cli_request(media.voice_ogg, ProviderName.RESEMBLE))
    assert outcome.verdict is not None and outcome.verdict.label is Label.SPOOFED
    record = await audit.cases.case(1, outcome.record.case_number)
    assert record is not None
    assert record.label is Label.SPOOFED
    assert record.spoofed_probability == pytest.approx(outcome.verdict.spoofed_probability)
    assert record.provider_job_id == outcome.verdict.provider_job_id
    assert record.sha256 is not None and len(record.sha256) == 64


async def test_same_file_twice_reuses_the_verdict(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    resemble_client: ResembleClient,
    resemble_standin: ResembleStandIn,
    media: MediaFiles,
    tmp_path: Path,
) -> None:
    """A second scan of the same bytes (other name) makes no provider call and says reused."""
    copy = tmp_path / "renamed.ogg"
    shutil.copy(media.voice_ogg, copy)
    scans = service(audit, http_session, {ProviderName.RESEMBLE: resemble_client})
    first = await scans.scan(cli_request(media.voice_ogg, ProviderName.RESEMBLE))
    second = await scans.scan(cli_request(copy, ProviderName.RESEMBLE))
    assert resemble_standin.submissions == 1
    assert second.reused and second.record.status is ScanStatus.REUSED
    assert second.verdict == first.verdict
    assert second.record.case_number == first.record.case_number + 1


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("empty_ogg", "empty"),
        ("random_ogg", "not_media"),
        ("text_mp4", "not_media"),
        ("truncated_ogg", "corrupt"),
        ("silent_mp4", "no_audio"),
        ("long_ogg", "too_long"),
    ],
)
async def test_bad_input_is_a_recorded_failure(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    resemble_client: ResembleClient,
    resemble_standin: ResembleStandIn,
    media: MediaFiles,
    name: str,
    kind: str,
) -> None:
    """Each bad file ends as a failed case with its error kind, before any upload."""
    scans = service(audit, http_session, {ProviderName.RESEMBLE: resemble_client})
    outcome = await scans.scan(cli_request(getattr(media, name), ProviderName.RESEMBLE))
    assert outcome.error is not None and outcome.error.kind == kind
    assert outcome.record.status is ScanStatus.FAILED
    assert outcome.record.error_kind == kind
    assert resemble_standin.submissions == 0


async def test_too_large_is_refused_before_reading(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    resemble_client: ResembleClient,
    media: MediaFiles,
) -> None:
    """A file over the byte cap fails as too_large."""
    scans = service(audit, http_session, {ProviderName.RESEMBLE: resemble_client})
    tiny = ScanLimits(max_file_bytes=100, max_duration_s=600)
    outcome = await scans.scan(cli_request(media.voice_ogg, ProviderName.RESEMBLE, limits=tiny))
    assert outcome.error is not None and outcome.error.kind == "too_large"


async def test_out_of_credits_is_recorded(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    bs_standin: BehavioralSignalsStandIn,
    media: MediaFiles,
) -> None:
    """Status -2 ends the case failed with the credits error, after the job id was stored."""
    bs_standin.out_of_credits()
    scans = service(audit, http_session, {ProviderName.BEHAVIORAL_SIGNALS: bs_client})
    outcome = await scans.scan(cli_request(media.speech_wav, content_type="audio/wav"))
    assert isinstance(outcome.error, ProviderOutOfCredits)
    assert outcome.record.status is ScanStatus.FAILED
    assert outcome.record.provider_job_id is not None


async def test_daily_quota_stops_scans_and_resets_next_day(
    tmp_path: Path,
    http_session: aiohttp.ClientSession,
    resemble_client: ResembleClient,
    resemble_standin: ResembleStandIn,
    media: MediaFiles,
) -> None:
    """With a quota of 1, the second new file today is refused; tomorrow it goes through."""
    now = [datetime(2026, 11, 21, 12, tzinfo=UTC)]
    # The audit log stamps cases with the same simulated clock as the scan service: with the
    # real one, the first case's date would depend on the day the test runs.
    audit = await open_audit_log(tmp_path / "quota.db", clock=lambda: now[0])
    scans = service(
        audit, http_session, {ProviderName.RESEMBLE: resemble_client}, clock=lambda: now[0]
    )
    limits = ScanLimits(max_file_bytes=10**8, max_duration_s=600, daily_quota=1)
    first = await scans.scan(cli_request(media.voice_ogg, ProviderName.RESEMBLE, limits=limits))
    assert first.error is None
    refused = await scans.scan(cli_request(media.tone_wav, ProviderName.RESEMBLE, limits=limits))
    assert isinstance(refused.error, QuotaReached)
    assert refused.error.resets_at == datetime(2026, 11, 22, tzinfo=UTC).timestamp()
    reused = await scans.scan(cli_request(media.voice_ogg, ProviderName.RESEMBLE, limits=limits))
    assert reused.reused and reused.error is None  # reuse costs nothing, so no quota
    now[0] = datetime(2026, 11, 22, 0, 5, tzinfo=UTC)
    tomorrow = await scans.scan(cli_request(media.tone_wav, ProviderName.RESEMBLE, limits=limits))
    await audit.close()
    assert tomorrow.error is None
    assert resemble_standin.submissions == 2


async def test_resume_polls_the_existing_job_without_resubmitting(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    bs_standin: BehavioralSignalsStandIn,
    media: MediaFiles,
) -> None:
    """A scan left `submitted` is finished by polling its job id; no second upload."""
    scans = service(audit, http_session, {ProviderName.BEHAVIORAL_SIGNALS: bs_client})
    submission = await bs_client.submit(
        Upload(
            path=media.speech_wav,
            filename="speech.wav",
            content_type="audio/wav",
            kind=MediaKind.AUDIO,
            format_name="wav",
        ),
        SubmitOptions(),
    )
    record, _ = await audit.scans.create_scan(cli_request(media.speech_wav).new)
    await audit.scans.mark_submitted(record.id, submission.job_id)
    [unfinished] = await audit.scans.unfinished_scans()
    outcome = await scans.resume(unfinished, None)
    assert outcome.error is None and outcome.verdict is not None
    assert outcome.record.status is ScanStatus.DONE
    assert bs_standin.submissions == 1


async def test_resume_without_job_or_source_fails_as_interrupted(
    audit: AuditLog, http_session: aiohttp.ClientSession, bs_client: BehavioralSignalsClient
) -> None:
    """A scan that never reached the provider and cannot be re-fetched ends `interrupted`."""
    scans = service(audit, http_session, {ProviderName.BEHAVIORAL_SIGNALS: bs_client})
    record, _ = await audit.scans.create_scan(cli_request(Path("gone.ogg")).new)
    outcome = await scans.resume(record, None)
    assert outcome.error is not None and outcome.error.kind == "interrupted"
    assert outcome.record.status is ScanStatus.FAILED


async def test_replayed_event_does_not_scan_twice(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    resemble_client: ResembleClient,
    resemble_standin: ResembleStandIn,
    media: MediaFiles,
) -> None:
    """The same message and attachment accepted twice returns the first case's verdict."""
    scans = service(audit, http_session, {ProviderName.RESEMBLE: resemble_client})
    first = await scans.scan(cli_request(media.tone_mp3, ProviderName.RESEMBLE, message_id=42))
    again = await scans.scan(cli_request(media.tone_mp3, ProviderName.RESEMBLE, message_id=42))
    assert again.record.id == first.record.id
    assert again.verdict == first.verdict
    assert resemble_standin.submissions == 1


async def test_media_tools_are_capped_per_cpu(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    media: MediaFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails if many scans at once send more probes/decodes to media workers than two per
    CPU."""
    cap = 2 * (os.cpu_count() or 1)
    running = 0
    most = 0
    real_probe = Transcoder.probe

    async def counting_probe(
        self: Transcoder, path: Path, *, timeout_s: float, look: FirstLook | None = None
    ) -> MediaProbe:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.05)  # long enough for every scan to reach this point
            return await real_probe(self, path, timeout_s=timeout_s, look=look)
        finally:
            running -= 1

    monkeypatch.setattr(Transcoder, "probe", counting_probe)
    scans = service(audit, http_session, {ProviderName.BEHAVIORAL_SIGNALS: bs_client})
    outcomes = await asyncio.gather(
        *(
            scans.scan(cli_request(media.voice_ogg, message_id=i + 1, content_type="audio/ogg"))
            for i in range(cap * 2)
        )
    )
    assert all(o.error is None for o in outcomes)
    assert most == cap
