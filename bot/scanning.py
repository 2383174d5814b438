"""The one scan lifecycle, Discord-free: accept → fetch → probe → reuse? → submit → wait → record.

Every accepted scan ends as a verdict or a recorded failure. The audit row is written before
anything else and updated at each step, so a crash leaves a visible, resumable trace.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bot import logging_setup, media, metrics, workdirs, worker_pool
from bot.detectors import Detector, Submission, SubmitOptions, Upload
from bot.errors import (
    InternalError,
    MediaTooLarge,
    MediaTooLong,
    ProductRefused,
    ProviderError,
    QuotaReached,
    ScanInProgress,
    ScanInterrupted,
    ScanLostInFlight,
    SpoofwatchError,
    error_for_kind,
)
from bot.scan_types import (
    MediaSource,
    ScanLimits,
    ScanOutcome,
    ScanRequest,
    ScanStage,
    StageListener,
    provider_meta,
)
from bot.storage import NewScan, ScanLifecycle, ScanRecord, ScanStatus, StoredVerdict
from bot.verdict import MediaKind, ProviderName

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

#: How often a scan waiting for another scan of the same file checks for its verdict, and
#: how long it waits before submitting after all (a holder whose process died stays
#: unfinished until its shard resumes it).
CLAIM_POLL_S = 0.5
CLAIM_WAIT_S = 600.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def _tell(
    listener: StageListener | None, stage: ScanStage, record: ScanRecord, detail: str | None = None
) -> None:
    """Report a stage; a listener's failure never fails the scan."""
    if listener is None:
        return
    try:
        listener(stage, record, detail)
    except Exception:
        log.exception("stage listener failed at %s of case #%s", stage, record.case_number)


