"""The read side of the SQLite audit log: moderators' queries, always scoped to one guild.

Every statement here has `guild_id = ?` as its first condition (or reads by scan id, which
only the scan service holds), so no arguments can reach another guild's rows. The index each
query relies on is named next to it; `bench/audit_bench.py` times them at a million cases.
"""

# S608: the only text interpolated into SQL here is module constants (the column list, the
# flag and billing conditions); every value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from bot.guild_config import GuildConfig
from bot.storage import _sqlite_rows as rows
from bot.storage._models import AuditEvent, AuditStats, ScanRecord, ShardFilter
from bot.storage._sqlite_base import SQLiteBase
from bot.verdict import Label

#: Rows fetched per round trip by `export`: large enough to amortize the thread hop, small
#: enough that a big export never holds more than this many records in memory.
EXPORT_BATCH = 500
TOP_N = 5

_SPOOFED = rows.LABEL_CODES[Label.SPOOFED]
#: Label spoofed, or a probability at or above the guild's threshold (bound as `:threshold`).
_FLAGGED = f"(label = {_SPOOFED} OR spoofed_probability >= :threshold)"
#: Scans that reached the provider: submitted, done, or failed after submission. Reused and
#: refused-before-submission scans cost nothing.
_BILLED = "(status IN (1, 2) OR (status = 3 AND provider_job_id IS NOT NULL))"
DAY = 86_400
#: What a case counts as in the daily rollups; the same expression as migration 3's triggers.
_OUTCOME = "coalesce(label, CASE status WHEN 3 THEN 10 ELSE 11 END)"
_OUTCOME_NAMES = {
    **{code: label.value for label, code in rows.LABEL_CODES.items()},
    10: "failed",
    11: "pending",
}


