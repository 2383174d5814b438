"""The pacing layer in front of discord.py: no request into a full bucket, oldest first,
under the global limit, and a channel's buckets reported busy.

A plain discord.py client with `DiscordPacing` installed, against the Discord emulator with
Discord's rate limits on. The emulator's windows are shortened (same counts, a fifth of the
periods) so the tests stay short; the pacer's seeded counts are Discord's and its timing
comes from the headers, as against Discord.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import AsyncIterator

import discord
import pytest

from bot.discord_glue.pacing import DiscordPacing
from testkit.discord_emulator import DiscordEmulator
from testkit.discord_emulator.ratelimits import ROUTE_RULES, BucketRule, _Window, describe

SPEED_UP = 5


@pytest.fixture
def limited(emulator: DiscordEmulator) -> DiscordEmulator:
    limits = emulator.ratelimits
    limits.enabled = True
    limits.rules = {
        key: BucketRule(rule.name, rule.limit, rule.per_s / SPEED_UP)
        for key, rule in ROUTE_RULES.items()
    }
    return emulator


@pytest.fixture
async def client(limited: DiscordEmulator) -> AsyncIterator[tuple[discord.Client, DiscordPacing]]:
    pacing = DiscordPacing()
    bot = discord.Client(intents=discord.Intents.none(), http_trace=pacing.trace_config())
    pacing.install(bot.http)
    async with limited.run(bot):
        yield bot, pacing


def channel(bot: discord.Client, emu_channel: object) -> discord.PartialMessageable:
    return bot.get_partial_messageable(emu_channel.id)  # type: ignore[attr-defined]


async def _no_wait_acquire(self: discord.http.Ratelimit) -> None:
    self.remaining -= 1
    self.outgoing += 1


async def _no_wait_exit(self: discord.http.Ratelimit, *exc: object) -> None:
    self.outgoing -= 1


async def test_sends_to_one_channel_never_meet_a_full_bucket_whatever_discord_py_counts(
    limited: DiscordEmulator,
    client: tuple[discord.Client, DiscordPacing],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails if the pacer relies on discord.py's bucket accounting to hold sends back: with
    that accounting letting everything through (as it lets too many through when a window
    resets), 12 sends to one channel must still meet no full window."""
    monkeypatch.setattr(discord.http.Ratelimit, "acquire", _no_wait_acquire)
    monkeypatch.setattr(discord.http.Ratelimit, "__aexit__", _no_wait_exit)
    bot, pacing = client
    target = channel(bot, limited.text_channel)
    await asyncio.gather(*(target.send(f"m{i}") for i in range(12)))
    assert len(limited.messages_in(limited.text_channel)) == 12
    assert limited.ratelimits.sent_429s == 0 and pacing.received_429s == 0


async def test_reaction_add_and_remove_share_a_bucket_from_the_first_call(
    limited: DiscordEmulator, client: tuple[discord.Client, DiscordPacing]
) -> None:
    """Fails if adds and removes in one channel go out on two queues before a response
    has told which bucket they share."""
    bot, _ = client
    posted = await limited.send_message(limited.text_channel, limited.member, content="x")
    message = channel(bot, limited.text_channel).get_partial_message(posted.id)
    me = discord.Object(limited.bot_user.id)
    calls = [message.add_reaction(e) for e in "ABCD"] + [
        message.remove_reaction(e, me) for e in "EFGH"
    ]
    await asyncio.gather(*calls)
    assert limited.ratelimits.sent_429s == 0
    assert set(limited.reactions_on(posted)) == set("ABCD")


