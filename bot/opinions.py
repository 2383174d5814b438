"""Second opinions: the other provider's verdict on a case's file, kept as a linked case.

A second opinion is a case of its own (trigger `second_opinion`, `second_opinion_of` = the
first case's number), run through the one scan lifecycle (`ScanService.scan`): the audit
row, the quota, the failure recording and the reuse by file hash are the same as for any
scan. Before anything is downloaded, a verdict the other provider already gave on the same
bytes (`find_verdict` by sha256, per provider) is reused at no cost, so asking again, or
asking after the message was deleted, bills nothing.

The combined outcome of the two verdicts is decided in one place, `bot.verdict.combine`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace

from bot.errors import FileMissing, InternalError, ScanInProgress, error_for_kind
from bot.scanning import ScanOutcome, ScanRequest, ScanService
from bot.storage import CaseQueries, NewScan, ScanRecord, ScanStatus, Trigger
from bot.verdict import Combined, ProviderName, combine
from bot.worker_pool import NO_WORKER, Worker

log = logging.getLogger(__name__)

#: How long "both" mode waits for a side another task is finishing (a provider's own cap).
DEFAULT_WAIT_S = 300.0


def other_provider(
    provider: ProviderName, configured: Iterable[ProviderName]
) -> ProviderName | None:
    """The configured provider that is not `provider`, or None when only one is configured."""
    return next((p for p in configured if p is not provider), None)


def combined(outcome: ScanOutcome, threshold: float) -> Combined:
    """The combined outcome of a scan and its second opinion (or of the scan alone)."""
    second = outcome.second.verdict if outcome.second is not None else None
    return combine(outcome.verdict, second, threshold)


def second_new(first: ScanRecord, provider: ProviderName, **changes: object) -> NewScan:
    """The second opinion's case: the first one's file and place, the other provider."""
    fields = {name: getattr(first, name, None) for name in NewScan.model_fields}
    fields.update(
        provider=provider,
        trigger=Trigger.SECOND_OPINION,
        second_opinion_of=first.case_number,
        source_url=None,
    )
    fields.update(changes)
    return NewScan.model_validate(fields)


class SecondOpinions:
    """Asks the other provider about a case's file, and finds the answers already given."""

    def __init__(
        self, scans: ScanService, cases: CaseQueries, *, wait_s: float = DEFAULT_WAIT_S
    ) -> None:
        self._scans = scans
        self._cases = cases
        #: How long "both" mode waits for the other side another task is finishing.
        self._wait_s = wait_s

    @property
    def providers(self) -> list[ProviderName]:
        return self._scans.providers

    def other(self, record: ScanRecord) -> ProviderName | None:
        return other_provider(record.provider, self._scans.providers)

    async def existing(self, guild_id: int, case_number: int) -> list[ScanRecord]:
        """The second opinions already recorded on a case, oldest first."""
        return await self._cases.second_opinions(guild_id, case_number)

    async def ask(
        self,
        first: ScanRecord,
        request: ScanRequest | None,
        provider: ProviderName,
        *,
        retry: bool = False,
        worker: Worker = NO_WORKER,
    ) -> ScanOutcome:
        """The `provider`'s outcome on `first`'s file, as a new case linked to `first`.

        `request` carries a fresh source for the file (its `new` is replaced by the linked
        case); None when the file is no longer to be had, in which case only a verdict the
        provider already gave on the same bytes can answer. Never raises for a scan problem.

        A second opinion is one case per message attachment (a replayed event finds it
        again); `retry` (a moderator asking again after it failed) opens a new case without
        that key, so the failure stays in the log next to the new attempt.
        """
        if provider not in self._scans.providers or provider is first.provider:
            # Callers offer only `other()`; anything else is a bug, not a scan to record.
            raise InternalError(f"no second opinion from {provider} on case #{first.case_number}")
        new = second_new(
            first,
            provider,
            requested_by=request.new.requested_by if request else None,
            source_url=request.new.source_url if request else None,
            **({"message_id": None} if retry else {}),
        )
        if first.sha256 is not None:
            free = await self._reuse(first, new)
            if free is not None:
                return free
        if request is None:
            return await self._scans.refuse(
                new,
                FileMissing(
                    "The file is no longer on Discord (its message was deleted), so it "
                    "cannot be sent for a second opinion."
                ),
            )
        log.info(
            "second opinion on case %s/#%s asked of %s by %s",
            first.guild_id,
            first.case_number,
            provider,
            new.requested_by or "auto",
        )
        return await self._scans.scan(replace(request, new=new), worker=worker)

    async def alongside(
        self, outcome: ScanOutcome, request: ScanRequest, *, worker: Worker = NO_WORKER
    ) -> ScanOutcome:
        """`outcome` with the other provider's outcome on the same file (a guild's "both"
        mode): asked even when the first provider failed, so the member still gets one
        verdict; not asked for a file neither could take (too large, not media...)."""
        provider = other_provider(outcome.record.provider, self._scans.providers)
        if provider is None or isinstance(outcome.error, ScanInProgress):
            return outcome
        if outcome.error is not None and not _worth_asking(outcome.error.kind):
            return outcome
        second = await self.ask(outcome.record, request, provider, worker=worker)
        if isinstance(second.error, ScanInProgress):
            # Another task owns that side: after a restart, its resume is finishing the case
            # this catch-up met. Wait for its verdict, so that the one reply shows it
            # rather than "already being checked" (nothing would correct those words).
            worker.hand_off()  # from here on this job only waits
            finished = await self._scans.finished_elsewhere(second.record, timeout_s=self._wait_s)
            if finished is not None:
                second = finished
        return replace(outcome, second=second)

    async def _reuse(self, first: ScanRecord, new: NewScan) -> ScanOutcome | None:
        """The provider's earlier verdict on these bytes, recorded as the second opinion."""
        assert first.sha256 is not None
        audit = self._scans.audit
        stored = await audit.find_verdict(first.sha256, new.provider)
        if stored is None:
            return None
        record, created = await audit.create_scan(new)
        if not created:
            if record.status.finished:
                return await self._finished(record)
            return ScanOutcome(
                record=record,
                error=ScanInProgress("This second opinion is already being asked for."),
            )
        await audit.set_media(
            record.id,
            sha256=first.sha256,
            size=first.size or 0,
            content_type=first.content_type,
            duration_s=first.duration_s,
        )
        done = await audit.mark_done(record.id, stored.verdict, reused_from=stored.scan_id)
        log.info(
            "second opinion on case %s/#%s: case #%s reuses %s's verdict of scan %s (no cost)",
            first.guild_id,
            first.case_number,
            done.case_number,
            new.provider,
            stored.scan_id,
        )
        return ScanOutcome(record=done, verdict=stored.verdict)

    async def _finished(self, record: ScanRecord) -> ScanOutcome:
        """The outcome of a second opinion recorded earlier (asked twice)."""
        audit = self._scans.audit
        if record.status in {ScanStatus.DONE, ScanStatus.REUSED} and record.sha256:
            stored = await audit.find_verdict(record.sha256, record.provider)
            if stored is not None:
                return ScanOutcome(record=record, verdict=stored.verdict, replayed=True)
        error = error_for_kind(record.error_kind or "error", record.error_message or "Failed.")
        return ScanOutcome(record=record, error=error, replayed=True)


def _worth_asking(kind: str) -> bool:
    """Whether the other provider is still asked after the first failed ("both" mode): for
    the first provider's own trouble or a scan cut short; a media problem or the quota
    would stop the second scan the same way."""
    return kind.startswith("provider") or kind in {"internal", "interrupted"}


__all__ = ["SecondOpinions", "combined", "other_provider", "second_new"]
