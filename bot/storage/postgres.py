"""The audit log in PostgreSQL (asyncpg), shared by every process of a sharded deployment.

The same repositories as SQLite (`bot.storage._protocol`), over one `PostgresDatabase`:

- here: the scan lifecycle (`PostgresScans`), and opening;
- `_pg_queries`: the moderators' reads; `_pg_admin`: administration and guild settings.

Each step of a scan's life is batched with the same step of the other scans in flight: one
statement (one round trip, one commit) for all of them (`_pg_writer`).

What must hold across processes is decided by the database:
- case numbers: one statement bumps each guild's counter row (its row lock orders concurrent
  allocations) and inserts the cases; if an insert fails (the same attachment accepted
  twice) the whole statement is undone, counters included, so numbers never skip;
- one provider submission per file: `claim_submission` inserts a unique (sha256, provider)
  row; the scan whose insert wins submits;
- cooldowns: each hit holds a transaction-scoped advisory lock on its key (`_pg_admin`).
"""

# S608: the only text interpolated into SQL here is module constants (column lists, enum
# codes); every value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args

import asyncpg

from bot.storage import _pg_rows as pg_rows
from bot.storage import _sqlite_rows as rows
from bot.storage._models import (
    NewScan,
    ScanRecord,
    ScanStatus,
    ShardFilter,
    StoredVerdict,
    Trigger,
)
from bot.storage._pg_admin import PostgresCaseAdmin, PostgresCooldowns, PostgresGuildSettings
from bot.storage._pg_base import PostgresDatabase, utc_now
from bot.storage._pg_queries import PostgresCaseQueries
from bot.storage._pg_writer import Batched
from bot.storage._protocol import AuditLog, ScanNotFound
from bot.verdict import ProviderName, Verdict

log = logging.getLogger(__name__)

#: PostgreSQL types of `NewScan`'s field types: ids and sizes BIGINT, enumerations their
#: SMALLINT codes (`rows.TRIGGER_CODES`, `rows.PROVIDER_CODES`), text TEXT.
_PG_TYPES: dict[Any, str] = {
    int: "bigint",
    str: "text",
    Trigger: "smallint",
    ProviderName: "smallint",
}


def _pg_type(annotation: Any) -> str:
    kinds = [kind for kind in get_args(annotation) if kind is not type(None)] or [annotation]
    return _PG_TYPES[kinds[0]]


#: The columns `create_scan` binds (`rows.INSERT_COLUMNS`: `NewScan`'s fields, then the unix
#: time `created_at`), with their PostgreSQL types.
_INSERT_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    zip(
        rows.INSERT_COLUMNS,
        (*(_pg_type(field.annotation) for field in NewScan.model_fields.values()), "bigint"),
        strict=True,
    )
)
_INSERT_NAMES = rows.INSERT_COLUMNS
_GUILD, _TRIGGER, _MESSAGE, _ATTACHMENT = (
    _INSERT_NAMES.index(c) for c in ("guild_id", "scan_trigger", "message_id", "attachment_id")
)


def _unnest(columns: Sequence[tuple[str, str]]) -> str:
    """`unnest` over one array parameter per column, named as the columns ($1 first)."""
    arrays = ", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(columns, start=1))
    return f"unnest({arrays})"


def _as(columns: Sequence[tuple[str, str]]) -> str:
    return ", ".join(name for name, _ in columns)


def _param(column: str) -> str:
    return f"${_INSERT_NAMES.index(column) + 1}"


# The pieces of the two INSERTs, spelled once (SQL text interpolates module constants only).
_P_GUILD, _P_TRIGGER, _P_MESSAGE, _P_ATTACHMENT = (
    _param(c) for c in ("guild_id", "scan_trigger", "message_id", "attachment_id")
)
_INSERT_LIST = ", ".join(_INSERT_NAMES)
_INSERT_PARAMS = ", ".join(f"${n}" for n in range(1, len(_INSERT_NAMES) + 1))
_INSERT_UNNEST = _unnest(_INSERT_COLUMNS)
_INSERT_AS = _as(_INSERT_COLUMNS)
_INSERT_FRESH = ", ".join(f"f.{name}" for name in _INSERT_NAMES)


