"""The connection discipline shared by the SQLite audit log's read and write halves.

One aiosqlite connection serves the process; it runs statements one at a time, in the order
they are queued, on its own thread. All writes go through one `_Writer`, which

- keeps a transaction the property of one writer: on a shared connection any statement
  queued between another task's BEGIN and COMMIT would run inside that transaction;
- commits together the statements that queued up while the previous batch ran (group
  commit). A thread hop costs ~50 µs and a commit ~50 µs, each as much as a scan step's SQL,
  so under load one BEGIN/COMMIT per batch, with the batch's statements pipelined onto the
  thread, is what lets a single writer keep up with a burst of scans. A lone statement
  runs in autocommit mode, as before. Callers get their result only after the commit.

Reads do not queue behind writes; they may observe a batch that is about to commit.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import aiosqlite

from bot.storage import _sqlite_rows as rows
from bot.storage._models import ScanRecord

log = logging.getLogger(__name__)

Params = dict[str, Any] | tuple[Any, ...]
T = TypeVar("T")

#: A lone statement that lost a race with another process's commit ("busy snapshot") is
#: retried; busy_timeout does not cover that case.
_BUSY_RETRIES = 5
#: Statements per group commit; bounds how long a unit (forget, purge) may wait its turn.
_MAX_BATCH = 256


class SQLiteBase:
    def __init__(self, conn: aiosqlite.Connection, clock: Callable[[], datetime]) -> None:
        self._conn = conn
        self._clock = clock
        self._writer = _Writer(conn)

    def _now(self) -> int:
        return rows.to_epoch(self._clock())

    async def _write_one(self, sql: str, params: Params) -> sqlite3.Row | None:
        """One write statement; its first RETURNING row, once committed."""
        result = await self._writer.statement(sql, params)
        return result[0] if result else None

    async def _in_transaction(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` (several statements on `self._conn`) as one exclusive transaction."""
        return await self._writer.unit(work)

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
        result = list(await self._conn.execute_fetchall(sql, params))
        return result[0] if result else None

    async def _count(self, sql: str, params: Params) -> int:
        row = await self._fetch_one(sql, params)
        return 0 if row is None else int(row[0])

    async def _records(self, sql: str, params: Params) -> list[ScanRecord]:
        return [rows.record_from_row(row) for row in await self._conn.execute_fetchall(sql, params)]

    async def _close(self) -> None:
        await self._writer.drain()
        await self._conn.close()


INSERT_EVENT = (
    "INSERT INTO events (guild_id, at, actor, action, target, reason, case_number) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


@dataclass
class _Statement:
    sql: str
    params: Params
    future: asyncio.Future[list[sqlite3.Row]] = field(repr=False)


@dataclass
class _Unit:
    work: Callable[[], Awaitable[Any]]
    future: asyncio.Future[Any] = field(repr=False)


class _Writer:
    """The one path by which anything is written: a queue drained by a single task."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._queue: deque[_Statement | _Unit] = deque()
        self._drainer: asyncio.Task[None] | None = None

    async def statement(self, sql: str, params: Params) -> list[sqlite3.Row]:
        future: asyncio.Future[list[sqlite3.Row]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Statement(sql, params, future))
        self._wake()
        return await future

    async def unit(self, work: Callable[[], Awaitable[T]]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Unit(work, future))
        self._wake()
        return await future

    async def drain(self) -> None:
        """Wait until everything queued so far is written (before closing)."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.shield(self._drainer)

    def _wake(self) -> None:
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(
                self._drain(), name="audit-log-writer"
            )

    async def _drain(self) -> None:
        while self._queue:
            head = self._queue.popleft()
            if isinstance(head, _Unit):
                await self._run_unit(head)
                continue
            batch = [head]
            while (
                self._queue and isinstance(self._queue[0], _Statement) and len(batch) < _MAX_BATCH
            ):
                batch.append(self._queue.popleft())  # type: ignore[arg-type]
            if len(batch) == 1:
                await self._run_alone(head)
            else:
                await self._run_batch(batch)

    async def _run_alone(self, statement: _Statement) -> None:
        for attempt in range(_BUSY_RETRIES):
            try:
                result = list(await self._conn.execute_fetchall(statement.sql, statement.params))
            except sqlite3.OperationalError as exc:
                if (
                    exc.sqlite_errorcode == sqlite3.SQLITE_BUSY_SNAPSHOT
                    and attempt + 1 < _BUSY_RETRIES
                ):
                    continue
                _settle(statement.future, error=exc)
            except Exception as exc:  # handed to the caller, who owns the statement
                _settle(statement.future, error=exc)
            else:
                _settle(statement.future, result=result)
            return

    async def _run_batch(self, batch: list[_Statement]) -> None:
        # Queued back to back: the connection's thread runs them in this order without
        # waiting for the event loop in between. IMMEDIATE takes the write lock up front,
        # so another process cannot invalidate the batch halfway.
        outcomes = await asyncio.gather(
            self._conn.execute("BEGIN IMMEDIATE"),
            *(self._conn.execute_fetchall(s.sql, s.params) for s in batch),
            self._conn.execute("COMMIT"),
            return_exceptions=True,
        )
        began, results, committed = outcomes[0], outcomes[1:-1], outcomes[-1]
        if not isinstance(began, BaseException) and isinstance(committed, BaseException):
            # The statements ran but did not commit: nothing of the batch happened.
            if self._conn.in_transaction:
                await self._conn.execute("ROLLBACK")
            log.warning("audit log group commit of %d statements failed: %s", len(batch), committed)
            for statement in batch:
                _settle(statement.future, error=committed)
            return
        # Committed, or BEGIN failed and each statement ran (and committed) on its own.
        for statement, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                _settle(statement.future, error=result)
            else:
                _settle(statement.future, result=list(result))  # type: ignore[call-overload]

    async def _run_unit(self, unit: _Unit) -> None:
        try:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = await unit.work()
                await self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    await self._conn.execute("ROLLBACK")
                raise
        except Exception as exc:  # handed to the caller
            _settle(unit.future, error=exc)
        else:
            _settle(unit.future, result=result)


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None
) -> None:
    if future.done():  # the caller was cancelled; the write happened (or not) regardless
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