async def test_waiting_sends_leave_oldest_first(
    limited: DiscordEmulator, client: tuple[discord.Client, DiscordPacing]
) -> None:
    """Fails if sends waiting on a full bucket go out in arrival order instead of by the
    priority they were given (the id of the message they answer)."""
    bot, pacing = client
    target = channel(bot, limited.text_channel)

    async def send(answered: int) -> None:
        with pacing.priority(answered):
            await target.send(f"answer {answered}")

    # Five fill the window (the first alone: until Discord has answered once, the pacer
    # does not know what is left of the window); the rest wait, queued newest first.
    await target.send("fill")
    tasks = [asyncio.create_task(target.send("fill")) for _ in range(4)]
    for answered in (50, 40, 30, 20, 10):
        await asyncio.sleep(0.01)
        tasks.append(asyncio.create_task(send(answered)))
    await asyncio.gather(*tasks)
    order = [m.content for m in limited.messages_in(limited.text_channel)]
    assert order[:5] == ["fill"] * 5
    assert order[5:] == ["answer 10", "answer 20", "answer 30", "answer 40", "answer 50"]


async def test_global_pacer_keeps_under_the_global_limit(limited: DiscordEmulator) -> None:
    """Fails if the pacer lets more requests per second out than its global rate (here 10,
    against an emulator refusing the 13th in a second)."""
    limited.ratelimits.global_limit = 12
    pacing = DiscordPacing(global_rate=10)
    bot = discord.Client(intents=discord.Intents.none(), http_trace=pacing.trace_config())
    pacing.install(bot.http)
    async with limited.run(bot):
        await asyncio.sleep(1.1)  # the start-up requests' second is over
        started = time.monotonic()
        await asyncio.gather(*(bot.fetch_channel(limited.text_channel.id) for _ in range(25)))
        elapsed = time.monotonic() - started
    assert limited.ratelimits.count("global") == 0
    assert elapsed >= 1.0  # 25 at 10/s cannot take less than two full seconds' worth - 1


async def test_channel_is_busy_once_its_message_window_is_full(
    limited: DiscordEmulator, client: tuple[discord.Client, DiscordPacing]
) -> None:
    """Fails if a channel whose message bucket is used up is not reported busy, or if the
    busyness leaks to another channel or outlives the window."""
    bot, pacing = client
    assert not pacing.channel_busy(limited.text_channel.id)
    await asyncio.gather(*(channel(bot, limited.text_channel).send("x") for _ in range(5)))
    assert pacing.channel_busy(limited.text_channel.id)
    assert not pacing.channel_busy(limited.voice_channel.id)
    await asyncio.sleep(5.0 / SPEED_UP + 0.1)
    assert not pacing.channel_busy(limited.text_channel.id)


async def test_a_known_bucket_answered_without_headers_opens_again(
    emulator: DiscordEmulator,
) -> None:
    """Fails if a seeded bucket whose answers carry no X-RateLimit-* headers (rate limits off
    in the emulator, as behind a proxy that strips them) never starts a new window: the 🔍
    removal after its add waited forever."""
    pacing = DiscordPacing()
    bot = discord.Client(intents=discord.Intents.none(), http_trace=pacing.trace_config())
    pacing.install(bot.http)
    async with emulator.run(bot):
        sent = await channel(bot, emulator.text_channel).send("hello")
        await asyncio.wait_for(sent.add_reaction("\N{LEFT-POINTING MAGNIFYING GLASS}"), 5)
        await asyncio.wait_for(
            sent.remove_reaction("\N{LEFT-POINTING MAGNIFYING GLASS}", bot.user), 5
        )  # type: ignore[arg-type]
    assert not emulator.ratelimits.enabled