# One accepted scan with its guild's next case number. `existing` keeps a replayed event from
# bumping the counter; a race between two inserts of the same attachment ends in a unique
# violation that undoes the whole statement, counter included.
_INSERT_SCAN = f"""
WITH existing AS (
    SELECT 1 FROM scans
    WHERE guild_id = {_P_GUILD} AND message_id = {_P_MESSAGE}
        AND attachment_id = {_P_ATTACHMENT} AND scan_trigger = {_P_TRIGGER}
), allocated AS (
    INSERT INTO guild_counters AS c (guild_id, last_case)
    SELECT {_P_GUILD}, 1 WHERE NOT EXISTS (SELECT 1 FROM existing)
    ON CONFLICT (guild_id) DO UPDATE SET last_case = c.last_case + 1
    RETURNING last_case
)
INSERT INTO scans (case_number, status, {_INSERT_LIST})
SELECT last_case, {rows.STATUS_CODES[ScanStatus.QUEUED]}, {_INSERT_PARAMS}
FROM allocated
RETURNING id, case_number
"""
# Many accepted scans at once (`_pg_writer`), each with its guild's next case numbers.
# - `fresh` drops attachments already recorded (a replayed event bumps no counter); a
#   concurrent insert of the same attachment elsewhere ends in a unique violation that undoes
#   the whole statement, counters included, so numbers never skip (the calls are then
#   retried one by one, and the loser finds the winner's case).
# - Each guild's counter moves once, by its number of new cases, and the counter rows are
#   locked in guild order, so two processes' statements cannot deadlock on them.
# - Within a guild, cases are numbered in arrival order.
_INSERT_SCANS = f"""
WITH input AS (
    SELECT * FROM {_INSERT_UNNEST} WITH ORDINALITY AS i({_INSERT_AS}, arrival)
), fresh AS (
    SELECT i.*,
        row_number() OVER (PARTITION BY i.guild_id ORDER BY i.arrival) AS nth,
        count(*) OVER (PARTITION BY i.guild_id) AS taken
    FROM input i
    WHERE NOT EXISTS (
        SELECT 1 FROM scans s
        WHERE s.guild_id = i.guild_id AND s.message_id = i.message_id
            AND s.attachment_id = i.attachment_id AND s.scan_trigger = i.scan_trigger
    )
), allocated AS (
    INSERT INTO guild_counters AS c (guild_id, last_case)
    SELECT guild_id, max(taken) FROM fresh GROUP BY guild_id ORDER BY guild_id
    ON CONFLICT (guild_id) DO UPDATE SET last_case = c.last_case + excluded.last_case
    RETURNING guild_id, last_case
)
INSERT INTO scans (case_number, status, {_INSERT_LIST})
SELECT a.last_case - f.taken + f.nth, {rows.STATUS_CODES[ScanStatus.QUEUED]}, {_INSERT_FRESH}
FROM fresh f JOIN allocated a ON a.guild_id = f.guild_id
ORDER BY f.guild_id, f.arrival
RETURNING id, guild_id, case_number, message_id, attachment_id, scan_trigger
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
_RETURN_SCAN = ", ".join(f"s.{column}" for column in rows.SCAN_COLUMNS)


@dataclass(frozen=True)
class _Update:
    """One UPDATE of scans by id, for one scan (`one`) and for many (`many`, over arrays)."""

    one: str
    many: str


def _one_row(columns: Sequence[tuple[str, str]]) -> str:
    """The values of `v`'s one row: typed parameters named as the columns ($1 first)."""
    return ", ".join(f"${n}::{kind} AS {name}" for n, (name, kind) in enumerate(columns, 1))


