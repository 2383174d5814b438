"""Automatic scans under Discord's rate limits: what a scan costs in requests, when the 🔍
goes on, and how a raid in one channel is answered.

The real bot against the Discord emulator with Discord's limits on (5 messages per 5 s and
one reaction call per 0.25 s per channel, 50 requests/s in all).
"""

from __future__ import annotations

import asyncio

import discord

from testkit.discord_emulator.emulator import DiscordEmulator
from testkit.discord_emulator.models import Message
from testkit.discord_emulator.ratelimits import ROUTE_RULES, BucketRule, describe
from testkit.e2e import MakeSpoofwatch
from testkit.media_factory import MediaFiles
from testkit.standins.resemble import metrics

SCANNING = "\N{LEFT-POINTING MAGNIFYING GLASS}"
SPEED_UP = 5


def _calls_since(emu: DiscordEmulator, start: int) -> list[str]:
    return [f"{r.method} {r.route or r.path}" for r in emu.requests[start:]]


async def test_quick_scan_costs_one_request_the_reply(
    make_spoofwatch: MakeSpoofwatch, media: MediaFiles, emulator: DiscordEmulator
) -> None:
    """Fails if a scan answered within the mark delay costs anything but its reply (a 🔍
    added and removed would be two more requests)."""
    emulator.ratelimits.enabled = True
    async with make_spoofwatch(search_mark_delay_s=2.0) as sw:
        start = len(emulator.requests)
        message = await sw.post(media.voice_ogg, voice=True)
        await sw.reply_to(message)
    assert _calls_since(emulator, start) == ["POST /api/v10/channels/{channel}/messages"]
    assert message.reaction_history == []
    assert emulator.ratelimits.sent_429s == 0


async def test_slow_scan_gets_the_mark_and_loses_it(
    make_spoofwatch: MakeSpoofwatch, media: MediaFiles, emulator: DiscordEmulator
) -> None:
    """Fails if a scan still unanswered after the delay gets no 🔍, or keeps it after the reply."""
    emulator.ratelimits.enabled = True
    async with make_spoofwatch(search_mark_delay_s=0.1) as sw:
        sw.resemble.processing_s = 1.0
        message = await sw.post(media.voice_ogg, voice=True)
        await sw.reply_to(message)
        await emulator.wait_for(lambda: len(message.reaction_history) == 2)
    history = [(e.emoji, e.action) for e in message.reaction_history]
    assert history == [(SCANNING, "add"), (SCANNING, "remove")]
    assert emulator.ratelimits.sent_429s == 0


def _speed_up(emulator: DiscordEmulator) -> None:
    """Discord's limits with a fifth of the periods (same counts), to keep tests short."""
    limits = emulator.ratelimits
    limits.enabled = True
    limits.rules = {
        key: BucketRule(rule.name, rule.limit, rule.per_s / SPEED_UP)
        for key, rule in ROUTE_RULES.items()
    }


async def test_no_mark_in_a_channel_whose_message_bucket_is_full(
    make_spoofwatch: MakeSpoofwatch, media: MediaFiles, emulator: DiscordEmulator
) -> None:
    """Fails if a slow scan gets a 🔍 in a channel where replies already have to wait."""
    _speed_up(emulator)
    async with make_spoofwatch(search_mark_delay_s=0.05) as sw:
        sw.resemble.processing_s = 0.5
        general = sw.bot.get_channel(emulator.text_channel.id)
        assert isinstance(general, discord.TextChannel)
        # discord.py returns from the 5th send only when its window is over: do not wait.
        sends = [asyncio.create_task(general.send("other traffic")) for _ in range(5)]
        await emulator.wait_for(lambda: len(emulator.bot_messages(emulator.text_channel)) == 5)
        message = await sw.post(media.voice_ogg, voice=True)
        await sw.reply_to(message)
        await asyncio.gather(*sends)
    assert message.reaction_history == []
    assert emulator.ratelimits.sent_429s == 0


