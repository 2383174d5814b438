"""Which messages the automatic scan is for: a person's media, in a channel the guild watches."""

from __future__ import annotations

import discord

from bot.discord_glue.attachments import Candidate
from bot.discord_glue.client import Spoofwatch
from bot.guild_config import GuildConfig


def from_a_person(message: discord.Message, bot: Spoofwatch) -> bool:
    return not (message.author.bot or message.webhook_id is not None or message.author == bot.user)


def configured(
    message: discord.Message, config: GuildConfig, found: list[Candidate]
) -> list[Candidate]:
    """Of a person's media attachments `found` in `message`, those the guild scans itself."""
    if not config.auto_scan or not in_scope(message, config) or exempt(message, config):
        return []
    return [c for c in found if c.kind in config.kinds]


def exempt(message: discord.Message, config: GuildConfig) -> bool:
    """Whether the author holds a role the guild exempts from automatic scans."""
    if not config.exempt_roles or not isinstance(message.author, discord.Member):
        return False
    return config.exempts(role.id for role in message.author.roles)


async def exempt_by_fetch(message: discord.Message, config: GuildConfig) -> bool:
    """`exempt`, for a message read from history, whose author carries no roles.

    Discord's message history has no `member` field, so the author's roles cost one member
    lookup; only asked when the guild exempts roles. A member who left is not exempt.
    """
    if not config.exempt_roles or message.guild is None:
        return False
    if isinstance(message.author, discord.Member):
        return exempt(message, config)
    try:
        member = await message.guild.fetch_member(message.author.id)
    except discord.HTTPException:
        return False
    return config.exempts(role.id for role in member.roles)


def in_scope(message: discord.Message, config: GuildConfig) -> bool:
    return channel_in_scope(message.channel, config)


def channel_in_scope(channel: object, config: GuildConfig) -> bool:
    # A thread is in scope through itself, its parent channel or the parent's category.
    parent = channel.parent if isinstance(channel, discord.Thread) else None
    placed = parent if parent is not None else channel
    return config.scans_channel(
        getattr(channel, "id", None),
        parent.id if parent is not None else None,
        getattr(placed, "category_id", None),
    )
