"""Issue 5 through Discord: mod-log alerts and what their buttons do, on Discord and on the case.

The real bot against the Discord emulator, the Resemble stand-in and a real SQLite file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
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
)
from testkit.discord_emulator.bits import DEFAULT_BOT_PERMISSIONS, Permission
from testkit.e2e import Harness, MakeSpoofwatch
from testkit.moderation import FAKE, configure, listeners_done, run, text_of, wav
from testkit.standins.resemble import metrics


@pytest.fixture
async def alerted(spoofwatch: Harness, tmp_path: Path) -> Alerted:
    """Case #1: a deepfake by the plain member, alerted in #mod-log."""
    return await make_alerted(spoofwatch, tmp_path)


# --- the alert itself -----------------------------------------------------------------------------


async def test_alert_names_the_verdict_author_channel_and_case(alerted: Alerted) -> None:
    """The alert shows the probability, who posted where, a jump link and the case number."""
    emu = alerted.sw.emu
    text = text_of(alerted.alert)
    assert "90%" in text
    assert f"<@{emu.member.id}>" in text and f"<#{emu.text_channel.id}>" in text
    assert f"/channels/{emu.guild.id}/{emu.text_channel.id}/{alerted.message.id}" in text
    assert "case #1" in text.lower()
    assert alerted.alert.allowed_mentions == {"parse": []}


async def test_alert_says_which_generator_likely_made_it(alerted: Alerted) -> None:
    """Fails if the alert leaves out the generator Resemble's source tracing named."""
    text = text_of(alerted.alert)
    assert "Likely made with" in text and "ElevenLabs" in text


@pytest.mark.parametrize("opted_in", [False, True])
async def test_confirm_sends_feedback_only_where_the_guild_opted_in(
    alerted: Alerted, opted_in: bool
) -> None:
    """Fails if a moderator's Confirm reaches Resemble's feedback endpoint from a guild that
    did not opt in, or not from one that did."""
    sw = alerted.sw
    if opted_in:
        await configure(sw, "feedback", {"enabled": True})
    await click(alerted, "Confirm deepfake")
    await sw.bot.provider_copies.drain()
    record = await sw.bot.audit.cases.case(sw.emu.guild.id, 1)
    assert record is not None and record.provider_job_id is not None
    sent = sw.resemble.feedback.get(record.provider_job_id)
    assert (sent is not None) is opted_in
    if sent is not None:
        assert sent["type"] == "correct"


async def test_alert_buttons_carry_the_case(alerted: Alerted) -> None:
    """Six buttons (two reviews, delete, three time-outs) name case 1 in their ids."""
    ids = [alerted.alert.button(label=label)["custom_id"] for label in LABELS]
    assert all(i.startswith("sw:alert:") and i.endswith(":1") for i in ids)
    assert len(set(ids)) == 6


LABELS = ["Confirm deepfake", "Not a deepfake", "Delete message", "Time out 10 min",
          "Time out 1 h", "Time out 1 day"]  # fmt: skip


# --- each button ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "decision"),
    [("Confirm deepfake", Review.CONFIRMED), ("Not a deepfake", Review.FALSE_POSITIVE)],
)
async def test_review_buttons_record_the_review(
    alerted: Alerted, label: str, decision: Review
) -> None:
    """Confirm deepfake / Not a deepfake record the moderator's review on the case and alert."""
    emu, audit = alerted.sw.emu, alerted.sw.bot.audit
    updated = await click(alerted, label)
    record = await audit.cases.case(emu.guild.id, 1)
    events = moderation(await audit.cases.case_events(emu.guild.id, 1))
    assert record is not None
    assert (record.review, record.reviewed_by) == (decision, emu.moderator.id)
    shown = "confirmed deepfake" if decision is Review.CONFIRMED else "not a deepfake"
    assert shown in actions(updated)
    assert [(e.action, e.actor) for e in events] == [("review", str(emu.moderator.id))]


