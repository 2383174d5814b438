"""The billed part of a scan, reuse? → submit → wait: one provider job per file, never two.

*reuse?* looks for a verdict already given on the same bytes, and claims the bytes so that
two scans of one file (here or in another process) send it once; the guild's daily quota is
checked only when a job will really be made. *submit* sends the file and returns `Sent`
once the provider holds it (the job id is stored at once); the worker is told as soon as the
file's last byte is out. *wait* polls the job until it is final. After a restart,
`find_lost_job` asks the provider for a job whose id was lost with the process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from bot import media
from bot.detectors import Detector, Submission, SubmitOptions, Upload
from bot.errors import InternalError, ProductRefused, QuotaReached, ScanLostInFlight
from bot.scanning._request import ScanLimits, provider_meta
from bot.storage import ScanLifecycle, ScanRecord, StoredVerdict
from bot.verdict import MediaKind, ProviderName, Verdict
from bot.worker_pool import Worker

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

#: How often a scan waiting for another scan of the same file checks for its verdict, and
#: how long it waits before submitting after all (a holder whose process died stays
#: unfinished until its shard resumes it).
CLAIM_POLL_S = 0.5
CLAIM_WAIT_S = 600.0


@dataclass(frozen=True, slots=True)
class Sent:
    """*submit*'s result: the provider holds the file; what is left is waiting for it."""

    detector: Detector
    submission: Submission


class ProviderJobs:
    """The configured detectors, and the audit log's claims and job ids that keep each file
    to one billed job."""

    def __init__(
        self, audit: ScanLifecycle, detectors: Mapping[ProviderName, Detector], clock: Clock
    ) -> None:
        self._audit = audit
        self._detectors = dict(detectors)
        self._clock = clock

    @property
    def providers(self) -> list[ProviderName]:
        return list(self._detectors)

    def detector(self, provider: ProviderName) -> Detector:
        try:
            return self._detectors[provider]
        except KeyError:
            raise InternalError(f"provider {provider} is not configured") from None

    # --- reuse? ---------------------------------------------------------------------------

    async def reusable_verdict(
        self, record: ScanRecord, sha256: str, worker: Worker
    ) -> StoredVerdict | None:
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
                worker.hand_off()  # waiting on a provider, as the holder is
            await asyncio.sleep(CLAIM_POLL_S)
            waited_s += CLAIM_POLL_S

    async def check_quota(self, record: ScanRecord, limits: ScanLimits) -> None:
        """Raise `QuotaReached` when the guild has used its scans for the UTC day."""
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

    # --- submit ---------------------------------------------------------------------------

    async def submit(
        self,
        record: ScanRecord,
        upload: Upload,
        options: SubmitOptions,
        *,
        as_wav: Callable[[], Awaitable[Upload]],
    ) -> Sent:
        """Send the prepared file once and store the job id. `options.on_sent` is told when
        its last byte is out (a provider may hold the request open long after that).

        `upload` is the file as prepared; `as_wav` its sound alone, for a video the plan
        cannot judge as video.
        """
        detector = self.detector(record.provider)
        try:
            submission = await detector.submit(upload, options)
        except ProductRefused:
            if upload.kind is not MediaKind.VIDEO:
                raise
            # The plan lacks the video product (refused before any job was made, so nothing
            # is billed twice): the video is judged on its sound, as before that existed.
            submission = await detector.submit(await as_wav(), replace(options, visual=False))
        await self._audit.mark_submitted(record.id, submission.job_id)
        return Sent(detector, submission)

    # --- wait -----------------------------------------------------------------------------

    async def wait(self, sent: Sent) -> Verdict:
        """The job's verdict: the one the provider's answer already held, or polled for."""
        if sent.submission.verdict is not None:
            return sent.submission.verdict
        return await sent.detector.wait(sent.submission.job_id)

    # --- after a restart ------------------------------------------------------------------

    async def find_lost_job(self, record: ScanRecord) -> str | None:
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


def upload_name(filename: str, format_name: str, kind: MediaKind) -> str:
    """A safe name with an extension matching the real container (providers check it)."""
    stem = Path(filename).stem[:80] or "media"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return f"{safe}{media.suffix_for(format_name, kind)}"
