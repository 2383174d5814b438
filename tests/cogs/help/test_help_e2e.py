"""`/help` through the real discord.py client: private, with the sections the reader can use."""

from __future__ import annotations

from testkit.e2e import Harness
from testkit.moderation import configure, run, text_of


async def test_a_member_reads_the_members_help_privately(spoofwatch: Harness) -> None:
    """Fails if /help is public, leaves out the guild's threshold or how to ask for a review,
    or shows a plain member the moderators' and admins' tools."""
    emu = spoofwatch.emu
    await configure(spoofwatch, "threshold", {"value": 80.0})
    ix = await emu.invoke_slash(emu.text_channel, emu.member, "help", {})
    answer = await ix.wait_for_reply()
    text = text_of(answer)
    assert answer.ephemeral
    assert "80%" in text and "This is wrong" in text and "/check" in text
    assert "For moderators" not in text and "For admins" not in text


async def test_moderators_and_admins_read_their_tools(spoofwatch: Harness) -> None:
    """Fails if a moderator's /help lacks the alert and /audit tools, or an admin's the set-up."""
    emu = spoofwatch.emu
    moderator = text_of(
        await (await emu.invoke_slash(emu.text_channel, emu.moderator, "help", {})).wait_for_reply()
    )
    admin = text_of(
        await (await emu.invoke_slash(emu.text_channel, emu.admin, "help", {})).wait_for_reply()
    )
    assert "For moderators" in moderator and "/audit" in moderator
    assert "For admins" not in moderator
    assert "For admins" in admin and "/spoofwatch setup" in admin


async def test_spoofwatch_help_answers_as_help_does(spoofwatch: Harness) -> None:
    """Fails if `/spoofwatch help` does not exist, is public, differs from `/help` for the
    same reader, or refuses a member a server admin let see the group."""
    emu = spoofwatch.emu
    for who in (emu.member, emu.moderator, emu.admin):
        grouped = await run(spoofwatch, who, "spoofwatch help")
        plain = await run(spoofwatch, who, "help")
        assert grouped.ephemeral
        assert grouped.embeds == plain.embeds
    assert "/spoofwatch help" in text_of(await run(spoofwatch, emu.admin, "help"))
