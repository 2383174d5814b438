"""Issue 4 through Discord: cases, `/audit …` answers, isolation, deletion and retention.

The real bot against the Discord emulator, the Resemble stand-in and a real SQLite file.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.storage import Review, Trigger
from testkit.discord_emulator.models import Channel, Guild, Member, Message
from testkit.e2e import Harness, MakeSpoofwatch
from testkit.moderation import FAKE, MANAGE_MESSAGES, configure, footer, run, scan, text_of, wav


async def test_a_scan_is_a_case_numbered_in_the_verdict(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """The verdict's footer names the case the scan created, and the case holds the message."""
    emu = spoofwatch.emu
    message = await spoofwatch.post(wav(tmp_path, 1))
    reply = await spoofwatch.reply_to(message)
    record = await spoofwatch.bot.audit.cases.case(emu.guild.id, 1)
    assert record is not None
    assert "Case #1" in footer(reply.embeds[0])
    assert (record.channel_id, record.message_id, record.author_id) == (
        emu.text_channel.id,
        message.id,
        emu.member.id,
    )
    assert record.trigger is Trigger.AUTO
    assert record.jump_url == (
        f"https://discord.com/channels/{emu.guild.id}/{emu.text_channel.id}/{message.id}"
    )


async def _cases(sw: Harness, tmp_path: Path, count: int, *, start: int = 0) -> list[Message]:
    """`count` distinct files posted by the plain member, each answered."""
    return [await scan(sw, wav(tmp_path, start + n)) for n in range(count)]


def _case_numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\*\*#(\d+)\*\*", text)]


async def test_recent_lists_latest_cases_privately(spoofwatch: Harness, tmp_path: Path) -> None:
    """/audit recent answers ephemerally with the latest cases, newest first."""
    emu = spoofwatch.emu
    await _cases(spoofwatch, tmp_path, 3)
    answer = await run(spoofwatch, emu.moderator, "audit recent")
    assert answer.ephemeral
    assert _case_numbers(text_of(answer)) == [3, 2, 1]


async def test_user_lists_only_that_members_cases(spoofwatch: Harness, tmp_path: Path) -> None:
    """/audit user shows the member's cases, newest first, and nobody else's."""
    emu = spoofwatch.emu
    other = emu.add_member(emu.guild, "bob")
    await scan(spoofwatch, wav(tmp_path, 1))
    await scan(spoofwatch, wav(tmp_path, 2), author=other)
    await scan(spoofwatch, wav(tmp_path, 3))
    answer = await run(spoofwatch, emu.moderator, "audit user", {"member": emu.member})
    assert answer.ephemeral
    assert _case_numbers(text_of(answer)) == [3, 1]


async def test_case_shows_one_case_with_its_jump_link(spoofwatch: Harness, tmp_path: Path) -> None:
    """/audit case N shows that case in full, including the link to the scanned message."""
    emu = spoofwatch.emu
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    message = await spoofwatch.post(path)
    await spoofwatch.reply_to(message)
    answer = await run(spoofwatch, emu.moderator, "audit case", {"number": 1})
    text = text_of(answer)
    assert answer.ephemeral
    assert "Case #1" in text
    assert f"https://discord.com/channels/{emu.guild.id}/{emu.text_channel.id}/{message.id}" in text
    assert "spoofed" in text and "90%" in text


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("audit case", {"number": 1}),
        ("audit review", {"number": 1, "decision": "confirmed"}),
    ],
)
async def test_case_with_a_very_long_job_id_is_shown(
    spoofwatch: Harness, tmp_path: Path, command: str, options: dict[str, Any]
) -> None:
    """Fails if a provider job id longer than a field's 1,024 characters gets the answer refused."""
    emu = spoofwatch.emu
    await scan(spoofwatch, wav(tmp_path, 1))
    record = await spoofwatch.bot.audit.cases.case(emu.guild.id, 1)
    assert record is not None
    await spoofwatch.bot.audit.scans.mark_submitted(record.id, "job-" + "7" * 2000)
    answer = await run(spoofwatch, emu.moderator, command, options)
    assert "Case #1" in text_of(answer)
    assert "job-777" in text_of(answer)


