"""Group writes for the PostgreSQL scan lifecycle: concurrent calls of one step, one statement.

With many scans in flight, each step (accept, set the media, submit, finish, reply) was one
statement, one round trip and one commit per scan; on a small machine the client's and the
server's per-statement work, not the disk, bounded the rate (BENCHMARKS.md). A `Batched` step
instead runs the calls that arrive while its previous statement is out as ONE statement over
arrays (`unnest`), in one transaction: one round trip, one plan, one WAL flush for all of them.

- Durability is unchanged: a caller hears back only after the statement that carried its
  write committed (with the server's `synchronous_commit`, on by default).
- A call that finds nothing to batch with goes out at once (one task hop later), so a lone
  scan waits no longer than it did.
- A statement the server refuses wrote nothing (it ran in a transaction of its own), so its
  calls are retried one at a time: only the call whose values caused the refusal fails, and
  a unique violation reaches its caller exactly as from a lone statement. Anything else (a
  lost connection) fails every call of the batch, as it would have failed each of them.
- Two calls on the same key (the same scan; the same attachment) never share a statement:
  the later waits for the next one, so each statement touches a row at most once.
- Steps whose statements lock shared rows (a guild's case counter, the per-day rollups that
  triggers keep) share a `lane`: one such statement at a time per process, so two of them
  cannot deadlock each other. Across processes those rows are hardly shared (a guild's scans
  are written by its own shard); should two statements deadlock all the same, the server
  refuses one of them and its calls are retried one at a time, as above.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

import asyncpg

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

#: Calls per statement: bounds a statement's arrays and the time its row locks are held.
MAX_BATCH = 256

#: Errors after which nothing of the statement was written: the server refused it, or
#: asyncpg could not encode an argument and sent nothing.
_REFUSED = (asyncpg.PostgresError, asyncpg.DataError)


class Batched(Generic[ItemT, ResultT]):
    """Calls of one write, run together: `await step(item)` returns that item's result.

    `many` executes one statement for a sequence of items and returns their results in the
    same order; `one` the same write for a single item, in a statement of its own (a lone
    call's statement over arrays would cost the server more: planning the array form for one
    row takes longer than running the plain one). `key` names the row an item writes (None:
    no row to keep apart). Steps given the same `lane` never run statements at once.
    """

    def __init__(
        self,
        name: str,
        *,
        one: Callable[[ItemT], Awaitable[ResultT]],
        many: Callable[[Sequence[ItemT]], Awaitable[Sequence[ResultT]]],
        key: Callable[[ItemT], Hashable | None] = lambda _item: None,
        lane: asyncio.Lock | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.name = name
        self._lane = lane
        self._one = one
        self._many = many
        self._key = key
        self._max_batch = max_batch
        self._queue: deque[tuple[ItemT, asyncio.Future[ResultT]]] = deque()
        self._drainer: asyncio.Task[None] | None = None
        #: Statements run, the calls they carried, and statements refused as a whole (each
        #: then retried one call at a time): what a test or an operator's debugger can read.
        self.statements = 0
        self.items = 0
        self.refused = 0

    async def __call__(self, item: ItemT) -> ResultT:
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._drainer is None:
            # A task, not a direct call: calls made in this same turn of the loop (the
            # other scans in flight) join the first statement.
            self._drainer = asyncio.create_task(self._drain(), name=f"pg-{self.name}")
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                if batch:
                    await self._execute(batch)
        finally:
            self._drainer = None

    def _take(self) -> list[tuple[ItemT, asyncio.Future[ResultT]]]:
        """The next statement's calls, in arrival order, at most one per key."""
        batch: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        keys: set[Hashable] = set()
        later: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        while self._queue and len(batch) < self._max_batch:
            item, future = self._queue.popleft()
            if future.done():  # the caller was cancelled before its write went out
                continue
            key = self._key(item)
            if key is not None:
                if key in keys:
                    later.append((item, future))
                    continue
                keys.add(key)
            batch.append((item, future))
        self._queue.extendleft(reversed(later))
        return batch

    async def _execute(self, batch: list[tuple[ItemT, asyncio.Future[ResultT]]]) -> None:
        self.statements += 1
        self.items += len(batch)
        try:
            if self._lane is None:
                results = await self._statement(batch)
            else:
                async with self._lane:
                    results = await self._statement(batch)
        except _REFUSED as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            self.refused += 1
            log.info(
                "write batch refused, retrying its calls one by one: actor=storage "
                "target=%s x%d reason=%s",
                self.name,
                len(batch),
                type(exc).__name__,
            )
            for one in batch:
                await self._execute([one])
            return
        except BaseException as exc:
            for _, future in batch:
                _fail(future, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _statement(
        self, batch: list[tuple[ItemT, asyncio.Future[ResultT]]]
    ) -> Sequence[ResultT]:
        if len(batch) == 1:
            return [await self._one(batch[0][0])]
        return await self._many([item for item, _ in batch])


def _fail(future: asyncio.Future[ResultT], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(exc)
