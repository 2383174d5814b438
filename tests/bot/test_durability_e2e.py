"""Durable scans end to end: restarts, replayed events and lost sessions answer each message once.

Each restart is a clean stop and start of the in-process bot against the same emulator,
database and stand-ins; what a SIGKILL would leave behind is arranged by stopping the first
run at the right moment (or patching out its last step). `tests/bench/test_crash.py` SIGKILLs a
real `python -m bot` process.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from bot.scanning import ScanOutcome
from bot.scanning._answer import Answers
from bot.storage import ScanStatus
from bot.storage._sqlite_rows import STATUS_CODES
from cogs.autoscan._cog import AutoScan
from testkit.discord_emulator import DiscordEmulator, messaging
from testkit.discord_emulator.models import Message
from testkit.e2e import Harness, MakeSpoofwatch
from testkit.media_factory import MediaFiles
from testkit.moderation import configure


def bot_replies(sw: Harness, message: Message) -> list[Message]:
    return [m for m in sw.emu.replies_to(message) if m.author.id == sw.emu.bot_user.id]


def autoscan(sw: Harness) -> AutoScan:
    # Each start re-imports the extension (discord.py drops it from sys.modules when it is
    # unloaded), so the running cog is not an instance of the class imported here.
    cog = sw.bot.get_cog("AutoScan")
    assert cog is not None
    return cog  # type: ignore[return-value]


async def caught_up(sw: Harness) -> None:
    """Wait until the start-up catch-up and every scan it queued have finished."""
    cog = autoscan(sw)
    await sw.emu.wait_for(lambda: cog._catch_up is not None and cog._catch_up.done())
    await sw.settle()


async def test_message_posted_while_the_bot_was_down_is_answered(
    make_spoofwatch: MakeSpoofwatch, emulator: DiscordEmulator, media: MediaFiles
) -> None:
    """Fails if a voice message posted while the bot was stopped (Discord never delivers it)
    gets no verdict once the bot is back."""
    async with make_spoofwatch():
        pass
    message = await emulator.send_message(
        emulator.text_channel,
        emulator.member,
        attachments=[emulator.attachment(media.voice_ogg, voice=True, duration_secs=3.0)],
    )
    async with make_spoofwatch() as sw:
        await caught_up(sw)
        assert len(bot_replies(sw, message)) == 1
        assert sw.resemble.submissions == 1


async def test_restart_does_not_answer_or_scan_again(
    make_spoofwatch: MakeSpoofwatch, media: MediaFiles
) -> None:
    """Fails if a restart's catch-up replies again to, or re-submits, an answered message."""
    async with make_spoofwatch() as sw:
        message = await sw.post(media.voice_ogg, voice=True)
        await sw.reply_to(message)
    async with make_spoofwatch() as sw:
        await caught_up(sw)
        assert len(bot_replies(sw, message)) == 1
        assert sw.resemble.submissions == 1


