"""The 🔍 mark a message wears while a slow scan runs, and one lock per message for replies.

On real Discord every request counts: one reaction call per 0.25 s per channel (adding and
removing share it) and 50 requests/s for the whole bot. A verdict that arrives within a second
or two needs no "still working" sign, so the mark goes on only when the scan is still
unanswered after `SPOOFWATCH_SEARCH_MARK_DELAY_S`, and not at all in a channel whose Discord
buckets are already busy (a raid): there it would only delay the replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import discord

from bot.discord_glue.client import Spoofwatch

log = logging.getLogger(__name__)

SCANNING = "\N{LEFT-POINTING MAGNIFYING GLASS}"


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


async def react(message: discord.Message) -> bool:
    try:
        await message.add_reaction(SCANNING)
    except discord.HTTPException:
        return False
    return True


async def unreact(message: discord.Message, bot: Spoofwatch) -> None:
    if bot.user is None:
        return
    try:
        await message.remove_reaction(SCANNING, bot.user)
    except discord.HTTPException:
        # The message may be gone, or reactions cleared by a moderator; nothing to undo.
        log.debug("could not remove the scanning reaction from %s", message.id)


def _never_busy() -> bool:
    return False


class SearchMark:
    """The 🔍 of one scan: on after `delay_s` unless answered or `busy()`; off once answered."""

    def __init__(
        self,
        message: discord.Message,
        bot: Spoofwatch,
        *,
        delay_s: float,
        busy: Callable[[], bool] = _never_busy,
    ) -> None:
        self._message = message
        self._bot = bot
        self._busy = busy
        #: Set once the add request is under way: from then on it must be undone.
        self._placing = False
        self._task = asyncio.create_task(self._put_on_later(delay_s), name="search-mark")

    async def _put_on_later(self, delay_s: float) -> bool:
        await asyncio.sleep(delay_s)
        if self._busy():
            log.debug("channel %s is busy: no 🔍 on %s", self._message.channel.id, self._message.id)
            return False
        self._placing = True
        return await react(self._message)

    @property
    def placing(self) -> bool:
        """Whether the mark was (or is being) put on."""
        return self._placing

    async def take_off(self) -> None:
        """The scan is answered (or failed): no mark from now on, and none left behind."""
        if not self._placing:
            # Still waiting out the delay (or decided against it): nothing was sent.
            self._task.cancel()
            return
        if await self._task:
            await unreact(self._message, self._bot)


async def clear_stale_reaction(message: discord.Message, bot: Spoofwatch) -> None:
    """Remove a 🔍 a process killed mid-scan left on the message."""
    if any(r.me and str(r.emoji) == SCANNING for r in message.reactions):
        await unreact(message, bot)
