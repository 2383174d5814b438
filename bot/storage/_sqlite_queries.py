"""The moderators' queries on SQLite (`CaseQueries`), always scoped to one guild.

Every statement here has `guild_id = ?` as its first condition (or reads by scan id, which
only the scan service holds), so no arguments can reach another guild's rows. The index each
query relies on is named next to it; `bench/audit_bench.py` times them at a million cases.
"""

# S608: the only text interpolated into SQL here is module constants (the column list, the
# flag and billing conditions); every value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from bot.storage import _sqlite_rows as rows
from bot.storage._models import (
    AuditEvent,
    AuditStats,
    GuildCases,
    Review,
    ReviewBand,
    ScanRecord,
)
from bot.storage._sqlite_base import SQLiteDatabase
from bot.storage._sqlite_rows import REVIEW_CODES
from bot.storage._sqlite_settings import read_guild_config
from bot.verdict import Label

#: Rows fetched per round trip by `export`: large enough to amortize the thread hop, small
#: enough that a big export never holds more than this many records in memory.
EXPORT_BATCH = 500
TOP_N = 5

_SPOOFED = rows.LABEL_CODES[Label.SPOOFED]
#: A probability at or above the guild's threshold, or label spoofed when there is no
#: probability: `bot.verdict.decide`, the rule of every reply and alert, in SQL
#: (bound as `:threshold`).
_FLAGGED = (
    f"(spoofed_probability >= :threshold OR (spoofed_probability IS NULL AND label = {_SPOOFED}))"
)
DAY = 86_400

#: What a case counts as in the daily rollups; the same expression as migration 3's triggers.
_OUTCOME = "coalesce(label, CASE status WHEN 3 THEN 10 ELSE 11 END)"
_OUTCOME_NAMES = {
    **{code: label.value for label, code in rows.LABEL_CODES.items()},
    10: "failed",
    11: "pending",
}


#: Events still owing their resolution (`unresolved_events`); index events_case per probe.
_UNRESOLVED = """
SELECT e.id, e.guild_id, e.at, e.actor, e.action, e.target, e.reason, e.case_number
FROM events AS e
WHERE e.action = ? AND e.case_number IS NOT NULL
AND NOT EXISTS (
    SELECT 1 FROM events AS r WHERE r.guild_id = e.guild_id
    AND r.case_number = e.case_number AND r.id > e.id
    AND r.action IN (SELECT value FROM json_each(?))
)"""


def resolvers(resolved_by: str | Sequence[str]) -> list[str]:
    """`unresolved_events`' resolving actions as a list (one action may be given alone)."""
    return [resolved_by] if isinstance(resolved_by, str) else list(resolved_by)


_CASE_DELETED = """
AND NOT EXISTS (
    SELECT 1 FROM scans AS s WHERE s.guild_id = e.guild_id AND s.case_number = e.case_number
)"""


