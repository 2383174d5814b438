"""Moderators' and admins' writes on PostgreSQL (`CaseAdmin`), guild settings, cooldowns.

As in SQLite, each deletion is one transaction together with the event that records it.
A settings change is announced (NOTIFY, delivered at commit) to every process listening on
the database, this one included, so that their caches drop the guild's old settings at once.
"""

# S608: the only text interpolated into SQL here is module constants (the column list); every
# value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime

import asyncpg

from bot.guild_config import GuildConfig
from bot.storage import _pg_rows as pg_rows
from bot.storage import _sqlite_rows as rows
from bot.storage._models import Review, ScanRecord
from bot.storage._pg_base import INSERT_EVENT, SETTINGS_CHANNEL, PostgresDatabase
from bot.storage._protocol import SettingsListener
from bot.verdict import ProviderName

log = logging.getLogger(__name__)

_DEFAULT_RETENTION_DAYS: int = GuildConfig.model_fields["retention_days"].default

_REVIEW = f"""
UPDATE scans SET review = $1, reviewed_by = $2, reviewed_at = $3, review_note = $4
WHERE guild_id = $5 AND case_number = $6
RETURNING {rows.SELECT_SCAN}
"""
#: The same, only for a case nobody reviewed yet (two moderators deciding at once).
_FIRST_REVIEW = f"""
UPDATE scans SET review = $1, reviewed_by = $2, reviewed_at = $3, review_note = $4
WHERE guild_id = $5 AND case_number = $6 AND review IS NULL
RETURNING {rows.SELECT_SCAN}
"""


async def read_guild_config(db: PostgresDatabase, guild_id: int) -> GuildConfig:
    row = await db.fetch_one("SELECT config FROM guild_settings WHERE guild_id = $1", guild_id)
    return GuildConfig() if row is None else GuildConfig.model_validate_json(row[0])


