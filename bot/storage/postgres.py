"""The audit log in PostgreSQL (asyncpg), shared by every process of a sharded deployment.

The same repositories as SQLite (`bot.storage._protocol`), over one `PostgresDatabase`:

- here: the scan lifecycle (`PostgresScans`), and opening;
- `_pg_queries`: the moderators' reads; `_pg_admin`: administration and guild settings.

What must hold across processes is decided by the database:
- case numbers: one statement bumps the guild's counter row (its row lock orders concurrent
  allocations) and inserts the case; if the insert fails (the same attachment accepted
  twice) the whole statement is undone, counter included, so numbers never skip;
- one provider submission per file: `claim_submission` inserts a unique (sha256, provider)
  row; the scan whose insert wins submits;
- cooldowns: each hit holds a transaction-scoped advisory lock on its key (`_pg_admin`).
"""

# S608: the only text interpolated into SQL here is module constants (column lists, enum
# codes); every value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg

from bot.storage import _pg_rows as pg_rows
from bot.storage import _sqlite_rows as rows
from bot.storage._models import NewScan, ScanRecord, ScanStatus, ShardFilter, StoredVerdict
from bot.storage._pg_admin import PostgresCaseAdmin, PostgresCooldowns, PostgresGuildSettings
from bot.storage._pg_base import PostgresDatabase, utc_now
from bot.storage._pg_queries import PostgresCaseQueries
from bot.storage._protocol import AuditLog, ScanNotFound
from bot.verdict import ProviderName, Verdict

log = logging.getLogger(__name__)

_INSERT_COLUMNS: tuple[str, ...] = (
    "guild_id",
    "scan_trigger",
    "provider",
    "created_at",
    "channel_id",
    "message_id",
    "author_id",
    "attachment_id",
    "requested_by",
    "jump_url",
    "filename",
    "content_type",
    "size",
    "source_url",
    "second_opinion_of",
)
_INSERT_COLUMN_LIST = ", ".join(_INSERT_COLUMNS)
_INSERT_PLACEHOLDERS = ", ".join(f"${n}" for n in range(1, len(_INSERT_COLUMNS) + 1))
# $1 guild, $2 trigger, $6 message, $8 attachment. `existing` keeps a replayed event from
# bumping the counter; a race between two inserts of the same attachment ends in a unique
# violation that undoes the whole statement, counter included.
_INSERT_SCAN = f"""
WITH existing AS (
    SELECT 1 FROM scans
    WHERE guild_id = $1 AND message_id = $6 AND attachment_id = $8 AND scan_trigger = $2
), allocated AS (
    INSERT INTO guild_counters AS c (guild_id, last_case)
    SELECT $1, 1 WHERE NOT EXISTS (SELECT 1 FROM existing)
    ON CONFLICT (guild_id) DO UPDATE SET last_case = c.last_case + 1
    RETURNING last_case
)
INSERT INTO scans (case_number, status, {_INSERT_COLUMN_LIST})
SELECT last_case, {rows.STATUS_CODES[ScanStatus.QUEUED]}, {_INSERT_PLACEHOLDERS}
FROM allocated
RETURNING {rows.SELECT_SCAN}
"""
_EXISTING_SCAN = (
    f"SELECT {rows.SELECT_SCAN} FROM scans WHERE guild_id = $1 AND message_id = $2 "
    "AND attachment_id = $3 AND scan_trigger = $4"
)
# Taken when free, or over from a scan that is no longer queued or submitted; concurrent
# claims of one file queue on the row, so exactly one of them wins.
_CLAIM = """
INSERT INTO submission_claims AS c (sha256, provider, scan_id, claimed_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (sha256, provider) DO UPDATE
    SET scan_id = excluded.scan_id, claimed_at = excluded.claimed_at
    WHERE NOT EXISTS (SELECT 1 FROM scans WHERE scans.id = c.scan_id AND scans.status < 2)
RETURNING scan_id
"""

