"""Automatic scans under Discord's rate limits: what a scan costs in requests, when the 🔍
goes on, and how a raid in one channel is answered.

The real bot against the Discord emulator with Discord's limits on (5 messages per 5 s and
one reaction call per 0.25 s per channel, 50 requests/s in all).
"""

from __future__ import annotations

from tests.discord_emulator.emulator import DiscordEmulator
from tests.e2e import MakeSpoofwatch
from tests.media_factory import MediaFiles

SCANNING = "\N{LEFT-POINTING MAGNIFYING GLASS}"


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
