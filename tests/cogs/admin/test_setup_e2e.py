"""Set-up through Discord: the checklist (`/spoofwatch setup` and on joining a server), the
threshold as a percentage, and role exemptions.

The real bot against the Discord emulator, the Resemble stand-in and a real SQLite file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from testkit.discord_emulator.bits import DEFAULT_BOT_PERMISSIONS, ChannelType, Permission
from testkit.discord_emulator.models import Message
from testkit.e2e import Harness
from testkit.moderation import configure, field, not_scanned, run, scan, text_of, wav


async def _checklist(sw: Harness) -> Message:
    answer = await run(sw, sw.emu.admin, "spoofwatch setup")
    assert answer.ephemeral
    return answer


def _item(answer: Message, name: str) -> str:
    embed = answer.embeds[0]
    return next(f"{f['name']}\n{f['value']}" for f in embed["fields"] if name in f["name"])


# --- /spoofwatch setup --------------------------------------------------------------------------


async def test_setup_on_a_fresh_server_says_alerts_are_off(spoofwatch: Harness) -> None:
    """Fails if a missing mod-log is not named as the thing left to do."""
    answer = await _checklist(spoofwatch)
    assert "❌" in _item(answer, "Mod-log") and "alerts are off" in _item(answer, "Mod-log")
    assert "✅" in _item(answer, "Permissions")
    assert "1 of 2" in answer.embeds[0]["description"]


async def test_setup_names_the_channels_the_bot_cannot_answer_in(spoofwatch: Harness) -> None:
    """Fails if a scanned channel where the bot may not send is not named."""
    emu = spoofwatch.emu
    emu.deny_bot(emu.text_channel, "send_messages")
    answer = await _checklist(spoofwatch)
    permissions = _item(answer, "Permissions")
    assert "❌" in permissions and f"<#{emu.text_channel.id}>" in permissions


async def test_setup_names_missing_server_permissions(spoofwatch: Harness) -> None:
    """Fails if a permission the bot was not granted (Moderate Members) goes unmentioned."""
    emu = spoofwatch.emu
    emu.set_bot_permissions(emu.guild, DEFAULT_BOT_PERMISSIONS & ~Permission.MODERATE_MEMBERS)
    answer = await _checklist(spoofwatch)
    assert "Moderate Members" in _item(answer, "Permissions")


async def test_setup_is_done_once_a_modlog_is_set(spoofwatch: Harness) -> None:
    """Fails if re-running the checklist does not follow the settings."""
    emu = spoofwatch.emu
    modlog = emu.create_text_channel(emu.guild, "mod-log")
    await emu.wait_for(lambda: spoofwatch.bot.get_channel(modlog.id))
    await configure(spoofwatch, "modlog", {"channel": modlog})
    answer = await _checklist(spoofwatch)
    assert _item(answer, "Mod-log").startswith("✅") and f"<#{modlog.id}>" in text_of(answer)
    assert "2 of 2" in answer.embeds[0]["description"]


@pytest.mark.parametrize(("typed", "stored"), [(80.0, 0.8), (0.8, 0.8), (100.0, 1.0)])
async def test_threshold_is_typed_as_a_percentage(
    spoofwatch: Harness, typed: float, stored: float
) -> None:
    """Fails if "80" is not 80 % (or the 0–1 form stops working)."""
    emu = spoofwatch.emu
    await configure(spoofwatch, "threshold", {"value": typed})
    config = await spoofwatch.bot.guild_configs.get(emu.guild.id)
    assert config.alert_threshold == pytest.approx(stored)
    assert f"{stored:.0%}" in _item(await _checklist(spoofwatch), "threshold")


async def test_setup_refuses_members(spoofwatch: Harness) -> None:
    """Fails if a member without Manage Server sees the checklist."""
    answer = await run(spoofwatch, spoofwatch.emu.member, "spoofwatch setup")
    assert "Manage Server" in answer.content and not answer.embeds


# --- on joining a server ------------------------------------------------------------------------


def _dms_to(sw: Harness, user_id: int) -> list[Message]:
    emu = sw.emu
    return [
        m
        for m in emu.bot_messages()
        if emu.world.channel(m.channel_id).type == ChannelType.DM
        and emu.world.channel(m.channel_id).recipient_ids == [user_id]
    ]


async def test_joining_a_server_posts_the_checklist_in_its_system_channel(
    spoofwatch: Harness,
) -> None:
    """Fails if the bot joins silently when it may post in the system channel."""
    emu = spoofwatch.emu
    guild = emu.create_guild("New Server", system_channel="welcome")
    assert guild.system_channel_id is not None
    note = await emu.wait_for_message(guild.system_channel_id)
    assert "Spoofwatch set-up" in text_of(note) and "alerts are off" in text_of(note)


async def test_joining_without_a_system_channel_tells_the_owner(spoofwatch: Harness) -> None:
    """Fails if the owner is not told when there is no system channel."""
    emu = spoofwatch.emu
    guild = emu.create_guild("Quiet Server")
    await emu.wait_for(lambda: _dms_to(spoofwatch, guild.owner_id))
    [dm] = _dms_to(spoofwatch, guild.owner_id)
    assert "Quiet Server" in dm.content and "Spoofwatch set-up" in text_of(dm)


async def test_joining_with_nowhere_to_post_is_silent(
    spoofwatch: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Fails if closed DMs and no system channel raise or log an error."""
    emu = spoofwatch.emu
    owner = emu.create_user("private-owner")
    emu.close_dms(owner)
    with caplog.at_level(logging.INFO):
        guild = emu.create_guild("Private Server", owner=owner)
        await emu.wait_for(lambda: spoofwatch.bot.get_guild(guild.id))
        await emu.wait_for(lambda: "no checklist sent" in caplog.text)
    assert _dms_to(spoofwatch, owner.id) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- role exemptions ----------------------------------------------------------------------------


