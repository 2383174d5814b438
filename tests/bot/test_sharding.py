"""The identify gate (`bot.sharding`): one IDENTIFY per rate-limit key per window."""

from __future__ import annotations

import asyncio

import pytest

from bot.sharding import IdentifyGate


async def test_same_key_waits_and_another_key_does_not() -> None:
    """Fails if two shards with the same key (shard_id % max_concurrency) may identify inside
    one window, or if a shard with another key is held back by them."""
    gate = IdentifyGate(2, hold_s=3600)  # the window never ends by itself in this test
    try:
        await gate.wait(0)
        same_key = asyncio.create_task(gate.wait(2))
        await asyncio.wait_for(gate.wait(1), 10)  # key 1: straight through
        for _ in range(20):
            await asyncio.sleep(0)
        assert not same_key.done()
    finally:
        await gate.close()
    with pytest.raises(ConnectionAbortedError):
        await same_key  # closing ends the wait: no IDENTIFY while the bot stops


async def test_max_concurrency_is_asked_once() -> None:
    """Fails if every IDENTIFY asks Discord for max_concurrency again (one GET /gateway/bot
    per shard would be wasted calls) or a zero from Discord divides by zero."""
    asked = 0

    async def ask() -> int:
        nonlocal asked
        asked += 1
        return 0

    gate = IdentifyGate(ask, hold_s=0)
    try:
        for shard in range(3):
            await asyncio.wait_for(gate.wait(shard), 10)
    finally:
        await gate.close()
    assert (asked, await gate.concurrency()) == (1, 1)
