"""The moderators' queries on PostgreSQL (`CaseQueries`), always scoped to one guild.

The same statements as `_sqlite_queries` (and the same indexes, `_pg_migrations`), with
PostgreSQL's positional parameters; every statement has `guild_id = $1` as its first
condition.
"""

# S608: the only text interpolated into SQL here is module constants (the column list, the
# flag condition); every value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from bot.storage import _sqlite_rows as rows
from bot.storage._models import AuditEvent, AuditStats, GuildCases, ScanRecord
from bot.storage._pg_admin import read_guild_config
from bot.storage._pg_base import PostgresDatabase
from bot.storage._sqlite_queries import (
    DAY,
    EXPORT_BATCH,
    TOP_N,
    resolvers,
    stats_from_rows,
    without_second_opinions,
)
from bot.verdict import Label

_SPOOFED = rows.LABEL_CODES[Label.SPOOFED]
#: A probability at or above the guild's threshold, or label spoofed when there is no
#: probability: `bot.verdict.decide`, the rule of every reply and alert, in SQL
#: (bound as $3).
_FLAGGED = f"(spoofed_probability >= $3 OR (spoofed_probability IS NULL AND label = {_SPOOFED}))"
_EVENT_COLUMNS = "id, guild_id, at, actor, action, target, reason, case_number"


#: Events still owing their resolution (`unresolved_events`); index events_case per probe.
_UNRESOLVED = """
SELECT e.id, e.guild_id, e.at, e.actor, e.action, e.target, e.reason, e.case_number
FROM events AS e
WHERE e.action = $1 AND e.case_number IS NOT NULL
AND NOT EXISTS (
    SELECT 1 FROM events AS r WHERE r.guild_id = e.guild_id
    AND r.case_number = e.case_number AND r.id > e.id AND r.action = ANY($2::text[])
)"""
_CASE_DELETED = """
AND NOT EXISTS (
    SELECT 1 FROM scans AS s WHERE s.guild_id = e.guild_id AND s.case_number = e.case_number
)"""


