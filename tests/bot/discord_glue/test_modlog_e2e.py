"""The mod-log, found and posted to one way (`bot.discord_glue.modlog`), through a member's
review request: posted, refused by Discord, and a mod-log channel that is gone."""

from __future__ import annotations

from pathlib import Path

from testkit.alerts import make_modlog, moderation
from testkit.discord_emulator.models import Message
from testkit.e2e import Harness
from testkit.moderation import FAKE, listeners_done, scan, text_of, wav


async def _verdict(sw: Harness, tmp_path: Path) -> Message:
    path = wav(tmp_path, 1)
    sw.resemble.script_result(path, metrics=FAKE)
    reply = await scan(sw, path)
    await listeners_done(sw)
    return reply


async def _ask_review(sw: Harness, reply: Message) -> tuple[str, str]:
    """What the member was told, and the outcome recorded on the case."""
    answer = await (
        await sw.emu.click_button(reply, sw.emu.member, label="This is wrong")
    ).wait_for_reply()
    [event] = moderation(await sw.bot.audit.cases.case_events(sw.emu.guild.id, 1))
    return answer.content, event.reason or ""


async def test_a_review_request_reaches_the_modlog(spoofwatch: Harness, tmp_path: Path) -> None:
    """Fails if a review request is not posted in the mod-log, or goes out able to ping."""
    modlog = await make_modlog(spoofwatch)
    reply = await _verdict(spoofwatch, tmp_path)
    before = len(spoofwatch.emu.bot_messages(modlog))
    told, outcome = await _ask_review(spoofwatch, reply)
    [request] = spoofwatch.emu.bot_messages(modlog)[before:]
    assert "moderators have been asked" in told
    assert outcome == f"posted to the mod-log {modlog.id}"
    assert "Review requested" in text_of(request)
    assert request.allowed_mentions == {"parse": []}


async def test_a_refused_review_request_is_recorded_with_discords_reason(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if Discord refusing the post (the bot lost Send Messages in the mod-log) is not
    told to the member and recorded on the case with Discord's status and code."""
    modlog = await make_modlog(spoofwatch)
    reply = await _verdict(spoofwatch, tmp_path)
    spoofwatch.emu.deny_bot(modlog, "send_messages")
    told, outcome = await _ask_review(spoofwatch, reply)
    assert "could not be posted" in told and "tell a moderator directly" in told
    assert outcome.startswith("not posted: HTTP 403 (code 50013)")


async def test_a_review_request_for_a_modlog_that_is_gone_says_so(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if a mod-log channel id that names no channel any more (deleted while the bot
    was away) is posted to, or the case does not say why nothing was posted."""
    await make_modlog(spoofwatch)
    reply = await _verdict(spoofwatch, tmp_path)
    guild_id = spoofwatch.emu.guild.id
    config = await spoofwatch.bot.guild_configs.get(guild_id)
    await spoofwatch.bot.guild_configs.save(
        guild_id, config.model_copy(update={"modlog_channel_id": 1})
    )
    told, outcome = await _ask_review(spoofwatch, reply)
    assert "could not be posted" in told
    assert outcome == "not posted: the mod-log channel is gone"
