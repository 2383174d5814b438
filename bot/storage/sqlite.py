"""The audit log in SQLite: WAL, one writer thread, an aiosqlite reader, versioned migrations.

One repository per consumer, each over the one `SQLiteDatabase` (`_sqlite_base`; its writer
group-commits queued statements, `_sqlite_writer`):

- here: the scan lifecycle the scan service drives (`SQLiteScans`), and opening;
- `_sqlite_queries`: the moderators' reads, each scoped to one guild;
- `_sqlite_admin`: reviews, moderator actions, events, forget/purge/retention;
- `_sqlite_settings`: per-guild settings.

Each lifecycle step is ONE statement, so concurrent scans share a commit: the case number is
computed inside the INSERT, and a trigger (migration 1) advances the guild's counter within
the same statement, which SQLite makes atomic. No step needs a transaction of its own.
"""

# S608: the only text interpolated into SQL here is module constants (column lists, enum
# codes, fixed SET clauses); every value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from bot.storage import _sqlite_rows as rows
from bot.storage._models import (
    NewScan,
    ScanRecord,
    ScanStatus,
    ShardFilter,
    StoredVerdict,
)
from bot.storage._protocol import AuditLog, ScanNotFound
from bot.storage._sqlite_admin import SQLiteCaseAdmin
from bot.storage._sqlite_base import SQLiteDatabase, utc_now
from bot.storage._sqlite_queries import SQLiteCaseQueries
from bot.storage._sqlite_settings import SQLiteCooldowns, SQLiteGuildSettings
from bot.verdict import ProviderName, Verdict

log = logging.getLogger(__name__)

#: Scans that reached the provider: submitted, done, or failed after submission. Reused and
#: refused-before-submission scans cost nothing.
_BILLED = "(status IN (1, 2) OR (status = 3 AND provider_job_id IS NOT NULL))"

# Positional parameters (`rows.INSERT_COLUMNS` order): binding by name costs the writer thread
# a lookup per parameter. RETURNING only what SQLite chose: the rest of the new row is what was
# bound, so the record is built from the parameters (`rows.queued_record`) instead of copying
# 35 columns back. SQLite stores each bound value as given (an int or str, or None, for an
# INTEGER or TEXT column: column affinity converts nothing).
_GUILD_PARAM = f"?{rows.INSERT_COLUMNS.index('guild_id') + 1}"
_INSERT_LIST = ", ".join(rows.INSERT_COLUMNS)
_INSERT_PARAMS = ", ".join(f"?{n}" for n in range(1, len(rows.INSERT_COLUMNS) + 1))
_INSERT_SCAN = f"""
INSERT INTO scans (case_number, status, {_INSERT_LIST})
VALUES (
    coalesce((SELECT last_case FROM guild_counters WHERE guild_id = {_GUILD_PARAM}), 0) + 1,
    {rows.STATUS_CODES[ScanStatus.QUEUED]},
    {_INSERT_PARAMS}
)
ON CONFLICT (guild_id, message_id, attachment_id, scan_trigger)
    WHERE message_id IS NOT NULL AND attachment_id IS NOT NULL
DO NOTHING
RETURNING id, case_number
"""

# Taken when free, or over from a scan that is no longer queued or submitted (finished,
# failed, or deleted): a dead claim never blocks a file for good.
_CLAIM = """
INSERT INTO submission_claims (sha256, provider, scan_id, claimed_at) VALUES (?, ?, ?, ?)
ON CONFLICT (sha256, provider) DO UPDATE
    SET scan_id = excluded.scan_id, claimed_at = excluded.claimed_at
    WHERE NOT EXISTS (
        SELECT 1 FROM scans WHERE scans.id = submission_claims.scan_id AND scans.status < 2
    )
RETURNING scan_id
"""

_MARK_DONE = f"""
UPDATE scans SET
    status = ?, finished_at = ?, label = ?, spoofed_probability = ?, language = ?,
    speakers = ?, transcript = ?, detail = ?, provider_job_id = ?,
    duration_s = coalesce(?, duration_s), reused_from = ?, generator = ?, fraud_type = ?,
    source_url = NULL, error_kind = NULL, error_message = NULL
WHERE id = ?
RETURNING {rows.SELECT_SCAN}
"""


