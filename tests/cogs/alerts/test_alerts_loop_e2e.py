"""The moderators' loop through Discord: buttons that show what was done, reasons, undo, the
role ping, the public verdict after a review, and what an automatic deletion leaves behind.

The real bot against the Discord emulator, the Resemble stand-in and a real SQLite file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.storage import Review
from testkit.alerts import (
    Alerted,
    actions,
    buttons,
    click,
    make_alerted,
    make_modlog,
    moderation,
    post_fake,
    reason_input,
)
from testkit.discord_emulator.bits import ChannelType
from testkit.discord_emulator.interactions import MODAL
from testkit.e2e import Harness, MakeSpoofwatch
from testkit.moderation import FAKE, configure, field, listeners_done, run, text_of, wav


@pytest.fixture
async def alerted(spoofwatch: Harness, tmp_path: Path) -> Alerted:
    return await make_alerted(spoofwatch, tmp_path)


def _button(alerted: Alerted, action: str) -> dict[str, object]:
    """The alert's button for `action` (its custom id names it), as Discord now shows it."""
    alert = alerted.sw.emu.message(alerted.alert)
    return next(b for b in buttons(alert) if str(b["custom_id"]).startswith(f"sw:alert:{action}:"))


# --- buttons show what was done -------------------------------------------------------------------


async def test_confirm_greys_out_both_review_buttons(alerted: Alerted) -> None:
    """Fails if either review button stays clickable after a confirmation."""
    await click(alerted, "Confirm deepfake")
    confirm, clear = _button(alerted, "confirm"), _button(alerted, "fp")
    assert confirm["disabled"] and clear["disabled"]
    assert confirm["label"] == "Confirmed deepfake"


async def test_not_a_deepfake_turns_the_alert_green(alerted: Alerted) -> None:
    """Fails if a false positive leaves the alert red or its button unlabelled as done."""
    updated = await click(alerted, "Not a deepfake")
    assert updated.embeds[0]["color"] == 0x2ECC71
    assert _button(alerted, "fp")["label"] == "Marked not a deepfake"


async def test_a_stale_review_button_does_not_overwrite_the_first_review(
    alerted: Alerted,
) -> None:
    """Fails if a second, opposite review replaces one made elsewhere (/audit review)."""
    emu, audit = alerted.sw.emu, alerted.sw.bot.audit
    await audit.admin.review(emu.guild.id, 1, Review.CONFIRMED, moderator_id=emu.admin.id)
    ix = await emu.click_button(alerted.alert, emu.moderator, label="Not a deepfake")
    assert await ix.wait_for_ack() != MODAL  # no reason asked for a decision already taken
    updated = await ix.wait_for_reply()
    record = await audit.cases.case(emu.guild.id, 1)
    assert record is not None and record.review is Review.CONFIRMED
    assert "Already reviewed" in actions(updated)
    assert _button(alerted, "fp")["disabled"]


async def test_the_reason_is_kept_on_the_case_and_shown(alerted: Alerted) -> None:
    """Fails if the reason typed in the modal is lost (case note, alert)."""
    emu, audit = alerted.sw.emu, alerted.sw.bot.audit
    updated = await click(alerted, "Confirm deepfake", reason="same voice as the scam last week")
    record = await audit.cases.case(emu.guild.id, 1)
    assert record is not None and record.review_note == "same voice as the scam last week"
    assert "same voice as the scam last week" in actions(updated)


async def test_the_reason_modal_fits_discord(alerted: Alerted) -> None:
    """Fails if the modal asks for a required reason (it is optional)."""
    emu = alerted.sw.emu
    ix = await emu.click_button(alerted.alert, emu.moderator, label="Time out 1 h")
    modal = await ix.wait_for_modal()
    [row] = modal["components"]
    assert row["components"][0]["required"] is False
    assert reason_input(ix)


async def test_delete_greys_out_delete(alerted: Alerted) -> None:
    """Fails if Delete stays clickable once the message is deleted."""
    await click(alerted, "Delete message")
    delete = _button(alerted, "delete")
    assert delete["disabled"] and delete["label"] == "Message deleted"