_MARK_DONE = f"""
UPDATE scans SET
    status = $1, finished_at = $2, label = $3, spoofed_probability = $4, language = $5,
    speakers = $6, transcript = $7, detail = $8, provider_job_id = $9,
    duration_s = coalesce($10, duration_s), reused_from = $11, generator = $13,
    fraud_type = $14, source_url = NULL, error_kind = NULL, error_message = NULL
WHERE id = $12
RETURNING {rows.SELECT_SCAN}
"""
_MARK_FAILED = f"""
UPDATE scans SET status = $1, finished_at = $2, error_kind = $3, error_message = $4,
    source_url = NULL
WHERE id = $5
RETURNING {rows.SELECT_SCAN}
"""
#: Scans that reached the provider (as in SQLite's `_BILLED`).
_BILLED = "(status IN (1, 2) OR (status = 3 AND provider_job_id IS NOT NULL))"


class PostgresScans:
    """`ScanLifecycle` over PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def create_scan(self, new: NewScan) -> tuple[ScanRecord, bool]:
        trigger = rows.TRIGGER_CODES[new.trigger]
        params = (
            new.guild_id,
            trigger,
            rows.PROVIDER_CODES[new.provider],
            self._db.now(),
            new.channel_id,
            new.message_id,
            new.author_id,
            new.attachment_id,
            new.requested_by,
            rows.pack_jump_url(new.jump_url, new.guild_id, new.channel_id, new.message_id),
            new.filename,
            new.content_type,
            new.size,
            new.source_url,
            new.second_opinion_of,
        )
        try:
            record = await self._db.record(_INSERT_SCAN, *params)
        except asyncpg.UniqueViolationError:
            record = None  # accepted at the same moment by another task or process
        if record is not None:
            log.debug(
                "case opened: actor=%s target=guild %d case %d reason=%s scan of %r",
                new.requested_by or "auto",
                record.guild_id,
                record.case_number,
                new.trigger.value,
                new.filename,
            )
            return record, True
        existing = await self._db.record(
            _EXISTING_SCAN, new.guild_id, new.message_id, new.attachment_id, trigger
        )
        if existing is None:
            raise ScanNotFound(f"scan of attachment {new.attachment_id} vanished")
        return existing, False

    async def set_media(
        self,
        scan_id: int,
        *,
        sha256: str,
        size: int,
        content_type: str | None,
        duration_s: float | None,
    ) -> None:
        await self._update(
            "UPDATE scans SET sha256 = $1, size = $2, content_type = $3, duration_s = $4 "
            "WHERE id = $5 RETURNING id",
            pg_rows.pack(rows.pack_sha256(sha256)),
            size,
            content_type,
            duration_s,
            scan_id,
        )

    async def find_verdict(self, sha256: str, provider: ProviderName) -> StoredVerdict | None:
        row = await self._db.fetch_one(  # index scans_reuse
            f"SELECT id, {rows.VERDICT_COLUMNS} FROM scans "
            "WHERE sha256 = $1 AND provider = $2 AND status = 2 ORDER BY id DESC LIMIT 1",
            pg_rows.pack(rows.pack_sha256(sha256)),
            rows.PROVIDER_CODES[provider],
        )
        if row is None:
            return None
        return StoredVerdict(verdict=pg_rows.verdict_from_row(list(row)[1:]), scan_id=row[0])

    async def claim_submission(
        self, scan_id: int, sha256: str, provider: ProviderName
    ) -> int | None:
        key = (pg_rows.pack(rows.pack_sha256(sha256)), rows.PROVIDER_CODES[provider])
        if await self._db.fetch_one(_CLAIM, *key, scan_id, self._db.now()) is not None:
            return None
        holder = await self._db.fetch_one(
            "SELECT scan_id FROM submission_claims WHERE sha256 = $1 AND provider = $2", *key
        )
        return None if holder is None or holder[0] == scan_id else int(holder[0])

    async def mark_submitted(self, scan_id: int, provider_job_id: str) -> None:
        await self._update(
            "UPDATE scans SET status = $1, provider_job_id = $2, submitted_at = $3 "
            "WHERE id = $4 RETURNING id",
            rows.STATUS_CODES[ScanStatus.SUBMITTED],
            pg_rows.pack(rows.pack_job_id(provider_job_id)),
            self._db.now(),
            scan_id,
        )

    async def mark_done(
        self,
        scan_id: int,
        verdict: Verdict,
        *,
        reused_from: int | None = None,
        store_transcript: bool = True,
    ) -> ScanRecord:
        status = ScanStatus.DONE if reused_from is None else ScanStatus.REUSED
        record = await self._db.record(
            _MARK_DONE,
            rows.STATUS_CODES[status],
            self._db.now(),
            rows.LABEL_CODES[verdict.label],
            verdict.spoofed_probability,
            verdict.language,
            verdict.speakers,
            # Privacy: with store_transcript off, no trace of the words reaches the disk.
            (
                rows.snippet(verdict.transcript, rows.TRANSCRIPT_SNIPPET_CHARS)
                if store_transcript
                else None
            ),
            pg_rows.pack(rows.pack_detail(verdict)),
            pg_rows.pack(rows.pack_job_id(verdict.provider_job_id)),
            verdict.duration_s,
            reused_from,
            scan_id,
            verdict.generator,
            verdict.fraud_type,
        )
        if record is None:
            raise ScanNotFound(f"scan {scan_id} does not exist")
        log.debug(
            "case finished: actor=%s target=guild %d case %d reason=%s %s",
            verdict.provider.value,
            record.guild_id,
            record.case_number,
            status.value,
            verdict.label.value,
        )
        return record

    async def mark_failed(self, scan_id: int, error_kind: str, error_message: str) -> ScanRecord:
        record = await self._db.record(
            _MARK_FAILED,
            rows.STATUS_CODES[ScanStatus.FAILED],
            self._db.now(),
            error_kind,
            rows.snippet(error_message, rows.ERROR_MESSAGE_CHARS),
            scan_id,
        )
        if record is None:
            raise ScanNotFound(f"scan {scan_id} does not exist")
        log.info(
            "case failed: actor=scan target=guild %d case %d reason=%s",
            record.guild_id,
            record.case_number,
            error_kind,
        )
        return record

    async def mark_replied(self, scan_id: int, reply_message_id: int) -> None:
        await self._update(
            "UPDATE scans SET reply_message_id = $1 WHERE id = $2 RETURNING id",
            reply_message_id,
            scan_id,
        )

    async def get_scan(self, scan_id: int) -> ScanRecord | None:
        return await self._db.record(f"SELECT {rows.SELECT_SCAN} FROM scans WHERE id = $1", scan_id)

    async def unfinished_scans(self, shard: ShardFilter | None = None) -> list[ScanRecord]:
        if shard is None:
            return await self._db.records(  # index scans_unfinished
                f"SELECT {rows.SELECT_SCAN} FROM scans WHERE status < 2 ORDER BY id"
            )
        return await self._db.records(
            f"SELECT {rows.SELECT_SCAN} FROM scans WHERE status < 2 "
            "AND (guild_id >> 22) % $1 = ANY($2::bigint[]) ORDER BY id",
            shard.count,
            sorted(shard.ids),
        )

    async def count_scans(self, guild_id: int, *, since: datetime) -> int:
        return await self._db.count(  # index scans_time
            f"SELECT count(*) FROM scans WHERE guild_id = $1 AND created_at >= $2 AND {_BILLED}",
            guild_id,
            rows.to_epoch(since),
        )

    async def _update(self, sql: str, *params: Any) -> None:
        if await self._db.fetch_one(sql, *params) is None:
            raise ScanNotFound(f"scan {params[-1]} does not exist")


class PostgresAuditLog(AuditLog):
    """`AuditLog` over PostgreSQL. Build it with `await PostgresAuditLog.open(url)`."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db
        self.scans = PostgresScans(db)
        self.cases = PostgresCaseQueries(db)
        self.admin = PostgresCaseAdmin(db)
        self.settings = PostgresGuildSettings(db)
        self.cooldowns = PostgresCooldowns(db)

    @classmethod
    async def open(
        cls, url: str, *, clock: Callable[[], datetime] = utc_now, pool_max: int | None = None
    ) -> PostgresAuditLog:
        """Connect to the database at `url` (postgresql://...) and bring its schema up to date."""
        if pool_max is None:
            return cls(await PostgresDatabase.open(url, clock))
        return cls(await PostgresDatabase.open(url, clock, pool_max=pool_max))

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> None:
        """Rewrite the latest schema_migrations row unchanged: a committed write, so a
        read-only server (a standby), a full disk or lost connections fail it."""
        await self.db.execute(
            "UPDATE schema_migrations SET version = version"
            " WHERE version = (SELECT max(version) FROM schema_migrations)"
        )
