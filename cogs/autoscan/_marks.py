"""The 🔍 mark a message wears while it is scanned, and one lock per message for replies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import discord

from bot.client import Spoofwatch

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


async def unreact_once_on(
    reaction: asyncio.Task[bool], message: discord.Message, bot: Spoofwatch
) -> None:
    """Remove the 🔍 that `reaction` adds, once it is on (nothing if adding it failed)."""
    if await reaction:
        await unreact(message, bot)


async def clear_stale_reaction(message: discord.Message, bot: Spoofwatch) -> None:
    """Remove a 🔍 a process killed mid-scan left on the message."""
    if any(r.me and str(r.emoji) == SCANNING for r in message.reactions):
        await unreact(message, bot)
