"""The file a mod-log alert keeps of a deleted message goes when its case does: the retention
purge and `/spoofwatch forget` take it off the alert, through Discord, and say so.

The real bot against the Discord emulator, the Resemble stand-in and a real SQLite file.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

import bot.discord_glue.kept_evidence
from bot.discord_glue.kept_evidence import (
    KEPT,
    POSTED,
    REDACTION,
    REMOVAL,
    REMOVAL_FAILED,
    TRANSCRIPT_REMOVED,
    KeptEvidence,
)
from bot.storage import AuditEvent, ShardFilter
from testkit.alerts import make_modlog
from testkit.discord_emulator.models import Channel, Message
from testkit.e2e import Harness, MakeSpoofwatch
from testkit.moderation import (
    FAKE,
    configure,
    field,
    listeners_done,
    run,
    text_of,
    wav,
)
from testkit.standins.resemble import metrics

#: Two stretches of four flagged (the stand-in's score is their mean): a timeline picture.
PARTLY = metrics([0.05, 0.9, 0.95, 0.1], label="fake")


async def _alert_with_evidence(sw: Harness, tmp_path: Path) -> tuple[Channel, Message]:
    """A flagged voice file deleted by the guild's policy: the alert carries the file."""
    emu = sw.emu
    modlog = emu.create_text_channel(emu.guild, "mod-log")
    await emu.wait_for(lambda: sw.bot.get_channel(modlog.id))
    await configure(sw, "modlog", {"channel": modlog})
    await configure(sw, "action", {"policy": "delete_and_alert"})
    path = wav(tmp_path, 1)
    sw.resemble.script_result(path, metrics=FAKE)
    await sw.post(path)
    await sw.settle()
    await listeners_done(sw)
    [alert] = [m for m in emu.bot_messages(modlog) if m.embeds]
    assert "case-1-clip-1.wav" in [a.filename for a in alert.attachments]
    return modlog, alert


async def _events(sw: Harness, action: str) -> list[AuditEvent]:
    events = await sw.bot.audit.cases.case_events(sw.emu.guild.id, 1)
    return [e for e in events if e.action == action]


async def _purge(sw: Harness) -> None:
    """The hourly retention run, now (past the default 90 days)."""
    sw.now[0] += timedelta(days=91)
    await sw.bot.get_cog("Audit").purge()  # type: ignore[union-attr]


def _removed(alert: Message) -> bool:
    [embed] = alert.embeds
    return (
        alert.attachments == []
        and "image" not in embed
        and "retention setting" in (field(embed, "Actions") or "")
        and "The file is attached here" not in (field(embed, "Actions") or "")
    )


async def test_the_alert_records_where_its_evidence_is(spoofwatch: Harness, tmp_path: Path) -> None:
    """Fails if an alert posted with the file leaves no record of its channel and message,
    so the retention purge could never find it."""
    modlog, alert = await _alert_with_evidence(spoofwatch, tmp_path)
    [kept] = await _events(spoofwatch, KEPT)
    assert kept.reason == f"alert {modlog.id}/{alert.id}"