async def test_case_that_does_not_exist_is_answered(spoofwatch: Harness) -> None:
    """/audit case for an unknown number says so instead of staying silent."""
    answer = await run(spoofwatch, spoofwatch.emu.moderator, "audit case", {"number": 7})
    assert "no case #7" in answer.content


async def test_flagged_lists_only_suspicious_cases(spoofwatch: Harness, tmp_path: Path) -> None:
    """/audit flagged lists spoofed cases and leaves bona fide ones out."""
    emu = spoofwatch.emu
    fake = wav(tmp_path, 2)
    spoofwatch.resemble.script_result(fake, metrics=FAKE)
    await scan(spoofwatch, wav(tmp_path, 1))
    await scan(spoofwatch, fake)
    await scan(spoofwatch, wav(tmp_path, 3))
    answer = await run(spoofwatch, emu.moderator, "audit flagged")
    assert _case_numbers(text_of(answer)) == [2]


async def test_flagged_by_generator_lists_only_that_generators_cases(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if `/audit flagged generator:` does not narrow the list to the cases the
    provider said that generator made, or the list does not name the generator."""
    emu = spoofwatch.emu
    eleven, play = wav(tmp_path, 1), wav(tmp_path, 2)
    spoofwatch.resemble.script_result(eleven, metrics=FAKE, tracing_label="elevenlabs")
    spoofwatch.resemble.script_result(play, metrics=FAKE, tracing_label="playht")
    await scan(spoofwatch, eleven)
    await scan(spoofwatch, play)
    answer = await run(spoofwatch, emu.moderator, "audit flagged", {"generator": "ElevenLabs"})
    text = text_of(answer)
    assert _case_numbers(text) == [1]
    assert "ElevenLabs" in text


async def test_stats_counts_by_label_channel_and_member(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """/audit stats counts the cases by label and names the top channel and flagged member."""
    emu = spoofwatch.emu
    fake = wav(tmp_path, 2)
    spoofwatch.resemble.script_result(fake, metrics=FAKE)
    await scan(spoofwatch, wav(tmp_path, 1))
    await scan(spoofwatch, fake)
    answer = await run(spoofwatch, emu.moderator, "audit stats")
    [embed] = answer.embeds
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert "**2** scans" in embed["description"]
    assert "bonafide: 1" in fields["By label"] and "spoofed: 1" in fields["By label"]
    assert f"<#{emu.text_channel.id}>: 2" in fields["Top channels"]
    assert f"<@{emu.member.id}>: 1" in fields["Most flagged members"]


def _exported(answer: Message, fmt: str) -> list[dict[str, Any]]:
    [upload] = answer.files
    assert upload.filename.endswith(f".{fmt}")
    text = upload.data.decode("utf-8")
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(text)))
    parsed = json.loads(text)
    return parsed if isinstance(parsed, list) else parsed["cases"]


@pytest.mark.parametrize("fmt", ["csv", "json"])
async def test_export_file_parses_with_the_right_rows(
    spoofwatch: Harness, tmp_path: Path, fmt: str
) -> None:
    """/audit export uploads a CSV/JSON file with one row per case of this server."""
    emu = spoofwatch.emu
    fake = wav(tmp_path, 2)
    spoofwatch.resemble.script_result(fake, metrics=FAKE)
    await scan(spoofwatch, wav(tmp_path, 1))
    await scan(spoofwatch, fake)
    answer = await run(spoofwatch, emu.moderator, "audit export", {"format": fmt})
    rows = sorted(_exported(answer, fmt), key=lambda r: int(r["case_number"]))
    assert answer.ephemeral
    assert [int(r["case_number"]) for r in rows] == [1, 2]
    assert [r["label"] for r in rows] == ["bonafide", "spoofed"]
    assert {str(r["author_id"]) for r in rows} == {str(emu.member.id)}


async def test_review_updates_the_case(spoofwatch: Harness, tmp_path: Path) -> None:
    """/audit review records the decision, the moderator, the time and the note on the case."""
    emu = spoofwatch.emu
    await scan(spoofwatch, wav(tmp_path, 1))
    answer = await run(
        spoofwatch,
        emu.moderator,
        "audit review",
        {"number": 1, "decision": "false_positive", "note": "his real voice"},
    )
    record = await spoofwatch.bot.audit.cases.case(emu.guild.id, 1)
    assert record is not None
    assert "not a deepfake" in answer.content
    assert (record.review, record.reviewed_by, record.review_note) == (
        Review.FALSE_POSITIVE,
        emu.moderator.id,
        "his real voice",
    )
    assert record.reviewed_at == spoofwatch.now[0]


async def test_review_of_an_unknown_case_is_answered(spoofwatch: Harness) -> None:
    """/audit review of a case that does not exist says so."""
    answer = await run(
        spoofwatch,
        spoofwatch.emu.moderator,
        "audit review",
        {"number": 3, "decision": "confirmed"},
    )
    assert "no case #3" in answer.content


# --- pagination -----------------------------------------------------------------------------


async def test_pages_turn_forward_and_back(spoofwatch: Harness, tmp_path: Path) -> None:
    """Next shows the following page, Previous the one before; the ends are disabled."""
    emu = spoofwatch.emu
    await _cases(spoofwatch, tmp_path, 5)
    first = await run(spoofwatch, emu.moderator, "audit recent", {"limit": 2})
    assert _case_numbers(text_of(first)) == [5, 4]
    assert first.button(label="Previous").get("disabled")
    second = await (await emu.click_button(first, emu.moderator, label="Next")).wait_for_reply()
    assert _case_numbers(text_of(second)) == [3, 2]
    third = await (await emu.click_button(second, emu.moderator, label="Next")).wait_for_reply()
    assert _case_numbers(text_of(third)) == [1]
    assert third.button(label="Next").get("disabled")
    back = await (await emu.click_button(third, emu.moderator, label="Previous")).wait_for_reply()
    assert _case_numbers(text_of(back)) == [3, 2]


async def test_pages_grey_out_when_they_time_out(
    spoofwatch: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if an expired pager keeps live-looking buttons that no longer answer."""
    # The class the running bot uses: discord.py re-imports an extension's modules each time
    # the bot loads it, so the one this file imported may be a stale copy.
    monkeypatch.setattr(sys.modules["cogs.audit._views"].Pager, "TIMEOUT_S", 0.5)
    emu = spoofwatch.emu
    await _cases(spoofwatch, tmp_path, 3)
    first = await run(spoofwatch, emu.moderator, "audit recent", {"limit": 2})
    assert not first.button(label="Next").get("disabled")
    async with asyncio.timeout(10):
        while not emu.message(first).button(label="Next").get("disabled"):
            await asyncio.sleep(0.05)
    assert emu.message(first).button(label="Previous").get("disabled")
    assert _case_numbers(text_of(emu.message(first))) == [3, 2]


async def test_only_the_asker_can_turn_pages(spoofwatch: Harness, tmp_path: Path) -> None:
    """Another moderator's click on Next is refused and the page stays as it was."""
    emu = spoofwatch.emu
    other_mod = emu.add_moderator(emu.guild, "other-mod")
    await _cases(spoofwatch, tmp_path, 3)
    first = await run(spoofwatch, emu.moderator, "audit recent", {"limit": 2})
    click = await emu.click_button(first, other_mod, label="Next")
    refusal = await click.wait_for_reply()
    assert "Only the moderator who asked" in refusal.content
    assert refusal.ephemeral
    assert _case_numbers(text_of(emu.message(first))) == [3, 2]


# --- who may ask ---------------------------------------------------------------------------

AUDIT_COMMANDS: list[tuple[str, dict[str, Any]]] = [
    ("audit recent", {}),
    ("audit user", {"member": None}),
    ("audit case", {"number": 1}),
    ("audit flagged", {}),
    ("audit stats", {}),
    ("audit export", {"format": "json"}),
    ("audit review", {"number": 1, "decision": "confirmed"}),
]


@pytest.mark.parametrize(("command", "options"), AUDIT_COMMANDS, ids=[c for c, _ in AUDIT_COMMANDS])
async def test_a_plain_member_is_refused(
    spoofwatch: Harness, tmp_path: Path, command: str, options: dict[str, Any]
) -> None:
    """Each /audit subcommand refuses a member without Manage Messages, even when delivered.

    The emulator delivers the interaction whatever the command's default permissions say, as
    Discord does once a server admin overrides them: the runtime check must refuse.
    """
    emu = spoofwatch.emu
    await scan(spoofwatch, wav(tmp_path, 1))
    options = {k: emu.member if v is None else v for k, v in options.items()}
    answer = await run(spoofwatch, emu.member, command, options)
    record = await spoofwatch.bot.audit.cases.case(emu.guild.id, 1)
    assert answer.ephemeral
    assert "Manage Messages" in answer.content
    assert not answer.embeds and not answer.files
    assert record is not None and record.review is None


def test_audit_commands_cover_the_group(spoofwatch_commands: dict[str, Any]) -> None:
    """The refusal matrix above names every /audit subcommand the bot registers."""
    audit = spoofwatch_commands["audit"]
    registered = {f"audit {o['name']}" for o in audit["options"]}
    assert registered == {c for c, _ in AUDIT_COMMANDS}


def test_audit_is_hidden_from_members_by_default(spoofwatch_commands: dict[str, Any]) -> None:
    """/audit is registered for Manage Messages by default and only in servers."""
    audit = spoofwatch_commands["audit"]
    assert int(audit["default_member_permissions"]) == MANAGE_MESSAGES
    assert audit.get("contexts") in (None, [0]) and audit.get("dm_permission") is not True


@pytest.fixture
async def spoofwatch_commands(spoofwatch: Harness) -> dict[str, Any]:
    """The command definitions the bot synced to the emulator, by name."""
    return {c["name"]: c for c in spoofwatch.emu.commands()}


# --- guild isolation -----------------------------------------------------------------------


@dataclass
class TwoGuilds:
    sw: Harness
    guild_b: Guild
    channel_b: Channel
    member_b: Member
    moderator_b: Member
    #: Every id of guild B an answer in guild A must never contain.
    secrets_b: set[str]


@pytest.fixture
async def two_guilds(make_spoofwatch: MakeSpoofwatch, tmp_path: Path) -> AsyncIterator[TwoGuilds]:
    """Guild A (the default) with cases #1–#2 by alice; guild B with cases #1–#3, all fake."""
    async with make_spoofwatch() as sw:
        emu = sw.emu
        emu_guild_b = emu.create_guild("Other Guild")
        channel_b = emu.create_text_channel(emu_guild_b, "chat")
        member_b = emu.add_member(emu_guild_b, "carol")
        moderator_b = emu.add_moderator(emu_guild_b, "b-mod")
        await emu.wait_for(lambda: sw.bot.get_channel(channel_b.id))
        await _cases(sw, tmp_path, 2)
        messages_b = []
        for n in range(10, 13):
            path = wav(tmp_path, n)
            sw.resemble.script_result(path, metrics=FAKE)
            messages_b.append(await sw.post(path, channel=channel_b, author=member_b))
            await sw.reply_to(messages_b[-1])
        secrets = {str(emu_guild_b.id), str(channel_b.id), str(member_b.id)}
        secrets |= {str(m.id) for m in messages_b}
        yield TwoGuilds(sw, emu_guild_b, channel_b, member_b, moderator_b, secrets)


ACROSS: list[tuple[str, dict[str, Any]]] = [
    ("audit recent", {}),
    ("audit user", {"member": "member_b"}),
    ("audit case", {"number": 3}),
    ("audit flagged", {}),
    ("audit stats", {}),
    ("audit export", {"format": "csv"}),
    ("audit export", {"format": "json"}),
    ("audit review", {"number": 3, "decision": "confirmed"}),
]


@pytest.mark.parametrize(
    ("command", "options"), ACROSS, ids=[f"{c}-{'-'.join(map(str, o.values()))}" for c, o in ACROSS]
)
async def test_a_moderator_never_sees_another_servers_cases(
    two_guilds: TwoGuilds, command: str, options: dict[str, Any]
) -> None:
    """No /audit answer in guild A carries an id of guild B, whatever number or member given."""
    sw = two_guilds.sw
    options = {k: two_guilds.member_b if v == "member_b" else v for k, v in options.items()}
    answer = await run(sw, sw.emu.moderator, command, options)
    seen = text_of(answer) + "".join(f.data.decode("utf-8", "replace") for f in answer.files)
    leaked = {s for s in two_guilds.secrets_b if s in seen}
    assert leaked == set()
    record_b = await sw.bot.audit.cases.case(two_guilds.guild_b.id, 3)
    assert record_b is not None and record_b.review is None


async def test_case_numbers_are_per_server(two_guilds: TwoGuilds) -> None:
    """Case #1 means this server's first case: each moderator sees their own server's."""
    sw = two_guilds.sw
    in_a = await run(sw, sw.emu.moderator, "audit case", {"number": 1})
    in_b = await run(
        sw, two_guilds.moderator_b, "audit case", {"number": 1}, channel=two_guilds.channel_b
    )
    assert f"<@{sw.emu.member.id}>" in text_of(in_a)
    assert f"<@{two_guilds.member_b.id}>" in text_of(in_b)


# --- deletion and retention ----------------------------------------------------------------


async def test_forget_removes_the_members_cases(spoofwatch: Harness, tmp_path: Path) -> None:
    """/spoofwatch forget deletes the member's cases, keeps others', and logs the deletion."""
    emu = spoofwatch.emu
    other = emu.add_member(emu.guild, "bob")
    await scan(spoofwatch, wav(tmp_path, 1))
    await scan(spoofwatch, wav(tmp_path, 2), author=other)
    answer = await run(spoofwatch, emu.admin, "spoofwatch forget", {"member": emu.member})
    audit = spoofwatch.bot.audit
    assert "Deleted 1 case" in answer.content
    assert await audit.cases.by_author(emu.guild.id, emu.member.id, limit=10) == []
    assert [r.case_number for r in await audit.cases.recent(emu.guild.id, limit=10)] == [2]
    events = await audit.cases.events(emu.guild.id, limit=10)
    assert any(e.action == "forget" and e.actor == str(emu.admin.id) for e in events)


@pytest.mark.parametrize("retention", [None, 30], ids=["default-90", "30"])
async def test_retention_purges_only_old_cases(
    spoofwatch: Harness, tmp_path: Path, retention: int | None
) -> None:
    """The hourly purge deletes cases past the retention (90 days by default), keeps the rest."""
    emu = spoofwatch.emu
    days = retention or 90
    start = spoofwatch.now[0]
    if retention is not None:
        await configure(spoofwatch, "retention", {"days": retention})
    await scan(spoofwatch, wav(tmp_path, 1))  # case 1: one day past the retention
    spoofwatch.now[0] = start + timedelta(days=days - 10)
    await scan(spoofwatch, wav(tmp_path, 2))  # case 2: eleven days younger than that
    spoofwatch.now[0] = start + timedelta(days=days + 1)
    cog = spoofwatch.bot.get_cog("Audit")
    assert cog is not None
    await cog.purge.coro(cog)  # type: ignore[attr-defined]  # the hourly task's body, once
    audit = spoofwatch.bot.audit
    assert [r.case_number for r in await audit.cases.recent(emu.guild.id, limit=10)] == [2]
    events = await audit.cases.events(emu.guild.id, limit=10)
    assert any(e.action == "purge" and e.actor == "retention" for e in events)