async def test_delete_button_deletes_the_message(alerted: Alerted) -> None:
    """Delete message removes the member's message and records who deleted it on the case."""
    emu, audit = alerted.sw.emu, alerted.sw.bot.audit
    updated = await click(alerted, "Delete message")
    events = moderation(await audit.cases.case_events(emu.guild.id, 1))
    assert emu.message(alerted.message).deleted
    assert "Message deleted" in actions(updated)
    assert [(e.action, e.actor) for e in events] == [("delete", str(emu.moderator.id))]


TIMEOUTS = [
    ("Time out 10 min", timedelta(minutes=10)),
    ("Time out 1 h", timedelta(hours=1)),
    ("Time out 1 day", timedelta(days=1)),
]


@pytest.mark.parametrize(("label", "length"), TIMEOUTS, ids=[t for t, _ in TIMEOUTS])
async def test_timeout_buttons_time_the_author_out(
    alerted: Alerted, label: str, length: timedelta
) -> None:
    """Each time-out button times the author out for its length and records it on the case."""
    emu, audit = alerted.sw.emu, alerted.sw.bot.audit
    before = datetime.now(UTC).replace(microsecond=0)
    updated = await click(alerted, label)
    after = datetime.now(UTC)
    until = emu.member.communication_disabled_until
    [patch] = emu.requests_to("PATCH", f"/guilds/{emu.guild.id}/members/{emu.member.id}")
    events = moderation(await audit.cases.case_events(emu.guild.id, 1))
    assert until is not None and before + length <= until <= after + length
    assert str(emu.moderator.id) in (patch.audit_log_reason or "")
    assert "timed out" in actions(updated)
    assert [(e.action, e.actor) for e in events] == [("timeout", str(emu.moderator.id))]


# --- who may click --------------------------------------------------------------------------------


@pytest.mark.parametrize("label", LABELS)
async def test_a_plain_member_cannot_click(alerted: Alerted, label: str) -> None:
    """A member without moderator permissions is refused by every button; nothing happens."""
    emu, audit = alerted.sw.emu, alerted.sw.bot.audit
    ix = await emu.click_button(alerted.alert, emu.member, label=label)
    refusal = await ix.wait_for_reply()
    record = await audit.cases.case(emu.guild.id, 1)
    assert refusal.ephemeral and "permission" in refusal.content
    assert record is not None and record.review is None
    assert not emu.message(alerted.message).deleted
    assert emu.member.communication_disabled_until is None
    assert moderation(await audit.cases.case_events(emu.guild.id, 1)) == []


async def test_timeouts_need_moderate_members(alerted: Alerted) -> None:
    """A helper with Manage Messages only may confirm but not time members out."""
    emu = alerted.sw.emu
    helper_role = emu.create_role(emu.guild, "Helper", "manage_messages")
    helper = emu.add_member(emu.guild, "helper", roles=(helper_role,))
    ix = await emu.click_button(alerted.alert, helper, label="Time out 1 h")
    refusal = await ix.wait_for_reply()
    assert "Moderate Members" in refusal.content
    assert emu.member.communication_disabled_until is None


# --- failures are shown, not lost -----------------------------------------------------------------


async def test_delete_without_manage_messages_is_shown_on_the_alert(alerted: Alerted) -> None:
    """When the bot may not delete there, the alert says so and no deletion is recorded."""
    emu, audit = alerted.sw.emu, alerted.sw.bot.audit
    emu.deny_bot(emu.text_channel, "manage_messages")
    updated = await click(alerted, "Delete message")
    assert "Manage Messages" in actions(updated)
    assert not emu.message(alerted.message).deleted
    assert moderation(await audit.cases.case_events(emu.guild.id, 1)) == []


async def test_delete_of_a_message_already_gone_is_shown(alerted: Alerted) -> None:
    """Deleting a message someone already deleted says so on the alert."""
    emu = alerted.sw.emu
    await emu.delete_message(alerted.message)
    updated = await click(alerted, "Delete message")
    assert "already deleted" in actions(updated)