async def test_the_retention_purge_takes_the_file_off_the_alert(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if the case passes its retention and the alert still carries the audio, or
    does not say why it was removed, or the removal is not in the audit log."""
    emu = spoofwatch.emu
    _, alert = await _alert_with_evidence(spoofwatch, tmp_path)
    await _purge(spoofwatch)
    assert await spoofwatch.bot.audit.cases.case(emu.guild.id, 1) is None
    assert _removed(emu.message(alert))
    assert emu.message(alert).edits[-1]["attachments"] == []
    [removal] = await _events(spoofwatch, REMOVAL)
    assert removal.reason.endswith("file removed from the alert")
    assert await spoofwatch.bot.audit.cases.unresolved_events(KEPT, REMOVAL) == []
    # The same one edit took the member's name off too; nothing is left owed.
    assert len(emu.message(alert).edits) == 1
    assert "author" not in emu.message(alert).embeds[0]
    owed = await spoofwatch.bot.audit.cases.unresolved_events(
        POSTED, (REMOVAL, REDACTION), case_deleted=True
    )
    assert owed == []


async def test_the_retention_purge_takes_the_case_off_an_alert_without_a_file(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path
) -> None:
    """Fails if an alert (no file kept: the message was not deleted) still shows the
    member's words, name and avatar, or the timeline picture, once its case passed the
    guild's retention, or if the edit is not recorded (and so retried forever)."""
    async with make_spoofwatch(resemble_intelligence=True) as sw:
        emu = sw.emu
        modlog = await make_modlog(sw)
        path = wav(tmp_path, 1)
        sw.resemble.script_result(path, metrics=PARTLY, transcription="send me the code")
        await sw.reply_to(await sw.post(path))
        await listeners_done(sw)
        [alert] = [m for m in emu.bot_messages(modlog) if m.embeds]
        [embed] = alert.embeds
        assert "send me the code" in (field(embed, "Transcript") or "")
        assert "author" in embed and embed["image"]["url"].startswith("attachment://")
        await _purge(sw)
        edited = emu.message(alert)
        [embed] = edited.embeds
        assert field(embed, "Transcript") == TRANSCRIPT_REMOVED
        assert "send me the code" not in str(edited.embeds)
        assert "author" not in embed and "image" not in embed and edited.attachments == []
        assert "case #1" in text_of(edited).lower()  # the moderators' record stays
        [redaction] = await _events(sw, REDACTION)
        assert redaction.reason.endswith("case removed from the alert")
        await _purge(sw)
        assert len(emu.message(alert).edits) == 1


async def test_forget_takes_the_file_off_the_alert_and_says_so(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if /spoofwatch forget leaves the member's audio on the mod-log alert, or the
    admin is not told."""
    emu = spoofwatch.emu
    _, alert = await _alert_with_evidence(spoofwatch, tmp_path)
    answer = await run(spoofwatch, emu.admin, "spoofwatch forget", {"member": emu.member})
    assert "taken off 1 mod-log alert." in answer.content
    assert _removed(emu.message(alert))
    assert len(await _events(spoofwatch, REMOVAL)) == 1


@pytest.mark.parametrize("gone", ["alert", "channel"])
async def test_a_deleted_alert_is_recorded_once_and_not_retried(
    spoofwatch: Harness, tmp_path: Path, gone: str
) -> None:
    """Fails if an alert (or its channel) a moderator deleted makes the purge fail, or is
    tried again at every run instead of being recorded as gone."""
    emu = spoofwatch.emu
    modlog, alert = await _alert_with_evidence(spoofwatch, tmp_path)
    if gone == "alert":
        await emu.delete_message(modlog, alert)
    else:
        # A deleted channel answers 10003 Unknown Channel (Discord docs, "JSON Error Codes").
        emu.fail_next(
            "GET",
            f"/channels/{modlog.id}/messages/*",
            404,
            json={"message": "Unknown Channel", "code": 10003},
        )
    await _purge(spoofwatch)
    await _purge(spoofwatch)
    [removal] = await _events(spoofwatch, REMOVAL)
    assert "already gone (404)" in removal.reason


async def test_an_alert_out_of_reach_is_recorded_not_retried(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if losing access to the mod-log (403) loops or goes unrecorded."""
    emu = spoofwatch.emu
    modlog, _ = await _alert_with_evidence(spoofwatch, tmp_path)
    emu.deny_bot(modlog, "view_channel")
    await _purge(spoofwatch)
    await _purge(spoofwatch)
    [removal] = await _events(spoofwatch, REMOVAL)
    assert "out of reach, file left in place" in removal.reason


async def test_discord_down_does_not_block_the_purge_and_the_removal_is_retried(
    spoofwatch: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if Discord being unreachable keeps the case past its retention, drops the
    removal, leaves no trace of the failed try, records it at every try, or has a run try
    every owed alert (each waiting out its timeout) once one found Discord unreachable."""
    emu = spoofwatch.emu
    modlog, alert = await _alert_with_evidence(spoofwatch, tmp_path)
    second = wav(tmp_path, 2)
    spoofwatch.resemble.script_result(second, metrics=FAKE)
    await spoofwatch.post(second)
    await spoofwatch.settle()
    await listeners_done(spoofwatch)
    [_, other] = [m for m in emu.bot_messages(modlog) if m.embeds]
    real_edit = bot.discord_glue.kept_evidence._edit
    tries: list[int] = []

    async def unreachable(_client: object, _channel: int, message_id: int) -> None:
        # A connection error as aiohttp raises it when Discord cannot be reached (the
        # emulator's 5xx would cost discord.py's own retries, about 25 s, first).
        tries.append(message_id)
        raise aiohttp.ClientConnectionError("Cannot connect to host discord.com:443")

    monkeypatch.setattr(bot.discord_glue.kept_evidence, "_edit", unreachable)
    await _purge(spoofwatch)
    await _purge(spoofwatch)
    assert tries == [alert.id, alert.id]  # one try per run, the oldest first
    assert await spoofwatch.bot.audit.cases.case(emu.guild.id, 1) is None
    assert "case-1-clip-1.wav" in [a.filename for a in emu.message(alert).attachments]
    [failed] = await _events(spoofwatch, REMOVAL_FAILED)
    assert "ClientConnectionError" in failed.reason and "will retry" in failed.reason
    assert await _events(spoofwatch, REMOVAL) == []

    monkeypatch.setattr(bot.discord_glue.kept_evidence, "_edit", real_edit)
    await _purge(spoofwatch)
    assert _removed(emu.message(alert)) and _removed(emu.message(other))
    assert len(await _events(spoofwatch, REMOVAL)) == 1


async def test_another_processs_guild_is_left_to_that_process(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if a process of a sharded deployment edits the alerts of a guild another
    process runs (both would edit them and record it), or leaves its own guild's alone."""
    emu = spoofwatch.emu
    _, alert = await _alert_with_evidence(spoofwatch, tmp_path)
    # The case goes (as `/spoofwatch forget` or the purge would), its alert still carries it.
    await spoofwatch.bot.audit.admin.forget_author(emu.guild.id, emu.member.id, actor_id=9)
    shard = (emu.guild.id >> 22) % 2
    elsewhere = KeptEvidence(
        spoofwatch.bot.audit, shards=ShardFilter(count=2, ids=frozenset({1 - shard}))
    )
    assert await elsewhere.remove_owed(spoofwatch.bot) == {}
    assert emu.message(alert).attachments != []
    here = KeptEvidence(spoofwatch.bot.audit, shards=ShardFilter(count=2, ids=frozenset({shard})))
    assert await here.remove_owed(spoofwatch.bot) == {emu.guild.id: 1}
    assert emu.message(alert).attachments == []
