"""`ScanService`: the one life of a scan, from *accept* to *answer*, Discord-free.

Every accepted scan ends as a verdict or a recorded failure. The audit row is written before
anything else and updated at each step, so a crash leaves a visible, resumable trace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from bot import logging_setup, media, metrics, workdirs
from bot.detectors import Detector, Submission, SubmitOptions, Upload
from bot.errors import (
    InternalError,
    MediaTooLarge,
    MediaTooLong,
    ProviderError,
    ScanInProgress,
    ScanInterrupted,
    SpoofwatchError,
    error_for_kind,
)
from bot.scanning._answer import Answerer, Answers
from bot.scanning._jobs import Clock, ProviderJobs, Sent, upload_name
from bot.scanning._media import MediaSteps
from bot.scanning._request import (
    ScanLimits,
    ScanOutcome,
    ScanRequest,
    ScanStage,
    StageListener,
    tell,
)
from bot.storage import NewScan, ScanLifecycle, ScanRecord, ScanStatus
from bot.verdict import MediaKind, ProviderName
from bot.worker_pool import NO_WORKER, Worker

log = logging.getLogger(__name__)

#: How often `finished_elsewhere` reads a case another task is finishing.
FINISHED_POLL_S = 1.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class MessagePart:
    """One attachment of a message to answer: a new scan, or one a restart left unfinished."""

    request: ScanRequest
    #: The case the last run left unfinished (`ScanService.resume`), else None: accept anew.
    resumed: ScanRecord | None = None


class Alongside(Protocol):
    """Something more asked of each finished scan before the answer (a second opinion)."""

    def __call__(
        self, outcome: ScanOutcome, request: ScanRequest, *, worker: Worker
    ) -> Awaitable[ScanOutcome]: ...


class ScanService:
    """Runs scans through the configured detectors and keeps the audit log in step."""

    def __init__(
        self,
        *,
        audit: ScanLifecycle,
        detectors: Mapping[ProviderName, Detector],
        media: MediaSteps,
        temp_dir: Path | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._audit = metrics.timed_writes(audit)
        self._media = media
        self._jobs = ProviderJobs(self._audit, detectors, clock)
        self._answers = Answers(self._audit)
        self._temp_dir = temp_dir
        #: Scans some task of this process is running: `resume` leaves them alone, so a
        #: scan is never run twice at once even if a caller's snapshot is stale.
        self._running: set[int] = set()

    @property
    def audit(self) -> ScanLifecycle:
        return self._audit

    @property
    def providers(self) -> list[ProviderName]:
        return self._jobs.providers

    async def sweep_workdirs(self) -> int:
        """Delete the work directories of dead processes; call once, before any scan starts."""
        root, removed = await workdirs.sweep(self._temp_dir)
        if removed:
            log.info("removed %d work directories left by stopped processes in %s", removed, root)
        return removed

    # --- accept ---------------------------------------------------------------------------

    async def scan(self, request: ScanRequest, *, worker: Worker = NO_WORKER) -> ScanOutcome:
        """Accept, run and record one scan. Never raises for a scan problem: see `.error`.

        `worker` is told once the scan only waits on the network (its file is sent).
        """
        record, created = await self._audit.create_scan(request.new)
        if not created:
            # The same attachment was already accepted for this trigger (a replayed event).
            if record.status.finished:
                return replace(await self.outcome_of(record), replayed=True)
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
        tell(request.on_stage, ScanStage.ACCEPTED, record)
        metrics.scan_accepted(record)
        return await self._run(record, request, worker)

    async def refuse(self, new: NewScan, error: SpoofwatchError) -> ScanOutcome:
        """Record a scan refused before it started (too large, quota, cooldown...)."""
        record, created = await self._audit.create_scan(new)
        if not created and record.status.finished:
            return replace(await self.outcome_of(record), replayed=True)
        record = await self._audit.mark_failed(record.id, error.kind, error.message)
        log.info("scan refused: case #%s %s (%s)", record.case_number, error.kind, error.message)
        metrics.scan_finished(record, "refused", error)
        return ScanOutcome(record=record, error=error)

    async def resume(
        self, record: ScanRecord, request: ScanRequest | None, *, worker: Worker = NO_WORKER
    ) -> ScanOutcome:
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
            return await self._resume(record, request, worker)
        finally:
            self._running.discard(record.id)
            logging_setup.unbind(context)

    async def _resume(
        self, record: ScanRecord, request: ScanRequest | None, worker: Worker
    ) -> ScanOutcome:
        job_id = record.provider_job_id
        if job_id is None and record.sha256 is not None:
            try:
                job_id = await self._jobs.find_lost_job(record)
            except SpoofwatchError as exc:
                return await self._fail(record, exc)
        if job_id is not None:
            if record.provider not in self._jobs.providers:
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
                    Sent(self._jobs.detector(record.provider), Submission(job_id)),
                    worker,
                    store_transcript=request.store_transcript if request else True,
                )
            except SpoofwatchError as exc:
                return await self._fail(record, exc)
        if request is None:
            return await self._fail(
                record, ScanInterrupted("The scan was interrupted before it was submitted.")
            )
        log.info("resuming case #%s from the start (not yet submitted)", record.case_number)
        return await self._run(record, request, worker)

    # --- fetch → probe → reuse? → prepare → submit → wait → record ------------------------

    async def _run(self, record: ScanRecord, request: ScanRequest, worker: Worker) -> ScanOutcome:
        # No await since the row was created (or `resume` claimed it): nothing can slip in.
        self._running.add(record.id)
        context = logging_setup.bind(**_log_fields(record))
        try:
            return await self._run_in_workdir(record, request, worker)
        finally:
            self._running.discard(record.id)
            logging_setup.unbind(context)

    async def _run_in_workdir(
        self, record: ScanRecord, request: ScanRequest, worker: Worker
    ) -> ScanOutcome:
        try:
            async with workdirs.scan_workdir(self._temp_dir) as workdir:
                step = await self._up_to_sent(record, request, workdir, worker)
            # The files are gone; what is left is waiting for the provider.
            if isinstance(step, ScanOutcome):
                return step
            return await self._finish(
                record,
                step,
                worker,
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

    async def _up_to_sent(
        self, record: ScanRecord, request: ScanRequest, workdir: Path, worker: Worker
    ) -> ScanOutcome | Sent:
        """Every stage that needs the scan's files: a reused verdict, or the file `Sent`."""
        limits = request.limits
        new = request.new
        if new.size is not None and new.size > limits.max_file_bytes:
            raise MediaTooLarge(new.size, limits.max_file_bytes)
        if request.declared_duration_s and request.declared_duration_s > limits.max_duration_s:
            raise MediaTooLong(request.declared_duration_s, limits.max_duration_s)

        # fetch, probe
        fetched = await self._media.fetch(request.source, workdir, max_bytes=limits.max_file_bytes)
        probe = await self._media.probe(fetched)
        kind = media.classify(probe, content_type=new.content_type, voice_flag=request.voice_flag)
        await self._audit.set_media(
            record.id,
            sha256=fetched.sha256,
            size=fetched.size,
            content_type=new.content_type,
            duration_s=probe.duration_s,
        )
        media.check_duration(probe, max_duration_s=limits.max_duration_s)

        # reuse?
        reusable = await self._jobs.reusable_verdict(record, fetched.sha256, worker)
        if reusable is not None:
            done = await self._audit.mark_done(
                record.id,
                reusable.verdict,
                reused_from=reusable.scan_id,
                store_transcript=request.store_transcript,
            )
            log.info("case #%s reuses the verdict of scan %s", done.case_number, reusable.scan_id)
            tell(request.on_stage, ScanStage.REUSED, done)
            metrics.scan_finished(done, "reused")
            return ScanOutcome(record=done, verdict=reusable.verdict)
        await self._jobs.check_quota(record, limits)

        # prepare
        detector = self._jobs.detector(record.provider)
        original = Upload(
            path=fetched.path,
            filename=upload_name(new.filename, probe.format_name, kind),
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
            # The explicit hand-off: a provider may hold the upload's request open long
            # after the last byte (Resemble's `Prefer: wait`); the worker goes on from there.
            on_sent=worker.hand_off,
        )

        async def as_wav() -> Upload:
            return await self._to_wav(original, workdir / "audio.wav", probe, limits)

        upload = original if detector.accepts(original, options) else await as_wav()

        # submit
        tell(request.on_stage, ScanStage.UPLOADING, record)
        sent = await self._jobs.submit(record, upload, options, as_wav=as_wav)
        tell(request.on_stage, ScanStage.SUBMITTED, record, sent.submission.job_id)
        return sent

    async def _to_wav(
        self, upload: Upload, wav: Path, probe: media.MediaProbe, limits: ScanLimits
    ) -> Upload:
        """The media's sound as 16 kHz mono WAV, for a provider that does not take it as is."""
        await self._media.to_wav(
            upload.path, wav, probe=probe, max_duration_s=limits.max_duration_s
        )
        return Upload(
            path=wav,
            filename=Path(upload.filename).with_suffix(".wav").name,
            content_type="audio/wav",
            kind=MediaKind.AUDIO,
            format_name="wav",
            duration_s=probe.duration_s,
        )

    async def _finish(
        self,
        record: ScanRecord,
        sent: Sent,
        worker: Worker,
        *,
        store_transcript: bool,
        on_stage: StageListener | None = None,
    ) -> ScanOutcome:
        """*wait* for the provider's verdict (without holding a worker) and *record* it."""
        logging_setup.bind(job_id=sent.submission.job_id)  # undone where the scan's context ends
        if sent.submission.verdict is None:
            worker.hand_off()
            tell(on_stage, ScanStage.WAITING, record)
        verdict = await self._jobs.wait(sent)
        done = await self._audit.mark_done(record.id, verdict, store_transcript=store_transcript)
        tell(on_stage, ScanStage.DONE, done)
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

    async def outcome_of(self, record: ScanRecord) -> ScanOutcome:
        """The outcome a finished case recorded: its verdict, or its error."""
        if record.status in {ScanStatus.DONE, ScanStatus.REUSED} and record.sha256:
            stored = await self._audit.find_verdict(record.sha256, record.provider)
            if stored is not None:
                return ScanOutcome(record=record, verdict=stored.verdict)
        return ScanOutcome(record=record, error=_recorded_error(record))

    async def finished_elsewhere(
        self, record: ScanRecord, *, timeout_s: float, poll_s: float = FINISHED_POLL_S
    ) -> ScanOutcome | None:
        """The outcome of a case another task (or process) is finishing, once it has;
        None if it has not within `timeout_s` (or was forgotten meanwhile).

        A restart's catch-up can meet a case its resume is still finishing: waiting for it
        lets the one reply show that case's verdict instead of "already being checked".
        The audit log is read every `poll_s`, so a case finished by another process counts.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            current = await self._audit.get_scan(record.id)
            if current is None:
                return None
            if current.status.finished:
                return await self.outcome_of(current)
            if loop.time() + poll_s > deadline:
                return None
            await asyncio.sleep(poll_s)

    # --- answer ---------------------------------------------------------------------------

    async def scan_message(
        self,
        key: int,
        parts: Sequence[MessagePart],
        answerer: Answerer,
        *,
        worker: Worker = NO_WORKER,
        alongside: Alongside | None = None,
    ) -> list[ScanOutcome] | None:
        """Scan a message's attachments one after the other, then answer it once.

        The one answer path of a live scan, a restart's catch-up and a resumed scan. Returns
        the outcomes with their cases as read again for the answer, or None when another task
        owns the message (a duplicate event, or a restart's resume) and answers for all of it.
        """
        outcomes: list[ScanOutcome] = []
        for part in parts:
            if part.resumed is not None:
                outcome = await self.resume(part.resumed, part.request, worker=worker)
            else:
                outcome = await self.scan(part.request, worker=worker)
            if isinstance(outcome.error, ScanInProgress):
                return None
            if alongside is not None:
                outcome = await alongside(outcome, part.request, worker=worker)
            outcomes.append(outcome)
        return await self._answers.answer(key, outcomes, answerer)


def _log_fields(record: ScanRecord) -> dict[str, object]:
    """What a scan's log lines are about (`SPOOFWATCH_LOG_FORMAT=json` shows them)."""
    return {"guild": record.guild_id, "case": record.case_number, "provider": record.provider}


def _recorded_error(record: ScanRecord) -> SpoofwatchError:
    return error_for_kind(record.error_kind or "error", record.error_message or "The scan failed.")