async def test_members_with_an_exempt_role_are_not_scanned(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if a member holding an exempt role is scanned automatically."""
    emu = spoofwatch.emu
    trusted_role = emu.create_role(emu.guild, "Trusted")
    trusted = emu.add_member(emu.guild, "trusted", roles=(trusted_role,))
    await configure(spoofwatch, "exempt-add", {"role": trusted_role})
    message = await spoofwatch.post(wav(tmp_path, 1), author=trusted)
    assert await not_scanned(spoofwatch, message, wav(tmp_path, 2))


async def test_removing_an_exemption_scans_the_role_again(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if exempt-remove leaves the role exempt."""
    emu = spoofwatch.emu
    trusted_role = emu.create_role(emu.guild, "Trusted")
    trusted = emu.add_member(emu.guild, "trusted", roles=(trusted_role,))
    await configure(spoofwatch, "exempt-add", {"role": trusted_role})
    await configure(spoofwatch, "exempt-remove", {"role": trusted_role})
    reply = await scan(spoofwatch, wav(tmp_path, 1), author=trusted)
    assert "Case #1" in text_of(reply)


async def test_exempt_roles_are_shown_in_settings(spoofwatch: Harness) -> None:
    """Fails if the settings do not show which roles are exempt."""
    emu = spoofwatch.emu
    role = emu.create_role(emu.guild, "Bots")
    await configure(spoofwatch, "exempt-add", {"role": role})
    shown = await run(spoofwatch, emu.admin, "spoofwatch settings show")
    assert field(shown.embeds[0], "Exempt roles") == f"<@&{role.id}>"


async def test_a_system_channel_the_bot_cannot_post_in_falls_back_to_the_owner(
    spoofwatch: Harness,
) -> None:
    """Fails if the bot tries (and fails) the system channel instead of telling the owner."""
    emu = spoofwatch.emu
    quiet = DEFAULT_BOT_PERMISSIONS & ~Permission.SEND_MESSAGES
    guild = emu.create_guild(
        "Read Only", system_channel="welcome", bot_permissions=quiet, everyone_permissions=0
    )
    await emu.wait_for(lambda: _dms_to(spoofwatch, guild.owner_id))
    assert guild.system_channel_id is not None
    assert emu.bot_messages(guild.system_channel_id) == []
    assert emu.requests_to("POST", f"/channels/{guild.system_channel_id}/messages") == []
