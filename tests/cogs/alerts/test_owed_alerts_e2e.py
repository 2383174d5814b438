"""Mod-log alerts survive a stop: an alert is due on its case before anything is done about a
flagged message, and one left due (the process stopped, or its try raised) is posted late.

The real bot against the Discord emulator, the Resemble stand-in and a real SQLite file. What
a SIGKILL would leave behind is arranged by stopping the first run at the right moment (or
patching out its last step), as in `tests/bot/test_durability_e2e.py`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.scanning import ScanOutcome
from bot.scanning._answer import Answers
from bot.storage import open_audit_log
from testkit.alerts import make_alerted, make_modlog
from testkit.discord_emulator.models import Channel, Message
from testkit.e2e import Harness, MakeSpoofwatch
from testkit.moderation import FAKE, listeners_done, text_of, wav

LATE = "Sent late: Spoofwatch stopped before it could post this alert."


def alerts_cog(sw: Harness) -> Any:
    # Each start re-imports the extension: the running cog is not an instance of a class
    # imported here.
    cog = sw.bot.get_cog("Alerts")
    assert cog is not None
    return cog


async def alert_events(sw: Harness, case: int = 1) -> list[tuple[str, str]]:
    events = await sw.bot.audit.cases.case_events(sw.emu.guild.id, case)
    return [(e.action, e.reason) for e in events if e.action.startswith("alert_")]


async def settled_events(sw: Harness, case: int = 1) -> list[str]:
    """The case's alert events once its alert is settled (posted, or not postable)."""
    for _ in range(500):
        actions = [a for a, _ in await alert_events(sw, case)]
        if actions and actions[-1] != "alert_due":
            return actions
        await asyncio.sleep(0.01)
    return actions


async def flagged_alert_left_due(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Channel, Message]:
    """A first run that records the flagged case's alert as due, then stops before acting."""
    path = wav(tmp_path, 1)
    async with make_spoofwatch() as sw:
        modlog = await make_modlog(sw)

        async def stops_before_acting(*args: object, **kwargs: object) -> None:
            return None

        monkeypatch.setattr(alerts_cog(sw), "_act", stops_before_acting)
        sw.resemble.script_result(path, metrics=FAKE)
        message = await sw.post(path)
        await sw.reply_to(message)
        await listeners_done(sw)
        assert sw.emu.bot_messages(modlog) == []
        assert [a for a, _ in await alert_events(sw)] == ["alert_due"]
    monkeypatch.undo()
    return modlog, message