class PostgresCaseAdmin:
    """`CaseAdmin` over PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
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
        event = self._db.event(
            guild_id,
            actor=str(moderator_id),
            action="review",
            target=f"case {case_number}",
            reason=decision.value,
            case_number=case_number,
        )
        async with self._db.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                _FIRST_REVIEW if first else _REVIEW,
                rows.REVIEW_CODES[decision],
                moderator_id,
                self._db.now(),
                rows.snippet(note, rows.REVIEW_NOTE_CHARS),
                guild_id,
                case_number,
            )
            if row is not None:
                await conn.execute(INSERT_EVENT, *event)
        if row is None:
            return None
        log.info(
            "case reviewed: actor=%d target=guild %d case %d reason=%s",
            moderator_id,
            guild_id,
            case_number,
            decision.value,
        )
        return pg_rows.record_from_row(row)

    async def record_action(
        self, guild_id: int, case_number: int, *, action: str, actor_id: int, outcome: str
    ) -> None:
        await self._db.execute(
            INSERT_EVENT,
            *self._db.event(
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
        number = target.removeprefix("case ")
        case_number = int(number) if number != target and number.isdigit() else None
        await self._db.execute(
            INSERT_EVENT,
            *self._db.event(
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

    async def forget_author(self, guild_id: int, author_id: int, *, actor_id: int) -> int:
        async with self._db.pool.acquire() as conn, conn.transaction():
            deleted = _rowcount(
                await conn.execute(
                    "DELETE FROM scans WHERE guild_id = $1 AND author_id = $2", guild_id, author_id
                )
            )
            await _drop_empty_rollups(conn, guild_id)
            await conn.execute(
                "UPDATE scans SET requested_by = NULL WHERE guild_id = $1 AND requested_by = $2",
                guild_id,
                author_id,
            )
            await conn.execute(
                INSERT_EVENT,
                *self._db.event(
                    guild_id,
                    actor=str(actor_id),
                    action="forget",
                    target=f"member {author_id}",
                    reason=f"{deleted} cases deleted",
                ),
            )
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
        retention = await self._db.fetch_all(
            "SELECT c.guild_id, coalesce(s.retention_days, $1) FROM guild_counters AS c "
            "LEFT JOIN guild_settings AS s ON s.guild_id = c.guild_id",
            _DEFAULT_RETENTION_DAYS,
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
        codes = sorted(rows.PROVIDER_CODES[p] for p in providers)
        if not codes:
            return {}
        retention = await self._db.fetch_all(
            "SELECT c.guild_id, coalesce(s.retention_days, $1) FROM guild_counters AS c "
            "LEFT JOIN guild_settings AS s ON s.guild_id = c.guild_id",
            _DEFAULT_RETENTION_DAYS,
        )
        found: dict[int, list[tuple[ProviderName, str, int]]] = {}
        for guild_id, days in retention:
            before = rows.to_epoch(now) - int(days) * 86400
            listed = await self._db.fetch_all(
                "SELECT provider, provider_job_id, case_number FROM scans WHERE guild_id = $1 "
                "AND created_at < $2 AND provider_job_id IS NOT NULL AND provider = ANY($3)",
                guild_id,
                before,
                codes,
            )
            jobs = [
                (rows.provider_from_code(code), job, case_number)
                for code, packed, case_number in listed
                if (job := rows.unpack_job_id(pg_rows.unpack(packed)))
            ]
            if jobs:
                found[guild_id] = jobs
        return found

    async def _purge(self, guild_id: int, before: datetime, actor: str, reason: str) -> int:
        async with self._db.pool.acquire() as conn, conn.transaction():
            deleted = _rowcount(
                await conn.execute(
                    "DELETE FROM scans WHERE guild_id = $1 AND created_at < $2",
                    guild_id,
                    rows.to_epoch(before),
                )
            )
            await _drop_empty_rollups(conn, guild_id)
            if deleted:
                await conn.execute(
                    INSERT_EVENT,
                    *self._db.event(
                        guild_id,
                        actor=actor,
                        action="purge",
                        target=f"{deleted} cases",
                        reason=reason,
                    ),
                )
        if deleted:
            log.info(
                "cases purged: actor=%s target=guild %d reason=%s (%d cases)",
                actor,
                guild_id,
                reason,
                deleted,
            )
        return deleted


class PostgresGuildSettings:
    """`GuildSettings` over PostgreSQL; changes reach every process through NOTIFY."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def guild_config(self, guild_id: int) -> GuildConfig:
        return await read_guild_config(self._db, guild_id)

    async def save_guild_config(self, guild_id: int, config: GuildConfig) -> None:
        async with self._db.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO guild_settings (guild_id, config, retention_days, updated_at) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (guild_id) DO UPDATE SET "
                "config = excluded.config, retention_days = excluded.retention_days, "
                "updated_at = excluded.updated_at",
                guild_id,
                config.model_dump_json(),
                config.retention_days,
                self._db.now(),
            )
            # Delivered when the transaction commits, to every listening process.
            await conn.execute("SELECT pg_notify($1, $2)", SETTINGS_CHANNEL, str(guild_id))
        log.info("guild settings saved: actor=caller target=guild %d reason=update", guild_id)

    def subscribe(self, listener: SettingsListener) -> None:
        self._db.subscribe_settings(listener)


class PostgresCooldowns:
    """`Cooldowns` over PostgreSQL: the uses of one key are counted and appended under an
    advisory lock on that key, so two processes never both take the last allowed use."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def hit(self, bucket: str, key: int, *, rate: int, per_s: float) -> float | None:
        now = self._db.clock().timestamp()
        async with self._db.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2::bigint::text, 0))",
                bucket,
                key,
            )
            await conn.execute(
                "DELETE FROM cooldown_uses WHERE bucket = $1 AND key = $2 AND at <= $3",
                bucket,
                key,
                now - per_s,
            )
            count, first = await conn.fetchrow(
                "SELECT count(*), min(at) FROM cooldown_uses WHERE bucket = $1 AND key = $2",
                bucket,
                key,
            )
            if count >= rate:
                return float(first) + per_s
            await conn.execute(
                "INSERT INTO cooldown_uses (bucket, key, at) VALUES ($1, $2, $3)", bucket, key, now
            )
            return None


def _rowcount(status: str) -> int:
    """The row count of a command tag such as "DELETE 3"."""
    return int(status.rsplit(" ", 1)[-1])


async def _drop_empty_rollups(conn: asyncpg.Connection, guild_id: int) -> None:
    """Deletions count the daily rollups down (triggers); drop the days that reached zero."""
    await conn.execute("DELETE FROM daily_outcomes WHERE guild_id = $1 AND cases = 0", guild_id)
    await conn.execute("DELETE FROM daily_channels WHERE guild_id = $1 AND cases = 0", guild_id)