async def test_reply_posted_but_not_recorded_is_not_posted_again(
    make_spoofwatch: MakeSpoofwatch, media: MediaFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if a crash between posting the reply and recording it makes the restarted bot
    answer the message a second time."""
    async with make_spoofwatch() as sw:

        async def dies_before_recording(scan_id: int, reply_message_id: int) -> None:
            return None

        monkeypatch.setattr(sw.bot.audit.scans, "mark_replied", dies_before_recording)
        message = await sw.post(media.voice_ogg, voice=True)
        await sw.reply_to(message)
    monkeypatch.undo()
    async with make_spoofwatch() as sw:
        await caught_up(sw)
        assert len(bot_replies(sw, message)) == 1
        case = await sw.bot.audit.cases.case(sw.emu.guild.id, 1)
        assert case is not None and case.reply_message_id is None  # the crash was simulated


async def test_verdict_recorded_but_never_posted_is_posted_after_restart(
    make_spoofwatch: MakeSpoofwatch, media: MediaFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if a crash between finishing the scan and replying leaves the member without an
    answer after the restart, or costs a second provider call."""

    async def dies_before_replying(*args: object, **kwargs: object) -> list[ScanOutcome]:
        return []

    async with make_spoofwatch() as sw:
        # The answer stage, for every message: the scan is recorded, nothing is posted.
        monkeypatch.setattr(Answers, "answer", dies_before_replying)
        message = await sw.post(media.voice_ogg, voice=True)
        await sw.emu.wait_for(lambda: sw.resemble.submissions == 1)
        await sw.settle()
        assert bot_replies(sw, message) == []
    monkeypatch.undo()
    async with make_spoofwatch() as sw:
        await caught_up(sw)
        [reply] = bot_replies(sw, message)
        assert "Case #1" in reply.embeds[0]["footer"]["text"]
        assert sw.resemble.submissions == 1


async def test_submitted_scan_resumes_polling_its_job(
    make_spoofwatch: MakeSpoofwatch, media: MediaFiles
) -> None:
    """Fails if a scan stopped while its job was pending is submitted again after the
    restart instead of polling the stored job id, or is answered other than once."""
    async with make_spoofwatch(provider="behavioral_signals") as sw:
        sw.bs.processing_polls = 10**6  # pending until the second run
        message = await sw.post(media.voice_ogg, voice=True)
        await sw.emu.wait_for(lambda: sw.bs.status_polls >= 1)
        await sw.bot.close()  # cancels the scan; its row stays `submitted`
        case = await sw.bot.audit.cases.case(sw.emu.guild.id, 1)
        assert case is not None and case.status is ScanStatus.SUBMITTED
    sw.bs.processing_polls = 0
    async with make_spoofwatch(provider="behavioral_signals") as sw:
        await sw.emu.wait_for(lambda: bot_replies(sw, message))
        await caught_up(sw)
        assert len(bot_replies(sw, message)) == 1
        assert sw.bs.submissions == 1
        case = await sw.bot.audit.cases.case(sw.emu.guild.id, 1)
        assert case is not None and case.status is ScanStatus.DONE


async def test_verdict_posted_before_a_power_loss_is_not_posted_again(
    make_spoofwatch: MakeSpoofwatch, media: MediaFiles, tmp_path: Path
) -> None:
    """Fails if, when the database lost its last commits (synchronous=NORMAL and a power
    cut) but Discord has the reply, the resumed scan replies a second time instead of
    finding and recording the reply already posted."""
    async with make_spoofwatch(provider="behavioral_signals") as sw:
        message = await sw.post(media.voice_ogg, voice=True)
        first = await sw.reply_to(message)
    # What the lost commits leave: the case back at `submitted`, no reply recorded.
    with sqlite3.connect(tmp_path / "spoofwatch.db") as db:
        db.execute(
            "UPDATE scans SET status = ?, finished_at = NULL, label = NULL, "
            "reply_message_id = NULL WHERE case_number = 1",
            (STATUS_CODES[ScanStatus.SUBMITTED],),
        )
    async with make_spoofwatch(provider="behavioral_signals") as sw:
        await caught_up(sw)
        case = await sw.bot.audit.cases.case(sw.emu.guild.id, 1)
        assert case is not None and case.status is ScanStatus.DONE  # resumed and finished
        assert [r.id for r in bot_replies(sw, message)] == [first.id]
        assert case.reply_message_id == first.id
        assert sw.bs.submissions == 1


async def test_replayed_message_event_is_answered_once(
    spoofwatch: Harness, media: MediaFiles
) -> None:
    """Fails if the same MESSAGE_CREATE delivered twice gets two replies or two scans."""
    emu = spoofwatch.emu
    spoofwatch.resemble.wait_hold_s = 0
    spoofwatch.resemble.processing_polls = 2  # keep the first scan busy while the copy lands
    message = await spoofwatch.post(media.voice_ogg, voice=True)
    channel = emu.world.channel(emu.text_channel)
    emu.world.emit(
        "MESSAGE_CREATE",
        messaging.content_filtered(emu.world, message),
        guild_id=message.guild_id,
        intent=messaging._message_intent(channel),
    )
    await emu.gateway.flush()
    await spoofwatch.reply_to(message)
    assert len(bot_replies(spoofwatch, message)) == 1
    assert spoofwatch.resemble.submissions == 1


async def test_message_lost_with_an_invalidated_session_is_caught_up(
    spoofwatch: Harness, media: MediaFiles
) -> None:
    """Fails if a message posted while the gateway session was invalidated (Discord replays
    nothing to a new session) is never answered once the bot has identified again."""
    emu = spoofwatch.emu
    identifies = emu.gateway.identifies
    emu.gateway.admitting.clear()  # hold the reconnect until the message is posted
    await emu.disconnect_gateway(resume=False)
    message = await emu.send_message(
        emu.text_channel,
        emu.member,
        attachments=[emu.attachment(media.voice_ogg, voice=True, duration_secs=3.0)],
    )
    emu.gateway.admitting.set()
    await emu.wait_for(lambda: emu.gateway.identifies > identifies)
    reply = await spoofwatch.reply_to(message)
    assert reply.embeds and len(bot_replies(spoofwatch, message)) == 1


async def test_catch_up_leaves_a_message_being_scanned_alone(
    spoofwatch: Harness, media: MediaFiles, caplog: pytest.LogCaptureFixture
) -> None:
    """Fails if a new session's catch-up queues a second scan of a message the gateway
    delivered and whose scan is still running (at start-up, a burst that arrived while
    discord.py held back READY was scanned twice)."""
    caplog.set_level(logging.INFO, logger="cogs.autoscan._cog")
    emu = spoofwatch.emu
    cog = autoscan(spoofwatch)
    await emu.wait_for(lambda: cog._catch_up is not None and cog._catch_up.done())
    first = cog._catch_up
    spoofwatch.resemble.hang("submit", seconds=60)  # the scan stays in flight meanwhile
    message = await spoofwatch.post(media.voice_ogg, voice=True)
    await emu.wait_for(lambda: spoofwatch.resemble.received["submit"] >= 1)
    caplog.clear()
    await emu.disconnect_gateway(resume=False)
    await emu.wait_for(lambda: cog._catch_up is not first and cog._catch_up.done())
    counts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("catch-up:")]
    assert counts == ["catch-up: 0 unanswered message(s) with media queued"]
    assert bot_replies(spoofwatch, message) == []  # the catch-up ran while it was scanned
    assert spoofwatch.resemble.submissions == 1
    await spoofwatch.bot.close()  # the scan resumes at the next start (not tested here)


