"""The audit log's writer: one thread, one connection, group commits.

Writes: one `sqlite3` connection owned by one thread (the single writer SQLite wants). Write
requests queue up while the thread is busy and the next batch runs as ONE transaction (group
commit): with 64 scans in flight a batch is the 64 statements of their next step. A
caller's future resolves only after its batch committed, so nothing is acknowledged that a
crash could lose (short of power loss, with synchronous=NORMAL).

Where the time of a scan goes (create_scan + mark_done, 64 in flight, a million cases, 2
vCPUs, measured): the writer thread spends ~30-45 µs in the INSERT (five indexes, three
trigger writes), ~20-30 µs in the UPDATE and ~25 µs committing them (~6.5 WAL pages a
case); the event loop ~35-45 µs (two `ScanRecord`s, the segment detail, futures). These
add up rather than overlap: the writer thread needs the GIL between statements and waits
for it while the loop is busy, so the loop works while the thread idles and vice versa.
Hence what the design takes off that sum:
- a thread hop per statement (group commit), and a hop to the loop and back between
  batches (the writer thread drains the queue itself);
- the decoding of RETURNING rows, which the loop does while the batch commits (COMMIT
  holds no GIL), before the callers may see it (`Writer.decoded`);
- checkpoints, ~80-100 ms with every caller waiting each ~1,400 cases when the writer
  thread did them alone; a thread of their own does most of that work (`_Checkpointer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Params = dict[str, Any] | tuple[Any, ...]

_BUSY_TIMEOUT_MS = 5000
#: Page cache per connection (negative = KiB): keeps the upper levels of every index and the
#: pages each guild is appending to resident at a million cases.
_CACHE_KIB = 32768

#: Statements per group commit: bounds the wait of a unit (forget, purge) queued behind them.
_MAX_BATCH = 256
#: Batches this long have their RETURNING rows decoded while they commit (`Writer.decoded`).
_DECODE_DURING_COMMIT_FROM = 4
#: The WAL is folded back into the database by two threads (see `_Checkpointer`): the
#: checkpointer copies it every `_CHECKPOINT_INTERVAL_S` while writes go on, and once it is
#: `_WAL_RESTART_PAGES` long (~60 MiB, under the 64 MiB the file is cut back to) the writer
#: copies the rest, so that the WAL starts over. SQLite's own auto-checkpoint in the writer
#: stays as the fallback should the checkpointer thread be gone; at SQLite's default of
#: 1,000 pages it cost a third of the insert rate at a million cases (BENCHMARKS.md).
#: Passes every 50 ms and every 150 ms gave the same insert rate; the longer, the fewer
#: pages copied twice (~25 µs of system time a case at 50 ms, in a thread of its own).
_CHECKPOINT_INTERVAL_S = 0.1
_WAL_RESTART_PAGES = 15_000
_WAL_AUTOCHECKPOINT_PAGES = 2 * _WAL_RESTART_PAGES
_WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


def configure(conn: sqlite3.Connection) -> None:
    """Per-connection settings (journal_mode=WAL is persistent, set once by the writer)."""
    # In WAL mode NORMAL can lose the last commits on power loss, never consistency;
    # FULL would fsync at every scan step.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
    conn.execute("PRAGMA temp_store = MEMORY")


#: fdatasync where the platform has one (macOS has not); it flushes the file's size too.
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


class _Checkpointer:
    """Copies the WAL into the database, and syncs both, in a thread of its own.

    Only a checkpoint between two of the writer's transactions can copy the WAL to its very
    end, which is what lets SQLite start the WAL over from its beginning (a checkpointer on
    its own never catches up with a steady writer, and the WAL grows without bound). But in
    the writer thread alone, checkpointing 10,000 pages took ~80-100 ms of copying and
    fsyncs with every caller waiting, ~60 µs a case at 64 scans in flight. So this thread
    copies and syncs as the WAL grows (PASSIVE: it never blocks the writer), and once the
    WAL is `_WAL_RESTART_PAGES` long it asks the writer (`due`) for the last step: the pages
    of the last few milliseconds, ~10-30 ms with its fsyncs, after the writer has handed
    back the batch it just committed.
    """

    def __init__(self, path: Path, due: Callable[[], None]) -> None:
        self._path = path
        self._due = due
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="audit-log-checkpointer", daemon=True
        )
        self._thread.start()

    def poke(self) -> None:
        """Something was committed (from the writer thread; cheap when already poked)."""
        if not self._wake.is_set():
            self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None)
        except sqlite3.Error as exc:
            log.warning("audit log checkpointer not started: %s", exc)
            return
        try:
            configure(conn)
            # Any descriptor of the file will do for a sync; this one never writes.
            database = os.open(self._path, os.O_RDONLY)
            try:
                while self._wake.wait() and not self._stop.is_set():
                    self._wake.clear()
                    began = time.monotonic()
                    self._pass(conn, database)
                    # Spaced out: fewer pages copied and synced twice, and room for the
                    # writer's own checkpoint.
                    self._stop.wait(_CHECKPOINT_INTERVAL_S - (time.monotonic() - began))
            finally:
                os.close(database)
        except Exception:  # SQLite's auto-checkpoint in the writer carries on without it
            log.exception("audit log checkpointer stopped; the writer checkpoints alone")
        finally:
            conn.close()

    def _pass(self, conn: sqlite3.Connection, database: int) -> None:
        busy, wal_pages, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if busy:
            return
        if copied > 0:
            # SQLite syncs the database only when the WAL was copied to its end as it is
            # now, which under a steady writer is never so here; without this the writer's
            # checkpoint would have to flush everything this thread copied since. (The
            # counts say nothing of it: they are as of the start of the pass.)
            _datasync(database)
        if wal_pages >= _WAL_RESTART_PAGES:
            self._due()


#: `_Statement.decoded` until the loop has decoded the statement's rows.
_UNDECODED: Any = object()


@dataclass
class _Statement:
    sql: str
    params: Params
    future: asyncio.Future[Any] = field(repr=False)
    #: Turns the RETURNING rows into the caller's result (see `Writer.decoded`).
    decode: Callable[[list[Any]], Any] | None = field(default=None, repr=False)
    decoded: Any = field(default=_UNDECODED, repr=False)


@dataclass
class _Unit:
    """Work run alone, in one transaction (`in_transaction`) or outside any (checkpoints)."""

    work: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any] = field(repr=False)
    in_transaction: bool = True


class Writer:
    """The one path by which anything is written: a queue that the writer thread drains.

    The thread takes its next batch from the queue itself as soon as it finished the last
    one, and hands each batch's outcomes back to the event loop in one callback. The loop
    only wakes the thread when it was idle. (Handing every batch to the thread from the loop
    instead left the thread idle for ~0.3-0.7 ms per batch: the outcomes had to reach the
    loop, the loop had to get round to them, and the next batch had to reach the thread.)
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        thread: ThreadPoolExecutor,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._conn = conn
        self._thread = thread
        self._loop = loop
        # Appended to by the loop, taken from by the writer thread; `_serving` says whether
        # the thread is (or is about to be) draining it. Both change under `_lock`, so an
        # item is never appended just as the thread decides that the queue is empty.
        self._queue: deque[_Statement | _Unit] = deque()
        self._lock = threading.Lock()
        self._serving = False
        self._closed = False
        self._checkpointer: _Checkpointer | None = None
        self._checkpoint_due = False  # set by the checkpointer, cleared by the writer thread

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
                # The fallback; normally `_Checkpointer` keeps the WAL shorter than this.
                conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_AUTOCHECKPOINT_PAGES}")
                conn.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT_BYTES}")
                setup(conn)
            except BaseException:
                conn.close()
                raise
            return conn

        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(thread, connect)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        writer = cls(conn, thread, loop)
        writer._checkpointer = _Checkpointer(path, writer._request_checkpoint)
        return writer

    def statement(self, sql: str, params: Params) -> asyncio.Future[list[Any]]:
        """Run one statement in the next group commit; a future of its RETURNING rows.

        A plain function returning the future (not a coroutine): one frame fewer a write.
        """
        self._check_open()
        future: asyncio.Future[list[Any]] = self._loop.create_future()
        self._enqueue(_Statement(sql, params, future))
        return future

    def decoded(
        self, sql: str, params: Params, decode: Callable[[list[Any]], T]
    ) -> asyncio.Future[T]:
        """Like `statement`, but the future's result is `decode(rows)`.

        The event loop decodes while the batch commits: the writer thread holds no GIL
        during COMMIT, and the loop has nothing else to do then, so building the result
        (a `ScanRecord`, ~5 µs) no longer adds to the time of every scan. The future still
        resolves only once the batch committed; a failed commit discards what was decoded.
        """
        self._check_open()
        future: asyncio.Future[T] = self._loop.create_future()
        self._enqueue(_Statement(sql, params, future, decode))
        return future

    async def unit(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` alone in one transaction in the writer thread; its result."""
        self._check_open()
        return await self._submit(work, in_transaction=True)

    async def call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in the writer thread outside any transaction (checkpoints), after
        everything queued before it."""
        self._check_open()
        return await self._submit(work, in_transaction=False)

    async def close(self) -> None:
        """Write what is queued, then close; later writes raise instead of waiting forever."""
        if self._closed:
            return
        self._closed = True
        try:
            # Queued last, so it runs once everything before it is written. The last
            # connection to close checkpoints what is left and removes the WAL.
            await self._submit(self._close_in_thread, in_transaction=False)
        finally:
            self._thread.shutdown(wait=True)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the audit log is closed")

    async def _submit(self, work: Callable[[sqlite3.Connection], T], *, in_transaction: bool) -> T:
        future: asyncio.Future[T] = self._loop.create_future()
        self._enqueue(_Unit(work, future, in_transaction))
        return await future

    def _enqueue(self, item: _Statement | _Unit) -> None:
        """Queue `item`; start the thread draining the queue if it is idle."""
        with self._lock:
            self._queue.append(item)
            if self._serving:
                return
            self._serving = True
        try:
            self._thread.submit(self._serve)
        except RuntimeError as exc:  # the thread is gone (closing at interpreter shutdown)
            with self._lock:
                self._serving = False
                stranded = list(self._queue)
                self._queue.clear()
            for queued in stranded:
                _settle(queued.future, exc)

    def _decode_all(self, batch: list[_Statement], outcomes: list[Any]) -> None:
        """In the event loop, while `batch` commits: decode the rows of its statements."""
        for statement, outcome in zip(batch, outcomes, strict=True):
            if statement.decode is not None and not isinstance(outcome, BaseException):
                statement.decoded = _decode(statement.decode, outcome)

    def _settle_all(self, items: Sequence[_Statement | _Unit], outcomes: list[Any]) -> None:
        """In the event loop: resolve each caller's future with its outcome."""
        for item, outcome in zip(items, outcomes, strict=True):
            if (
                isinstance(item, _Statement)
                and item.decode is not None
                and not isinstance(outcome, BaseException)
            ):
                if item.decoded is _UNDECODED:  # not decoded during the commit after all
                    item.decoded = _decode(item.decode, outcome)
                _settle(item.future, item.decoded)
            else:
                _settle(item.future, outcome)

    # --- in the writer thread -------------------------------------------------------------

    def _serve(self) -> None:
        """Run batches until the queue is empty, handing each one's outcomes to the loop."""
        while True:
            with self._lock:
                if not self._queue:
                    self._serving = False
                    return
                taken = self._take()
            items: Sequence[_Statement | _Unit] = [taken] if isinstance(taken, _Unit) else taken
            try:
                if isinstance(taken, _Unit):
                    outcomes, wrote = self._run_unit(taken), taken.in_transaction
                else:
                    outcomes, wrote = self._run_batch(taken), True
            except Exception as exc:  # a bug here must not leave callers waiting forever
                log.exception("audit log writer failed")
                outcomes, wrote = [exc] * len(items), False
            # RuntimeError: the event loop is closed, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._settle_all, items, outcomes)
            if wrote:  # after the hand-back, so that the callers go on meanwhile
                self._after_commit()

    def _take(self) -> list[_Statement] | _Unit:
        """The unit at the head of the queue, or the statements there (under `_lock`)."""
        head = self._queue.popleft()
        if isinstance(head, _Unit):
            return head
        batch = [head]
        queue = self._queue
        while len(batch) < _MAX_BATCH and queue:
            following = queue[0]
            if not isinstance(following, _Statement):
                break
            batch.append(following)
            queue.popleft()
        return batch

    def _request_checkpoint(self) -> None:
        """From the checkpointer thread: the WAL is long enough to start over."""
        self._checkpoint_due = True

    def _after_commit(self) -> None:
        if self._checkpointer is None:
            return
        self._checkpointer.poke()
        if self._checkpoint_due:
            self._checkpoint_due = False
            try:
                # Copies what the checkpointer has not yet; the next BEGIN restarts the WAL.
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                log.warning("audit log checkpoint failed: %s", exc)

    def _close_in_thread(self, conn: sqlite3.Connection) -> None:
        # The checkpointer's connection first: the writer's must be the last to close.
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        conn.close()

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
        # A batch of a few statements commits quickly, and the loop would wake twice.
        if len(batch) >= _DECODE_DURING_COMMIT_FROM and any(s.decode for s in batch):
            # RuntimeError: the event loop is closed, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._decode_all, batch, outcomes)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.warning("audit log group commit of %d statements failed: %s", len(batch), exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [exc] * len(batch)
        return outcomes

    def _run_unit(self, unit: _Unit) -> list[Any]:
        """The unit's result (or `_Failed`), in one transaction unless it says otherwise."""
        conn = self._conn
        try:
            if not unit.in_transaction:
                return [unit.work(conn)]
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = unit.work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:  # handed to the caller, who owns the work
            return [_Failed(exc)]
        return [result]


@dataclass(frozen=True)
class _Failed:
    """A unit's exception, told apart from a unit that returns an exception object."""

    error: Exception


def _decode(decode: Callable[[list[Any]], Any], rows: list[Any]) -> Any:
    try:
        return decode(rows)
    except Exception as exc:  # the caller's to see, as if the statement had failed
        return _Failed(exc)


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():  # the caller was cancelled; the write happened (or not) regardless
        return
    if isinstance(outcome, _Failed):
        future.set_exception(outcome.error)
    elif isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