async def test_timeout_without_moderate_members_is_shown(alerted: Alerted) -> None:
    """When the bot may not time members out, the alert says so and nothing is recorded."""
    emu, audit = alerted.sw.emu, alerted.sw.bot.audit
    emu.set_bot_permissions(emu.guild, DEFAULT_BOT_PERMISSIONS & ~Permission.MODERATE_MEMBERS)
    updated = await click(alerted, "Time out 10 min")
    assert "Could not time out" in actions(updated)
    assert emu.member.communication_disabled_until is None
    assert moderation(await audit.cases.case_events(emu.guild.id, 1)) == []


async def test_buttons_of_a_forgotten_case_say_so(alerted: Alerted) -> None:
    """After /spoofwatch forget, the alert's buttons answer that the case no longer exists."""
    emu = alerted.sw.emu
    await run(alerted.sw, emu.admin, "spoofwatch forget", {"member": emu.member})
    updated = await click(alerted, "Confirm deepfake")
    assert "no longer exists" in actions(updated)
    assert all(b.get("disabled") for b in buttons(updated))


async def test_alert_post_failure_keeps_the_case(spoofwatch: Harness, tmp_path: Path) -> None:
    """If the mod-log stops accepting posts, the verdict reply and the case still stand."""
    emu = spoofwatch.emu
    modlog = await make_modlog(spoofwatch)
    emu.deny_bot(modlog, "send_messages")
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    reply = await spoofwatch.reply_to(await spoofwatch.post(path))
    await listeners_done(spoofwatch)
    assert "Case #1" in text_of(reply)
    assert emu.bot_messages(modlog) == []
    assert await spoofwatch.bot.audit.cases.case(emu.guild.id, 1) is not None


# --- after a restart ------------------------------------------------------------------------------


@pytest.fixture
async def alerted_then_restarted(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path
) -> AsyncIterator[Alerted]:
    """An alert posted by one run of the bot; the fixture yields inside the next run."""
    async with make_spoofwatch() as first:
        before = await post_fake(first, await make_modlog(first), wav(tmp_path, 1))
    async with make_spoofwatch() as second:
        yield Alerted(second, before.modlog, before.message, before.alert)


@pytest.mark.parametrize("label", ["Confirm deepfake", "Delete message", "Time out 10 min"])
async def test_buttons_work_after_a_restart(alerted_then_restarted: Alerted, label: str) -> None:
    """An alert posted before a restart still acts when clicked: the new process handles it."""
    a = alerted_then_restarted
    emu = a.sw.emu
    updated = await click(a, label)
    events = moderation(await a.sw.bot.audit.cases.case_events(emu.guild.id, 1))
    assert "⚠️" not in actions(updated) and actions(updated)
    assert [e.actor for e in events] == [str(emu.moderator.id)]


# --- an alert is never lost ---------------------------------------------------------------------

#: Bidi controls: visible to no one, removed by sanitizing, so the text becomes "".
_INVISIBLE = "\u202e\u2066"


@pytest.mark.parametrize("blank", ["file name", "provider label"])
async def test_alert_with_a_blank_name_or_label_is_posted(
    spoofwatch: Harness, tmp_path: Path, blank: str
) -> None:
    """Fails if a file name or provider label that sanitizes to "" breaks the alert."""
    emu = spoofwatch.emu
    modlog = await make_modlog(spoofwatch)
    path = wav(tmp_path, 1)
    label = _INVISIBLE if blank == "provider label" else "fake"
    spoofwatch.resemble.script_result(path, metrics=metrics([0.9, 0.9], label=label))
    name = _INVISIBLE if blank == "file name" else "clip.wav"
    message = await emu.send_message(
        emu.text_channel, emu.member, attachments=[emu.attachment(path, name, "audio/wav")]
    )
    await spoofwatch.reply_to(message)
    await listeners_done(spoofwatch)
    [alert] = emu.bot_messages(modlog)
    # Neither is shown (the kind and length say what was posted; the provider's label is in
    # /audit case), so nothing can be left blank: the full alert is posted, not the fallback.
    assert alert.embeds and "Case #1" in text_of(alert)
    assert "recording" in text_of(alert)


