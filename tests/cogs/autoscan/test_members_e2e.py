"""What members and moderators see, through Discord: compact genuine replies, the timeline
picture, "What does this mean?" / "This is wrong", outage notices, evidence kept on delete.

The real bot against the Discord emulator, the Resemble stand-in and a real SQLite file.
"""

from __future__ import annotations

from pathlib import Path

from bot.storage import Trigger
from testkit.alerts import moderation
from testkit.discord_emulator.models import Channel, Message
from testkit.e2e import Harness, MakeSpoofwatch
from testkit.moderation import FAKE, REAL, configure, field, listeners_done, run, scan, text_of, wav
from testkit.standins.resemble import metrics

#: Four stretches, two of them generated: a verdict with a timeline.
PARTLY = metrics([0.05, 0.9, 0.95, 0.1], label="fake")
PNG = b"\x89PNG\r\n\x1a\n"


async def _modlog(sw: Harness) -> Channel:
    channel = sw.emu.create_text_channel(sw.emu.guild, "mod-log")
    await sw.emu.wait_for(lambda: sw.bot.get_channel(channel.id))
    await configure(sw, "modlog", {"channel": channel})
    return channel


async def _verdict(sw: Harness, path: Path, result: dict[str, object]) -> Message:
    sw.resemble.script_result(path, metrics=result)
    reply = await scan(sw, path)
    await listeners_done(sw)
    return reply


# --- the reply ------------------------------------------------------------------------------


async def test_genuine_reply_is_one_line(spoofwatch: Harness, tmp_path: Path) -> None:
    """Fails if a genuine verdict under a member's file is more than one compact line."""
    reply = await _verdict(spoofwatch, wav(tmp_path, 1), REAL)
    [embed] = reply.embeds
    assert "title" not in embed and "fields" not in embed
    assert "No sign of AI generation" in embed["description"]
    assert "5% likely synthetic" in embed["description"] and "Case #1" in text_of(reply)
    assert reply.files == []


async def test_flagged_reply_has_the_timeline_picture(spoofwatch: Harness, tmp_path: Path) -> None:
    """Fails if a verdict with several stretches lacks its PNG strip, or the text fallback."""
    reply = await _verdict(spoofwatch, wav(tmp_path, 1), PARTLY)
    [embed] = reply.embeds
    [picture] = reply.files
    assert picture.data.startswith(PNG) and picture.filename == "timeline-1.png"
    assert embed["image"]["url"] == "attachment://timeline-1.png"
    assert "may be AI-generated" in embed["title"]
    assert "2 of 4 stretches sound generated" in embed["description"]
    assert (field(embed, "Timeline") or "").startswith("🟥 Sounds generated: ")


async def test_reply_follows_the_guild_threshold(spoofwatch: Harness, tmp_path: Path) -> None:
    """Fails if a 71 % clip is called AI-generated in public under a 90 % threshold (no alert
    goes out then: one decision for both)."""
    modlog = await _modlog(spoofwatch)
    await configure(spoofwatch, "threshold", {"value": 0.9})
    reply = await _verdict(spoofwatch, wav(tmp_path, 1), metrics([0.71], label="fake"))
    [embed] = reply.embeds
    assert "may be AI-generated" not in embed["title"] and "Unclear" in embed["title"]
    assert spoofwatch.emu.bot_messages(modlog) == []


# --- "What does this mean?" and "This is wrong" --------------------------------------------


async def test_explainer_is_private_and_plain(spoofwatch: Harness, tmp_path: Path) -> None:
    """Fails if "What does this mean?" is public, or does not give the score, the bands and
    the warning that detectors can be wrong."""
    reply = await _verdict(spoofwatch, wav(tmp_path, 1), FAKE)
    emu = spoofwatch.emu
    ix = await emu.click_button(reply, emu.member, label="What does this mean?")
    answer = await ix.wait_for_reply()
    text = text_of(answer)
    assert answer.ephemeral
    assert "90% likely synthetic" in text and "flags a file from 50%" in text
    assert "Under 30%" in text and "Detectors can be wrong" in text