async def test_an_alert_is_due_on_its_case_before_it_is_posted(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if a flagged message's alert is not recorded as due before it is posted and as
    posted (where) after, or if a settled alert is posted again."""
    a = await make_alerted(spoofwatch, tmp_path)
    emu = spoofwatch.emu
    assert await alert_events(spoofwatch) == [
        ("alert_due", f"message {emu.text_channel.id}/{a.message.id}"),
        ("alert_posted", f"mod-log {a.modlog.id}/{a.alert.id}"),
    ]
    assert await alerts_cog(spoofwatch).send_owed(older_than=timedelta(0)) == 0
    assert emu.bot_messages(a.modlog) == [a.alert]


async def test_a_flagged_verdict_recorded_but_never_answered_is_alerted_after_a_restart(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if a stop between recording a flagged verdict and answering the message (the
    public reply comes first, then the alert) leaves the moderators without an alert once the
    restart's catch-up has answered, or costs a second provider call."""
    path = wav(tmp_path, 1)

    async def dies_before_replying(*args: object, **kwargs: object) -> list[ScanOutcome]:
        return []

    async with make_spoofwatch() as sw:
        modlog = await make_modlog(sw)
        monkeypatch.setattr(Answers, "answer", dies_before_replying)
        sw.resemble.script_result(path, metrics=FAKE)
        message = await sw.post(path)
        await sw.emu.wait_for(lambda: sw.resemble.submissions == 1)
        await sw.settle()
        assert sw.emu.bot_messages(modlog) == []
    monkeypatch.undo()
    async with make_spoofwatch() as sw:
        alert = await sw.emu.wait_for_message(modlog, predicate=lambda m: bool(m.embeds))
        await sw.emu.wait_for_reply(message)
        await listeners_done(sw)
        assert "case #1" in text_of(alert).lower() and "90%" in text_of(alert)
        assert sw.emu.bot_messages(modlog) == [alert]
        assert [a for a, _ in await alert_events(sw)] == ["alert_due", "alert_posted"]
        assert sw.resemble.submissions == 1


async def test_a_stop_after_the_reply_and_before_the_alert_still_gets_the_alert_out(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if a stop after a flagged verdict's reply is on Discord (so the restart's
    catch-up never comes back to the message) but before its alert loses the alert: the
    alert must be on record as due before the reply goes out."""
    path = wav(tmp_path, 1)
    async with make_spoofwatch() as sw:
        modlog = await make_modlog(sw)
        dispatch = sw.bot.dispatch

        def stops_before_alerting(event: str, /, *args: object, **kwargs: object) -> None:
            if event != "scan_finished":
                dispatch(event, *args, **kwargs)

        monkeypatch.setattr(sw.bot, "dispatch", stops_before_alerting)
        sw.resemble.script_result(path, metrics=FAKE)
        message = await sw.post(path)
        await sw.reply_to(message)
        await sw.settle()
        assert sw.emu.bot_messages(modlog) == []
    monkeypatch.undo()
    async with make_spoofwatch() as sw:
        alert = await sw.emu.wait_for_message(modlog, predicate=lambda m: bool(m.embeds))
        assert LATE in text_of(alert) and f"/{message.id}" in text_of(alert)
        assert await settled_events(sw) == ["alert_due", "alert_posted"]
        replies = [m for m in sw.emu.replies_to(message) if m.author.id == sw.emu.bot_user.id]
        assert len(replies) == 1
        assert sw.emu.bot_messages(modlog) == [alert]


async def test_alerts_posted_but_not_recorded_before_a_stop_are_not_posted_again(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if alerts that reached the mod-log just before a stop (their `alert_posted`
    never recorded) are posted a second time at the next start instead of being found there,
    or if finding them reads the mod-log back more than once."""
    async with make_spoofwatch() as sw:
        modlog = await make_modlog(sw)
        cog = alerts_cog(sw)
        record = cog._record

        async def stops_before_recording(case: Any, action: str, what: str) -> None:
            if action != "alert_posted":
                await record(case, action, what)

        monkeypatch.setattr(cog, "_record", stops_before_recording)
        for n in (1, 2):
            path = wav(tmp_path, n)
            sw.resemble.script_result(path, metrics=FAKE)
            await sw.reply_to(await sw.post(path))
            await listeners_done(sw)
        alerts = sw.emu.bot_messages(modlog)
        assert len(alerts) == 2
        assert [a for a, _ in await alert_events(sw, 2)] == ["alert_due"]
    monkeypatch.undo()
    async with make_spoofwatch() as sw:
        for case, alert in zip((1, 2), alerts, strict=True):
            assert await settled_events(sw, case) == ["alert_due", "alert_posted"]
            assert (await alert_events(sw, case))[-1][1] == f"mod-log {modlog.id}/{alert.id}"
        assert [m.id for m in sw.emu.bot_messages(modlog)] == [a.id for a in alerts]
        # Read back from when the alerts fell due (the catch-up reads channels its own way).
        reads = sw.emu.requests_to("GET", f"/channels/{modlog.id}/messages")
        assert len([r for r in reads if "after" in r.query]) == 1


async def test_an_alert_left_due_by_a_stop_is_posted_late_at_the_next_start(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if an alert recorded as due but never posted (the process stopped) is lost at
    the next start, is not marked as late, or is posted more than once."""
    modlog, message = await flagged_alert_left_due(make_spoofwatch, tmp_path, monkeypatch)
    async with make_spoofwatch() as sw:
        alert = await sw.emu.wait_for_message(modlog, predicate=lambda m: bool(m.embeds))
        text = text_of(alert)
        assert LATE in text and "case #1" in text.lower()
        assert f"/{message.id}" in text  # still on Discord: the alert links to it
        assert "Confirm deepfake" in str(alert.components)
        assert await settled_events(sw) == ["alert_due", "alert_posted"]
        assert await alerts_cog(sw).send_owed(older_than=timedelta(0)) == 0
        assert sw.emu.bot_messages(modlog) == [alert]


async def test_an_alert_left_due_for_a_deleted_message_is_posted_from_the_case(
    make_spoofwatch: MakeSpoofwatch,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails if an alert left due is dropped because its message was deleted meanwhile
    (the case still names who posted what, where, and the score)."""
    modlog, message = await flagged_alert_left_due(make_spoofwatch, tmp_path, monkeypatch)
    async with make_spoofwatch() as sw:
        # Deleted before the bot's start-up pass reads it (the pass waits for the gateway).
        await sw.emu.delete_message(message)
        alert = await sw.emu.wait_for_message(modlog, predicate=lambda m: "case #1" in m.content)
        assert LATE in alert.content and "no longer on Discord" in alert.content
        assert "90% likely synthetic" in alert.content
        assert f"<@{sw.emu.member.id}>" in alert.content
        assert f"<#{sw.emu.text_channel.id}>" in alert.content
        assert "Confirm deepfake" in str(alert.components)
        assert await settled_events(sw) == ["alert_due", "alert_posted"]


async def test_a_recent_due_alert_is_left_to_the_task_posting_it(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if a pass after start-up takes over an alert due only moments ago (in a raid,
    alerts wait their turn behind the mod-log's rate limit): it would be posted twice."""
    modlog, _ = await flagged_alert_left_due(make_spoofwatch, tmp_path, monkeypatch)
    async with make_spoofwatch() as sw:
        await sw.emu.wait_for_message(modlog, predicate=lambda m: bool(m.embeds))
        assert await settled_events(sw) == ["alert_due", "alert_posted"]
        cog = alerts_cog(sw)
        # Due again (a new try of the same case), moments ago: a later pass leaves it.
        assert sw.bot.user is not None
        await sw.bot.audit.admin.record_action(
            sw.emu.guild.id, 1, action="alert_due", actor_id=sw.bot.user.id, outcome="again"
        )
        assert await cog.send_owed() == 0
        assert [a for a, _ in await alert_events(sw)][-1] == "alert_due"
        # Taken once old enough: the case's alert is found in the mod-log, not posted twice.
        assert await cog.send_owed(older_than=timedelta(0)) == 1
        assert [a for a, _ in await alert_events(sw)][-1] == "alert_posted"
        assert len(sw.emu.bot_messages(modlog)) == 1


async def test_a_guild_without_a_mod_log_is_owed_no_alert(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if a flagged verdict in a guild that set no mod-log channel (the default) is
    recorded as an alert due or not posted: nothing was owed, and the start-up pass and the
    alerts metric would report failures that are only a setting."""
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    await spoofwatch.reply_to(await spoofwatch.post(path))
    await listeners_done(spoofwatch)
    assert await alert_events(spoofwatch) == []
    assert await alerts_cog(spoofwatch).send_owed(older_than=timedelta(0)) == 0


async def test_an_alert_left_due_in_a_guild_that_since_unset_its_mod_log_is_settled(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if an alert left due stays due (retried by every later pass) once its guild has
    no mod-log channel any more, or is not recorded as not posted, saying why."""
    _, message = await flagged_alert_left_due(make_spoofwatch, tmp_path, monkeypatch)
    # While the bot is stopped, the mod-log is unset (as `/spoofwatch settings modlog` would).
    assert message.guild_id is not None
    audit = await open_audit_log(tmp_path / "spoofwatch.db")
    try:
        config = await audit.settings.guild_config(message.guild_id)
        await audit.settings.save_guild_config(
            message.guild_id, config.model_copy(update={"modlog_channel_id": None})
        )
    finally:
        await audit.close()
    async with make_spoofwatch() as sw:
        assert await settled_events(sw) == ["alert_due", "alert_not_posted"]
        assert (await alert_events(sw))[-1][1] == "no mod-log channel is set"
        assert await alerts_cog(sw).send_owed(older_than=timedelta(0)) == 0
        assert sw.emu.message(message).deleted is False
