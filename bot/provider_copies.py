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
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import TypeVar

from bot.detectors import Detector, VendorAck
from bot.guild_config import GuildConfig
from bot.storage import AuditLog, Review, ScanRecord, ShardFilter, in_shards
from bot.verdict import Label, ProviderName

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How the audit log names the bot when it acts on its own.
ACTOR = "spoofwatch"
_PROVIDER_NAMES = {
    ProviderName.BEHAVIORAL_SIGNALS: "Behavioral Signals",
    ProviderName.RESEMBLE: "Resemble",
}
#: Providers that let a job be deleted (Resemble `DELETE /detect/{uuid}`, reference §7).
DELETABLE = frozenset({ProviderName.RESEMBLE})
#: Providers that take feedback (Resemble `POST /detect/{uuid}/feedback`, reference §7).
TAKES_FEEDBACK = frozenset({ProviderName.RESEMBLE})
#: Feedback owed to a provider (recorded before it is sent), and its outcome. An owed one
#: with no outcome after it was cut short (a crash, a restart) and is sent again.
FEEDBACK_OWED = "provider_feedback_pending"
FEEDBACK = "provider_feedback"
#: Provider copies owed a delete, recorded before their cases are deleted (in chunks, each
#: keyed to one of its cases), and the settling of each chunk once the vendor answered.
DELETE_OWED = "provider_delete_pending"
DELETE_SETTLED = "provider_delete_settled"
DELETE_CHUNK = 50
#: Owed work younger than this may still be in flight in another process.
RESEND_AFTER = timedelta(minutes=10)
RESEND_BATCH = 100
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
        *,
        shards: ShardFilter | None = None,
    ) -> None:
        self._detectors = detectors
        self._audit = audit
        self._config_of = config_of
        #: The guilds whose owed work this process finishes (its shards'); None: every guild.
        #: Another process's guilds are left to it, so no owed work is done twice.
        self._shards = shards
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
        (`provider_feedback`); None when nothing was sent. Never raises.

        Recorded as owed first, so feedback a crash cut short is sent at the next start
        (`resend_owed`)."""
        try:
            config = config or await self._config_of(case.guild_id)
        except Exception:
            log.exception("feedback on case %s/#%s: no settings", case.guild_id, case.case_number)
            return None
        if not _wants_feedback(config, case) or case.provider not in self._detectors:
            return None
        if not await self._record(
            case.guild_id,
            action=FEEDBACK_OWED,
            target=f"case {case.case_number}",
            reason=decision.value,
        ):
            return None  # not sent unrecorded: the vendor would hear it twice, or never
        return await self._send_feedback(case, decision)

    async def resend_owed(self, now: datetime, *, older_than: timedelta = RESEND_AFTER) -> int:
        """Send the feedback that was recorded as owed but never answered (the process
        stopped in between), each to its outcome, and delete the providers' copies owed by
        cases deleted meanwhile; how many were settled. Owed work younger than `older_than`
        is left alone. Never raises."""
        return await self._resend_feedback(now, older_than) + await self._resend_deletes(
            now, older_than
        )

    async def _resend_feedback(self, now: datetime, older_than: timedelta) -> int:
        try:
            owed = await self._audit.cases.unresolved_events(
                FEEDBACK_OWED, FEEDBACK, limit=RESEND_BATCH
            )
        except Exception:
            log.exception("could not read the feedback owed to the providers")
            return 0
        settled = 0
        for event in owed:
            if event.at > now - older_than or not in_shards(self._shards, event.guild_id):
                continue  # perhaps still being sent, by this process or another
            assert event.case_number is not None
            try:
                case = await self._audit.cases.case(event.guild_id, event.case_number)
                config = await self._config_of(event.guild_id)
                decision = Review(event.reason)
            except Exception:
                log.exception("owed feedback %s not readable", event.id)
                continue
            target = f"case {event.case_number}"
            if case is None or not _wants_feedback(config, case):
                why = "the case was deleted" if case is None else "feedback was turned off"
                settled += await self._record(
                    event.guild_id, action=FEEDBACK, target=target, reason=f"not sent: {why}"
                )
                continue
            await self._send_feedback(case, decision)
            settled += 1
        return settled

    async def _send_feedback(self, case: ScanRecord, decision: Review) -> VendorAck:
        detector = self._detectors.get(case.provider)
        assert case.provider_job_id is not None
        try:
            if detector is None:
                ack = VendorAck.FAILED  # the provider is no longer configured
            else:
                ack = await detector.send_feedback(
                    case.provider_job_id,
                    synthetic=decision is Review.CONFIRMED,
                    said_synthetic=case.label is Label.SPOOFED,
                )
        except Exception:  # a bug here must not cost the moderator's review
            log.exception("feedback on case %s/#%s failed", case.guild_id, case.case_number)
            ack = VendorAck.FAILED
        # The outcome settles what was owed, whatever it is: a refusal or an outage is
        # recorded, not retried (the vendor's feedback is a courtesy, not the case).
        await self._record(
            case.guild_id,
            action=FEEDBACK,
            target=f"case {case.case_number}",
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

    async def delete_with_cases(
        self,
        guild_id: int,
        jobs: Iterable[CaseJob],
        delete_cases: Callable[[], Awaitable[T]],
        *,
        why: str,
    ) -> tuple[T, dict[VendorAck, int]]:
        """Delete cases (`delete_cases`) and then the providers' copies of their jobs,
        durably: the copies are recorded as owed before the cases go, so a crash in between
        leaves them to `resend_owed` rather than forgotten with the cases."""
        chunks = _chunks(jobs)
        await self._owe_deletes(guild_id, chunks)
        result = await delete_cases()
        return result, await self._settle_deletes(guild_id, chunks, why=why)

    async def purge_expired(self, now: datetime) -> dict[int, int]:
        """The retention purge (`CaseAdmin.purge_expired`), the providers' copies of the
        purged cases deleted after it where the vendor allows; guild → cases purged."""
        providers = [p for p in self._detectors if p in DELETABLE]
        jobs = await self._audit.admin.expired_jobs(now, providers) if providers else {}
        chunks = {guild_id: _chunks(guild_jobs) for guild_id, guild_jobs in jobs.items()}
        for guild_id, guild_chunks in chunks.items():
            await self._owe_deletes(guild_id, guild_chunks)
        purged = await self._audit.admin.purge_expired(now)
        for guild_id, guild_chunks in chunks.items():
            await self._settle_deletes(guild_id, guild_chunks, why="retention purge")
        return purged

    async def _owe_deletes(self, guild_id: int, chunks: list[_Chunk]) -> None:
        for key, chunk in chunks:
            await self._record(
                guild_id, action=DELETE_OWED, target=f"case {key}", reason=_pack(chunk)
            )

    async def _settle_deletes(
        self, guild_id: int, chunks: list[_Chunk], *, why: str
    ) -> dict[VendorAck, int]:
        counts = await self.delete_copies(guild_id, [j for _, c in chunks for j in c], why=why)
        for key, _ in chunks:
            await self._record(guild_id, action=DELETE_SETTLED, target=f"case {key}", reason=why)
        return counts

    async def _resend_deletes(self, now: datetime, older_than: timedelta) -> int:
        """Delete the copies owed by cases that are gone but whose deletes never settled."""
        try:
            owed = await self._audit.cases.unresolved_events(
                DELETE_OWED, DELETE_SETTLED, case_deleted=True, limit=RESEND_BATCH
            )
        except Exception:
            log.exception("could not read the provider copies owed a delete")
            return 0
        settled = 0
        for event in owed:
            if event.at > now - older_than or not in_shards(self._shards, event.guild_id):
                continue  # perhaps still being deleted, by this process or another
            why = "resumed after a restart"
            try:
                chunk = _unpack(event.reason)
            except ValueError:
                log.exception("owed delete %s not readable", event.id)
                chunk, why = [], f"unreadable record {event.id}"
            await self.delete_copies(event.guild_id, chunk, why=why)
            settled += await self._record(
                event.guild_id,
                action=DELETE_SETTLED,
                target=f"case {event.case_number}",
                reason=why,
            )
        return settled

    async def _record(self, guild_id: int, *, action: str, target: str, reason: str) -> bool:
        """Write an event; False (and logged) if the audit log refused it."""
        try:
            await self._audit.admin.log_event(
                guild_id, actor=ACTOR, action=action, target=target, reason=reason
            )
        except Exception:
            log.exception("could not record %s for guild %s: %s", action, guild_id, reason)
            return False
        log.info(
            "%s: actor=%s target=guild %s %s reason=%s", action, ACTOR, guild_id, target, reason
        )
        return True


#: (provider, job id, case number) of a case about to be deleted.
CaseJob = tuple[ProviderName, str | None, int]


#: A chunk of owed deletes: the case it is keyed to, and its (provider, job id) pairs.
_Chunk = tuple[int, list[tuple[ProviderName, str]]]


def _chunks(jobs: Iterable[CaseJob]) -> list[_Chunk]:
    """The deletable jobs, each once (reused cases share their original's job), in chunks of
    `DELETE_CHUNK`, each keyed to the lowest case number among its jobs."""
    first: dict[tuple[ProviderName, str], int] = {}
    for provider, job, case_number in jobs:
        if job and provider in DELETABLE:
            key = (provider, job)
            first[key] = min(case_number, first.get(key, case_number))
    ordered = sorted(first, key=lambda j: (first[j], j))
    return [
        (first[ordered[i]], ordered[i : i + DELETE_CHUNK])
        for i in range(0, len(ordered), DELETE_CHUNK)
    ]


def _pack(chunk: Iterable[tuple[ProviderName, str]]) -> str:
    return json.dumps([[provider.value, job] for provider, job in chunk])


def _unpack(reason: str) -> list[tuple[ProviderName, str]]:
    try:
        return [(ProviderName(provider), str(job)) for provider, job in json.loads(reason)]
    except (TypeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"not a packed job list: {reason[:80]!r}") from exc


def _wants_feedback(config: GuildConfig, case: ScanRecord) -> bool:
    """The guild opted in, and the case has a verdict from a provider that takes feedback."""
    return (
        config.provider_feedback
        and case.provider in TAKES_FEEDBACK
        and bool(case.provider_job_id)
        and case.label is not None
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
