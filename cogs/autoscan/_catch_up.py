"""Finding the messages a restarted bot never answered: what Discord will not deliver again.

Discord replays missed events only within a RESUMEd session. After a crash (or any new
session) the messages posted while the bot was away are simply not sent, and neither are the
ones the dead process had received but not yet recorded. Discord's history is the record:
each watched channel's newest messages are read back and those with media and no reply from
the bot are scanned again. Re-scanning is safe: a scan row is unique per message and
attachment, so a message seen twice gets the stored outcome, not a second provider job.

Bounds, so that a restart of a bot in many guilds stays cheap: a channel whose last message
is older than the cutoff costs nothing (its `last_message_id` comes with the guild); other
channels cost one history request of at most `limit` (≤ 100) messages.
"""

from __future__ import annotations

import logging
from datetime import datetime

import discord

from bot.discord_glue.client import Spoofwatch
from cogs.autoscan._reply_queue import answered_ids

log = logging.getLogger(__name__)

CatchUpChannel = discord.TextChannel | discord.VoiceChannel | discord.StageChannel | discord.Thread


def channels_to_catch_up(guild: discord.Guild, cutoff: datetime) -> list[CatchUpChannel]:
    """Channels (and active threads) the bot can read with a message newer than `cutoff`."""
    me = guild.me
    if me is None:  # the guild is not fully loaded (unavailable): nothing to read yet
        return []
    found: list[CatchUpChannel] = []
    candidates: list[CatchUpChannel] = [
        c
        for c in guild.channels
        if isinstance(c, discord.TextChannel | discord.VoiceChannel | discord.StageChannel)
    ]
    candidates.extend(guild.threads)
    for channel in candidates:
        last = channel.last_message_id
        if last is None or discord.utils.snowflake_time(last) < cutoff:
            continue
        permissions = channel.permissions_for(me)
        if permissions.view_channel and permissions.read_message_history:
            found.append(channel)
    return found


async def unanswered_messages(
    channel: CatchUpChannel, bot: Spoofwatch, *, limit: int, cutoff: datetime
) -> list[discord.Message]:
    """The channel's newest messages (at most `limit`, none before `cutoff`) that carry
    attachments, come from a person and have no reply from the bot, oldest first.

    A reply is always newer than its message, so a message inside the window has its
    reply inside the window too, if there is one.
    """
    me = bot.user
    if me is None:
        return []
    window: list[discord.Message] = []
    async for message in channel.history(limit=min(limit, 100)):
        if message.created_at < cutoff:
            break
        window.append(message)
    # Replies, and the messages a combined answer (in a raid) links to.
    answered = {i for m in window if m.author.id == me.id for i in answered_ids(m)}
    unanswered = [
        m
        for m in reversed(window)
        if m.id not in answered
        and (m.attachments or getattr(m, "message_snapshots", None))
        and not m.author.bot
        and m.webhook_id is None
    ]
    if unanswered:
        log.debug(
            "catch-up: %d unanswered message(s) with files in channel %s",
            len(unanswered),
            channel.id,
        )
    return unanswered
