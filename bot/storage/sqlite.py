"""The audit log in SQLite: one aiosqlite connection, one writer, WAL, versioned migrations.

Write path: every step of a scan's lifecycle is ONE SQL statement in autocommit mode. An
aiosqlite call costs a thread hop (~50 µs here), so BEGIN/…/COMMIT around two statements
would triple the cost of a scan; instead the case number is computed inside the INSERT and a
trigger (see `_migrations.py`) advances the guild's counter in the same statement, which
SQLite makes atomic. Concurrent steps are committed together by the writer in
`_sqlite_base.py`; the few multi-statement writes (forget, purge, review) run there as one
exclusive transaction each.
"""

# S608: the only text interpolated into SQL here is module constants (column lists, enum
# codes, fixed SET clauses); every value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.guild_config import GuildConfig
from bot.storage import _sqlite_rows as rows
from bot.storage._migrations import migrate
from bot.storage._models import (
    NewScan,
    Review,
    ScanRecord,
    ScanStatus,
    StoredVerdict,
)
from bot.storage._protocol import ScanNotFound
from bot.storage._sqlite_base import INSERT_EVENT, Writer, open_reader
from bot.storage._sqlite_queries import ModeratorQueries
from bot.verdict import ProviderName, Verdict

log = logging.getLogger(__name__)

_DEFAULT_RETENTION_DAYS: int = GuildConfig.model_fields["retention_days"].default

_INSERT_SCAN = f"""
INSERT INTO scans (
    guild_id, case_number, status, scan_trigger, provider, created_at, channel_id,
    message_id, author_id, attachment_id, requested_by, jump_url, filename, content_type,
    size, source_url
) VALUES (
    :guild_id,
    coalesce((SELECT last_case FROM guild_counters WHERE guild_id = :guild_id), 0) + 1,
    {rows.STATUS_CODES[ScanStatus.QUEUED]}, :trigger, :provider, :now, :channel_id,
    :message_id, :author_id, :attachment_id, :requested_by, :jump_url, :filename,
    :content_type, :size, :source_url
)
ON CONFLICT (guild_id, message_id, attachment_id, scan_trigger)
    WHERE message_id IS NOT NULL AND attachment_id IS NOT NULL
DO NOTHING
RETURNING {rows.SELECT_SCAN}
"""

_REVIEW = f"""
UPDATE scans SET review = ?, reviewed_by = ?, reviewed_at = ?, review_note = ?
WHERE guild_id = ? AND case_number = ?
RETURNING {rows.SELECT_SCAN}
"""

