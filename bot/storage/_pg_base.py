"""The PostgreSQL connection layer: an asyncpg pool, and one connection that LISTENs.

Every PostgreSQL repository (`postgres.py`, `_pg_queries.py`, `_pg_admin.py`) holds one
`PostgresDatabase`. Several Spoofwatch processes (shards) share one database; whatever must
hold across them is decided by the database itself (row locks, unique keys), never by
memory of one process. Settings changes are announced with NOTIFY on `SETTINGS_CHANNEL`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bot.storage import _pg_rows as pg_rows
from bot.storage import _sqlite_rows as rows
from bot.storage._models import ScanRecord
from bot.storage._pg_migrations import migrate

log = logging.getLogger(__name__)

#: NOTIFY channel: the payload is the id of a guild whose settings changed.
SETTINGS_CHANNEL = "spoofwatch_guild_settings"
#: Connections per process: scans in flight hold one for a statement at a time.
POOL_MIN, POOL_MAX = 2, 16

#: Durability is the server's: Spoofwatch leaves `synchronous_commit` as configured (on by
#: default: a scan step is acknowledged only once its commit is flushed to the WAL). Concurrent
#: scan steps share one statement and so one flush (`_pg_writer`), which is what keeps the
#: rate up, not a weaker commit. An operator may still set it in the URL
#: (`?synchronous_commit=...`), as any server setting.

INSERT_EVENT = (
    "INSERT INTO events (guild_id, at, actor, action, target, reason, case_number) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7)"
)


def utc_now() -> datetime:
    return datetime.now(UTC)


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """No reset between two uses of a pool connection.

    asyncpg's default sends a reset query (unlock, close cursors, unlisten, reset settings)
    on every release: a second round trip for every statement, half the cost of each scan
    step. Spoofwatch leaves no session state on a pool connection to reset: transactions
    end with their `async with`, advisory locks are transaction-scoped, LISTEN has its own
    connection, and the settings are the ones every pool connection starts with.
    """


class PostgresDatabase:
    """The pool, the listening connection and the clock every PostgreSQL repository shares."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        listener: asyncpg.Connection,
        clock: Callable[[], datetime],
    ) -> None:
        self.pool = pool
        self.listener = listener
        self.clock = clock
        self._settings_listeners: list[Callable[[int], None]] = []
        self._closing = False

    @classmethod
    async def open(
        cls, url: str, clock: Callable[[], datetime] = utc_now, *, pool_max: int = POOL_MAX
    ) -> PostgresDatabase:
        """Connect to `url`, migrate (once, whoever else starts now) and start listening."""
        # The migration has a connection of its own: it holds a session-level advisory lock.
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(
            url,
            min_size=min(POOL_MIN, pool_max),
            max_size=pool_max,
            reset=_keep_session,
        )
        try:
            listener = await asyncpg.connect(url)
        except BaseException:
            await pool.close()
            raise
        db = cls(pool, listener, clock)
        await listener.add_listener(SETTINGS_CHANNEL, db._on_settings_notice)
        listener.add_termination_listener(db._on_listener_lost)
        return db

    async def close(self) -> None:
        self._closing = True
        try:
            await self.listener.close()
        finally:
            await self.pool.close()

    def now(self) -> int:
        return rows.to_epoch(self.clock())

    def event(
        self,
        guild_id: int,
        *,
        actor: str,
        action: str,
        target: str,
        reason: str,
        case_number: int | None = None,
    ) -> tuple[Any, ...]:
        """Parameters for `INSERT_EVENT`, stamped now."""
        return (guild_id, self.now(), actor, action, target, reason, case_number)

    async def fetch_all(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return list(await conn.fetch(sql, *params))

    async def fetch_one(self, sql: str, *params: Any) -> asyncpg.Record | None:
        async with self.pool.acquire() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(sql, *params)
            return row

    async def count(self, sql: str, *params: Any) -> int:
        async with self.pool.acquire() as conn:
            return int(await conn.fetchval(sql, *params) or 0)

    async def execute(self, sql: str, *params: Any) -> str:
        async with self.pool.acquire() as conn:
            status: str = await conn.execute(sql, *params)
            return status

    async def records(self, sql: str, *params: Any) -> list[ScanRecord]:
        return [pg_rows.record_from_row(row) for row in await self.fetch_all(sql, *params)]

    async def record(self, sql: str, *params: Any) -> ScanRecord | None:
        row = await self.fetch_one(sql, *params)
        return None if row is None else pg_rows.record_from_row(row)

    # --- settings notifications -------------------------------------------------------------

    def subscribe_settings(self, listener: Callable[[int], None]) -> None:
        self._settings_listeners.append(listener)

    def _on_settings_notice(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            guild_id = int(str(payload))
        except ValueError:
            log.warning("ignored a settings notice with payload %r", payload)
            return
        for listener in self._settings_listeners:
            listener(guild_id)

    def _on_listener_lost(self, _conn: object) -> None:
        if self._closing:
            return
        # Changes made elsewhere from now on reach this process only at its next restart.
        log.error(
            "lost the connection that listens for guild settings changes: settings changed by "
            "other processes take effect here at the next restart"
        )