async def test_a_bucket_never_answered_sends_one_request_first(
    limited: DiscordEmulator,
    client: tuple[discord.Client, DiscordPacing],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails if a fresh pacer (a restarted bot) sends a whole seeded window at once into a
    channel whose window an earlier process already used: Discord would answer 429s.
    discord.py's own first-request caution is switched off: the pacer must not need it."""
    monkeypatch.setattr(discord.http.Ratelimit, "acquire", _no_wait_acquire)
    monkeypatch.setattr(discord.http.Ratelimit, "__aexit__", _no_wait_exit)
    bot, _ = client
    # The bot before its restart: three of the channel's five used in this window.
    rule = limited.ratelimits.rules[("POST", "/api/v10/channels/{channel}/messages")]
    limited.ratelimits._windows[(rule.name, str(limited.text_channel.id))] = _Window(
        time.monotonic(), used=3
    )
    target = channel(bot, limited.text_channel)
    await asyncio.gather(*(target.send(f"after {i}") for i in range(4)))
    assert limited.ratelimits.sent_429s == 0, describe(limited.ratelimits.events)


async def test_the_send_that_fills_a_window_returns_without_waiting_for_its_end(
    limited: DiscordEmulator, client: tuple[discord.Client, DiscordPacing]
) -> None:
    """Fails if the fifth message of a window (here a minute long) comes back only when the
    window ends, as discord.py's own bucket makes it: a reply would be recorded that late."""
    key = ("POST", "/api/v10/channels/{channel}/messages")
    limited.ratelimits.rules = {key: BucketRule("channel-message-create", 5, 60.0)}
    bot, _ = client
    target = channel(bot, limited.text_channel)
    await target.send("first")
    sends = asyncio.gather(*(target.send(f"m{i}") for i in range(4)))
    sent = await asyncio.wait_for(sends, timeout=30)
    assert len(sent) == 4
    assert limited.ratelimits.sent_429s == 0


async def test_message_room_counts_down_and_comes_back_with_the_window(
    limited: DiscordEmulator, client: tuple[discord.Client, DiscordPacing]
) -> None:
    """Fails if the room the reply queue reads is not what the channel's message bucket has
    left (one before Discord has answered, then the rest of five), or does not come back
    once the window has ended."""
    bot, pacing = client
    target = channel(bot, limited.text_channel)
    assert pacing.message_room(limited.text_channel.id) == 1
    await target.send("first")
    assert pacing.message_room(limited.text_channel.id) == 4
    await asyncio.gather(*(target.send("x") for _ in range(4)))
    assert pacing.message_room(limited.text_channel.id) == 0
    await asyncio.wait_for(pacing.wait_for_message_room(limited.text_channel.id), timeout=30)
    assert pacing.message_room(limited.text_channel.id) == 5
    assert pacing.message_room(limited.voice_channel.id) == 1


def _snowflake_ago(seconds: float) -> int:
    return discord.utils.time_snowflake(
        discord.utils.utcnow() - datetime.timedelta(seconds=seconds), high=True
    )


async def test_a_restart_waits_out_the_window_its_last_life_may_have_filled(
    limited: DiscordEmulator,
    client: tuple[discord.Client, DiscordPacing],
) -> None:
    """Fails if a restarted bot's first post lands in a channel window its previous life
    filled (all five used, the last of them under a second ago): even the lone first request
    would meet a 429. The channel's newest message, seen when the guild became available,
    says the window may still be running."""
    bot, pacing = client
    rule = limited.ratelimits.rules[("POST", "/api/v10/channels/{channel}/messages")]
    limited.ratelimits._windows[(rule.name, str(limited.text_channel.id))] = _Window(
        time.monotonic(), used=rule.limit
    )
    # Pacer time: the newest message is 4.5 s old, so the shut lasts ~1.5 s more, past the
    # emulator's shortened (1 s) window. Without the note, the first send met the full one.
    newest = _snowflake_ago(4.5)
    pacing.note_guild(limited.guild.id, [(limited.text_channel.id, newest)])
    assert pacing.message_room(limited.text_channel.id) == 0
    target = channel(bot, limited.text_channel)
    await asyncio.wait_for(asyncio.gather(*(target.send(f"after {i}") for i in range(3))), 30)
    assert limited.ratelimits.sent_429s == 0, describe(limited.ratelimits.events)


async def test_a_channel_quiet_for_a_window_is_not_held_after_a_start(
    limited: DiscordEmulator, client: tuple[discord.Client, DiscordPacing]
) -> None:
    """Fails if a channel whose newest message is older than a window is held at start (a
    restarted bot would answer its first message late for nothing), or if noting a guild a
    second time (it became available again) shuts a channel the process already uses."""
    _, pacing = client
    pacing.note_guild(limited.guild.id, [(limited.text_channel.id, _snowflake_ago(60))])
    assert pacing.message_room(limited.text_channel.id) == 1
    pacing.note_guild(limited.guild.id, [(limited.text_channel.id, _snowflake_ago(0))])
    assert pacing.message_room(limited.text_channel.id) == 1
