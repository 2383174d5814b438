"""Connections of the SQLite audit log: one writer thread, one aiosqlite reader.

Writes: one `sqlite3` connection owned by one thread (the single writer SQLite wants). Write
requests queue up while the thread is busy and the next batch runs as ONE transaction in ONE
hop to the thread (group commit). Measured on the benchmark machine, a hop to a worker thread
costs ~50 µs and a WAL commit ~100 µs, several times the ~30 µs of SQL in a scan step; paying
both once per batch rather than once per statement is what lets a burst of scans through. A
caller's future resolves only after its batch committed, so nothing is acknowledged that a
crash could lose (short of power loss, with synchronous=NORMAL).

Reads: an aiosqlite connection of their own. In WAL mode they never wait for the writer and
always see a committed snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bot.storage import _sqlite_rows as rows
from bot.storage._models import ScanRecord

log = logging.getLogger(__name__)

Params = dict[str, Any] | tuple[Any, ...]
T = TypeVar("T")

#: Statements per group commit: bounds the wait of a unit (forget, purge) queued behind them.
_MAX_BATCH = 256
_BUSY_TIMEOUT_MS = 5000
#: Page cache per connection (negative = KiB): keeps the upper levels of every index and the
#: pages each guild is appending to resident at a million cases.
_CACHE_KIB = 32768
#: The writer folds the WAL back into the database after a commit that leaves it this many
#: pages long. SQLite's default, 1000 (4 MiB), checkpointed (and fsynced) so often at a
#: million cases that it cost a third of the insert rate (BENCHMARKS.md); 10,000 (40 MiB)
#: keeps the pauses rare. The file is cut back to 64 MiB after a burst.
_WAL_AUTOCHECKPOINT_PAGES = 10_000
_WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024

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


@dataclass
class _Statement:
    sql: str
    params: Params
    future: asyncio.Future[list[Any]] = field(repr=False)


@dataclass
class _Unit:
    work: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any] = field(repr=False)


class Writer:
    """The one path by which anything is written: a queue drained into the writer thread."""

    def __init__(self, conn: sqlite3.Connection, thread: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._thread = thread
        self._queue: deque[_Statement | _Unit] = deque()
        self._in_flight: asyncio.Future[Any] | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: Path, setup: Callable[[sqlite3.Connection], object]) -> Writer:
        """Connect in the writer thread (sqlite3 objects stay in the thread that made them)."""
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-log-writer")

        def connect() -> sqlite3.Connection:
            # isolation_level=None: no implicit transactions; the batches below say BEGIN.
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                configure(conn)
                # Checkpoints stay in this thread, right after a commit: only then can one
                # catch up with the writer, which lets SQLite restart the WAL from its
                # beginning. (A PASSIVE checkpointer in a thread of its own, tried, never
                # caught up under a steady write load, and the WAL grew without bound.)
                conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_AUTOCHECKPOINT_PAGES}")
                conn.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT_BYTES}")
                setup(conn)
            except BaseException:
                conn.close()
                raise
            return conn

        try:
            conn = await asyncio.get_running_loop().run_in_executor(thread, connect)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(conn, thread)

    async def statement(self, sql: str, params: Params) -> list[Any]:
        """Run one statement in the next group commit; its RETURNING rows."""
        self._check_open()
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Statement(sql, params, future))
        self._dispatch()
        return await future

    async def unit(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` alone in one transaction in the writer thread; its result."""
        self._check_open()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Unit(work, future))
        self._dispatch()
        return await future

    async def call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in the writer thread outside any transaction (checkpoints)."""
        await self.drain()
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, self._conn)

    async def drain(self) -> None:
        """Wait until everything queued so far is written."""
        while self._in_flight is not None:
            await asyncio.wait([self._in_flight])

    async def close(self) -> None:
        """Write what is queued, then close; later writes raise instead of waiting forever."""
        self._closed = True
        try:
            await self.drain()
        finally:
            loop = asyncio.get_running_loop()
            # The last connection to close checkpoints what is left and removes the WAL.
            await loop.run_in_executor(self._thread, self._conn.close)
            self._thread.shutdown(wait=True)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the audit log is closed")

    def _dispatch(self) -> None:
        """Hand the thread the next batch (or unit) now, if it is idle.

        Dispatching at once, rather than from a task scheduled behind every other ready
        callback, keeps the thread busy while the event loop is still resuming the callers
        of the previous batch: their next statements gather into the following batch.
        """
        if self._in_flight is not None or not self._queue:
            return
        head = self._queue.popleft()
        loop = asyncio.get_running_loop()
        if isinstance(head, _Unit):
            work: Callable[[], Any] = partial(self._run_unit, head.work)
            items: list[_Statement | _Unit] = [head]
        else:
            batch = [head]
            while len(batch) < _MAX_BATCH and self._queue:
                following = self._queue[0]
                if not isinstance(following, _Statement):
                    break
                batch.append(following)
                self._queue.popleft()
            work = partial(self._run_batch, batch)
            items = list(batch)
        try:
            self._in_flight = loop.run_in_executor(self._thread, work)
        except RuntimeError as exc:  # the thread is gone (closing at interpreter shutdown)
            for item in [*items, *self._queue]:
                _settle(item.future, exc)
            self._queue.clear()
            return
        self._in_flight.add_done_callback(partial(self._finished, items))

    def _finished(self, items: list[_Statement | _Unit], done: asyncio.Future[Any]) -> None:
        self._in_flight = None
        if done.cancelled() or done.exception() is not None:
            error = RuntimeError("the audit log writer stopped") if done.cancelled() else None
            for item in items:
                _settle(item.future, error or done.exception())
        elif isinstance(items[0], _Unit):
            _settle(items[0].future, done.result())
        else:
            for item, outcome in zip(items, done.result(), strict=True):
                _settle(item.future, outcome)
        self._dispatch()

    # --- in the writer thread -------------------------------------------------------------

    def _run_batch(self, batch: list[_Statement]) -> list[Any]:
        """Each statement's rows or exception; all exceptions if the commit failed."""
        conn = self._conn
        try:
            # IMMEDIATE takes the write lock now (waiting up to busy_timeout for another
            # process), so no other writer can invalidate the batch halfway.
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return [exc] * len(batch)
        outcomes: list[Any] = []
        for statement in batch:
            try:
                outcomes.append(conn.execute(statement.sql, statement.params).fetchall())
            except sqlite3.Error as exc:
                # SQLite undid this statement alone; the rest of the batch stands.
                outcomes.append(exc)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.warning("audit log group commit of %d statements failed: %s", len(batch), exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [exc] * len(batch)
        return outcomes

    def _run_unit(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:  # handed to the caller, who owns the work
            return _Failed(exc)
        return result


@dataclass(frozen=True)
class _Failed:
    """A unit's exception, told apart from a unit that returns an exception object."""

    error: Exception


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():  # the caller was cancelled; the write happened (or not) regardless
        return
    if isinstance(outcome, _Failed):
        future.set_exception(outcome.error)
    elif isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