async def test_a_time_out_can_be_undone(alerted: Alerted) -> None:
    """Fails if a time-out cannot be lifted from the alert, or the buttons do not follow."""
    emu, audit = alerted.sw.emu, alerted.sw.bot.audit
    await click(alerted, "Time out 1 h", reason="spam")
    assert emu.member.communication_disabled_until is not None
    assert _button(alerted, "t1h")["disabled"]
    updated = await click(alerted, "Undo time-out")
    events = await audit.cases.case_events(emu.guild.id, 1)
    assert emu.member.communication_disabled_until is None
    assert [e.action for e in moderation(events)] == ["timeout", "untimeout"]
    assert "lifted" in actions(updated)
    assert not _button(alerted, "t1h")["disabled"]
    assert "Undo time-out" not in str(emu.message(alerted.alert).components)


async def test_undo_without_moderate_members_is_refused(alerted: Alerted) -> None:
    """Fails if a helper without Moderate Members can lift a time-out."""
    emu = alerted.sw.emu
    await click(alerted, "Time out 10 min")
    helper_role = emu.create_role(emu.guild, "Helper", "manage_messages")
    helper = emu.add_member(emu.guild, "helper", roles=(helper_role,))
    ix = await emu.click_button(alerted.alert, helper, label="Undo time-out")
    refusal = await ix.wait_for_reply()
    assert refusal.ephemeral and "Moderate Members" in refusal.content
    assert emu.member.communication_disabled_until is not None


# --- the public verdict follows the review ------------------------------------------------------


async def test_not_a_deepfake_updates_the_public_verdict(alerted: Alerted) -> None:
    """Fails if the public "likely deepfake" reply stays as it was after a false positive."""
    emu = alerted.sw.emu
    [reply] = emu.replies_to(alerted.message)
    updated = await click(alerted, "Not a deepfake")
    verdict = emu.message(reply).embeds[0]
    assert verdict["title"] == "Reviewed by a moderator: not a deepfake"
    assert verdict["color"] == 0x2ECC71
    assert "public verdict now says so" in actions(updated)


async def test_a_verdict_the_bot_cannot_read_is_reported_on_the_alert(alerted: Alerted) -> None:
    """Fails if a refused edit of the public verdict is silent or breaks the review."""
    emu, audit = alerted.sw.emu, alerted.sw.bot.audit
    emu.deny_bot(emu.text_channel, "read_message_history")
    updated = await click(alerted, "Not a deepfake")
    record = await audit.cases.case(emu.guild.id, 1)
    assert record is not None and record.review is Review.FALSE_POSITIVE
    assert "Could not update the public verdict" in actions(updated)


# --- the role ping ------------------------------------------------------------------------------