class SQLiteCaseQueries:
    """`CaseQueries` over SQLite: guild-scoped reads on the reader connection."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    # --- single cases -------------------------------------------------------------------

    async def case(self, guild_id: int, case_number: int) -> ScanRecord | None:
        row = await self._db.fetch_one(  # index scans_case
            f"SELECT {rows.SELECT_SCAN} FROM scans WHERE guild_id = ? AND case_number = ?",
            (guild_id, case_number),
        )
        return None if row is None else rows.record_from_row(row)

    async def second_opinions(self, guild_id: int, case_number: int) -> list[ScanRecord]:
        return await self._db.records(  # index scans_second_opinion
            f"SELECT {rows.SELECT_SCAN} FROM scans WHERE guild_id = ? AND second_opinion_of = ? "
            "ORDER BY case_number",
            (guild_id, case_number),
        )

    # --- lists (paginated) ----------------------------------------------------------------

    async def recent(self, guild_id: int, *, limit: int, offset: int = 0) -> list[ScanRecord]:
        return await self._db.records(  # index scans_case, walked backwards
            f"SELECT {rows.SELECT_SCAN} FROM scans WHERE guild_id = ? "
            "ORDER BY case_number DESC LIMIT ? OFFSET ?",
            (guild_id, limit, offset),
        )

    async def by_author(
        self, guild_id: int, author_id: int, *, limit: int, offset: int = 0
    ) -> list[ScanRecord]:
        return await self._db.records(  # index scans_author
            f"SELECT {rows.SELECT_SCAN} FROM scans WHERE guild_id = ? AND author_id = ? "
            "ORDER BY case_number DESC LIMIT ? OFFSET ?",
            (guild_id, author_id, limit, offset),
        )

    async def guilds(self) -> list[GuildCases]:
        # The case counter table has a row per guild ever seen; the counts come from the
        # cases themselves (index scans_case: guild_id first).
        found = await self._db.fetch_all(
            "SELECT guild_id, count(*) AS n, max(created_at) FROM scans "
            "GROUP BY guild_id ORDER BY n DESC, guild_id",
            (),
        )
        return [
            GuildCases(guild_id=g, cases=n, last_case_at=rows.from_epoch(at)) for g, n, at in found
        ]

    async def count_cases(self, guild_id: int, *, author_id: int | None = None) -> int:
        if author_id is None:
            return await self._db.count(
                "SELECT count(*) FROM scans WHERE guild_id = ?", (guild_id,)
            )
        return await self._db.count(
            "SELECT count(*) FROM scans WHERE guild_id = ? AND author_id = ?",
            (guild_id, author_id),
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
        # Index scans_time: the window is a range, the flag is tested on index columns, and
        # the table is read only for the rows returned. With a generator, scans_generator;
        # with a fraud type, scans_fraud_type (the generator, if given too, is a filter).
        params = {
            "guild": guild_id,
            "since": rows.to_epoch(since),
            "threshold": threshold,
            "limit": limit,
            "offset": offset,
            "generator": rows.generator_key(generator),
            "fraud": rows.generator_key(fraud_type),
        }
        if fraud_type is not None:
            return await self._db.records(
                f"SELECT {rows.SELECT_SCAN} FROM scans "
                f"WHERE guild_id = :guild AND fraud_type = :fraud AND created_at >= :since "
                f"AND {_FLAGGED} AND (:generator IS NULL OR generator = :generator) "
                "ORDER BY created_at DESC, case_number DESC LIMIT :limit OFFSET :offset",
                params,
            )
        if generator is None:
            return await self._db.records(
                f"SELECT {rows.SELECT_SCAN} FROM scans "
                f"WHERE guild_id = :guild AND created_at >= :since AND {_FLAGGED} "
                "ORDER BY created_at DESC, case_number DESC LIMIT :limit OFFSET :offset",
                params,
            )
        return await self._db.records(
            f"SELECT {rows.SELECT_SCAN} FROM scans "
            f"WHERE guild_id = :guild AND created_at >= :since AND {_FLAGGED} "
            "AND generator = :generator "
            "ORDER BY created_at DESC, case_number DESC LIMIT :limit OFFSET :offset",
            params,
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
        params = {
            "guild": guild_id,
            "since": rows.to_epoch(since),
            "threshold": threshold,
            "generator": rows.generator_key(generator),
            "fraud": rows.generator_key(fraud_type),
        }
        if fraud_type is not None:
            return await self._db.count(
                f"SELECT count(*) FROM scans "
                f"WHERE guild_id = :guild AND fraud_type = :fraud AND created_at >= :since "
                f"AND {_FLAGGED} AND (:generator IS NULL OR generator = :generator)",
                params,
            )
        if generator is None:
            return await self._db.count(
                f"SELECT count(*) FROM scans "
                f"WHERE guild_id = :guild AND created_at >= :since AND {_FLAGGED}",
                params,
            )
        return await self._db.count(
            f"SELECT count(*) FROM scans "
            f"WHERE guild_id = :guild AND created_at >= :since AND {_FLAGGED} "
            "AND generator = :generator",
            params,
        )

    # --- aggregates and bulk -----------------------------------------------------------------

    async def stats(self, guild_id: int, *, since: datetime) -> AuditStats:
        """Counts since `since`; "flagged" authors use the guild's alert threshold.

        Whole UTC days come from the daily rollups (migration 3); the part of the first day
        after `since` is counted from the cases themselves, so the window is exact.
        """
        since_s = rows.to_epoch(since)
        first_day = -(-since_s // DAY)  # the first day that lies wholly in the window
        window = {
            "guild": guild_id,
            "since": since_s,
            "first_day": first_day,
            "boundary": first_day * DAY,
            "threshold": (await read_guild_config(self._db, guild_id)).alert_threshold,
            "top": TOP_N,
        }
        per_day = await self._db.fetch_all(
            "SELECT day, outcome, sum(cases) FROM ("
            "  SELECT day, outcome, cases FROM daily_outcomes"
            "  WHERE guild_id = :guild AND day >= :first_day AND cases > 0"
            "  UNION ALL"
            f" SELECT created_at / {DAY}, {_OUTCOME}, 1 FROM scans"
            "  WHERE guild_id = :guild AND created_at >= :since AND created_at < :boundary"
            ") GROUP BY day, outcome",
            window,
        )
        channels = await self._db.fetch_all(
            "SELECT channel_id, sum(cases) AS n FROM ("
            "  SELECT channel_id, cases FROM daily_channels"
            "  WHERE guild_id = :guild AND day >= :first_day AND cases > 0"
            "  UNION ALL"
            "  SELECT channel_id, 1 FROM scans"
            "  WHERE guild_id = :guild AND created_at >= :since AND created_at < :boundary"
            "  AND channel_id IS NOT NULL"
            ") GROUP BY channel_id ORDER BY n DESC, channel_id LIMIT :top",
            window,
        )
        # A file both providers flagged counts once: the second opinions' flags (few, from
        # index scans_second_opinion) come off a widened top list, so the main query stays
        # index-only on scans_time.
        doubled = await self._db.fetch_all(
            "SELECT author_id, count(*) FROM scans "
            "WHERE guild_id = :guild AND second_opinion_of IS NOT NULL "
            f"AND created_at >= :since AND {_FLAGGED} AND author_id IS NOT NULL "
            "GROUP BY author_id",
            window,
        )
        # Index scans_time holds everything this reads: no table lookups.
        authors = await self._db.fetch_all(
            "SELECT author_id, count(*) AS n FROM scans "
            f"WHERE guild_id = :guild AND created_at >= :since AND {_FLAGGED} "
            "AND author_id IS NOT NULL GROUP BY author_id ORDER BY n DESC, author_id LIMIT :wide",
            {**window, "wide": TOP_N + len(doubled)},
        )
        authors = without_second_opinions(authors, doubled)
        errors = await self._db.fetch_all(  # index scans_errors (failures only)
            "SELECT error_kind, count(*) AS n FROM scans "
            "WHERE guild_id = :guild AND created_at >= :since AND error_kind IS NOT NULL "
            "GROUP BY error_kind ORDER BY n DESC, error_kind",
            window,
        )
        reviews = await self._db.fetch_all(  # index scans_reviewed (reviewed cases only)
            "SELECT review, CAST(spoofed_probability * 10 AS INTEGER) AS band, count(*) "
            "FROM scans WHERE guild_id = :guild AND created_at >= :since "
            "AND review IS NOT NULL GROUP BY review, band",
            window,
        )
        second = await self._db.count(  # index scans_second_opinion
            "SELECT count(*) FROM scans WHERE guild_id = :guild "
            "AND second_opinion_of IS NOT NULL AND created_at >= :since",
            window,
        )
        return stats_from_rows(per_day, channels, authors, errors, reviews, second_opinions=second)

    async def export(self, guild_id: int, *, since: datetime) -> AsyncIterator[ScanRecord]:
        """Every case since `since`, oldest first, fetched `EXPORT_BATCH` rows at a time."""
        # Keyset pagination on (created_at, case_number), the order of index scans_time:
        # each batch starts where the last stopped instead of re-skipping an OFFSET.
        after: tuple[int, int] = (rows.to_epoch(since), -1)
        while True:
            batch = await self._db.fetch_all(
                f"SELECT {rows.SELECT_SCAN} FROM scans "
                "WHERE guild_id = ? AND (created_at, case_number) > (?, ?) "
                "ORDER BY created_at, case_number LIMIT ?",
                (guild_id, *after, EXPORT_BATCH),
            )
            records = [rows.record_from_row(row) for row in batch]
            for record in records:
                yield record
            if len(records) < EXPORT_BATCH:
                return
            last = records[-1]
            after = (rows.to_epoch(last.created_at), last.case_number)

    # --- events -----------------------------------------------------------------------------

    async def case_events(self, guild_id: int, case_number: int) -> list[AuditEvent]:
        return await self._events(
            "SELECT id, guild_id, at, actor, action, target, reason, case_number FROM events "
            "WHERE guild_id = ? AND case_number = ? ORDER BY id",
            (guild_id, case_number),
        )

    async def events(self, guild_id: int, *, limit: int, offset: int = 0) -> list[AuditEvent]:
        return await self._events(
            "SELECT id, guild_id, at, actor, action, target, reason, case_number FROM events "
            "WHERE guild_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
            (guild_id, limit, offset),
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
            _UNRESOLVED + (_CASE_DELETED if case_deleted else "") + " ORDER BY e.id LIMIT ?",
            (action, json.dumps(resolvers(resolved_by)), limit),
        )

    # --- helpers ------------------------------------------------------------------------

    async def _events(self, sql: str, params: tuple[Any, ...]) -> list[AuditEvent]:
        return [
            AuditEvent(
                id=id_,
                guild_id=guild_id,
                at=datetime.fromtimestamp(at, UTC),
                actor=actor,
                action=action,
                target=target,
                reason=reason,
                case_number=case_number,
            )
            for id_, guild_id, at, actor, action, target, reason, case_number in (
                await self._db.fetch_all(sql, params)
            )
        ]


def without_second_opinions(
    authors: Iterable[Sequence[Any]], doubled: Iterable[Sequence[Any]], top: int = TOP_N
) -> list[tuple[int, int]]:
    """The most flagged authors with each second opinion's flag taken off (a file counts
    once). `authors` must be the top `top + len(doubled)`: an author of the true top `top`
    is always among them, since only authors in `doubled` count more than they should."""
    less = {author: n for author, n in doubled}
    counted = [(author, n - less.get(author, 0)) for author, n in authors]
    return sorted((p for p in counted if p[1] > 0), key=lambda p: (-p[1], p[0]))[:top]


def stats_from_rows(
    per_day: Iterable[Sequence[Any]],
    channels: Iterable[Sequence[Any]],
    authors: Iterable[Sequence[Any]],
    errors: Iterable[Sequence[Any]],
    reviews: Iterable[Sequence[Any]] = (),
    *,
    second_opinions: int = 0,
) -> AuditStats:
    """`AuditStats` from the queries of `stats` (the same in both backends)."""
    by_label: dict[str, int] = {}
    by_day: dict[str, int] = {}
    for day, outcome, count in per_day:
        name = _OUTCOME_NAMES[outcome]
        by_label[name] = by_label.get(name, 0) + count
        date = datetime.fromtimestamp(day * DAY, UTC).date().isoformat()
        by_day[date] = by_day.get(date, 0) + count
    return AuditStats(
        total=sum(by_label.values()),
        by_label={name: n for name, n in by_label.items() if n},
        by_day=sorted((date, n) for date, n in by_day.items() if n),
        top_channels=[(channel, n) for channel, n in channels],
        top_flagged_authors=[(author, n) for author, n in authors],
        errors_by_kind={kind: n for kind, n in errors},
        reviews_by_band=review_bands(reviews),
        second_opinions=second_opinions,
    )


def review_bands(rows: Iterable[Sequence[Any]]) -> list[ReviewBand]:
    """(review code, tenth of the probability or None, count) rows → bands, lowest first.

    A probability of exactly 1 counts in the top band (90–100 %).
    """
    counts: dict[int | None, dict[str, int]] = {}
    for code, tenth, n in rows:
        low = None if tenth is None else min(int(tenth), 9) * 10
        decision = "confirmed" if code == REVIEW_CODES[Review.CONFIRMED] else "false_positive"
        band = counts.setdefault(low, {})
        band[decision] = band.get(decision, 0) + int(n)
    order = sorted(counts, key=lambda low: (low is None, low or 0))
    return [ReviewBand(low=low, **counts[low]) for low in order]
