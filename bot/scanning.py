"""The one scan lifecycle, Discord-free: accept → fetch → probe → reuse? → submit → wait → record.

Every accepted scan ends as a verdict or a recorded failure. The audit row is written before
anything else and updated at each step, so a crash leaves a visible, resumable trace.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bot import media
from bot.detectors import Detector, SubmitOptions, Upload
from bot.errors import (
    InternalError,
    MediaTooLarge,
    MediaTooLong,
    ProviderError,
    QuotaReached,
    ScanInProgress,
    ScanInterrupted,
    SpoofwatchError,
    error_for_kind,
)
from bot.storage import AuditLog, NewScan, ScanRecord, ScanStatus
from bot.verdict import MediaKind, ProviderName, Verdict

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class MediaSource:
    """Where the bytes come from: a URL (a Discord attachment) or a local file (the CLI)."""

    url: str | None = None
    path: Path | None = None


@dataclass(frozen=True, slots=True)
class ScanLimits:
    max_file_bytes: int
    max_duration_s: float
    #: Scans a guild may send to the provider per UTC day; None = unlimited.
    daily_quota: int | None = None


@dataclass(frozen=True, slots=True)
class ScanRequest:
    new: NewScan
    source: MediaSource
    limits: ScanLimits
    voice_flag: bool = False
    #: Duration Discord reports for the attachment (voice messages), checked before download.
    declared_duration_s: float | None = None
    want_transcript: bool = False
    store_transcript: bool = True
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    record: ScanRecord
    verdict: Verdict | None = None
    error: SpoofwatchError | None = None

    @property
    def reused(self) -> bool:
        return self.record.status is ScanStatus.REUSED


class ScanService:
    """Runs scans through the configured detectors and keeps the audit log in step."""

    def __init__(
        self,
        *,
        audit: AuditLog,
        detectors: Mapping[ProviderName, Detector],
        http_session: aiohttp.ClientSession,
        allowed_hosts: tuple[str, ...],
        ffmpeg_timeout_s: float,
        download_timeout_s: float = 300.0,
        temp_dir: Path | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._audit = audit
        self._detectors = dict(detectors)
        self._http = http_session
        self._allowed_hosts = allowed_hosts
        self._ffmpeg_timeout_s = ffmpeg_timeout_s
        self._download_timeout_s = download_timeout_s
        self._temp_dir = temp_dir
        self._clock = clock

    @property
    def audit(self) -> AuditLog:
        return self._audit

    @property
    def providers(self) -> list[ProviderName]:
        return list(self._detectors)

    async def scan(self, request: ScanRequest) -> ScanOutcome:
        """Accept, run and record one scan. Never raises for a scan problem: see `.error`."""
        record, created = await self._audit.create_scan(request.new)
        if not created:
            # The same attachment was already accepted for this trigger (a replayed event).
            if record.status.finished:
                return await self._outcome_of(record)
            return ScanOutcome(
                record=record,
                error=ScanInProgress("This file is already being checked; the answer is coming."),
            )
        log.info(
            "scan accepted: case %s/#%s %r (%s, trigger %s, requested by %s)",
            record.guild_id,
            record.case_number,
            record.filename,
            record.provider,
            record.trigger,
            record.requested_by,
        )
        return await self._run(record, request)

    async def refuse(self, new: NewScan, error: SpoofwatchError) -> ScanOutcome:
        """Record a scan refused before it started (too large, quota, cooldown...)."""
        record, created = await self._audit.create_scan(new)
        if not created and record.status.finished:
            return await self._outcome_of(record)
        record = await self._audit.mark_failed(record.id, error.kind, error.message)
        log.info("scan refused: case #%s %s (%s)", record.case_number, error.kind, error.message)
        return ScanOutcome(record=record, error=error)

    async def resume(self, record: ScanRecord, request: ScanRequest | None) -> ScanOutcome:
        """Finish a scan left unfinished by a restart, never submitting the same file twice."""
        if record.provider_job_id is not None:
            detector = self._detectors.get(record.provider)
            if detector is None:
                return await self._fail(
                    record, InternalError(f"provider {record.provider} is no longer configured")
                )
            log.info(
                "resuming case #%s: polling %s job %s",
                record.case_number,
                record.provider,
                record.provider_job_id,
            )
            try:
                verdict = await detector.wait(record.provider_job_id)
            except SpoofwatchError as exc:
                return await self._fail(record, exc)
            done = await self._audit.mark_done(
                record.id,
                verdict,
                store_transcript=request.store_transcript if request else True,
            )
            return ScanOutcome(record=done, verdict=verdict)
        if request is None:
            return await self._fail(
                record, ScanInterrupted("The scan was interrupted before it was submitted.")
            )
        log.info("resuming case #%s from the start (not yet submitted)", record.case_number)
        return await self._run(record, request)

    # --- the lifecycle --------------------------------------------------------------------

    async def _run(self, record: ScanRecord, request: ScanRequest) -> ScanOutcome:
        workdir = Path(
            await asyncio.to_thread(tempfile.mkdtemp, "-scan", "spoofwatch-", self._temp_dir)
        )
        try:
            return await self._steps(record, request, workdir)
        except SpoofwatchError as exc:
            return await self._fail(record, exc)
        except asyncio.CancelledError:
            # Shutdown: the row stays queued/submitted and is resumed at the next start.
            log.info("scan of case #%s cancelled; it will resume on restart", record.case_number)
            raise
        except Exception:
            log.exception("scan of case #%s failed unexpectedly", record.case_number)
            return await self._fail(
                record, InternalError("Something went wrong inside Spoofwatch.")
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)

    async def _steps(self, record: ScanRecord, request: ScanRequest, workdir: Path) -> ScanOutcome:
        limits = request.limits
        new = request.new
        if new.size is not None and new.size > limits.max_file_bytes:
            raise MediaTooLarge(new.size, limits.max_file_bytes)
        if request.declared_duration_s and request.declared_duration_s > limits.max_duration_s:
            raise MediaTooLong(request.declared_duration_s, limits.max_duration_s)

        path, size, sha256 = await self._fetch(request, workdir)
        probe = await media.probe(path, timeout_s=self._ffmpeg_timeout_s)
        kind = media.classify(probe, content_type=new.content_type, voice_flag=request.voice_flag)
        await self._audit.set_media(
            record.id,
            sha256=sha256,
            size=size,
            content_type=new.content_type,
            duration_s=probe.duration_s,
        )
        media.check_duration(probe, max_duration_s=limits.max_duration_s)

        reusable = await self._audit.find_verdict(sha256, record.provider)
        if reusable is not None:
            done = await self._audit.mark_done(
                record.id,
                reusable.verdict,
                reused_from=reusable.scan_id,
                store_transcript=request.store_transcript,
            )
            log.info("case #%s reuses the verdict of scan %s", done.case_number, reusable.scan_id)
            return ScanOutcome(record=done, verdict=reusable.verdict)

        await self._check_quota(record, limits)
        detector = self._detector(record.provider)
        upload = Upload(
            path=path,
            filename=_upload_name(new.filename, probe.format_name, kind),
            content_type=new.content_type or "application/octet-stream",
            kind=kind,
            format_name=probe.format_name,
        )
        if not detector.accepts(upload):
            wav = workdir / "audio.wav"
            await media.transcode_to_wav(
                path, wav, timeout_s=self._ffmpeg_timeout_s, max_duration_s=limits.max_duration_s
            )
            upload = Upload(
                path=wav,
                filename=Path(upload.filename).with_suffix(".wav").name,
                content_type="audio/wav",
                kind=MediaKind.AUDIO,
                format_name="wav",
            )

        options = SubmitOptions(transcript=request.want_transcript, meta=dict(request.meta) or None)
        submission = await detector.submit(upload, options)
        await self._audit.mark_submitted(record.id, submission.job_id)
        verdict = submission.verdict or await detector.wait(submission.job_id)
        done = await self._audit.mark_done(
            record.id, verdict, store_transcript=request.store_transcript
        )
        log.info(
            "case %s/#%s done: %s (p=%s) by %s job %s",
            done.guild_id,
            done.case_number,
            verdict.label,
            verdict.spoofed_probability,
            verdict.provider,
            verdict.provider_job_id,
        )
        return ScanOutcome(record=done, verdict=verdict)

    async def _fetch(self, request: ScanRequest, workdir: Path) -> tuple[Path, int, str]:
        source = request.source
        max_bytes = request.limits.max_file_bytes
        if source.path is not None:
            size, sha256 = await media.hash_file(source.path, max_bytes=max_bytes)
            return source.path, size, sha256
        if source.url is None:
            raise InternalError("a scan needs a URL or a file")
        downloaded = await media.download(
            self._http,
            source.url,
            workdir / "media",
            max_bytes=max_bytes,
            allowed_hosts=self._allowed_hosts,
            timeout_s=self._download_timeout_s,
        )
        return downloaded.path, downloaded.size, downloaded.sha256

    async def _check_quota(self, record: ScanRecord, limits: ScanLimits) -> None:
        if limits.daily_quota is None:
            return
        now = self._clock()
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        used = await self._audit.count_scans(record.guild_id, since=day_start)
        if used >= limits.daily_quota:
            resets = day_start.timestamp() + 86_400
            raise QuotaReached(
                f"This server has used its {limits.daily_quota} scans for today.",
                resets_at=resets,
            )

    def _detector(self, provider: ProviderName) -> Detector:
        try:
            return self._detectors[provider]
        except KeyError:
            raise InternalError(f"provider {provider} is not configured") from None

    async def _fail(self, record: ScanRecord, error: SpoofwatchError) -> ScanOutcome:
        failed = await self._audit.mark_failed(record.id, error.kind, error.message)
        level = (
            logging.WARNING if isinstance(error, ProviderError | InternalError) else logging.INFO
        )
        log.log(
            level,
            "case %s/#%s failed: %s (%s)",
            failed.guild_id,
            failed.case_number,
            error.kind,
            error,
        )
        return ScanOutcome(record=failed, error=error)

    async def _outcome_of(self, record: ScanRecord) -> ScanOutcome:
        if record.status in {ScanStatus.DONE, ScanStatus.REUSED} and record.sha256:
            stored = await self._audit.find_verdict(record.sha256, record.provider)
            if stored is not None:
                return ScanOutcome(record=record, verdict=stored.verdict)
        return ScanOutcome(record=record, error=_recorded_error(record))


def _recorded_error(record: ScanRecord) -> SpoofwatchError:
    return error_for_kind(record.error_kind or "error", record.error_message or "The scan failed.")


def _upload_name(filename: str, format_name: str, kind: MediaKind) -> str:
    """A safe name with an extension matching the real container (providers check it)."""
    stem = Path(filename).stem[:80] or "media"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return f"{safe}{media.suffix_for(format_name, kind)}"


__all__ = [
    "MediaSource",
    "ScanLimits",
    "ScanOutcome",
    "ScanRequest",
    "ScanService",
]
