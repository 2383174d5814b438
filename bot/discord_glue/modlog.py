"""The guild's mod-log channel: found one way, posted to one way.

Alerts, review requests, provider and outage notices and resumed second opinions all go to
the channel a guild chose with `/spoofwatch settings modlog`. Each caller decides what a post
that did not happen means for it (record it on the case, log it, try a plainer message); what
counts as the mod-log, and how a failure is described, is decided here.
"""

from __future__ import annotations

from typing import Any, Final

import aiohttp
import discord

from bot.discord_glue.replies import describe_http_error
from bot.guild_config import GuildConfig

#: A mod-log is a text channel or a thread in one (a forum post included).
ModLog = discord.TextChannel | discord.Thread

NOT_SET: Final = "no mod-log channel is set"
GONE: Final = "the mod-log channel is gone"


def modlog_channel(guild: discord.Guild | None, config: GuildConfig) -> ModLog | None:
    """The guild's mod-log as this process sees it; None when unset, deleted or not a place
    to post (a voice or category channel chosen before it was changed)."""
    if guild is None or config.modlog_channel_id is None:
        return None
    channel = guild.get_channel_or_thread(config.modlog_channel_id)
    return channel if isinstance(channel, ModLog) else None


async def post(channel: ModLog, **message: Any) -> discord.Message | str:
    """Send; the message posted, else what went wrong (for the log and the case).

    Mentions are off unless the caller allows some (an alert's role ping)."""
    message.setdefault("allowed_mentions", discord.AllowedMentions.none())
    try:
        return await channel.send(**message)
    except discord.HTTPException as exc:
        # discord.py has already retried 429s and 5xx; what is left is a refusal or an outage.
        return describe_http_error(exc)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"


async def post_to_modlog(
    guild: discord.Guild | None, config: GuildConfig, **message: Any
) -> discord.Message | str:
    """`post` in the guild's mod-log; else why not (`NOT_SET`, `GONE`, or Discord's refusal)."""
    if config.modlog_channel_id is None:
        return NOT_SET
    channel = modlog_channel(guild, config)
    if channel is None:
        return GONE
    return await post(channel, **message)
