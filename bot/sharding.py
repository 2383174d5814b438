"""Identifying shards within Discord's `max_concurrency`, in one process or across several.

Discord lets a bot start `max_concurrency` sessions per 5 s: shards whose `shard_id %
max_concurrency` (their rate-limit key) is the same identify at least 5 s apart, and an
IDENTIFY that comes too early is answered with op 9 Invalid Session (docs: gateway.mdx,
"Sharding" → "Max Concurrency"; "Get Gateway Bot" gives the number).

discord.py's own `before_identify_hook` sleeps 5 s before every IDENTIFY but a process's
first: it never breaks the limit inside one process but starts 16 shards of a large bot in
80 s where 5 would do, and two processes started together identify their first shards at
the same moment. Spoofwatch replaces it with one gate per rate-limit key, held for the
5-second window after each IDENTIFY: in memory for one process, and as a PostgreSQL advisory
lock when the processes share `SPOOFWATCH_DATABASE_URL`, so that every process of a
deployment waits its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

log = logging.getLogger(__name__)

#: Discord's window: `max_concurrency` IDENTIFYs per 5 s.
IDENTIFY_WINDOW_S = 5.0
#: Held a little longer than the window: the IDENTIFY leaves after the gate opens.
HOLD_S = IDENTIFY_WINDOW_S + 0.5
#: First key of the advisory locks (`pg_advisory_lock(int, int)`): "SWID" in ASCII.
ADVISORY_NAMESPACE = 0x53574944


class KeyLock(Protocol):
    def __call__(self, key: int) -> contextlib.AbstractAsyncContextManager[None]: ...


class IdentifyGate:
    """Lets one IDENTIFY per rate-limit key through per window.

    `wait(shard_id)` returns once this shard may identify; its key stays taken for `hold_s`
    after that, whatever happens to the IDENTIFY (a refused one counts against the limit too).
    """

    def __init__(
        self,
        max_concurrency: Callable[[], Awaitable[int]] | int,
        *,
        lock: KeyLock | None = None,
        hold_s: float = HOLD_S,
    ) -> None:
        self._max_concurrency = max_concurrency
        self._known: int | None = max_concurrency if isinstance(max_concurrency, int) else None
        self._lock = lock or MemoryKeyLock()
        self._hold_s = hold_s
        self._holding: set[asyncio.Task[None]] = set()
        self._asking = asyncio.Lock()

    async def concurrency(self) -> int:
        """Discord's max_concurrency, asked once (shards identifying together share it)."""
        async with self._asking:
            if self._known is None:
                source = self._max_concurrency
                assert not isinstance(source, int)
                self._known = max(1, await source())
        return self._known

    async def wait(self, shard_id: int | None) -> None:
        key = (shard_id or 0) % await self.concurrency()
        granted = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._hold(key, granted), name=f"identify-gate-{key}")
        self._holding.add(task)
        task.add_done_callback(self._holding.discard)
        await granted
        log.info("shard %s may identify (rate-limit key %d)", shard_id, key)

    async def _hold(self, key: int, granted: asyncio.Future[None]) -> None:
        try:
            async with self._lock(key):
                granted.set_result(None)
                await asyncio.sleep(self._hold_s)
        except asyncio.CancelledError:
            if not granted.done():  # closing while waiting: no IDENTIFY now
                granted.set_exception(ConnectionAbortedError("the bot is closing"))
            raise
        except Exception as exc:
            if not granted.done():
                granted.set_exception(exc)
            else:
                log.warning("identify gate for key %d failed", key, exc_info=True)

    async def close(self) -> None:
        for task in list(self._holding):
            task.cancel()
        await asyncio.gather(*self._holding, return_exceptions=True)


class MemoryKeyLock:
    """One `asyncio.Lock` per key: enough when this process runs every shard."""

    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def __call__(self, key: int) -> AsyncIterator[None]:
        async with self._locks.setdefault(key, asyncio.Lock()):
            yield


class PostgresKeyLock:
    """A transaction-scoped advisory lock per key, shared by every process on the database."""

    def __init__(self, pool: PoolLike) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def __call__(self, key: int) -> AsyncIterator[None]:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", ADVISORY_NAMESPACE, key)
            yield


class PoolLike(Protocol):
    def acquire(self) -> contextlib.AbstractAsyncContextManager[ConnectionLike]: ...


class ConnectionLike(Protocol):
    def transaction(self) -> contextlib.AbstractAsyncContextManager[object]: ...

    async def execute(self, query: str, *args: object) -> str: ...
