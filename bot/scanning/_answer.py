"""The last stage, *answer*: one reply per message, recorded on its cases, whoever finished them.

A live scan, a restart's catch-up and a resumed scan may all finish the same message's cases;
whichever comes first answers. Under a per-message lock the cases are read again (another
task may have answered meanwhile), the outcomes nobody answered yet go to the `Answerer` (the
Discord side, which decides what is shown, renders and posts it, or finds a reply posted
before a crash), and the reply's id is recorded on every case it shows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from bot.errors import ScanInProgress
from bot.scanning._request import ScanOutcome
from bot.storage import ScanLifecycle


@dataclass(frozen=True, slots=True)
class Reply:
    """The message that answers some of a message's scans (posted now, or found)."""

    message_id: int
    #: The outcomes it shows: their cases (and second opinions) count as answered.
    shows: Sequence[ScanOutcome]


class Answerer(Protocol):
    """The Discord side of one message's answer."""

    def scanned(self) -> None:
        """Every scan of the message has ended and its answer is next (a "still working"
        sign can come off now, beside the answer)."""
        ...

    async def reply(self, unanswered: list[ScanOutcome]) -> Reply | None:
        """Post (or find) the reply showing some of `unanswered` (cases as stored now); None
        when nothing was posted (none to show, or Discord refused it)."""
        ...


class KeyedLocks:
    """One asyncio.Lock per key, dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: int) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Answers:
    """Answers each message once and records the reply on the cases it shows."""

    def __init__(self, audit: ScanLifecycle) -> None:
        self._audit = audit
        self._answering = KeyedLocks()

    async def answer(
        self, key: int, outcomes: Iterable[ScanOutcome], answerer: Answerer
    ) -> list[ScanOutcome]:
        """Answer message `key` with `outcomes` unless another task has; the outcomes with
        their cases as stored now (a case forgotten meanwhile is left out)."""
        answerer.scanned()
        async with self._answering.hold(key):
            current = await self._current(outcomes)
            unanswered = [o for o in current if o.record.reply_message_id is None]
            reply = await answerer.reply(unanswered) if unanswered else None
            if reply is not None:
                for outcome in reply.shows:
                    await self._audit.mark_replied(outcome.record.id, reply.message_id)
                    if outcome.second is not None:
                        await self._audit.mark_replied(outcome.second.record.id, reply.message_id)
        return current

    async def _current(self, outcomes: Iterable[ScanOutcome]) -> list[ScanOutcome]:
        current = []
        for outcome in outcomes:
            if isinstance(outcome.error, ScanInProgress):
                continue
            record = await self._audit.get_scan(outcome.record.id)
            if record is not None:  # else forgotten meanwhile (/spoofwatch forget)
                current.append(replace(outcome, record=record))
        return current