class PostgresCaseQueries:
    """`CaseQueries` over PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def case(self, guild_id: int, case_number: int) -> ScanRecord | None:
        return await self._db.record(  # index scans_case
            f"SELECT {rows.SELECT_SCAN} FROM scans WHERE guild_id = $1 AND case_number = $2",
            guild_id,
            case_number,
        )

    async def second_opinions(self, guild_id: int, case_number: int) -> list[ScanRecord]:
        return await self._db.records(  # index scans_second_opinion
            f"SELECT {rows.SELECT_SCAN} FROM scans WHERE guild_id = $1 "
            "AND second_opinion_of = $2 ORDER BY case_number",
            guild_id,
            case_number,
        )

    async def recent(self, guild_id: int, *, limit: int, offset: int = 0) -> list[ScanRecord]:
        return await self._db.records(  # index scans_case, walked backwards
            f"SELECT {rows.SELECT_SCAN} FROM scans WHERE guild_id = $1 "
            "ORDER BY case_number DESC LIMIT $2 OFFSET $3",
            guild_id,
            limit,
            offset,
        )

    async def by_author(
        self, guild_id: int, author_id: int, *, limit: int, offset: int = 0
    ) -> list[ScanRecord]:
        return await self._db.records(  # index scans_author
            f"SELECT {rows.SELECT_SCAN} FROM scans WHERE guild_id = $1 AND author_id = $2 "
            "ORDER BY case_number DESC LIMIT $3 OFFSET $4",
            guild_id,
            author_id,
            limit,
            offset,
        )

    async def guilds(self) -> list[GuildCases]:
        found = await self._db.fetch_all(
            "SELECT guild_id, count(*) AS n, max(created_at) FROM scans "
            "GROUP BY guild_id ORDER BY n DESC, guild_id"
        )
        return [
            GuildCases(guild_id=g, cases=n, last_case_at=rows.from_epoch(at)) for g, n, at in found
        ]

    async def count_cases(self, guild_id: int, *, author_id: int | None = None) -> int:
        if author_id is None:
            return await self._db.count("SELECT count(*) FROM scans WHERE guild_id = $1", guild_id)
        return await self._db.count(
            "SELECT count(*) FROM scans WHERE guild_id = $1 AND author_id = $2",
            guild_id,
            author_id,
        )

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
        if fraud_type is not None:
            return await self._db.records(  # index scans_fraud_type
                f"SELECT {rows.SELECT_SCAN} FROM scans "
                f"WHERE guild_id = $1 AND fraud_type = $7 AND created_at >= $2 AND {_FLAGGED} "
                "AND ($6::text IS NULL OR generator = $6) "
                "ORDER BY created_at DESC, case_number DESC LIMIT $4 OFFSET $5",
                guild_id,
                rows.to_epoch(since),
                threshold,
                limit,
                offset,
                rows.generator_key(generator),
                rows.generator_key(fraud_type),
            )
        if generator is None:
            return await self._db.records(  # index scans_time
                f"SELECT {rows.SELECT_SCAN} FROM scans "
                f"WHERE guild_id = $1 AND created_at >= $2 AND {_FLAGGED} "
                "ORDER BY created_at DESC, case_number DESC LIMIT $4 OFFSET $5",
                guild_id,
                rows.to_epoch(since),
                threshold,
                limit,
                offset,
            )
        return await self._db.records(  # index scans_generator
            f"SELECT {rows.SELECT_SCAN} FROM scans "
            f"WHERE guild_id = $1 AND created_at >= $2 AND {_FLAGGED} AND generator = $6 "
            "ORDER BY created_at DESC, case_number DESC LIMIT $4 OFFSET $5",
            guild_id,
            rows.to_epoch(since),
            threshold,
            limit,
            offset,
            rows.generator_key(generator),
        )

    async def count_flagged(
        self,
        guild_id: int,
        *,
        since: datetime,
        threshold: float,
        generator: str | None = None,
        fraud_type: str | None = None,
    ) -> int:
        if fraud_type is not None:
            return await self._db.count(
                f"SELECT count(*) FROM scans "
                f"WHERE guild_id = $1 AND fraud_type = $5 AND created_at >= $2 AND {_FLAGGED} "
                "AND ($4::text IS NULL OR generator = $4)",
                guild_id,
                rows.to_epoch(since),
                threshold,
                rows.generator_key(generator),
                rows.generator_key(fraud_type),
            )
        if generator is None:
            return await self._db.count(
                f"SELECT count(*) FROM scans "
                f"WHERE guild_id = $1 AND created_at >= $2 AND {_FLAGGED}",
                guild_id,
                rows.to_epoch(since),
                threshold,
            )
        return await self._db.count(
            f"SELECT count(*) FROM scans "
            f"WHERE guild_id = $1 AND created_at >= $2 AND {_FLAGGED} AND generator = $4",
            guild_id,
            rows.to_epoch(since),
            threshold,
            rows.generator_key(generator),
        )

    async def stats(self, guild_id: int, *, since: datetime) -> AuditStats:
        """Counts since `since`, as in SQLite: whole UTC days from the daily rollups, the
        part of the first day from the cases themselves."""
        since_s = rows.to_epoch(since)
        first_day = -(-since_s // DAY)
        boundary = first_day * DAY
        threshold = (await read_guild_config(self._db, guild_id)).alert_threshold
        # $1 guild, $2 since, $3 first day, $4 boundary.
        per_day = await self._db.fetch_all(
            "SELECT day, outcome, sum(cases)::bigint FROM ("
            "  SELECT day, outcome, cases FROM daily_outcomes"
            "  WHERE guild_id = $1 AND day >= $3 AND cases > 0"
            "  UNION ALL"
            f" SELECT (created_at / {DAY})::int, scans_outcome(label, status), 1 FROM scans"
            "  WHERE guild_id = $1 AND created_at >= $2 AND created_at < $4"
            ") AS t GROUP BY day, outcome",
            guild_id,
            since_s,
            first_day,
            boundary,
        )
        channels = await self._db.fetch_all(
            "SELECT channel_id, sum(cases)::bigint AS n FROM ("
            "  SELECT channel_id, cases FROM daily_channels"
            "  WHERE guild_id = $1 AND day >= $3 AND cases > 0"
            "  UNION ALL"
            "  SELECT channel_id, 1 FROM scans"
            "  WHERE guild_id = $1 AND created_at >= $2 AND created_at < $4"
            "  AND channel_id IS NOT NULL"
            ") AS t GROUP BY channel_id ORDER BY n DESC, channel_id LIMIT $5",
            guild_id,
            since_s,
            first_day,
            boundary,
            TOP_N,
        )
        # As in SQLite: second opinions' flags come off a widened, index-only top list.
        doubled = await self._db.fetch_all(  # index scans_second_opinion
            "SELECT author_id, count(*) FROM scans "
            "WHERE guild_id = $1 AND second_opinion_of IS NOT NULL "
            f"AND created_at >= $2 AND {_FLAGGED} AND author_id IS NOT NULL "
            "GROUP BY author_id",
            guild_id,
            since_s,
            threshold,
        )
        authors = await self._db.fetch_all(  # index scans_time (author_id included)
            "SELECT author_id, count(*) AS n FROM scans "
            f"WHERE guild_id = $1 AND created_at >= $2 AND {_FLAGGED} "
            "AND author_id IS NOT NULL GROUP BY author_id ORDER BY n DESC, author_id LIMIT $4",
            guild_id,
            since_s,
            threshold,
            TOP_N + len(doubled),
        )
        authors = without_second_opinions(authors, doubled)
        errors = await self._db.fetch_all(  # index scans_errors
            "SELECT error_kind, count(*) AS n FROM scans "
            "WHERE guild_id = $1 AND created_at >= $2 AND error_kind IS NOT NULL "
            "GROUP BY error_kind ORDER BY n DESC, error_kind",
            guild_id,
            since_s,
        )
        reviews = await self._db.fetch_all(  # index scans_reviewed (reviewed cases only)
            "SELECT review, floor(spoofed_probability * 10)::int AS band, count(*) "
            "FROM scans WHERE guild_id = $1 AND created_at >= $2 "
            "AND review IS NOT NULL GROUP BY review, band",
            guild_id,
            since_s,
        )
        second = await self._db.count(  # index scans_second_opinion
            "SELECT count(*) FROM scans WHERE guild_id = $1 "
            "AND second_opinion_of IS NOT NULL AND created_at >= $2",
            guild_id,
            since_s,
        )
        return stats_from_rows(per_day, channels, authors, errors, reviews, second_opinions=second)

    async def export(self, guild_id: int, *, since: datetime) -> AsyncIterator[ScanRecord]:
        """Every case since `since`, oldest first, `EXPORT_BATCH` rows at a time (keyset)."""
        after: tuple[int, int] = (rows.to_epoch(since), -1)
        while True:
            records = await self._db.records(
                f"SELECT {rows.SELECT_SCAN} FROM scans "
                "WHERE guild_id = $1 AND (created_at, case_number) > ($2, $3) "
                "ORDER BY created_at, case_number LIMIT $4",
                guild_id,
                *after,
                EXPORT_BATCH,
            )
            for record in records:
                yield record
            if len(records) < EXPORT_BATCH:
                return
            last = records[-1]
            after = (rows.to_epoch(last.created_at), last.case_number)

    async def case_events(self, guild_id: int, case_number: int) -> list[AuditEvent]:
        return await self._events(
            f"SELECT {_EVENT_COLUMNS} FROM events "
            "WHERE guild_id = $1 AND case_number = $2 ORDER BY id",
            guild_id,
            case_number,
        )

    async def events(self, guild_id: int, *, limit: int, offset: int = 0) -> list[AuditEvent]:
        return await self._events(
            f"SELECT {_EVENT_COLUMNS} FROM events "
            "WHERE guild_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
            guild_id,
            limit,
            offset,
        )

    async def unresolved_events(
        self,
        action: str,
        resolved_by: str | Sequence[str],
        *,
        case_deleted: bool = False,
        limit: int = 100,
    ) -> list[AuditEvent]:
        return await self._events(
            _UNRESOLVED + (_CASE_DELETED if case_deleted else "") + " ORDER BY e.id LIMIT $3",
            action,
            resolvers(resolved_by),
            limit,
        )

    async def _events(self, sql: str, *params: Any) -> list[AuditEvent]:
        return [
            AuditEvent(
                id=row[0],
                guild_id=row[1],
                at=datetime.fromtimestamp(row[2], UTC),
                actor=row[3],
                action=row[4],
                target=row[5],
                reason=row[6],
                case_number=row[7],
            )
            for row in await self._db.fetch_all(sql, *params)
        ]
