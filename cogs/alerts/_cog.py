"""After an automatic scan: alert the mod-log, delete the message, as the guild's policy says."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import discord
from discord.ext import commands

from bot.client import Spoofwatch
from bot.embeds import fit_embed, probability_bar, sanitize
from bot.guild_config import ActionPolicy, GuildConfig
from bot.provenance import provenance_fields
from bot.replies import describe_http_error
from bot.scanning import ScanOutcome
from bot.verdict import Label
from cogs.alerts._views import alert_view

log = logging.getLogger(__name__)


def is_suspicious(outcome: ScanOutcome, threshold: float) -> bool:
    """At or above the guild's threshold; the provider's own label only when it gave no number.

    The label is the provider's decision at its own threshold (about 0.5): letting it alert
    regardless would make a guild's stricter threshold (say 0.9) meaningless.
    """
    verdict = outcome.verdict
    if verdict is None:
        return False
    p = verdict.spoofed_probability
    if p is None:
        return verdict.label is Label.SPOOFED
    return p >= threshold


class Alerts(commands.Cog):
    def __init__(self, bot: Spoofwatch) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_scan_finished(
        self, message: discord.Message, outcomes: list[ScanOutcome], config: GuildConfig
    ) -> None:
        if message.guild is None or config.action is ActionPolicy.REPLY:
            return
        suspicious = [o for o in outcomes if is_suspicious(o, config.alert_threshold)]
        if not suspicious:
            return
        deleted: str | None = None
        if config.action is ActionPolicy.DELETE_AND_ALERT:
            done, deleted = await self._delete(message)
            if done and self.bot.user is not None:
                # An automatic deletion is a moderation action like a moderator's: the case
                # keeps who did it (the bot), when and why.
                for outcome in suspicious:
                    await self.bot.audit.admin.record_action(
                        message.guild.id,
                        outcome.record.case_number,
                        action="delete",
                        actor_id=self.bot.user.id,
                        outcome=deleted,
                    )
        for outcome in suspicious:
            await self._alert(message, outcome, config, deleted)

    async def _delete(self, message: discord.Message) -> tuple[bool, str]:
        """Delete per policy; (whether it was deleted, what the alert should say)."""
        assert message.guild is not None
        try:
            await message.delete()
        except discord.NotFound:
            return False, "The message was already deleted."
        except discord.HTTPException as exc:
            log.warning(
                "cannot delete message %s of user %s in channel %s of guild %s per policy: %s",
                message.id,
                message.author.id,
                message.channel.id,
                message.guild.id,
                exc,
            )
            if isinstance(exc, discord.Forbidden):
                return False, (
                    "⚠️ Could not delete the message: Spoofwatch lacks Manage Messages there."
                )
            return False, f"⚠️ Could not delete the message: Discord said {exc.status}."
        log.info(
            "deleted message %s of user %s in guild %s (policy: delete and alert)",
            message.id,
            message.author.id,
            message.guild.id,
        )
        return True, "Message deleted automatically (server policy)."

    async def _alert(
        self,
        message: discord.Message,
        outcome: ScanOutcome,
        config: GuildConfig,
        deleted: str | None,
    ) -> None:
        assert message.guild is not None
        if config.modlog_channel_id is None:
            return
        channel = message.guild.get_channel(config.modlog_channel_id)
        case_number = outcome.record.case_number
        if not isinstance(channel, discord.TextChannel | discord.Thread):
            log.warning(
                "mod-log channel %s of guild %s is gone", config.modlog_channel_id, message.guild.id
            )
            await self._not_posted(message.guild.id, case_number, "the mod-log channel is gone")
            return
        view = alert_view(case_number)
        first = await _post(
            channel,
            embed=alert_embed(message, outcome, deleted),
            view=view,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        if first is None:
            return
        log.error(
            "alert for case %s/#%s not posted in %s (%s); posting a plain alert",
            message.guild.id,
            case_number,
            channel.id,
            first,
        )
        # A lost alert is lost moderation: a second, plain-text try carries what a moderator
        # needs (case, link, score), with the buttons unless they were what Discord refused.
        second = await _post(
            channel,
            content=plain_alert(message, outcome, deleted),
            view=None if "components" in first else view,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        if second is None:
            return
        log.error(
            "alert for case %s/#%s could not be posted in %s: %s; then %s",
            message.guild.id,
            case_number,
            channel.id,
            first,
            second,
        )
        await self._not_posted(message.guild.id, case_number, f"mod-log {channel.id}: {second}")

    async def _not_posted(self, guild_id: int, case_number: int, why: str) -> None:
        """Record among the case's events that its alert never reached the mod-log."""
        if self.bot.user is not None:
            await self.bot.audit.admin.record_action(
                guild_id,
                case_number,
                action="alert_not_posted",
                actor_id=self.bot.user.id,
                outcome=why,
            )


async def _post(channel: discord.TextChannel | discord.Thread, **message: Any) -> str | None:
    """Send; None when it was posted, else what went wrong (for the log and the case)."""
    try:
        await channel.send(**message)
    except discord.HTTPException as exc:
        # discord.py has already retried 429s and 5xx; what is left is a refusal or an outage.
        return describe_http_error(exc)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def plain_alert(message: discord.Message, outcome: ScanOutcome, deleted: str | None) -> str:
    """The alert as one short text, for when Discord refused the embed."""
    verdict = outcome.verdict
    p = verdict.spoofed_probability if verdict is not None else None
    score = "—" if p is None else f"{p:.0%}"
    text = (
        f"⚠️ Possible deepfake — case #{outcome.record.case_number}, {score} spoofed, "
        f"by <@{message.author.id}> in <#{message.channel.id}>: {message.jump_url}\n"
        "-# The full alert could not be posted; `/audit case` shows the case."
    )
    return text + (f"\n{deleted}" if deleted else "")


def alert_embed(
    message: discord.Message, outcome: ScanOutcome, deleted: str | None
) -> discord.Embed:
    verdict = outcome.verdict
    assert verdict is not None
    record = outcome.record
    p = verdict.spoofed_probability
    embed = discord.Embed(
        title=f"Possible deepfake — case #{record.case_number}",
        colour=discord.Colour.red(),
        description=(
            f"{probability_bar(p)} **{'—' if p is None else f'{p:.0%}'}** spoofed\n"
            f"[Jump to the message]({message.jump_url})"
        ),
    )
    embed.add_field(name="Author", value=f"{message.author.mention} (`{message.author.id}`)")
    embed.add_field(
        name="Channel",
        value=message.channel.mention if hasattr(message.channel, "mention") else "—",
    )
    embed.add_field(name="File", value=sanitize(record.filename, limit=200))
    embed.add_field(
        name="Provider label",
        value=sanitize(verdict.provider_label or verdict.label.value, limit=100),
    )
    for name, value in provenance_fields(verdict):
        embed.add_field(name=name, value=value)
    if deleted:
        embed.add_field(name="Actions", value=deleted, inline=False)
    embed.set_footer(text=f"Case #{record.case_number} · {verdict.provider.value}")
    # Whatever the file name or label sanitized to (possibly nothing), the embed is sendable.
    return fit_embed(embed)
