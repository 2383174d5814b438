"""Connections of the SQLite audit log: one writer thread (`_sqlite_writer`), one aiosqlite reader.

Writes go through `Writer`, which group-commits queued statements on a thread of its own
(see `bot.storage._sqlite_writer` for how and why). Reads: an aiosqlite connection of their
own. In WAL mode they never wait for the writer and always see a committed snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite

from bot.storage import _sqlite_rows as rows
from bot.storage._models import ScanRecord

if TYPE_CHECKING:
    from bot.storage._sqlite_writer import Writer

log = logging.getLogger(__name__)

Params = dict[str, Any] | tuple[Any, ...]

_BUSY_TIMEOUT_MS = 5000
#: Page cache per connection (negative = KiB): keeps the upper levels of every index and the
#: pages each guild is appending to resident at a million cases.
_CACHE_KIB = 32768
INSERT_EVENT = (
    "INSERT INTO events (guild_id, at, actor, action, target, reason, case_number) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def configure(conn: sqlite3.Connection) -> None:
    """Per-connection settings (journal_mode=WAL is persistent, set once by the writer)."""
    # In WAL mode NORMAL can lose the last commits on power loss, never consistency;
    # FULL would fsync at every scan step.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
    conn.execute("PRAGMA temp_store = MEMORY")


async def open_reader(path: Path) -> aiosqlite.Connection:
    """The read connection: autocommit, so each query sees the latest committed snapshot."""
    reader = await aiosqlite.connect(path, isolation_level=None)
    try:
        await reader.execute("PRAGMA query_only = ON")  # reads only, by construction
        await reader.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        await reader.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
    except BaseException:
        await reader.close()
        raise
    return reader


class SQLiteBase:
    """The connections and clock that the read and write halves of the audit log share."""

    def __init__(
        self, reader: aiosqlite.Connection, writer: Writer, clock: Callable[[], datetime]
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._clock = clock

    def _now(self) -> int:
        return rows.to_epoch(self._clock())

    async def _write_one(self, sql: str, params: Params) -> tuple[Any, ...] | None:
        """One write statement; its first RETURNING row, once committed."""
        result = await self._writer.statement(sql, params)
        return result[0] if result else None

    def _write_record(
        self, sql: str, params: Params, decode: Callable[[list[Any]], ScanRecord | None]
    ) -> asyncio.Future[ScanRecord | None]:
        """One write statement; `decode` of its RETURNING rows, built while it commits."""
        return self._writer.decoded(sql, params, decode)

    def _event(
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
        return (guild_id, self._now(), actor, action, target, reason, case_number)

    async def _fetch_one(self, sql: str, params: Params) -> sqlite3.Row | None:
        result = list(await self._reader.execute_fetchall(sql, params))
        return result[0] if result else None

    async def _count(self, sql: str, params: Params) -> int:
        row = await self._fetch_one(sql, params)
        return 0 if row is None else int(row[0])

    async def _records(self, sql: str, params: Params) -> list[ScanRecord]:
        return [
            rows.record_from_row(row) for row in await self._reader.execute_fetchall(sql, params)
        ]