def _queued_record(params: tuple[Any, ...], returned: list[Any]) -> ScanRecord | None:
    """The new case `_INSERT_SCAN` wrote with `params`, or None if it was already there."""
    if not returned:
        return None
    scan_id, case_number = returned[0]
    return rows.queued_record(scan_id, case_number, params)


def _first_record(returned: list[Any]) -> ScanRecord | None:
    """The case an UPDATE ... RETURNING every column changed, or None if there is none."""
    return rows.record_from_row(returned[0]) if returned else None


class SQLiteScans:
    """`ScanLifecycle` over SQLite: one statement per step, group-committed by the writer."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    # --- lifecycle of one scan -----------------------------------------------------------

    async def create_scan(self, new: NewScan) -> tuple[ScanRecord, bool]:
        """Record an accepted scan with the guild's next case number (see `AuditLog`)."""
        trigger = rows.TRIGGER_CODES[new.trigger]
        params = rows.insert_params(new, self._db.now())
        record = await self._db.write_record(_INSERT_SCAN, params, partial(_queued_record, params))
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
        existing = await self._db.fetch_one(
            f"SELECT {rows.SELECT_SCAN} FROM scans WHERE guild_id = ? AND message_id = ? "
            "AND attachment_id = ? AND scan_trigger = ?",
            (new.guild_id, new.message_id, new.attachment_id, trigger),
        )
        if existing is None:  # only if it was deleted between the two statements
            raise ScanNotFound(f"scan of attachment {new.attachment_id} vanished")
        return rows.record_from_row(existing), False

    async def set_media(
        self,
        scan_id: int,
        *,
        sha256: str,
        size: int,
        content_type: str | None,
        duration_s: float | None,
    ) -> None:
        await self._update_scan(
            scan_id,
            "sha256 = ?, size = ?, content_type = ?, duration_s = ?",
            (rows.pack_sha256(sha256), size, content_type, duration_s),
        )

    async def find_verdict(self, sha256: str, provider: ProviderName) -> StoredVerdict | None:
        """The newest `done` verdict for these bytes and provider, rebuilt from its case.

        The transcript is the case's stored snippet, so none where the scanning guild keeps
        no transcripts.
        """
        # Index scans_reuse holds the first 8 bytes of the digest (a quarter of its size);
        # the full digest is compared in the row. Both conditions are spelled exactly as in
        # the index so that SQLite matches it: the expression, and `status = 2` unbound.
        packed = rows.pack_sha256(sha256)
        row = await self._db.fetch_one(
            f"SELECT id, {rows.VERDICT_COLUMNS} FROM scans "
            "WHERE substr(sha256, 1, 8) = ? AND provider = ? AND status = 2 AND sha256 = ? "
            "ORDER BY id DESC LIMIT 1",
            (packed[:8], rows.PROVIDER_CODES[provider], packed),
        )
        if row is None:
            return None
        return StoredVerdict(verdict=rows.verdict_from_row(row[1:]), scan_id=row[0])

    async def claim_submission(
        self, scan_id: int, sha256: str, provider: ProviderName
    ) -> int | None:
        key = (rows.pack_sha256(sha256), rows.PROVIDER_CODES[provider])
        if await self._db.write_one(_CLAIM, (*key, scan_id, self._db.now())) is not None:
            return None
        holder = await self._db.fetch_one(
            "SELECT scan_id FROM submission_claims WHERE sha256 = ? AND provider = ?", key
        )
        return None if holder is None or holder[0] == scan_id else int(holder[0])

    async def mark_submitted(self, scan_id: int, provider_job_id: str) -> None:
        await self._update_scan(
            scan_id,
            "status = ?, provider_job_id = ?, submitted_at = ?",
            (
                rows.STATUS_CODES[ScanStatus.SUBMITTED],
                rows.pack_job_id(provider_job_id),
                self._db.now(),
            ),
        )

    async def mark_done(
        self,
        scan_id: int,
        verdict: Verdict,
        *,
        reused_from: int | None = None,
        store_transcript: bool = True,
    ) -> ScanRecord:
        """Finish the scan with `verdict`; with `store_transcript` off no transcript is kept."""
        status = ScanStatus.DONE if reused_from is None else ScanStatus.REUSED
        record = await self._db.write_record(
            _MARK_DONE,
            (  # in the order of the placeholders in `_MARK_DONE`
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
                rows.pack_detail(verdict),
                rows.pack_job_id(verdict.provider_job_id),
                verdict.duration_s,
                reused_from,
                verdict.generator,
                verdict.fraud_type,
                scan_id,
            ),
            _first_record,
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
        record = await self._db.write_record(
            f"UPDATE scans SET status = ?, finished_at = ?, error_kind = ?, error_message = ?, "
            f"source_url = NULL WHERE id = ? RETURNING {rows.SELECT_SCAN}",
            (
                rows.STATUS_CODES[ScanStatus.FAILED],
                self._db.now(),
                error_kind,
                rows.snippet(error_message, rows.ERROR_MESSAGE_CHARS),
                scan_id,
            ),
            _first_record,
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
        await self._update_scan(scan_id, "reply_message_id = ?", (reply_message_id,))

    async def get_scan(self, scan_id: int) -> ScanRecord | None:
        row = await self._db.fetch_one(
            f"SELECT {rows.SELECT_SCAN} FROM scans WHERE id = ?", (scan_id,)
        )
        return None if row is None else rows.record_from_row(row)

    async def unfinished_scans(self, shard: ShardFilter | None = None) -> list[ScanRecord]:
        # Without statistics the planner would rather walk the whole table in id order than
        # sort a handful of rows; INDEXED BY pins the partial index (and fails loudly if the
        # condition ever stops matching the index's WHERE clause).
        records = await self._db.records(
            f"SELECT {rows.SELECT_SCAN} FROM scans INDEXED BY scans_unfinished "
            "WHERE status < 2 ORDER BY id",
            (),
        )
        # A handful of rows: filtered here rather than with an expression no index holds.
        return records if shard is None else [r for r in records if shard.owns(r.guild_id)]

    async def count_scans(self, guild_id: int, *, since: datetime) -> int:
        # Index scans_time; provider_job_id is read from the table only for failed rows.
        return await self._db.count(
            f"SELECT count(*) FROM scans WHERE guild_id = ? AND created_at >= ? AND {_BILLED}",
            (guild_id, rows.to_epoch(since)),
        )

    # --- helpers ------------------------------------------------------------------------

    async def _update_scan(self, scan_id: int, assignments: str, params: Iterable[Any]) -> None:
        # `assignments` is always a literal from this module; values travel as parameters.
        row = await self._db.write_one(
            f"UPDATE scans SET {assignments} WHERE id = ? RETURNING id", (*params, scan_id)
        )
        if row is None:
            raise ScanNotFound(f"scan {scan_id} does not exist")


class SQLiteAuditLog(AuditLog):
    """`AuditLog` over SQLite. Build it with `await SQLiteAuditLog.open(path)`."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self.db = db
        self.scans = SQLiteScans(db)
        self.cases = SQLiteCaseQueries(db)
        self.admin = SQLiteCaseAdmin(db)
        self.settings = SQLiteGuildSettings(db)
        self.cooldowns = SQLiteCooldowns(db)

    @classmethod
    async def open(cls, path: Path, *, clock: Callable[[], datetime] = utc_now) -> SQLiteAuditLog:
        """Open (creating if needed) the database at `path` and bring its schema up to date.

        `clock` supplies "now" for every timestamp; tests and the benchmark move it.
        """
        return cls(await SQLiteDatabase.open(path, clock))

    async def close(self) -> None:
        """Finish the queued writes, then close both connections."""
        await self.db.close()

    async def ping(self) -> None:
        """Rewrite the schema version unchanged, in the writer thread: a real commit (one WAL
        frame), so a read-only file, a lock another process holds past the busy timeout, or a
        stuck writer fails it."""
        await self.db.unit(_rewrite_user_version)

    async def checkpoint(self) -> None:
        """Fold the write-ahead log back into the database file (benchmarks, backups)."""
        await self.db.writer.call(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))


def _rewrite_user_version(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.execute(f"PRAGMA user_version = {int(version)}")
