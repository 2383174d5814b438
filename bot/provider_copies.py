"""What the providers keep of a case: moderators' decisions sent back as feedback, and the
provider's copy deleted when the case is (`/spoofwatch forget`, the retention purge).

Only Resemble takes either (reference resemble-detect-api.md §7: `POST /detect/{uuid}/
feedback`, `DELETE /detect/{uuid}`); Behavioral Signals documents neither, so its clients
answer `VendorAck.UNSUPPORTED`. Nothing here is ever an error to a moderator: every outcome,
a vendor's refusal (403) or a copy already gone (404) included, is written to the audit log
and the moderator's action goes on.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime

from bot.detectors import Detector, VendorAck
from bot.guild_config import GuildConfig
from bot.storage import AuditLog, Review, ScanRecord
from bot.verdict import Label, ProviderName

log = logging.getLogger(__name__)

#: How the audit log names the bot when it acts on its own.
ACTOR = "spoofwatch"
_PROVIDER_NAMES = {
    ProviderName.BEHAVIORAL_SIGNALS: "Behavioral Signals",
    ProviderName.RESEMBLE: "Resemble",
}
#: Providers that let a job be deleted (Resemble `DELETE /detect/{uuid}`, reference §7).
DELETABLE = frozenset({ProviderName.RESEMBLE})
_ACK_WORDS = {
    VendorAck.DONE: "done",
    VendorAck.REFUSED: "refused by the vendor (HTTP 403)",
    VendorAck.NOT_FOUND: "unknown to the vendor (HTTP 404: already gone)",
    VendorAck.UNSUPPORTED: "not offered by the vendor",
    VendorAck.FAILED: "failed (vendor unreachable or key refused)",
}


class ProviderCopies:
    """Feedback and deletion at the providers, recorded in the audit log."""

    def __init__(
        self,
        detectors: Mapping[ProviderName, Detector],
        audit: AuditLog,
        config_of: Callable[[int], Awaitable[GuildConfig]],
    ) -> None:
        self._detectors = detectors
        self._audit = audit
        self._config_of = config_of
        #: Feedback being sent in the background (kept so the tasks are not collected).
        self._pending: set[asyncio.Task[VendorAck | None]] = set()

    def send_review_feedback_soon(self, case: ScanRecord, decision: Review) -> None:
        """`send_review_feedback` in the background: the moderator's answer does not wait
        on the vendor."""
        task = asyncio.create_task(self.send_review_feedback(case, decision))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for feedback still being sent (at shutdown, and in tests)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def send_review_feedback(
        self, case: ScanRecord, decision: Review, *, config: GuildConfig | None = None
    ) -> VendorAck | None:
        """Tell the case's provider a moderator's decision, if the guild opted in
        (`provider_feedback`); None when nothing was sent. Never raises."""
        try:
            config = config or await self._config_of(case.guild_id)
        except Exception:
            log.exception("feedback on case %s/#%s: no settings", case.guild_id, case.case_number)
            return None
        if not config.provider_feedback or not case.provider_job_id or case.label is None:
            return None
        detector = self._detectors.get(case.provider)
        if detector is None:
            return None
        try:
            ack = await detector.send_feedback(
                case.provider_job_id,
                synthetic=decision is Review.CONFIRMED,
                said_synthetic=case.label is Label.SPOOFED,
            )
        except Exception:  # a bug here must not cost the moderator's review
            log.exception("feedback on case %s/#%s failed", case.guild_id, case.case_number)
            ack = VendorAck.FAILED
        if ack is VendorAck.UNSUPPORTED:
            return ack
        await self._record(
            case.guild_id,
            action="provider_feedback",
            target=f"case #{case.case_number}",
            reason=(f"{_PROVIDER_NAMES[case.provider]} told '{decision.value}': {_ACK_WORDS[ack]}"),
        )
        return ack

    async def delete_copies(
        self, guild_id: int, jobs: Iterable[tuple[ProviderName, str | None]], *, why: str
    ) -> dict[VendorAck, int]:
        """Ask each provider to delete its copy of these jobs (each job once: reused cases
        share their original's job); count the outcomes and record them in one event."""
        unique = {(provider, job) for provider, job in jobs if job}
        counts: collections.Counter[VendorAck] = collections.Counter()
        by_provider: dict[ProviderName, collections.Counter[VendorAck]] = {}
        for provider, job_id in sorted(unique):
            detector = self._detectors.get(provider)
            if detector is None:
                ack = VendorAck.FAILED  # the provider is no longer configured
            else:
                try:
                    ack = await detector.delete_job(job_id)
                except Exception:
                    log.exception("deleting %s job %s failed", provider.value, job_id)
                    ack = VendorAck.FAILED
            counts[ack] += 1
            by_provider.setdefault(provider, collections.Counter())[ack] += 1
        if unique:
            parts = [
                f"{_PROVIDER_NAMES[provider]}: "
                + ", ".join(f"{n} {_ACK_WORDS[ack]}" for ack, n in sorted(acks.items()))
                for provider, acks in sorted(by_provider.items())
            ]
            await self._record(
                guild_id,
                action="provider_delete",
                target=f"{len(unique)} provider job{'s' if len(unique) != 1 else ''}",
                reason=f"{why}; " + "; ".join(parts),
            )
        return dict(counts)

    async def purge_expired(self, now: datetime) -> dict[int, int]:
        """The retention purge (`CaseAdmin.purge_expired`), the providers' copies of the
        purged cases deleted after it where the vendor allows; guild → cases purged."""
        providers = [p for p in self._detectors if p in DELETABLE]
        jobs = await self._audit.admin.expired_jobs(now, providers) if providers else {}
        purged = await self._audit.admin.purge_expired(now)
        for guild_id, guild_jobs in jobs.items():
            await self.delete_copies(guild_id, guild_jobs, why="retention purge")
        return purged

    async def _record(self, guild_id: int, *, action: str, target: str, reason: str) -> None:
        try:
            await self._audit.admin.log_event(
                guild_id, actor=ACTOR, action=action, target=target, reason=reason
            )
        except Exception:
            log.exception("could not record %s for guild %s: %s", action, guild_id, reason)
        log.info(
            "%s: actor=%s target=guild %s %s reason=%s", action, ACTOR, guild_id, target, reason
        )


def deletion_summary(counts: Mapping[VendorAck, int]) -> str | None:
    """One line for a moderator about the providers' copies, or None when there were none."""
    deleted = counts.get(VendorAck.DONE, 0) + counts.get(VendorAck.NOT_FOUND, 0)
    kept = counts.get(VendorAck.REFUSED, 0) + counts.get(VendorAck.FAILED, 0)
    if not deleted and not kept:
        return None
    text = f"The provider deleted its copy of {deleted} job{'s' if deleted != 1 else ''}"
    if kept:
        text += f"; {kept} could not be deleted there (see the audit log)"
    return text + "."