_REFUSED = {
    "code": 50035,
    "message": "Invalid Form Body",
    "errors": {
        "embeds": {
            "0": {
                "fields": {
                    "2": {
                        "value": {
                            "_errors": [
                                {"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}
                            ]
                        }
                    }
                }
            }
        }
    },
}


async def test_refused_alert_is_posted_again_as_plain_text(
    spoofwatch: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Fails if an alert Discord refuses is only logged instead of reaching the mod-log."""
    emu = spoofwatch.emu
    modlog = await make_modlog(spoofwatch)
    emu.fail_next("POST", f"/channels/{modlog.id}/messages", 400, json=_REFUSED)
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    message = await spoofwatch.post(path)
    await spoofwatch.reply_to(message)
    await listeners_done(spoofwatch)
    [alert] = emu.bot_messages(modlog)
    assert "case #1" in alert.content and str(message.id) in alert.content
    assert "embeds.0.fields.2.value: This field is required" in caplog.text
    # Only the embed was refused: the moderators keep their buttons.
    assert "Confirm deepfake" in str(alert.components)


async def test_alert_that_cannot_be_posted_is_recorded_on_the_case(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if an alert refused twice leaves no trace on the case."""
    emu = spoofwatch.emu
    modlog = await make_modlog(spoofwatch)
    emu.fail_next("POST", f"/channels/{modlog.id}/messages", 400, json=_REFUSED, times=2)
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    await spoofwatch.reply_to(await spoofwatch.post(path))
    await listeners_done(spoofwatch)
    events = await spoofwatch.bot.audit.cases.case_events(emu.guild.id, 1)
    assert [e.action for e in events] == ["alert_due", "alert_not_posted"]
    assert "This field is required" in events[1].reason


async def test_alert_for_a_vanished_modlog_is_recorded_on_the_case(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if an alert whose mod-log channel no longer exists leaves no trace on the case."""
    emu = spoofwatch.emu
    config = await spoofwatch.bot.guild_configs.get(emu.guild.id)
    vanished = config.model_copy(update={"modlog_channel_id": 1_100_000_000_000_000_000})
    await spoofwatch.bot.guild_configs.save(emu.guild.id, vanished)
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    await spoofwatch.reply_to(await spoofwatch.post(path))
    await listeners_done(spoofwatch)
    events = await spoofwatch.bot.audit.cases.case_events(emu.guild.id, 1)
    assert [(e.action, e.reason) for e in events][1:] == [
        ("alert_not_posted", "the mod-log channel is gone")
    ]
    # Settled: not tried again by the pass that posts alerts left due.
    alerts = spoofwatch.bot.get_cog("Alerts")
    assert alerts is not None and await alerts.send_owed(older_than=timedelta(0)) == 0  # type: ignore[attr-defined]


async def test_refused_buttons_are_left_out_of_the_retry(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if the plain retry resends the buttons Discord just refused (it would fail again)."""
    emu = spoofwatch.emu
    modlog = await make_modlog(spoofwatch)
    error = {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 80 or fewer."}]}
    body = {
        "code": 50035,
        "message": "Invalid Form Body",
        "errors": {"components": {"0": {"components": {"0": {"label": error}}}}},
    }
    emu.fail_next("POST", f"/channels/{modlog.id}/messages", 400, json=body)
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    await spoofwatch.reply_to(await spoofwatch.post(path))
    await listeners_done(spoofwatch)
    [alert] = emu.bot_messages(modlog)
    assert "case #1" in alert.content and alert.components == []
