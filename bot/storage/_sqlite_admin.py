"""Moderators' and admins' writes on SQLite (`CaseAdmin`): reviews, moderator actions,
events, deletion (forget, purge, retention).

Each deletion runs as one transaction in the writer thread (`Writer.unit`), together with the
event that records it: a purge is never without its trace, nor a trace without its purge.
"""

# S608: the only text interpolated into SQL here is module constants (the column list); every
# value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from bot.guild_config import GuildConfig
from bot.storage import _sqlite_rows as rows
from bot.storage._models import Review, ScanRecord
from bot.storage._sqlite_base import INSERT_EVENT, SQLiteDatabase
from bot.verdict import ProviderName

log = logging.getLogger(__name__)

_DEFAULT_RETENTION_DAYS: int = GuildConfig.model_fields["retention_days"].default

_REVIEW = f"""
UPDATE scans SET review = ?, reviewed_by = ?, reviewed_at = ?, review_note = ?
WHERE guild_id = ? AND case_number = ?
RETURNING {rows.SELECT_SCAN}
"""
#: The same, only for a case nobody reviewed yet (two moderators deciding at once).
_FIRST_REVIEW = f"""
UPDATE scans SET review = ?, reviewed_by = ?, reviewed_at = ?, review_note = ?
WHERE guild_id = ? AND case_number = ? AND review IS NULL
RETURNING {rows.SELECT_SCAN}
"""


class SQLiteCaseAdmin:
    """`CaseAdmin` over SQLite."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

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
        update = (
            rows.REVIEW_CODES[decision],
            moderator_id,
            self._db.now(),
            rows.snippet(note, rows.REVIEW_NOTE_CHARS),
            guild_id,
            case_number,
        )
        event = self._db.event(
            guild_id,
            actor=str(moderator_id),
            action="review",
            target=f"case {case_number}",
            reason=decision.value,
            case_number=case_number,
        )

        def work(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
            found = conn.execute(_FIRST_REVIEW if first else _REVIEW, update).fetchone()
            if found is not None:
                conn.execute(INSERT_EVENT, event)
            return found

        row = await self._db.unit(work)
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
        await self._db.write_one(
            INSERT_EVENT,
            self._db.event(
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
        await self._db.write_one(
            INSERT_EVENT,
            self._db.event(
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
            _drop_empty_rollups(conn, guild_id)
            # Checks they asked for on other members' messages stay, without their id.
            conn.execute(
                "UPDATE scans SET requested_by = NULL WHERE guild_id = ? AND requested_by = ?",
                (guild_id, author_id),
            )
            conn.execute(
                INSERT_EVENT,
                self._db.event(
                    guild_id,
                    actor=str(actor_id),
                    action="forget",
                    target=f"member {author_id}",
                    reason=f"{deleted} cases deleted",
                ),
            )
            return deleted

        deleted = await self._db.unit(work)
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
        retention = await self._db.fetch_all(
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

    async def expired_jobs(
        self, now: datetime, providers: Collection[ProviderName]
    ) -> dict[int, list[tuple[ProviderName, str, int]]]:
        codes = {rows.PROVIDER_CODES[p] for p in providers}
        if not codes:
            return {}
        retention = await self._db.fetch_all(
            "SELECT c.guild_id, coalesce(s.retention_days, ?) FROM guild_counters AS c "
            "LEFT JOIN guild_settings AS s ON s.guild_id = c.guild_id",
            (_DEFAULT_RETENTION_DAYS,),
        )
        found: dict[int, list[tuple[ProviderName, str, int]]] = {}
        for guild_id, days in retention:
            before = rows.to_epoch(now) - int(days) * 86400
            listed = await self._db.fetch_all(
                "SELECT provider, provider_job_id, case_number FROM scans WHERE guild_id = ? "
                "AND created_at < ? AND provider_job_id IS NOT NULL",
                (guild_id, before),
            )
            jobs = [
                (rows.provider_from_code(code), job, case_number)
                for code, packed, case_number in listed
                if code in codes and (job := rows.unpack_job_id(packed))
            ]
            if jobs:
                found[guild_id] = jobs
        return found

    # --- helpers ------------------------------------------------------------------------

    async def _purge(self, guild_id: int, before: datetime, actor: str, reason: str) -> int:
        def work(conn: sqlite3.Connection) -> int:
            deleted = conn.execute(
                "DELETE FROM scans WHERE guild_id = ? AND created_at < ?",
                (guild_id, rows.to_epoch(before)),
            ).rowcount
            _drop_empty_rollups(conn, guild_id)
            if deleted:
                conn.execute(
                    INSERT_EVENT,
                    self._db.event(
                        guild_id,
                        actor=actor,
                        action="purge",
                        target=f"{deleted} cases",
                        reason=reason,
                    ),
                )
            return deleted

        deleted = await self._db.unit(work)
        if deleted:
            log.info(
                "cases purged: actor=%s target=guild %d reason=%s (%d cases)",
                actor,
                guild_id,
                reason,
                deleted,
            )
        return deleted


def _drop_empty_rollups(conn: sqlite3.Connection, guild_id: int) -> None:
    """Deletions count the daily rollups down (triggers); drop the days that reached zero."""
    conn.execute("DELETE FROM daily_outcomes WHERE guild_id = ? AND cases = 0", (guild_id,))
    conn.execute("DELETE FROM daily_channels WHERE guild_id = ? AND cases = 0", (guild_id,))