def _many_rows(columns: Sequence[tuple[str, str]]) -> str:
    """`v`: one row per element of the array parameters, named as the columns."""
    return f"{_unnest(columns)} AS v({_as(columns)})"


# Each step: its columns (the scan id first), the assignments from `v`, and the two forms.
# SQL text interpolates module constants only (tests/bot/test_security.py).
_SET_MEDIA_COLUMNS = (
    ("id", "bigint"),
    ("sha256", "bytea"),
    ("size", "bigint"),
    ("content_type", "text"),
    ("duration_s", "float8"),
)
_SET_MEDIA_SET = (
    "sha256 = v.sha256, size = v.size, content_type = v.content_type, duration_s = v.duration_s"
)
_SET_MEDIA_ONE, _SET_MEDIA_MANY = _one_row(_SET_MEDIA_COLUMNS), _many_rows(_SET_MEDIA_COLUMNS)
_SET_MEDIA = _Update(
    one=f"UPDATE scans AS s SET {_SET_MEDIA_SET} FROM (SELECT {_SET_MEDIA_ONE}) AS v "
    "WHERE s.id = v.id RETURNING s.id",
    many=f"UPDATE scans AS s SET {_SET_MEDIA_SET} FROM {_SET_MEDIA_MANY} "
    "WHERE s.id = v.id RETURNING s.id",
)

_SUBMITTED_COLUMNS = (("id", "bigint"), ("provider_job_id", "bytea"), ("submitted_at", "bigint"))
_SUBMITTED_SET = (
    f"status = {rows.STATUS_CODES[ScanStatus.SUBMITTED]}, "
    "provider_job_id = v.provider_job_id, submitted_at = v.submitted_at"
)
_SUBMITTED_ONE, _SUBMITTED_MANY = _one_row(_SUBMITTED_COLUMNS), _many_rows(_SUBMITTED_COLUMNS)
_MARK_SUBMITTED = _Update(
    one=f"UPDATE scans AS s SET {_SUBMITTED_SET} FROM (SELECT {_SUBMITTED_ONE}) AS v "
    "WHERE s.id = v.id RETURNING s.id",
    many=f"UPDATE scans AS s SET {_SUBMITTED_SET} FROM {_SUBMITTED_MANY} "
    "WHERE s.id = v.id RETURNING s.id",
)

_DONE_COLUMNS = (
    ("id", "bigint"),
    ("status", "smallint"),
    ("finished_at", "bigint"),
    ("label", "smallint"),
    ("spoofed_probability", "float8"),
    ("language", "text"),
    ("speakers", "integer"),
    ("transcript", "text"),
    ("detail", "bytea"),
    ("provider_job_id", "bytea"),
    ("duration_s", "float8"),
    ("reused_from", "bigint"),
    ("generator", "text"),
    ("fraud_type", "text"),
)
_DONE_SET = """status = v.status, finished_at = v.finished_at, label = v.label,
    spoofed_probability = v.spoofed_probability, language = v.language,
    speakers = v.speakers, transcript = v.transcript, detail = v.detail,
    provider_job_id = v.provider_job_id, duration_s = coalesce(v.duration_s, s.duration_s),
    reused_from = v.reused_from, generator = v.generator, fraud_type = v.fraud_type,
    source_url = NULL, error_kind = NULL, error_message = NULL"""
_DONE_ONE, _DONE_MANY = _one_row(_DONE_COLUMNS), _many_rows(_DONE_COLUMNS)
_MARK_DONE = _Update(
    one=f"UPDATE scans AS s SET {_DONE_SET} FROM (SELECT {_DONE_ONE}) AS v "
    f"WHERE s.id = v.id RETURNING {_RETURN_SCAN}",
    many=f"UPDATE scans AS s SET {_DONE_SET} FROM {_DONE_MANY} "
    f"WHERE s.id = v.id RETURNING {_RETURN_SCAN}",
)

