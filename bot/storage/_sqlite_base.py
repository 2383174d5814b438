"""The SQLite connection layer: one writer thread (`_sqlite_writer`), one aiosqlite reader.

Every SQLite repository (`sqlite.py`, `_sqlite_queries.py`, `_sqlite_admin.py`) holds one
`SQLiteDatabase` and nothing else. Writes go through `Writer`, which group-commits queued
statements on a thread of its own (see `bot.storage._sqlite_writer` for how and why). Reads:
an aiosqlite connection of their own. In WAL mode they never wait for the writer and always
see a committed snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bot.storage import _sqlite_rows as rows
from bot.storage._migrations import migrate
from bot.storage._models import ScanRecord
from bot.storage._sqlite_writer import _BUSY_TIMEOUT_MS, _CACHE_KIB, Params, Writer

log = logging.getLogger(__name__)

T = TypeVar("T")

INSERT_EVENT = (
    "INSERT INTO events (guild_id, at, actor, action, target, reason, case_number) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def utc_now() -> datetime:
    return datetime.now(UTC)


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


class SQLiteDatabase:
    """The connections and clock that every SQLite repository shares."""

    def __init__(
        self, reader: aiosqlite.Connection, writer: Writer, clock: Callable[[], datetime]
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.clock = clock

    @classmethod
    async def open(cls, path: Path, clock: Callable[[], datetime] = utc_now) -> SQLiteDatabase:
        """Open (creating if needed) the database at `path` and bring its schema up to date."""
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
            await self.writer.close()
        finally:
            await self.reader.close()

    def now(self) -> int:
        return rows.to_epoch(self.clock())

    async def write_one(self, sql: str, params: Params) -> tuple[Any, ...] | None:
        """One write statement; its first RETURNING row, once committed."""
        result = await self.writer.statement(sql, params)
        return result[0] if result else None

    def write_record(
        self, sql: str, params: Params, decode: Callable[[list[Any]], ScanRecord | None]
    ) -> asyncio.Future[ScanRecord | None]:
        """One write statement; `decode` of its RETURNING rows, built while it commits."""
        return self.writer.decoded(sql, params, decode)

    async def unit(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` alone in one transaction in the writer thread."""
        return await self.writer.unit(work)

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

    async def fetch_all(self, sql: str, params: Params) -> list[Any]:
        return list(await self.reader.execute_fetchall(sql, params))

    async def fetch_one(self, sql: str, params: Params) -> sqlite3.Row | None:
        result = await self.fetch_all(sql, params)
        return result[0] if result else None

    async def count(self, sql: str, params: Params) -> int:
        row = await self.fetch_one(sql, params)
        return 0 if row is None else int(row[0])

    async def records(self, sql: str, params: Params) -> list[ScanRecord]:
        return [rows.record_from_row(row) for row in await self.fetch_all(sql, params)]