async def test_a_shutdown_lets_a_scan_held_at_resemble_finish(
    spoofwatch: Harness, media: MediaFiles
) -> None:
    """Fails if stopping the bot (SIGTERM) cancels a scan whose file Resemble is analysing,
    its answer held by `Prefer: wait`, instead of letting it finish within the shutdown grace:
    Resemble keeps nothing to find the detect by, so a cancelled one ends as a failure."""
    spoofwatch.resemble.processing_s = 1.0  # held this long, well inside the grace below
    message = await spoofwatch.post(media.voice_ogg, voice=True)
    await spoofwatch.emu.wait_for(lambda: len(spoofwatch.resemble.jobs) == 1)
    assert bot_replies(spoofwatch, message) == []
    spoofwatch.bot.shutdown_grace_s = 30.0
    await spoofwatch.bot.close()
    [reply] = bot_replies(spoofwatch, message)
    assert reply.embeds
    assert spoofwatch.resemble.submissions == 1


async def test_combined_answer_posted_but_not_recorded_is_not_posted_again(
    make_spoofwatch: MakeSpoofwatch,
    media: MediaFiles,
    emulator: DiscordEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails if, after a crash between posting a combined answer (a flooded channel, Discord's
    limits on) and recording it, the restarted bot answers those messages again."""
    emulator.ratelimits.enabled = True

    def answers(message: Message) -> list[Message]:
        jump = f"https://discord.com/channels/{message.guild_id}/{message.channel_id}/{message.id}"
        return [
            m
            for m in emulator.bot_messages(message.channel_id)
            if m.reply_to_id == message.id or any(e.get("url") == jump for e in m.embeds)
        ]

    async with make_spoofwatch(workers=4) as sw:

        async def dies_before_recording(scan_id: int, reply_message_id: int) -> None:
            return None

        monkeypatch.setattr(sw.bot.audit.scans, "mark_replied", dies_before_recording)
        # Five replies fill the window; the seven waiting then outnumber the room: combined.
        messages = [await sw.post(media.voice_ogg, voice=True) for _ in range(12)]
        await emulator.wait_for(lambda: all(answers(m) for m in messages), timeout=30)
        await sw.settle()
    combined = [m for m in emulator.bot_messages(emulator.text_channel) if m.reply_to_id is None]
    assert combined, "no combined answer: the channel was never flooded"
    monkeypatch.undo()
    async with make_spoofwatch() as sw:
        await caught_up(sw)
    assert all(len(answers(m)) == 1 for m in messages)
    assert emulator.ratelimits.sent_429s == 0


async def test_catch_up_leaves_members_with_an_exempt_role_alone(
    make_spoofwatch: MakeSpoofwatch, emulator: DiscordEmulator, media: MediaFiles
) -> None:
    """Fails if a message read back from history (no roles on its author) is scanned although
    its author holds an exempt role, while a plain member's is."""
    trusted_role = emulator.create_role(emulator.guild, "Trusted")
    trusted = emulator.add_member(emulator.guild, "trusted", roles=(trusted_role,))
    async with make_spoofwatch() as sw:
        await configure(sw, "exempt-add", {"role": trusted_role})
    voice = {"voice": True, "duration_secs": 3.0}
    exempted = await emulator.send_message(
        emulator.text_channel, trusted, attachments=[emulator.attachment(media.voice_ogg, **voice)]
    )
    plain = await emulator.send_message(
        emulator.text_channel,
        emulator.member,
        attachments=[emulator.attachment(media.tone_wav, "t.wav", "audio/wav")],
    )
    async with make_spoofwatch() as sw:
        await caught_up(sw)
        assert bot_replies(sw, exempted) == []
        assert len(bot_replies(sw, plain)) == 1