class ScanService:
    """Runs scans through the configured detectors and keeps the audit log in step."""

    def __init__(
        self,
        *,
        audit: ScanLifecycle,
        detectors: Mapping[ProviderName, Detector],
        http_session: aiohttp.ClientSession,
        allowed_hosts: tuple[str, ...],
        ffmpeg_timeout_s: float,
        download_timeout_s: float = 300.0,
        temp_dir: Path | None = None,
        transcoder: media.Transcoder | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._audit = metrics.timed_writes(audit)
        self._transcoder = transcoder or media.Transcoder()
        #: ffprobe/ffmpeg runs at once: many scans may wait on providers together, but no
        #: more media tools than two per CPU compete for the cores (and memory).
        self._media_slots = asyncio.Semaphore(2 * (os.cpu_count() or 1))
        self._detectors = dict(detectors)
        self._http = http_session
        self._allowed_hosts = allowed_hosts
        self._ffmpeg_timeout_s = ffmpeg_timeout_s
        self._download_timeout_s = download_timeout_s
        self._temp_dir = temp_dir
        self._clock = clock
        #: Scans some task of this process is running: `resume` leaves them alone, so a
        #: scan is never run twice at once even if a caller's snapshot is stale.
        self._running: set[int] = set()

    @property
    def audit(self) -> ScanLifecycle:
        return self._audit

    @property
    def providers(self) -> list[ProviderName]:
        return list(self._detectors)

    async def sweep_workdirs(self) -> int:
        """Delete the work directories of dead processes; call once, before any scan starts."""
        root, removed = await workdirs.sweep(self._temp_dir)
        if removed:
            log.info("removed %d work directories left by stopped processes in %s", removed, root)
        return removed

    async def scan(self, request: ScanRequest) -> ScanOutcome:
        """Accept, run and record one scan. Never raises for a scan problem: see `.error`."""
        record, created = await self._audit.create_scan(request.new)
        if not created:
            # The same attachment was already accepted for this trigger (a replayed event).
            if record.status.finished:
                return replace(await self._outcome_of(record), replayed=True)
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
        _tell(request.on_stage, ScanStage.ACCEPTED, record)
        metrics.scan_accepted(record)
        return await self._run(record, request)

    async def refuse(self, new: NewScan, error: SpoofwatchError) -> ScanOutcome:
        """Record a scan refused before it started (too large, quota, cooldown...)."""
        record, created = await self._audit.create_scan(new)
        if not created and record.status.finished:
            return replace(await self._outcome_of(record), replayed=True)
        record = await self._audit.mark_failed(record.id, error.kind, error.message)
        log.info("scan refused: case #%s %s (%s)", record.case_number, error.kind, error.message)
        metrics.scan_finished(record, "refused", error)
        return ScanOutcome(record=record, error=error)

    async def resume(self, record: ScanRecord, request: ScanRequest | None) -> ScanOutcome:
        """Finish a scan left unfinished by a restart, never submitting the same file twice.

        A stored job id is polled. A scan whose media was recorded (`sha256`) but that has
        no job id may have died inside `submit`, after the provider got the file: the job
        is looked up at the provider by the identifiers sent with it; only when the provider
        can say that no such job exists is the file sent again. Callers must pass only scans
        no task of this process is running (`unfinished_scans` read before connecting).
        """
        if record.id in self._running:
            return ScanOutcome(
                record=record,
                error=ScanInProgress("This file is already being checked; the answer is coming."),
            )
        self._running.add(record.id)
        context = logging_setup.bind(**_log_fields(record))
        try:
            return await self._resume(record, request)
        finally:
            self._running.discard(record.id)
            logging_setup.unbind(context)

    async def _resume(self, record: ScanRecord, request: ScanRequest | None) -> ScanOutcome:
        job_id = record.provider_job_id
        if job_id is None and record.sha256 is not None:
            try:
                job_id = await self._find_lost_job(record)
            except SpoofwatchError as exc:
                return await self._fail(record, exc)
        if job_id is not None:
            detector = self._detectors.get(record.provider)
            if detector is None:
                return await self._fail(
                    record, InternalError(f"provider {record.provider} is no longer configured")
                )
            log.info(
                "resuming case #%s: polling %s job %s",
                record.case_number,
                record.provider,
                job_id,
            )
            try:
                return await self._finish(
                    record,
                    detector,
                    Submission(job_id),
                    store_transcript=request.store_transcript if request else True,
                )
            except SpoofwatchError as exc:
                return await self._fail(record, exc)
        if request is None:
            return await self._fail(
                record, ScanInterrupted("The scan was interrupted before it was submitted.")
            )
        log.info("resuming case #%s from the start (not yet submitted)", record.case_number)
        return await self._run(record, request)

    async def _find_lost_job(self, record: ScanRecord) -> str | None:
        """The provider job of a scan that may have been submitted when the process died.

        None when the provider says it has no such job (the file never arrived). Raises
        `ScanLostInFlight` when the provider cannot be asked: then the scan ends as a
        failure rather than risking a second, billed job for the same file.
        """
        detector = self._detectors.get(record.provider)
        if detector is None or not detector.finds_jobs or record.attachment_id is None:
            raise ScanLostInFlight(
                "Spoofwatch restarted while this file was on its way to the detection "
                "service and cannot tell whether it arrived, so it was not sent twice."
            )
        meta = provider_meta(
            guild_id=record.guild_id,
            channel_id=record.channel_id,
            message_id=record.message_id,
            attachment_id=record.attachment_id,
        )
        # Only the keys that name the file: the same attachment checked under another
        # trigger is the same bytes, and its job serves this scan as well.
        wanted = {key: meta[key] for key in ("message", "attachment")}
        job_id = await detector.find_job(wanted, submitted_after=record.created_at)
        if job_id is None:
            log.info(
                "case #%s: %s has no job for attachment %s; the file never arrived",
                record.case_number,
                record.provider,
                record.attachment_id,
            )
            return None
        await self._audit.mark_submitted(record.id, job_id)
        log.info(
            "case #%s: found %s job %s submitted before the restart",
            record.case_number,
            record.provider,
            job_id,
        )
        return job_id

    # --- the lifecycle --------------------------------------------------------------------

    async def _run(self, record: ScanRecord, request: ScanRequest) -> ScanOutcome:
        # No await since the row was created (or `resume` claimed it): nothing can slip in.
        self._running.add(record.id)
        context = logging_setup.bind(**_log_fields(record))
        try:
            return await self._run_in_workdir(record, request)
        finally:
            self._running.discard(record.id)
            logging_setup.unbind(context)

    async def _run_in_workdir(self, record: ScanRecord, request: ScanRequest) -> ScanOutcome:
        try:
            async with workdirs.scan_workdir(self._temp_dir) as workdir:
                step = await self._steps(record, request, workdir)
            # The files are gone; what is left is waiting for the provider.
            if isinstance(step, ScanOutcome):
                return step
            detector, submission = step
            return await self._finish(
                record,
                detector,
                submission,
                store_transcript=request.store_transcript,
                on_stage=request.on_stage,
            )
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

    async def _steps(
        self, record: ScanRecord, request: ScanRequest, workdir: Path
    ) -> ScanOutcome | tuple[Detector, Submission]:
        """Everything that needs the scan's files: up to the provider accepting the job."""
        limits = request.limits
        new = request.new
        if new.size is not None and new.size > limits.max_file_bytes:
            raise MediaTooLarge(new.size, limits.max_file_bytes)
        if request.declared_duration_s and request.declared_duration_s > limits.max_duration_s:
            raise MediaTooLong(request.declared_duration_s, limits.max_duration_s)

        fetched = await self._fetch(request, workdir)
        path, size, sha256 = fetched.path, fetched.size, fetched.sha256
        async with self._media_slots:
            probe = await media.probe(path, timeout_s=self._ffmpeg_timeout_s, look=fetched.look)
        kind = media.classify(probe, content_type=new.content_type, voice_flag=request.voice_flag)
        await self._audit.set_media(
            record.id,
            sha256=sha256,
            size=size,
            content_type=new.content_type,
            duration_s=probe.duration_s,
        )
        media.check_duration(probe, max_duration_s=limits.max_duration_s)

        reusable = await self._reusable_verdict(record, sha256)
        if reusable is not None:
            done = await self._audit.mark_done(
                record.id,
                reusable.verdict,
                reused_from=reusable.scan_id,
                store_transcript=request.store_transcript,
            )
            log.info("case #%s reuses the verdict of scan %s", done.case_number, reusable.scan_id)
            _tell(request.on_stage, ScanStage.REUSED, done)
            metrics.scan_finished(done, "reused")
            return ScanOutcome(record=done, verdict=reusable.verdict)

        await self._check_quota(record, limits)
        detector = self._detector(record.provider)
        upload = Upload(
            path=path,
            filename=_upload_name(new.filename, probe.format_name, kind),
            content_type=new.content_type or "application/octet-stream",
            kind=kind,
            format_name=probe.format_name,
            duration_s=probe.duration_s,
        )
        options = SubmitOptions(
            transcript=request.want_transcript,
            generator=request.want_generator,
            visual=request.want_visual,
            meta=dict(request.meta) or None,
            on_sent=worker_pool.hand_off,
        )
        original = upload
        if not detector.accepts(upload, options):
            upload = await self._to_wav(path, workdir, probe, upload, limits)
        _tell(request.on_stage, ScanStage.UPLOADING, record)
        try:
            submission = await detector.submit(upload, options)
        except ProductRefused:
            if upload is not original or original.kind is not MediaKind.VIDEO:
                raise
            # The plan lacks the video product (refused before any job was made, so nothing
            # is billed twice): the video is judged on its sound, as before that existed.
            options = replace(options, visual=False)
            upload = await self._to_wav(path, workdir, probe, upload, limits)
            submission = await detector.submit(upload, options)
        await self._audit.mark_submitted(record.id, submission.job_id)
        _tell(request.on_stage, ScanStage.SUBMITTED, record, submission.job_id)
        return detector, submission

    async def _reusable_verdict(self, record: ScanRecord, sha256: str) -> StoredVerdict | None:
        """An earlier verdict on these bytes, or None once this scan may submit them.

        Another scan of the same bytes for the same provider, here or in another process,
        may be with the provider right now: this scan then waits for its verdict instead of
        sending the file a second time (the claim is the database's, `claim_submission`).
        """
        waited_s = 0.0
        while True:
            stored = await self._audit.find_verdict(sha256, record.provider)
            if stored is not None:
                return stored
            holder = await self._audit.claim_submission(record.id, sha256, record.provider)
            if holder is None:
                # Claimed: but the holder before may have finished just now.
                return await self._audit.find_verdict(sha256, record.provider)
            if waited_s >= CLAIM_WAIT_S:
                log.warning(
                    "case #%s: scan %s still holds the file after %.0f s; submitting anyway",
                    record.case_number,
                    holder,
                    waited_s,
                )
                return None
            if waited_s == 0:
                log.info("case #%s waits for scan %s of the same file", record.case_number, holder)
                worker_pool.hand_off()  # waiting on a provider, as the holder is
            await asyncio.sleep(CLAIM_POLL_S)
            waited_s += CLAIM_POLL_S

    async def _finish(
        self,
        record: ScanRecord,
        detector: Detector,
        submission: Submission,
        *,
        store_transcript: bool,
        on_stage: StageListener | None = None,
    ) -> ScanOutcome:
        """Wait for the provider's verdict (without holding a scan worker) and record it."""
        logging_setup.bind(job_id=submission.job_id)  # undone where the scan's context ends
        verdict = submission.verdict
        if verdict is None:
            worker_pool.hand_off()
            _tell(on_stage, ScanStage.WAITING, record)
            verdict = await detector.wait(submission.job_id)
        done = await self._audit.mark_done(record.id, verdict, store_transcript=store_transcript)
        _tell(on_stage, ScanStage.DONE, done)
        log.info(
            "case %s/#%s done: %s (p=%s) by %s job %s",
            done.guild_id,
            done.case_number,
            verdict.label,
            verdict.spoofed_probability,
            verdict.provider,
            verdict.provider_job_id,
        )
        metrics.scan_finished(done, "done")
        return ScanOutcome(record=done, verdict=verdict)

    async def _to_wav(
        self,
        path: Path,
        workdir: Path,
        probe: media.MediaProbe,
        upload: Upload,
        limits: ScanLimits,
    ) -> Upload:
        """The media's sound as 16 kHz mono WAV, for a provider that does not take it as is."""
        wav = workdir / "audio.wav"
        async with self._media_slots:
            await self._transcoder.to_wav(
                path,
                wav,
                probe=probe,
                timeout_s=self._ffmpeg_timeout_s,
                max_duration_s=limits.max_duration_s,
            )
        return Upload(
            path=wav,
            filename=Path(upload.filename).with_suffix(".wav").name,
            content_type="audio/wav",
            kind=MediaKind.AUDIO,
            format_name="wav",
            duration_s=probe.duration_s,
        )

    async def _fetch(self, request: ScanRequest, workdir: Path) -> media.Downloaded:
        source = request.source
        max_bytes = request.limits.max_file_bytes
        if source.path is not None:
            size, sha256 = await media.hash_file(source.path, max_bytes=max_bytes)
            return media.Downloaded(path=source.path, size=size, sha256=sha256)
        if source.url is None:
            raise InternalError("a scan needs a URL or a file")
        return await media.download(
            self._http,
            source.url,
            workdir / "media",
            max_bytes=max_bytes,
            allowed_hosts=self._allowed_hosts,
            timeout_s=self._download_timeout_s,
        )

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
        # str(): what happened in full (an account error's message is only its public part).
        failed = await self._audit.mark_failed(record.id, error.kind, str(error))
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
        metrics.scan_finished(failed, "failed", error)
        return ScanOutcome(record=failed, error=error)

    async def _outcome_of(self, record: ScanRecord) -> ScanOutcome:
        if record.status in {ScanStatus.DONE, ScanStatus.REUSED} and record.sha256:
            stored = await self._audit.find_verdict(record.sha256, record.provider)
            if stored is not None:
                return ScanOutcome(record=record, verdict=stored.verdict)
        return ScanOutcome(record=record, error=_recorded_error(record))


def _log_fields(record: ScanRecord) -> dict[str, object]:
    """What a scan's log lines are about (`SPOOFWATCH_LOG_FORMAT=json` shows them)."""
    return {"guild": record.guild_id, "case": record.case_number, "provider": record.provider}


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
    "provider_meta",
]