async def test_this_is_wrong_reaches_the_modlog_once(spoofwatch: Harness, tmp_path: Path) -> None:
    """Fails if a review request is not posted to the mod-log with the case, not recorded on
    the case, or can be repeated by the same member."""
    emu = spoofwatch.emu
    modlog = await _modlog(spoofwatch)
    reply = await _verdict(spoofwatch, wav(tmp_path, 1), FAKE)
    alerts = len(emu.bot_messages(modlog))
    first = await (
        await emu.click_button(reply, emu.member, label="This is wrong")
    ).wait_for_reply()
    again = await (
        await emu.click_button(reply, emu.member, label="This is wrong")
    ).wait_for_reply()
    requests = emu.bot_messages(modlog)[alerts:]
    events = moderation(await spoofwatch.bot.audit.cases.case_events(emu.guild.id, 1))
    assert first.ephemeral and "moderators have been asked" in first.content
    assert "already asked" in again.content
    [request] = requests
    assert "Review requested — case #1" in text_of(request)
    assert request.allowed_mentions == {"parse": []}
    assert [(e.action, e.actor) for e in events] == [("review_request", str(emu.member.id))]


async def test_verdict_buttons_work_after_a_restart(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path
) -> None:
    """Fails if the buttons under a verdict posted before a restart stop answering."""
    async with make_spoofwatch() as first:
        reply = await _verdict(first, wav(tmp_path, 1), FAKE)
    async with make_spoofwatch() as second:
        emu = second.emu
        ix = await emu.click_button(reply, emu.member, label="What does this mean?")
        answer = await ix.wait_for_reply()
    assert answer.ephemeral and "case #1" in text_of(answer)


# --- failures -----------------------------------------------------------------------------------


async def test_an_outage_is_told_to_the_modlog_once(spoofwatch: Harness, tmp_path: Path) -> None:
    """Fails if members see the provider's technical words, or the mod-log gets a notice per
    clip instead of one per outage (and one when scans work again)."""
    emu = spoofwatch.emu
    modlog = await _modlog(spoofwatch)
    spoofwatch.resemble.fail_next("submit", 503, None)
    replies = [await scan(spoofwatch, wav(tmp_path, n)) for n in (1, 2, 3)]
    await listeners_done(spoofwatch)
    notices = [m for m in emu.bot_messages(modlog) if m.embeds]
    assert [n.embeds[0]["title"] for n in notices] == ["Automatic scans are failing"]
    assert "provider_unavailable" in text_of(notices[0])
    for reply in replies:
        [embed] = reply.embeds
        assert embed["title"].startswith("Could not check") and "fields" not in embed
        assert "503" not in text_of(reply) and "HTTP" not in text_of(reply)
    spoofwatch.resemble.clear_faults()
    await _verdict(spoofwatch, wav(tmp_path, 4), REAL)
    titles = [m.embeds[0]["title"] for m in emu.bot_messages(modlog) if m.embeds]
    assert titles == ["Automatic scans are failing", "Automatic scans work again"]


# --- the alert ------------------------------------------------------------------------------------


async def test_alert_shows_author_transcript_picture_and_history(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path
) -> None:
    """Fails if the alert lacks the author's name and avatar, the score against the threshold,
    the transcript, the timeline picture or the member's earlier flags."""
    async with make_spoofwatch(resemble_intelligence=True) as sw:
        modlog = await _modlog(sw)
        await _verdict(sw, wav(tmp_path, 1), FAKE)
        path = wav(tmp_path, 2)
        sw.resemble.script_result(path, metrics=PARTLY, transcription="send me the code")
        await scan(sw, path)
        await listeners_done(sw)
        alert = [m for m in sw.emu.bot_messages(modlog) if m.embeds][-1]
    [embed] = alert.embeds
    # The stand-in's aggregated score is the mean of the stretches: 50 %.
    assert embed["title"] == "Possible deepfake · 50% (server threshold 50%)"
    assert f"(@{sw.emu.member.name})" in embed["author"]["name"]
    assert embed["author"].get("icon_url")
    assert "send me the code" in (field(embed, "Transcript") or "")
    assert "2nd flag for this member" in embed["description"]
    assert embed["image"]["url"] == "attachment://timeline-2.png"
    assert [f.filename for f in alert.files] == ["timeline-2.png"]