_FAILED_COLUMNS = (
    ("id", "bigint"),
    ("finished_at", "bigint"),
    ("error_kind", "text"),
    ("error_message", "text"),
)
_FAILED_SET = (
    f"status = {rows.STATUS_CODES[ScanStatus.FAILED]}, finished_at = v.finished_at, "
    "error_kind = v.error_kind, error_message = v.error_message, source_url = NULL"
)
_FAILED_ONE, _FAILED_MANY = _one_row(_FAILED_COLUMNS), _many_rows(_FAILED_COLUMNS)
_MARK_FAILED = _Update(
    one=f"UPDATE scans AS s SET {_FAILED_SET} FROM (SELECT {_FAILED_ONE}) AS v "
    f"WHERE s.id = v.id RETURNING {_RETURN_SCAN}",
    many=f"UPDATE scans AS s SET {_FAILED_SET} FROM {_FAILED_MANY} "
    f"WHERE s.id = v.id RETURNING {_RETURN_SCAN}",
)

_REPLIED_COLUMNS = (("id", "bigint"), ("reply_message_id", "bigint"))
_REPLIED_ONE, _REPLIED_MANY = _one_row(_REPLIED_COLUMNS), _many_rows(_REPLIED_COLUMNS)
_MARK_REPLIED = _Update(
    one="UPDATE scans AS s SET reply_message_id = v.reply_message_id "
    f"FROM (SELECT {_REPLIED_ONE}) AS v WHERE s.id = v.id RETURNING s.id",
    many=f"UPDATE scans AS s SET reply_message_id = v.reply_message_id FROM {_REPLIED_MANY} "
    "WHERE s.id = v.id RETURNING s.id",
)
#: Scans that reached the provider (as in SQLite's `_BILLED`).
_BILLED = "(status IN (1, 2) OR (status = 3 AND provider_job_id IS NOT NULL))"


def _attachment_key(params: tuple[Any, ...]) -> tuple[int, int, int, int] | None:
    """Guild, message, attachment and trigger: at most one case each (index scans_message)."""
    if params[_MESSAGE] is None or params[_ATTACHMENT] is None:
        return None
    return (params[_GUILD], params[_MESSAGE], params[_ATTACHMENT], params[_TRIGGER])


def _scan_key(params: tuple[Any, ...]) -> int:
    scan_id: int = params[0]
    return scan_id