async def test_alerts_ping_the_chosen_role_and_nobody_else(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if the alert does not mention the role, or may mention anyone else."""
    emu = spoofwatch.emu
    role = emu.create_role(emu.guild, "Deepfake watch")
    await configure(spoofwatch, "alert-ping", {"role": role})
    modlog = await make_modlog(spoofwatch)
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    await spoofwatch.reply_to(await spoofwatch.post(path))
    await listeners_done(spoofwatch)
    [alert] = emu.bot_messages(modlog)
    assert alert.content == f"<@&{role.id}>"
    mentions = alert.allowed_mentions or {}
    assert [int(r) for r in mentions.get("roles", [])] == [role.id]
    assert role.id in alert.mention_role_ids
    assert mentions.get("parse") == []


# --- automatic deletion -------------------------------------------------------------------------


async def _deleted_by_policy(sw: Harness, tmp_path: Path) -> Alerted:
    await configure(sw, "action", {"policy": "delete_and_alert"})
    return await post_fake(sw, await make_modlog(sw), wav(tmp_path, 1))


def _dms(sw: Harness) -> list[str]:
    emu = sw.emu
    return [
        m.content
        for m in emu.bot_messages()
        if emu.world.channel(m.channel_id).type == ChannelType.DM
    ]


async def test_automatic_delete_tells_the_poster_and_removes_the_verdict(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if the poster is not told why, or a verdict still replies to a deleted message."""
    emu = spoofwatch.emu
    a = await _deleted_by_policy(spoofwatch, tmp_path)
    [reply] = [m for m in emu.world.messages.values() if m.reply_to_id == a.message.id]
    [dm] = _dms(spoofwatch)
    assert emu.message(a.message).deleted
    assert emu.message(reply).deleted
    assert "case #1" in dm and "review" in dm
    assert emu.world.channel(emu.dm_channel(emu.member).id).recipient_ids == [emu.member.id]
    assert "told by DM" in text_of(a.alert)
    delete = _button(a, "delete")
    assert delete["disabled"] and delete["label"] == "Message deleted"


async def test_automatic_delete_with_closed_dms_is_no_error(
    spoofwatch: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Fails if closed DMs (Discord 50007) raise, log an error, or stop the alert."""
    emu = spoofwatch.emu
    emu.close_dms(emu.member)
    with caplog.at_level(logging.INFO):
        a = await _deleted_by_policy(spoofwatch, tmp_path)
    assert _dms(spoofwatch) == []
    assert "could not be told" in text_of(a.alert)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "50007" in caplog.text


# --- review outcomes in /audit stats ------------------------------------------------------------


async def test_audit_stats_show_review_outcomes_by_band(alerted: Alerted) -> None:
    """Fails if /audit stats does not show a moderator's false positive in its band."""
    emu = alerted.sw.emu
    await click(alerted, "Not a deepfake")
    answer = await run(alerted.sw, emu.moderator, "audit stats")
    reviews = field(answer.embeds[0], "Moderators' reviews by probability")
    assert reviews == "90–100%: 0 confirmed, 1 not a deepfake (100% false positives)"


# --- a restart between the form and its submission ----------------------------------------------


async def test_a_reason_form_sent_after_a_restart_still_acts(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path
) -> None:
    """Fails if a reason form opened before a restart does nothing when sent after it."""
    async with make_spoofwatch() as first:
        a = await post_fake(first, await make_modlog(first), wav(tmp_path, 1))
        opened = await first.emu.click_button(
            a.alert, first.emu.moderator, label="Confirm deepfake"
        )
        await opened.wait_for_modal()
    async with make_spoofwatch() as second:
        emu = second.emu
        ix = await emu.submit_modal(opened, {reason_input(opened): "known scam voice"})
        updated = await ix.wait_for_reply()
        record = await second.bot.audit.cases.case(emu.guild.id, 1)
        assert record is not None and record.review is Review.CONFIRMED
        assert record.review_note == "known scam voice"
        assert "known scam voice" in actions(updated)


async def test_a_reason_form_is_checked_again_on_submission(alerted: Alerted) -> None:
    """Fails if a form sent by someone who lost the permission meanwhile still acts."""
    emu, audit = alerted.sw.emu, alerted.sw.bot.audit
    opened = await emu.click_button(alerted.alert, emu.moderator, label="Not a deepfake")
    await opened.wait_for_modal()
    [moderator_role] = [r for r in emu.guild.roles.values() if r.name == "Moderator"]
    emu.world.set_role_permissions(moderator_role, 0)
    refusal = await (await emu.submit_modal(opened)).wait_for_reply()
    record = await audit.cases.case(emu.guild.id, 1)
    assert refusal.ephemeral and "permission" in refusal.content
    assert record is not None and record.review is None


async def test_confirm_updates_the_public_verdict_too(alerted: Alerted) -> None:
    """Fails if a confirmation does not show on the public verdict."""
    emu = alerted.sw.emu
    [reply] = emu.replies_to(alerted.message)
    await click(alerted, "Confirm deepfake")
    assert emu.message(reply).embeds[0]["title"] == "Reviewed by a moderator: deepfake confirmed"
