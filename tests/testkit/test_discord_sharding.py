"""The Discord emulator's sharding, exercised by discord.py's own AutoShardedBot: guilds and
events go to the shard that owns them, GET /gateway/bot, the identify rate limit and 4011.

Rules from the Discord docs, gateway.mdx ("Sharding", "Max Concurrency", "Get Gateway Bot")
and opcodes-and-status-codes.mdx (4011 Sharding Required).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import discord
import pytest
from discord.ext import commands

from testkit.discord_emulator import DiscordEmulator
from testkit.discord_emulator.models import Guild
from tests.testkit.test_discord_emulator import record_messages


def sharded_bot(count: int, ids: list[int] | None = None) -> commands.AutoShardedBot:
    intents = discord.Intents.default()
    intents.message_content = True
    kwargs: dict[str, Any] = {"shard_count": count}
    if ids is not None:
        kwargs["shard_ids"] = ids
    return commands.AutoShardedBot(command_prefix="!", intents=intents, **kwargs)


def two_shard_world(emu: DiscordEmulator) -> tuple[Guild, Guild]:
    emu.gateway.shard_count = 2
    on_0 = emu.create_guild("Shard zero", shard=(0, 2))
    on_1 = emu.create_guild("Shard one", shard=(1, 2))
    for guild in (on_0, on_1):
        emu.create_text_channel(guild, "general")
        emu.add_member(guild, f"member-{guild.name}")
    return on_0, on_1


def channel_and_member(emu: DiscordEmulator, guild: Guild) -> tuple[Any, Any]:
    channel = next(c for c in emu.world.channels.values() if c.guild_id == guild.id)
    member = next(m for m in guild.members.values() if m.user.name.startswith("member-"))
    return channel, member


async def test_gateway_bot_gives_shards_and_session_start_limit(
    bare_emulator: DiscordEmulator,
) -> None:
    """Fails if GET /gateway/bot lacks the recommended shard count or max_concurrency."""
    emu = bare_emulator
    emu.gateway.shard_count, emu.gateway.max_concurrency = 4, 2
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{emu.url}/api/v10/gateway/bot", headers={"Authorization": f"Bot {emu.token}"}
        ) as response,
    ):
        body = await response.json()
    assert (body["shards"], body["session_start_limit"]["max_concurrency"]) == (4, 2)
    assert set(body["session_start_limit"]) == {
        "total",
        "remaining",
        "reset_after",
        "max_concurrency",
    }


async def test_each_shard_gets_only_its_guilds_and_their_messages(
    bare_emulator: DiscordEmulator,
) -> None:
    """Fails if a shard is sent another shard's guild or one of its messages."""
    emu = bare_emulator
    on_0, on_1 = two_shard_world(emu)
    emu.gateway.max_concurrency = 2
    first, second = sharded_bot(2, [0]), sharded_bot(2, [1])
    got_first, got_second = record_messages(first), record_messages(second)
    async with emu.run(first), emu.run(second):
        assert [g.id for g in first.guilds] == [on_0.id]
        assert [g.id for g in second.guilds] == [on_1.id]
        for guild in (on_0, on_1):
            channel, member = channel_and_member(emu, guild)
            await emu.send_message(channel, member, f"hello {guild.name}")
        await emu.wait_for(lambda: got_first and got_second)
        await emu.gateway.flush()

    assert [m.content for m in got_first] == ["hello Shard zero"]
    assert [m.content for m in got_second] == ["hello Shard one"]
    assert [s.shard for s in emu.gateway.sessions] == [(0, 2), (1, 2)]


async def test_an_identify_faster_than_max_concurrency_is_refused(
    bare_emulator: DiscordEmulator,
) -> None:
    """Fails if two IDENTIFYs with the same rate-limit key within 5 s are both accepted, or if
    the refusal is anything but op 9 Invalid Session."""
    emu = bare_emulator
    two_shard_world(emu)
    emu.gateway.enforce_identify_limit = True  # max_concurrency 1: shards 0 and 1 share key 0
    frames = [await raw_identify(emu, shard) for shard in ([0, 2], [1, 2])]
    assert frames[0]["t"] == "READY" and frames[1] == {"op": 9, "d": False}
    assert emu.gateway.refused_identifies == 1


async def test_different_rate_limit_keys_identify_together(
    bare_emulator: DiscordEmulator,
) -> None:
    """Fails if shards with different keys (shard_id % max_concurrency) are held apart."""
    emu = bare_emulator
    two_shard_world(emu)
    emu.gateway.enforce_identify_limit = True
    emu.gateway.max_concurrency = 2
    frames = [await raw_identify(emu, shard) for shard in ([0, 2], [1, 2])]
    assert [f["t"] for f in frames] == ["READY", "READY"]


async def test_discord_py_identifies_its_shards_one_window_apart(
    bare_emulator: DiscordEmulator,
) -> None:
    """Fails if discord.py's own pacing (5 s between a process's IDENTIFYs) breaks the limit.

    This is discord.py's behaviour, pinned because Spoofwatch's identify gate relies on the
    emulator enforcing the limit: the second shard waits a whole window (this test takes 5 s).
    """
    emu = bare_emulator
    two_shard_world(emu)
    emu.gateway.enforce_identify_limit = True
    bot = sharded_bot(2)
    async with emu.run(bot, timeout=30):
        assert len(bot.guilds) == 2
    assert (emu.gateway.identifies, emu.gateway.refused_identifies) == (2, 0)


async def test_an_unsharded_bot_over_the_guild_limit_is_closed_4011(
    bare_emulator: DiscordEmulator,
) -> None:
    """Fails if a session that would hold too many guilds is accepted instead of 4011."""
    emu = bare_emulator
    two_shard_world(emu)
    emu.gateway.shard_count = 1
    emu.gateway.max_guilds_per_shard = 1
    intents = discord.Intents.default()
    bot = commands.Bot(command_prefix="!", intents=intents)
    with pytest.raises(discord.ConnectionClosed) as raised:
        async with emu.run(bot):
            pass
    assert raised.value.code == 4011


async def test_auto_sharding_follows_the_recommended_count(bare_emulator: DiscordEmulator) -> None:
    """Fails if AutoShardedBot without a count does not take GET /gateway/bot's `shards` (and
    so would hit 4011 once the guilds outgrow one shard)."""
    emu = bare_emulator
    two_shard_world(emu)
    emu.gateway.max_guilds_per_shard = 1
    emu.gateway.max_concurrency = 2
    bot = commands.AutoShardedBot(command_prefix="!", intents=discord.Intents.default())
    async with emu.run(bot):
        assert (bot.shard_count, len(bot.guilds)) == (2, 2)


async def raw_identify(emu: DiscordEmulator, shard: list[int]) -> dict[str, Any]:
    """Open a gateway socket, IDENTIFY as `shard` and return the first answer."""
    async with aiohttp.ClientSession() as session, session.ws_connect(emu.gateway_url) as ws:
        hello = json.loads((await ws.receive()).data)
        assert hello["op"] == 10
        identify = {
            "token": emu.token,
            "intents": int(discord.Intents.default().value),
            "shard": shard,
            "properties": {"os": "linux", "browser": "test", "device": "test"},
        }
        await ws.send_str(json.dumps({"op": 2, "d": identify}))
        answer = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
        await ws.close()
        return answer  # type: ignore[no-any-return]