async def test_raid_in_one_channel_is_answered_in_full_without_429s(
    make_spoofwatch: MakeSpoofwatch,
    media: MediaFiles,
    emulator: DiscordEmulator,
) -> None:
    """Fails if, with one reply per message (combining off), a burst of voice messages in one
    channel gets a 429, loses a reply, or has the replies that waited for the bucket posted
    out of message order."""
    _speed_up(emulator)
    async with make_spoofwatch(search_mark_delay_s=0.3, workers=4, combine_replies=False) as sw:
        messages = [await sw.post(media.voice_ogg, voice=True) for _ in range(12)]
        replies = [await emulator.wait_for_reply(m, timeout=30) for m in messages]
        await sw.settle()
    assert emulator.ratelimits.sent_429s == 0
    assert all(len(emulator.replies_to(m)) == 1 for m in messages)
    by_time = sorted(replies, key=lambda r: r.id)
    waited = [r.reply_to_id for r in by_time[5:]]
    assert waited == sorted(waited)


def _answers(emu: DiscordEmulator, message: Message) -> list[Message]:
    """The bot's messages that answer `message`: replies to it, and combined answers with a
    card linking to it."""
    jump = f"https://discord.com/channels/{message.guild_id}/{message.channel_id}/{message.id}"
    return [
        m
        for m in emu.bot_messages(message.channel_id)
        if m.reply_to_id == message.id or any(e.get("url") == jump for e in m.embeds)
    ]


async def test_raid_of_30_is_answered_in_full_with_combined_replies_and_no_429s(
    make_spoofwatch: MakeSpoofwatch, media: MediaFiles, emulator: DiscordEmulator
) -> None:
    """Fails if, under Discord's own limits (5 messages per 5 s in the channel), 30 voice
    messages posted within 3 s in one channel get a 429, a message goes unanswered or is
    answered twice, a case's recorded reply is not the message that carries its verdict,
    the answers come out of message order, or the verdicts that had to wait are not combined
    (fewer bot messages than voice messages)."""
    emulator.ratelimits.enabled = True
    async with make_spoofwatch(workers=4) as sw:
        # Flagged, with several stretches: every card has its buttons and timeline picture.
        sw.resemble.script_result(media.voice_ogg, metrics=metrics([0.9, 0.95], label="fake"))
        messages = []
        for _ in range(30):
            messages.append(await sw.post(media.voice_ogg, voice=True))
            await asyncio.sleep(0.1)
        await emulator.wait_for(
            lambda: all(_answers(emulator, m) for m in messages),
            timeout=60,
            describe="an answer to every voice message of the raid",
        )
        await sw.settle()
        cases = await sw.bot.audit.cases.recent(emulator.guild.id, limit=100)
    assert emulator.ratelimits.sent_429s == 0, describe(emulator.ratelimits.events)
    assert sw.bot.pacing.received_429s == 0
    by_message = {c.message_id: c for c in cases}
    order = []
    for message in messages:
        [answer] = _answers(emulator, message)
        case = by_message[message.id]
        assert case.reply_message_id == answer.id
        jump = f"https://discord.com/channels/{message.guild_id}/{message.channel_id}/{message.id}"
        [card] = [e for e in answer.embeds if answer.reply_to_id == message.id or e["url"] == jump]
        assert f"Case #{case.case_number}" in card["footer"]["text"]
        order.append((answer.id, message.id))
    # Oldest first: sorting the answers by when they were posted sorts the messages too.
    assert [m for _, m in sorted(order)] == sorted(m.id for m in messages)
    posted = {answer_id for answer_id, _ in order}
    assert len(posted) < len(messages)
    for answer_id in posted:
        answer = emulator.world.messages[answer_id]
        # Each verdict keeps its row of buttons and its picture, combined or not.
        assert len(answer.components) == len(answer.embeds) <= 5
        images = {e["image"]["url"].removeprefix("attachment://") for e in answer.embeds}
        assert images == {a.filename for a in answer.attachments}