def _arrays(batch: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Column arrays for `_update_scans`, the rows in id order: two statements updating
    scans (and the daily rollups their triggers touch) take their row locks alike."""
    return [list(column) for column in zip(*sorted(batch, key=_scan_key), strict=True)]


class PostgresScans:
    """`ScanLifecycle` over PostgreSQL: each step's concurrent calls share a statement."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        # Keys: the attachment (one case per attachment and trigger), else the scan. Opening
        # and finishing cases move the shared counters and daily rollups: one lane.
        rollups = asyncio.Lock()
        self._insert = Batched(
            "create_scan",
            one=self._insert_scan,
            many=self._insert_scans,
            key=_attachment_key,
            lane=rollups,
        )
        self._set_media = self._updating_ids("set_media", _SET_MEDIA)
        self._submitted = self._updating_ids("mark_submitted", _MARK_SUBMITTED)
        self._done = self._updating_records("mark_done", _MARK_DONE, lane=rollups)
        self._failed = self._updating_records("mark_failed", _MARK_FAILED, lane=rollups)
        self._replied = self._updating_ids("mark_replied", _MARK_REPLIED)

    async def create_scan(self, new: NewScan) -> tuple[ScanRecord, bool]:
        trigger = rows.TRIGGER_CODES[new.trigger]
        params = rows.insert_params(new, self._db.now())
        try:
            allocated = await self._insert(params)
        except asyncpg.UniqueViolationError:
            allocated = None  # accepted at the same moment by another task or process
        if allocated is not None:
            record = rows.queued_record(*allocated, params)
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

    async def _insert_scan(self, params: tuple[Any, ...]) -> tuple[int, int] | None:
        """`_INSERT_SCAN`: (id, case number) of the new case, None if it was recorded before."""
        row = await self._db.fetch_one(_INSERT_SCAN, *params)
        return None if row is None else (row[0], row[1])

    async def _insert_scans(self, batch: Sequence[tuple[Any, ...]]) -> list[tuple[int, int] | None]:
        """`_INSERT_SCANS` for these `create_scan` parameters: (id, case number) of each new
        case, None where the attachment was already recorded."""
        returned = await self._db.fetch_all(_INSERT_SCANS, *zip(*batch, strict=True))
        recorded = {
            (row["guild_id"], row["message_id"], row["attachment_id"], row["scan_trigger"])
            for row in returned
        }
        by_guild: dict[int, list[asyncpg.Record]] = {}
        for row in sorted(returned, key=lambda row: row["case_number"]):
            by_guild.setdefault(row["guild_id"], []).append(row)
        results: list[tuple[int, int] | None] = []
        for params in batch:
            key = _attachment_key(params)
            if key is not None and key not in recorded:
                results.append(None)
                continue
            # A guild's new cases were numbered in arrival order, which is `batch`'s order.
            row = by_guild[params[_GUILD]].pop(0)
            results.append((row["id"], row["case_number"]))
        return results

    async def set_media(
        self,
        scan_id: int,
        *,
        sha256: str,
        size: int,
        content_type: str | None,
        duration_s: float | None,
    ) -> None:
        found = await self._set_media(
            (scan_id, pg_rows.pack(rows.pack_sha256(sha256)), size, content_type, duration_s)
        )
        if not found:
            raise ScanNotFound(f"scan {scan_id} does not exist")

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
        found = await self._submitted(
            (scan_id, pg_rows.pack(rows.pack_job_id(provider_job_id)), self._db.now())
        )
        if not found:
            raise ScanNotFound(f"scan {scan_id} does not exist")

    async def mark_done(
        self,
        scan_id: int,
        verdict: Verdict,
        *,
        reused_from: int | None = None,
        store_transcript: bool = True,
    ) -> ScanRecord:
        status = ScanStatus.DONE if reused_from is None else ScanStatus.REUSED
        record = await self._done(
            (
                scan_id,
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
                verdict.generator,
                verdict.fraud_type,
            )
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
        record = await self._failed(
            (
                scan_id,
                self._db.now(),
                error_kind,
                rows.snippet(error_message, rows.ERROR_MESSAGE_CHARS),
            )
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
        if not await self._replied((scan_id, reply_message_id)):
            raise ScanNotFound(f"scan {scan_id} does not exist")

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

    def _updating_ids(self, name: str, update: _Update) -> Batched[tuple[Any, ...], bool]:
        """A step whose UPDATE returns ids: each call learns whether its scan exists."""

        async def one(params: tuple[Any, ...]) -> bool:
            return await self._db.fetch_one(update.one, *params) is not None

        async def many(batch: Sequence[tuple[Any, ...]]) -> list[bool]:
            updated = {row[0] for row in await self._db.fetch_all(update.many, *_arrays(batch))}
            return [params[0] in updated for params in batch]

        return Batched(name, one=one, many=many, key=_scan_key)

    def _updating_records(
        self, name: str, update: _Update, *, lane: asyncio.Lock
    ) -> Batched[tuple[Any, ...], ScanRecord | None]:
        """A step whose UPDATE returns whole rows: each call gets its case, or None."""

        async def one(params: tuple[Any, ...]) -> ScanRecord | None:
            return await self._db.record(update.one, *params)

        async def many(batch: Sequence[tuple[Any, ...]]) -> list[ScanRecord | None]:
            returned = {
                row[0]: row for row in await self._db.fetch_all(update.many, *_arrays(batch))
            }
            found = (returned.get(params[0]) for params in batch)
            return [None if row is None else pg_rows.record_from_row(row) for row in found]

        return Batched(name, one=one, many=many, key=_scan_key, lane=lane)


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
