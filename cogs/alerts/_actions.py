"""What the alert buttons do on Discord: delete the message, time its author out, undo it.

Each returns whether it happened and the line the alert shows; a refusal is a line too.
"""

from __future__ import annotations

from datetime import timedelta

import discord

from bot.discord_glue.client import Spoofwatch
from cogs.alerts import _texts as texts


async def delete_message(
    interaction: discord.Interaction[Spoofwatch], channel_id: int | None, message_id: int | None
) -> tuple[bool, str]:
    """Delete the case's message; (whether it was deleted, what to show on the alert)."""
    assert interaction.guild is not None
    channel = interaction.guild.get_channel_or_thread(channel_id) if channel_id else None
    if channel is None or message_id is None or not isinstance(channel, discord.abc.Messageable):
        return False, "⚠️ Could not delete: the channel is gone."
    try:
        await channel.get_partial_message(message_id).delete()
    except discord.NotFound:
        return False, "⚠️ Could not delete: the message was already deleted."
    except discord.Forbidden:
        return False, "⚠️ Could not delete: Spoofwatch lacks the Manage Messages permission there."
    except discord.HTTPException as exc:
        return False, f"⚠️ Could not delete: Discord said {exc.status}."
    return True, f"Message deleted by {interaction.user.mention}"


async def time_out(
    interaction: discord.Interaction[Spoofwatch],
    author_id: int | None,
    length: timedelta,
    reason: str | None,
) -> tuple[bool, str]:
    """Time the case's author out; (whether it happened, what to show on the alert)."""
    assert interaction.guild is not None
    if author_id is None:
        return False, "⚠️ Could not time out: the case has no author."
    why = f"Spoofwatch alert, by {interaction.user.id}" + (f": {reason}" if reason else "")
    try:
        member = await interaction.guild.fetch_member(author_id)
        # Discord keeps at most 512 characters of an audit log reason.
        await member.timeout(length, reason=why[:512])
    except discord.NotFound:
        return False, "⚠️ Could not time out: the member left the server."
    except discord.Forbidden:
        return False, "⚠️ Could not time out: Spoofwatch lacks Moderate Members or ranks below them."
    except discord.HTTPException as exc:
        return False, f"⚠️ Could not time out: Discord said {exc.status}."
    return True, texts.timed_out_line(author_id, human(length), interaction.user.mention, reason)


async def undo_time_out(
    interaction: discord.Interaction[Spoofwatch], author_id: int | None
) -> tuple[bool, str]:
    """Lift the time-out of the case's author."""
    assert interaction.guild is not None
    if author_id is None:
        return False, "⚠️ Could not lift the time-out: the case has no author."
    try:
        member = await interaction.guild.fetch_member(author_id)
        await member.timeout(None, reason=f"Spoofwatch: time-out lifted by {interaction.user.id}")
    except discord.NotFound:
        return False, "⚠️ Could not lift the time-out: the member left the server."
    except discord.Forbidden:
        return False, (
            "⚠️ Could not lift the time-out: Spoofwatch lacks Moderate Members or ranks below them."
        )
    except discord.HTTPException as exc:
        return False, f"⚠️ Could not lift the time-out: Discord said {exc.status}."
    return True, texts.timeout_undone_line(author_id, interaction.user.mention)


def human(length: timedelta) -> str:
    minutes = int(length.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440} day"
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"
