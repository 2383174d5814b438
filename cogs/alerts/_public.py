"""What follows a moderator's decision or an automatic deletion outside the mod-log.

- A review shows on the public verdict (the reply's message id is kept on the case).
- An automatic deletion removes the verdict that replied to the deleted message and tells the
  poster by DM why, and how to ask for a review; closed DMs are normal, not an error.
"""

from __future__ import annotations

import logging

import discord

from bot.storage import Review, ScanRecord
from cogs.alerts import _texts as texts

log = logging.getLogger(__name__)

#: Discord's JSON error code for "Cannot send messages to this user" (closed DMs, blocked
#: bot, no shared server): docs topics/opcodes-and-status-codes.mdx, JSON error codes.
CANNOT_DM = 50007
REVIEW_COLOURS = {
    Review.FALSE_POSITIVE: discord.Colour.green(),
    Review.CONFIRMED: discord.Colour.dark_red(),
}


Speakable = discord.TextChannel | discord.VoiceChannel | discord.StageChannel | discord.Thread


def _channel(guild: discord.Guild | None, channel_id: int | None) -> Speakable | None:
    if guild is None or channel_id is None:
        return None
    channel = guild.get_channel_or_thread(channel_id)
    return channel if isinstance(channel, Speakable) else None


async def mark_public_verdict(
    guild: discord.Guild | None, record: ScanRecord, decision: Review
) -> str | None:
    """Show the review on the case's public verdict; None if there is none, else what happened.

    Only the embed of this case changes (a reply holds one per attachment, each with "Case
    #N" in its footer); the rest of the reply, buttons included, stays as it was.
    """
    channel = _channel(guild, record.channel_id)
    if record.reply_message_id is None or channel is None:
        return None
    try:
        reply = await channel.fetch_message(record.reply_message_id)
        embeds = list(reply.embeds)
        mine = [i for i, e in enumerate(embeds) if _is_case(e, record.case_number)]
        if not mine and len(embeds) == 1:
            mine = [0]
        if not mine:
            return "⚠️ The public verdict does not show this case; it was left as it was."
        for index in mine:
            embed = embeds[index]
            embed.title = texts.public_review_title(decision)
            embed.colour = REVIEW_COLOURS[decision]
        await reply.edit(embeds=embeds)
    except discord.NotFound:
        return "The public verdict is gone; nothing to update."
    except discord.HTTPException as exc:
        log.warning(
            "could not mark the verdict %s of case %s/#%s as reviewed: %s",
            record.reply_message_id,
            record.guild_id,
            record.case_number,
            exc,
        )
        return f"⚠️ Could not update the public verdict: Discord said {exc.status}."
    log.info(
        "public verdict %s of case %s/#%s marked %s",
        record.reply_message_id,
        record.guild_id,
        record.case_number,
        decision.value,
    )
    return "The public verdict now says so."


def _is_case(embed: discord.Embed, case_number: int) -> bool:
    footer = embed.footer.text or ""
    return f"Case #{case_number} " in f"{footer} " or footer.endswith(f"#{case_number}")


async def remove_verdict_reply(guild: discord.Guild | None, record: ScanRecord) -> bool:
    """Delete the bot's verdict that replied to a message deleted by policy; True if gone."""
    channel = _channel(guild, record.channel_id)
    if record.reply_message_id is None or channel is None:
        return False
    try:
        await channel.get_partial_message(record.reply_message_id).delete()
    except discord.NotFound:
        return True
    except discord.HTTPException as exc:
        log.warning(
            "could not remove verdict %s of deleted message %s: %s",
            record.reply_message_id,
            record.message_id,
            exc,
        )
        return False
    log.info(
        "removed verdict %s of case %s/#%s (its message was deleted by policy)",
        record.reply_message_id,
        record.guild_id,
        record.case_number,
    )
    return True


async def tell_poster(message: discord.Message, record: ScanRecord) -> bool:
    """DM the poster of a message deleted by policy; True if the DM was delivered."""
    channel_name = getattr(message.channel, "name", None) or "a channel"
    guild_name = message.guild.name if message.guild else "a server"
    case = record.case_number
    text = texts.deleted_dm(guild_name, channel_name, case, record.spoofed_probability)
    try:
        await message.author.send(text, allowed_mentions=discord.AllowedMentions.none())
    except discord.HTTPException as exc:
        # Closed DMs (50007) are the member's choice: nothing to report but a log line.
        closed = isinstance(exc, discord.Forbidden) and exc.code == CANNOT_DM
        level = logging.INFO if closed else logging.WARNING
        log.log(level, "could not DM user %s about case #%s: %s", message.author.id, case, exc)
        return False
    log.info("told user %s by DM that case #%s was deleted", message.author.id, record.case_number)
    return True
