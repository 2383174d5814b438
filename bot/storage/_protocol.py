"""The storage interface: one small repository per consumer, the same for every backend.

- `ScanLifecycle` (`audit.scans`): what the scan service and the autoscan resume need;
- `CaseQueries` (`audit.cases`): the moderators' reads (`/audit`, `python -m bot audit`);
- `CaseAdmin` (`audit.admin`): reviews, moderator actions, events, deletion and retention;
- `GuildSettings` (`audit.settings`): per-guild settings, with change notifications;
- `Cooldowns` (`audit.cooldowns`): per-member rate limits on commands.

`AuditLog` is the façade that hangs off the runtime: it holds one of each, built over one
connection layer of a backend (SQLite: `sqlite.py`; PostgreSQL: `postgres.py`).

Every query that reads cases takes a `guild_id` and never returns another guild's rows.
Lifecycle updates (`set_media`, `mark_*`) raise `ScanNotFound` for an unknown scan id.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from datetime import datetime
from typing import Protocol

from bot.guild_config import GuildConfig
from bot.storage._models import (
    AuditEvent,
    AuditStats,
    GuildCases,
    NewScan,
    Review,
    ScanRecord,
    ShardFilter,
    StoredVerdict,
)
from bot.verdict import ProviderName, Verdict


class ScanNotFound(LookupError):
    """A lifecycle update named a scan id that does not exist (e.g. forgotten mid-scan)."""


class ScanLifecycle(Protocol):
    """The life of one scan, as the scan service drives it."""

    async def create_scan(self, new: NewScan) -> tuple[ScanRecord, bool]:
        """Record an accepted scan (status `queued`) with the guild's next case number.

        Idempotent per (guild, message, attachment, trigger) when message and attachment ids
        are given: a second call returns the existing row and `False`.
        """
        ...

    async def set_media(
        self,
        scan_id: int,
        *,
        sha256: str,
        size: int,
        content_type: str | None,
        duration_s: float | None,
    ) -> None: ...

    async def find_verdict(self, sha256: str, provider: ProviderName) -> StoredVerdict | None:
        """The verdict of an earlier successful scan of the same bytes by the same provider."""
        ...

    async def claim_submission(
        self, scan_id: int, sha256: str, provider: ProviderName
    ) -> int | None:
        """Claim the right to send these bytes to `provider`: None if `scan_id` holds it (it
        was free, held by a scan that has finished since, or already this scan's); else the
        id of the unfinished scan, in any process, that holds it and will have the verdict."""
        ...

    async def mark_submitted(self, scan_id: int, provider_job_id: str) -> None: ...

    async def mark_done(
        self,
        scan_id: int,
        verdict: Verdict,
        *,
        reused_from: int | None = None,
        store_transcript: bool = True,
    ) -> ScanRecord:
        """Finish the scan with a verdict (status `reused` when `reused_from` is given)."""
        ...

    async def mark_failed(
        self, scan_id: int, error_kind: str, error_message: str
    ) -> ScanRecord: ...

    async def mark_replied(self, scan_id: int, reply_message_id: int) -> None: ...

    async def get_scan(self, scan_id: int) -> ScanRecord | None: ...

    async def unfinished_scans(self, shard: ShardFilter | None = None) -> list[ScanRecord]:
        """Scans still `queued` or `submitted` (to resume after a restart), oldest first;
        with `shard`, only those of the guilds this process's shards own."""
        ...

    async def count_scans(self, guild_id: int, *, since: datetime) -> int:
        """Scans that cost a provider call (not reused, not refused before submission)."""
        ...


class CaseQueries(Protocol):
    """Moderators' reads, always scoped to one guild."""

    async def case(self, guild_id: int, case_number: int) -> ScanRecord | None: ...

    async def second_opinions(self, guild_id: int, case_number: int) -> list[ScanRecord]:
        """The cases that judge case `case_number`'s file with another provider, oldest
        first (`NewScan.second_opinion_of`)."""
        ...

    async def recent(self, guild_id: int, *, limit: int, offset: int = 0) -> list[ScanRecord]: ...

    async def by_author(
        self, guild_id: int, author_id: int, *, limit: int, offset: int = 0
    ) -> list[ScanRecord]: ...

    async def guilds(self) -> list[GuildCases]:
        """Every guild with cases in the log (most cases first): the one read across guilds,
        for the operator's `python -m bot audit guilds`."""
        ...

    async def count_cases(self, guild_id: int, *, author_id: int | None = None) -> int:
        """How many cases `recent` (or `by_author` with `author_id`) can page through."""
        ...

    async def flagged(
        self,
        guild_id: int,
        *,
        since: datetime,
        threshold: float,
        limit: int,
        offset: int = 0,
        generator: str | None = None,
        fraud_type: str | None = None,
    ) -> list[ScanRecord]:
        """Flagged cases, newest first; with `generator`, only those the provider said that
        generator made (compared in lower case); with `fraud_type`, only those Resemble's
        intelligence report classed as that kind of fraud."""
        ...

    async def count_flagged(
        self,
        guild_id: int,
        *,
        since: datetime,
        threshold: float,
        generator: str | None = None,
        fraud_type: str | None = None,
    ) -> int:
        """How many cases `flagged` can page through with the same arguments."""
        ...

    async def stats(self, guild_id: int, *, since: datetime) -> AuditStats: ...

    def export(self, guild_id: int, *, since: datetime) -> AsyncIterator[ScanRecord]: ...

    async def case_events(self, guild_id: int, case_number: int) -> list[AuditEvent]:
        """The events about one case (reviews, moderator actions), oldest first."""
        ...

    async def events(self, guild_id: int, *, limit: int, offset: int = 0) -> list[AuditEvent]:
        """The guild's administrative events, newest first."""
        ...

    async def unresolved_events(
        self,
        action: str,
        resolved_by: str | Sequence[str],
        *,
        case_deleted: bool = False,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Work the bot still owes, in every guild, oldest first: the `action` events about a
        case with no later event about the same case whose action is (one of) `resolved_by`
        (feedback to send, a mod-log alert to post or its evidence to remove). With
        `case_deleted`, only those whose case is gone (forgotten or purged)."""
        ...


class CaseAdmin(Protocol):
    """Moderators' and admins' writes: reviews, actions, events, deletion and retention."""

    async def review(
        self,
        guild_id: int,
        case_number: int,
        decision: Review,
        *,
        moderator_id: int,
        note: str | None = None,
        first: bool = False,
    ) -> ScanRecord | None:
        """Record a moderator's decision on a case; None if there is no such case or, with
        `first`, if it was already reviewed (the first review stands)."""
        ...

    async def record_action(
        self, guild_id: int, case_number: int, *, action: str, actor_id: int, outcome: str
    ) -> None:
        """Record a moderator's action on a case (delete, time out...) once it has happened."""
        ...

    async def log_event(
        self, guild_id: int, *, actor: str, action: str, target: str, reason: str
    ) -> None:
        """Record an administrative event (purge, forget, settings change)."""
        ...

    async def forget_author(self, guild_id: int, author_id: int, *, actor_id: int) -> int: ...

    async def purge_before(self, guild_id: int, before: datetime, *, actor: str) -> int: ...

    async def purge_expired(self, now: datetime) -> dict[int, int]:
        """Delete cases older than each guild's retention (default 90 days); guild → count."""
        ...

    async def expired_jobs(
        self, now: datetime, providers: Collection[ProviderName]
    ) -> dict[int, list[tuple[ProviderName, str, int]]]:
        """The provider jobs (of these providers) of the cases `purge_expired(now)` would
        delete, per guild, as (provider, job id, case number): read first, so the providers'
        copies can go with them."""
        ...


#: Called with a guild id whose settings changed (in this process or, on PostgreSQL, another).
SettingsListener = Callable[[int], None]


class GuildSettings(Protocol):
    """Per-guild settings."""

    async def guild_config(self, guild_id: int) -> GuildConfig:
        """The guild's settings, or the defaults when it never changed any."""
        ...

    async def save_guild_config(self, guild_id: int, config: GuildConfig) -> None: ...

    def subscribe(self, listener: SettingsListener) -> None:
        """Call `listener(guild_id)` whenever a guild's settings change, wherever saved."""
        ...


class Cooldowns(Protocol):
    """Sliding-window limits on how often one key (a member) may do something, shared by
    every process on the database."""

    async def hit(self, bucket: str, key: int, *, rate: int, per_s: float) -> float | None:
        """Count one use of `bucket` by `key`, or refuse it: None if counted, else the unix
        time at which the next use will be allowed (at most `rate` uses per `per_s`)."""
        ...


class AuditLog(ABC):
    """The audit log of one backend: its repositories, over one connection layer."""

    scans: ScanLifecycle
    cases: CaseQueries
    admin: CaseAdmin
    settings: GuildSettings
    cooldowns: Cooldowns

    @abstractmethod
    async def close(self) -> None:
        """Finish what is queued and close the connections."""

    @abstractmethod
    async def ping(self) -> None:
        """Write something harmless and commit it, through the path scans write by; raise if
        the database cannot take a write now (the health check)."""