async def test_automatic_delete_keeps_the_evidence(spoofwatch: Harness, tmp_path: Path) -> None:
    """Fails if, after the policy deletes a message, the alert lacks the audio or still offers
    a link to the message that is gone."""
    emu = spoofwatch.emu
    modlog = await _modlog(spoofwatch)
    await configure(spoofwatch, "action", {"policy": "delete_and_alert"})
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    message = await spoofwatch.post(path)
    await spoofwatch.settle()
    await listeners_done(spoofwatch)
    [alert] = [m for m in emu.bot_messages(modlog) if m.embeds]
    assert emu.message(message).deleted
    [kept] = [f for f in alert.files if f.filename.startswith("case-1-")]
    assert kept.data == path.read_bytes()
    assert "The file is attached here" in (field(alert.embeds[0], "Actions") or "")
    assert "Open the message" not in alert.embeds[0]["description"]
    case = await spoofwatch.bot.audit.cases.case(emu.guild.id, 1)
    assert case is not None and case.trigger is Trigger.AUTO


# --- moderators' views -----------------------------------------------------------------------


async def test_audit_case_shows_actions_in_words(spoofwatch: Harness, tmp_path: Path) -> None:
    """Fails if /audit case leaves out the actions taken on a case, is not coloured by its
    outcome, or reads in column values ("done", "auto", "false_positive")."""
    emu = spoofwatch.emu
    await _modlog(spoofwatch)
    await configure(spoofwatch, "action", {"policy": "delete_and_alert"})
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    await spoofwatch.post(path)
    await listeners_done(spoofwatch)
    await run(spoofwatch, emu.moderator, "audit review",
              {"number": 1, "decision": "false_positive"})  # fmt: skip
    answer = await run(spoofwatch, emu.moderator, "audit case", {"number": 1})
    [embed] = answer.embeds
    text = text_of(answer)
    assert embed["color"] == 0xE74C3C  # red: flagged at the threshold
    assert "message deleted by" in (field(embed, "Actions") or "")
    assert "not a deepfake by" in (field(embed, "Review") or "")
    assert "automatic scan" in text and "finished" in text and "said **spoofed**" in text
    assert "false_positive" not in text and "Status" not in text


async def test_audit_recent_is_one_short_line_per_case(spoofwatch: Harness, tmp_path: Path) -> None:
    """Fails if a case line in /audit recent carries the file name or a long date (which made
    each case wrap to two lines)."""
    await _verdict(spoofwatch, wav(tmp_path, 1), FAKE)
    answer = await run(spoofwatch, spoofwatch.emu.moderator, "audit recent")
    [line] = answer.embeds[0]["description"].splitlines()
    assert line.startswith("**#1** <t:") and ":R>" in line
    assert "clip-1.wav" not in line and "🟥 90% may be AI-generated" in line


async def test_check_answer_has_the_timeline_picture(spoofwatch: Harness, tmp_path: Path) -> None:
    """Fails if a /check verdict with several stretches comes without its picture."""
    emu = spoofwatch.emu
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=PARTLY)
    attachment = emu.attachment(path, "clip.wav", "audio/wav")
    answer = await run(spoofwatch, emu.member, "check", {"file": attachment})
    [picture] = answer.files
    assert picture.data.startswith(PNG)
    assert answer.embeds[0]["image"]["url"] == f"attachment://{picture.filename}"