_MARK_DONE = f"""
UPDATE scans SET
    status = :status, finished_at = :now, label = :label,
    spoofed_probability = :probability, language = :language, speakers = :speakers,
    transcript = :transcript, detail = :detail, provider_job_id = :job_id,
    duration_s = coalesce(:duration, duration_s), reused_from = :reused_from,
    source_url = NULL, error_kind = NULL, error_message = NULL
WHERE id = :id
RETURNING {rows.SELECT_SCAN}
"""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SQLiteAuditLog(ModeratorQueries):
    """`AuditLog` over SQLite. Build it with `await SQLiteAuditLog.open(path)`."""

    @classmethod
    async def open(cls, path: Path, *, clock: Callable[[], datetime] = _utc_now) -> SQLiteAuditLog:
        """Open (creating if needed) the database at `path` and bring its schema up to date.

        `clock` supplies "now" for every timestamp; tests and the benchmark move it.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The writer first: it sets WAL mode and migrates before anything reads.
        writer = await Writer.open(path, setup=migrate)
        try:
            reader = await open_reader(path)
        except BaseException:
            await writer.close()
            raise
        return cls(reader, writer, clock)

    async def close(self) -> None:
        """Finish the queued writes, then close both connections."""
        try:
            await self._writer.close()
        finally:
            await self._reader.close()

    async def checkpoint(self) -> None:
        """Fold the write-ahead log back into the database file (benchmarks, backups)."""
        await self._writer.call(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))

    # --- lifecycle of one scan -----------------------------------------------------------

    async def create_scan(self, new: NewScan) -> tuple[ScanRecord, bool]:
        params = {
            "guild_id": new.guild_id,
            "trigger": rows.TRIGGER_CODES[new.trigger],
            "provider": rows.PROVIDER_CODES[new.provider],
            "now": self._now(),
            "channel_id": new.channel_id,
            "message_id": new.message_id,
            "author_id": new.author_id,
            "attachment_id": new.attachment_id,
            "requested_by": new.requested_by,
            "jump_url": rows.pack_jump_url(
                new.jump_url, new.guild_id, new.channel_id, new.message_id
            ),
            "filename": new.filename,
            "content_type": new.content_type,
            "size": new.size,
            "source_url": new.source_url,
        }
        inserted = await self._write_one(_INSERT_SCAN, params)
        if inserted is not None:
            record = rows.record_from_row(inserted)
            log.debug(
                "case opened: actor=%s target=guild %d case %d reason=%s scan of %r",
                new.requested_by or "auto",
                record.guild_id,
                record.case_number,
                new.trigger.value,
                new.filename,
            )
            return record, True
        existing = await self._fetch_one(
            f"SELECT {rows.SELECT_SCAN} FROM scans WHERE guild_id = ? AND message_id = ? "
            "AND attachment_id = ? AND scan_trigger = ?",
            (new.guild_id, new.message_id, new.attachment_id, params["trigger"]),
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
        # Index scans_reuse holds the first 8 bytes of the digest (a quarter of its size);
        # the full digest is compared in the row. Both conditions are spelled exactly as in
        # the index so that SQLite matches it: the expression, and `status = 2` unbound.
        packed = rows.pack_sha256(sha256)
        row = await self._fetch_one(
            f"SELECT id, {rows.VERDICT_COLUMNS} FROM scans "
            "WHERE substr(sha256, 1, 8) = ? AND provider = ? AND status = 2 AND sha256 = ? "
            "ORDER BY id DESC LIMIT 1",
            (packed[:8], rows.PROVIDER_CODES[provider], packed),
        )
        if row is None:
            return None
        return StoredVerdict(verdict=rows.verdict_from_row(row[1:]), scan_id=row[0])

    async def mark_submitted(self, scan_id: int, provider_job_id: str) -> None:
        await self._update_scan(
            scan_id,
            "status = ?, provider_job_id = ?, submitted_at = ?",
            (
                rows.STATUS_CODES[ScanStatus.SUBMITTED],
                rows.pack_job_id(provider_job_id),
                self._now(),
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
        status = ScanStatus.DONE if reused_from is None else ScanStatus.REUSED
        row = await self._write_one(
            _MARK_DONE,
            {
                "id": scan_id,
                "status": rows.STATUS_CODES[status],
                "now": self._now(),
                "label": rows.LABEL_CODES[verdict.label],
                "probability": verdict.spoofed_probability,
                "language": verdict.language,
                "speakers": verdict.speakers,
                # Privacy: with store_transcript off, no trace of the words reaches the disk.
                "transcript": (
                    rows.snippet(verdict.transcript, rows.TRANSCRIPT_SNIPPET_CHARS)
                    if store_transcript
                    else None
                ),
                "detail": rows.pack_detail(verdict),
                "job_id": rows.pack_job_id(verdict.provider_job_id),
                "duration": verdict.duration_s,
                "reused_from": reused_from,
            },
        )
        if row is None:
            raise ScanNotFound(f"scan {scan_id} does not exist")
        record = rows.record_from_row(row)
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
        row = await self._write_one(
            f"UPDATE scans SET status = ?, finished_at = ?, error_kind = ?, error_message = ?, "
            f"source_url = NULL WHERE id = ? RETURNING {rows.SELECT_SCAN}",
            (
                rows.STATUS_CODES[ScanStatus.FAILED],
                self._now(),
                error_kind,
                rows.snippet(error_message, rows.ERROR_MESSAGE_CHARS),
                scan_id,
            ),
        )
        if row is None:
            raise ScanNotFound(f"scan {scan_id} does not exist")
        record = rows.record_from_row(row)
        log.info(
            "case failed: actor=scan target=guild %d case %d reason=%s",
            record.guild_id,
            record.case_number,
            error_kind,
        )
        return record

    async def mark_replied(self, scan_id: int, reply_message_id: int) -> None:
        await self._update_scan(scan_id, "reply_message_id = ?", (reply_message_id,))

    # --- moderator writes -------------------------------------------------------------------

    async def review(
        self,
        guild_id: int,
        case_number: int,
        decision: Review,
        *,
        moderator_id: int,
        note: str | None = None,
    ) -> ScanRecord | None:
        update = (
            rows.REVIEW_CODES[decision],
            moderator_id,
            self._now(),
            rows.snippet(note, rows.REVIEW_NOTE_CHARS),
            guild_id,
            case_number,
        )
        event = self._event(
            guild_id,
            actor=str(moderator_id),
            action="review",
            target=f"case {case_number}",
            reason=decision.value,
            case_number=case_number,
        )

        def work(conn: sqlite3.Connection) -> sqlite3.Row | None:
            found = conn.execute(_REVIEW, update).fetchone()
            if found is not None:
                conn.execute(INSERT_EVENT, event)
            return found

        row = await self._writer.unit(work)
        if row is None:
            return None
        log.info(
            "case reviewed: actor=%d target=guild %d case %d reason=%s",
            moderator_id,
            guild_id,
            case_number,
            decision.value,
        )
        return rows.record_from_row(row)

    async def record_action(
        self, guild_id: int, case_number: int, *, action: str, actor_id: int, outcome: str
    ) -> None:
        await self._write_one(
            INSERT_EVENT,
            self._event(
                guild_id,
                actor=str(actor_id),
                action=action,
                target=f"case {case_number}",
                reason=outcome,
                case_number=case_number,
            ),
        )
        log.info(
            "moderator action: actor=%d target=guild %d case %d reason=%s: %s",
            actor_id,
            guild_id,
            case_number,
            action,
            outcome,
        )

    async def log_event(
        self, guild_id: int, *, actor: str, action: str, target: str, reason: str
    ) -> None:
        # Same convention as migration 2: a target "case <n>" links the event to the case.
        number = target.removeprefix("case ")
        case_number = int(number) if number != target and number.isdigit() else None
        await self._write_one(
            INSERT_EVENT,
            self._event(
                guild_id,
                actor=actor,
                action=action,
                target=target,
                reason=reason,
                case_number=case_number,
            ),
        )
        log.info(
            "audit event: actor=%s target=guild %d %s reason=%s: %s",
            actor,
            guild_id,
            target,
            action,
            reason,
        )

    # --- retention and deletion -----------------------------------------------------------

    async def forget_author(self, guild_id: int, author_id: int, *, actor_id: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            deleted = conn.execute(
                "DELETE FROM scans WHERE guild_id = ? AND author_id = ?", (guild_id, author_id)
            ).rowcount
            # Checks they asked for on other members' messages stay, without their id.
            conn.execute(
                "UPDATE scans SET requested_by = NULL WHERE guild_id = ? AND requested_by = ?",
                (guild_id, author_id),
            )
            conn.execute(
                INSERT_EVENT,
                self._event(
                    guild_id,
                    actor=str(actor_id),
                    action="forget",
                    target=f"member {author_id}",
                    reason=f"{deleted} cases deleted",
                ),
            )
            return deleted

        deleted = await self._writer.unit(work)
        log.info(
            "member forgotten: actor=%d target=guild %d member %d reason=%d cases deleted",
            actor_id,
            guild_id,
            author_id,
            deleted,
        )
        return deleted

    async def purge_before(self, guild_id: int, before: datetime, *, actor: str) -> int:
        return await self._purge(guild_id, before, actor, f"older than {before.isoformat()}")

    async def purge_expired(self, now: datetime) -> dict[int, int]:
        # Every guild that ever had a case has a counter row; settings are optional.
        retention = await self._reader.execute_fetchall(
            "SELECT c.guild_id, coalesce(s.retention_days, ?) FROM guild_counters AS c "
            "LEFT JOIN guild_settings AS s ON s.guild_id = c.guild_id",
            (_DEFAULT_RETENTION_DAYS,),
        )
        purged: dict[int, int] = {}
        for guild_id, days in retention:
            before = datetime.fromtimestamp(rows.to_epoch(now) - int(days) * 86400, UTC)
            count = await self._purge(guild_id, before, "retention", f"retention {days} days")
            if count:
                purged[guild_id] = count
        return purged

    # --- per-guild settings -------------------------------------------------------------

    async def save_guild_config(self, guild_id: int, config: GuildConfig) -> None:
        await self._write_one(
            "INSERT INTO guild_settings (guild_id, config, retention_days, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (guild_id) DO UPDATE SET "
            "config = excluded.config, retention_days = excluded.retention_days, "
            "updated_at = excluded.updated_at",
            (guild_id, config.model_dump_json(), config.retention_days, self._now()),
        )
        log.info("guild settings saved: actor=caller target=guild %d reason=update", guild_id)

    # --- helpers ------------------------------------------------------------------------

    async def _purge(self, guild_id: int, before: datetime, actor: str, reason: str) -> int:
        def work(conn: sqlite3.Connection) -> int:
            deleted = conn.execute(
                "DELETE FROM scans WHERE guild_id = ? AND created_at < ?",
                (guild_id, rows.to_epoch(before)),
            ).rowcount
            if deleted:
                conn.execute(
                    INSERT_EVENT,
                    self._event(
                        guild_id,
                        actor=actor,
                        action="purge",
                        target=f"{deleted} cases",
                        reason=reason,
                    ),
                )
            return deleted

        deleted = await self._writer.unit(work)
        if deleted:
            log.info(
                "cases purged: actor=%s target=guild %d reason=%s (%d cases)",
                actor,
                guild_id,
                reason,
                deleted,
            )
        return deleted

    async def _update_scan(self, scan_id: int, assignments: str, params: Iterable[Any]) -> None:
        # `assignments` is always a literal from this module; values travel as parameters.
        row = await self._write_one(
            f"UPDATE scans SET {assignments} WHERE id = ? RETURNING id", (*params, scan_id)
        )
        if row is None:
            raise ScanNotFound(f"scan {scan_id} does not exist")