class ModeratorQueries(SQLiteBase):
    """Guild-scoped reads (the read half of `SQLiteAuditLog`)."""

    # --- single cases -------------------------------------------------------------------

    async def get_scan(self, scan_id: int) -> ScanRecord | None:
        row = await self._fetch_one(
            f"SELECT {rows.SELECT_SCAN} FROM scans WHERE id = ?", (scan_id,)
        )
        return None if row is None else rows.record_from_row(row)

    async def unfinished_scans(self, shard: ShardFilter | None = None) -> list[ScanRecord]:
        # Without statistics the planner would rather walk the whole table in id order than
        # sort a handful of rows; INDEXED BY pins the partial index (and fails loudly if the
        # condition ever stops matching the index's WHERE clause).
        records = await self._records(
            f"SELECT {rows.SELECT_SCAN} FROM scans INDEXED BY scans_unfinished "
            "WHERE status < 2 ORDER BY id",
            (),
        )
        # A handful of rows: filtered here rather than with an expression no index holds.
        return records if shard is None else [r for r in records if shard.owns(r.guild_id)]

    async def case(self, guild_id: int, case_number: int) -> ScanRecord | None:
        row = await self._fetch_one(  # index scans_case
            f"SELECT {rows.SELECT_SCAN} FROM scans WHERE guild_id = ? AND case_number = ?",
            (guild_id, case_number),
        )
        return None if row is None else rows.record_from_row(row)

    # --- lists (paginated) ----------------------------------------------------------------

    async def recent(self, guild_id: int, *, limit: int, offset: int = 0) -> list[ScanRecord]:
        return await self._records(  # index scans_case, walked backwards
            f"SELECT {rows.SELECT_SCAN} FROM scans WHERE guild_id = ? "
            "ORDER BY case_number DESC LIMIT ? OFFSET ?",
            (guild_id, limit, offset),
        )

    async def by_author(
        self, guild_id: int, author_id: int, *, limit: int, offset: int = 0
    ) -> list[ScanRecord]:
        return await self._records(  # index scans_author
            f"SELECT {rows.SELECT_SCAN} FROM scans WHERE guild_id = ? AND author_id = ? "
            "ORDER BY case_number DESC LIMIT ? OFFSET ?",
            (guild_id, author_id, limit, offset),
        )

    async def count_cases(self, guild_id: int, *, author_id: int | None = None) -> int:
        if author_id is None:
            return await self._count("SELECT count(*) FROM scans WHERE guild_id = ?", (guild_id,))
        return await self._count(
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
    ) -> list[ScanRecord]:
        # Index scans_time: the window is a range, the flag is tested on index columns, and
        # the table is read only for the rows returned.
        return await self._records(
            f"SELECT {rows.SELECT_SCAN} FROM scans "
            f"WHERE guild_id = :guild AND created_at >= :since AND {_FLAGGED} "
            "ORDER BY created_at DESC, case_number DESC LIMIT :limit OFFSET :offset",
            {
                "guild": guild_id,
                "since": rows.to_epoch(since),
                "threshold": threshold,
                "limit": limit,
                "offset": offset,
            },
        )

    async def count_flagged(self, guild_id: int, *, since: datetime, threshold: float) -> int:
        return await self._count(
            f"SELECT count(*) FROM scans "
            f"WHERE guild_id = :guild AND created_at >= :since AND {_FLAGGED}",
            {"guild": guild_id, "since": rows.to_epoch(since), "threshold": threshold},
        )

    async def count_scans(self, guild_id: int, *, since: datetime) -> int:
        # Index scans_time; provider_job_id is read from the table only for failed rows.
        return await self._count(
            f"SELECT count(*) FROM scans WHERE guild_id = ? AND created_at >= ? AND {_BILLED}",
            (guild_id, rows.to_epoch(since)),
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
            "threshold": (await self.guild_config(guild_id)).alert_threshold,
            "top": TOP_N,
        }
        per_day = await self._reader.execute_fetchall(
            "SELECT day, outcome, sum(cases) FROM ("
            "  SELECT day, outcome, cases FROM daily_outcomes"
            "  WHERE guild_id = :guild AND day >= :first_day AND cases > 0"
            "  UNION ALL"
            f" SELECT created_at / {DAY}, {_OUTCOME}, 1 FROM scans"
            "  WHERE guild_id = :guild AND created_at >= :since AND created_at < :boundary"
            ") GROUP BY day, outcome",
            window,
        )
        channels = await self._reader.execute_fetchall(
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
        # Index scans_time holds everything this reads: no table lookups.
        authors = await self._reader.execute_fetchall(
            "SELECT author_id, count(*) AS n FROM scans "
            f"WHERE guild_id = :guild AND created_at >= :since AND {_FLAGGED} "
            "AND author_id IS NOT NULL GROUP BY author_id ORDER BY n DESC, author_id LIMIT :top",
            window,
        )
        errors = await self._reader.execute_fetchall(  # index scans_errors (failures only)
            "SELECT error_kind, count(*) AS n FROM scans "
            "WHERE guild_id = :guild AND created_at >= :since AND error_kind IS NOT NULL "
            "GROUP BY error_kind ORDER BY n DESC, error_kind",
            window,
        )
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
        )

    async def export(self, guild_id: int, *, since: datetime) -> AsyncIterator[ScanRecord]:
        """Every case since `since`, oldest first, fetched `EXPORT_BATCH` rows at a time."""
        # Keyset pagination on (created_at, case_number), the order of index scans_time:
        # each batch starts where the last stopped instead of re-skipping an OFFSET.
        after: tuple[int, int] = (rows.to_epoch(since), -1)
        while True:
            batch = await self._reader.execute_fetchall(
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

    # --- events and settings ----------------------------------------------------------------

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

    async def guild_config(self, guild_id: int) -> GuildConfig:
        row = await self._fetch_one(
            "SELECT config FROM guild_settings WHERE guild_id = ?", (guild_id,)
        )
        return GuildConfig() if row is None else GuildConfig.model_validate_json(row[0])

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
                await self._reader.execute_fetchall(sql, params)
            )
        ]
