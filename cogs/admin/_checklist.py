"""The set-up checklist: `/spoofwatch setup`, and the note posted when the bot joins a server.

Everything is computed from what is true now (the permissions Discord actually grants the bot
in each channel, the saved settings), so re-running it shows what is left to do.
"""

from __future__ import annotations

import logging

import discord

from bot.discord_glue.attachments import guild_provider
from bot.discord_glue.client import Spoofwatch, permission_name
from bot.discord_glue.embeds import fit_embed, mention_list
from bot.discord_glue.invite import lacking
from bot.discord_glue.modlog import modlog_channel
from bot.guild_config import ActionPolicy, GuildConfig
from bot.verdict import ProviderName
from cogs.admin._display import REPLY_WORDS

log = logging.getLogger(__name__)

#: Channels named where the bot cannot answer, at most.
_CHANNELS_SHOWN = 10
_ACTIONS = {
    ActionPolicy.REPLY: "reply under the message only (no alerts)",
    ActionPolicy.ALERT: "reply, and alert the mod-log",
    ActionPolicy.DELETE_AND_ALERT: "delete the message and alert the mod-log",
}
_PROVIDERS = {
    ProviderName.BEHAVIORAL_SIGNALS: "Behavioral Signals",
    ProviderName.RESEMBLE: "Resemble Detect",
}
OK, TODO, WARN = "✅", "❌", "⚠️"


def _modlog(guild: discord.Guild, config: GuildConfig) -> tuple[bool, str]:
    if config.modlog_channel_id is None:
        if config.action is ActionPolicy.REPLY:
            return True, "Not set; not needed while the action is reply only."
        return False, "Not set: alerts are off. `/spoofwatch settings modlog`"
    channel = modlog_channel(guild, config)
    if channel is None:
        return False, "The channel is gone: alerts are off. `/spoofwatch settings modlog`"
    perms = channel.permissions_for(guild.me)
    missing = [n for n in ("view_channel", "send_messages", "embed_links") if not getattr(perms, n)]
    if missing:
        names = ", ".join(permission_name(n) for n in missing)
        return False, f"{channel.mention}, but Spoofwatch lacks {names} there: alerts are lost."
    ping = f", pinging <@&{config.alert_role_id}>" if config.alert_role_id else ""
    return True, f"{channel.mention}{ping}"


def _permissions(guild: discord.Guild, config: GuildConfig) -> tuple[bool, str]:
    """Server-wide gaps, then the scanned channels where the bot cannot answer."""
    me = guild.me
    lines = []
    server = lacking(me.guild_permissions)
    for need in server:
        lines.append(
            f"{WARN if not need.essential else TODO} {permission_name(need.name)}: to {need.use}"
        )
    if config.action is ActionPolicy.DELETE_AND_ALERT and not me.guild_permissions.manage_messages:
        lines.append(f"{TODO} The action deletes messages, but Manage Messages is missing.")
    mute: list[int] = []
    for channel in guild.text_channels:
        if not config.scans_channel(channel.id, channel.category_id):
            continue
        if lacking(channel.permissions_for(me), essential_only=True):
            mute.append(channel.id)
    if mute:
        shown = mention_list(mute[:_CHANNELS_SHOWN], limit=600)
        more = f" and {len(mute) - _CHANNELS_SHOWN} more" if len(mute) > _CHANNELS_SHOWN else ""
        lines.append(f"{TODO} Cannot answer in {shown}{more} (channel permissions).")
    essential_ok = not mute and not any(n.essential for n in server)
    return essential_ok, "\n".join(lines) or "All granted."


def checklist_embed(bot: Spoofwatch, guild: discord.Guild, config: GuildConfig) -> discord.Embed:
    """The checklist for `guild` as it stands now."""
    embed = discord.Embed(title="Spoofwatch set-up", colour=discord.Colour.blurple())
    done = 0
    modlog_ok, modlog = _modlog(guild, config)
    perms_ok, perms = _permissions(guild, config)
    for ok, name, value in ((modlog_ok, "Mod-log", modlog), (perms_ok, "Permissions", perms)):
        done += ok
        embed.add_field(name=f"{OK if ok else TODO} {name}", value=value[:1024], inline=False)
    embed.add_field(
        name=f"{OK} Alert threshold",
        value=f"Alerts at **{config.alert_threshold:.0%}** likely AI-generated or more. "
        "`/spoofwatch settings threshold`",
        inline=False,
    )
    replies = REPLY_WORDS[config.public_replies]
    scans = "on" if config.auto_scan else "off"
    embed.add_field(
        name=f"{OK} Replies",
        value=f"Automatic scans {scans}; public replies: {replies}; when flagged: "
        f"{_ACTIONS[config.action]}. `/spoofwatch settings replies`, "
        "`/spoofwatch settings action`",
        inline=False,
    )
    provider = guild_provider(bot.settings, config, bot.scans.providers)
    quota = f"at most {config.daily_quota} a day" if config.daily_quota else "no daily limit"
    cost = (
        f"{_PROVIDERS.get(provider, provider.value)}: each new file is one paid call to "
        "the provider"
    )
    if config.both_providers and len(bot.scans.providers) > 1:
        names = " and ".join(_PROVIDERS.get(p, p.value) for p in bot.scans.providers)
        cost = f"both, {names}: each new file is two paid calls (billed twice)"
    embed.add_field(
        name=f"{OK} Provider and cost",
        value=f"{cost} (the same file again reuses its verdict); {quota}. "
        "`/spoofwatch settings quota`",
        inline=False,
    )
    exempt = (
        mention_list(config.exempt_roles, prefix="@&", limit=600) if config.exempt_roles else "none"
    )
    embed.add_field(
        name=f"{OK} Exempt roles",
        value=f"{exempt}. `/spoofwatch settings exempt-add`",
        inline=False,
    )
    embed.description = f"**{done} of 2** essentials ready."
    embed.set_footer(text="Run /spoofwatch setup any time to see this again.")
    return fit_embed(embed)


async def welcome(bot: Spoofwatch, guild: discord.Guild) -> str | None:
    """Post the checklist where the server's managers will see it; where it went, or None.

    The system channel when Spoofwatch may post there, else a DM to the owner; when neither
    works, nothing (a log line): joining a server must never fail over a welcome note.
    """
    config = await bot.guild_configs.get(guild.id)
    embed = checklist_embed(bot, guild, config)
    text = "Thanks for adding Spoofwatch. What is set up and what is left:"
    channel = guild.system_channel
    if channel is not None:
        perms = channel.permissions_for(guild.me)
        if perms.send_messages and perms.embed_links:
            try:
                await channel.send(text, embed=embed)
                log.info("joined guild %s: checklist posted in %s", guild.id, channel.id)
                return f"channel {channel.id}"
            except discord.HTTPException as exc:
                log.info("joined guild %s: cannot post in %s: %s", guild.id, channel.id, exc)
    try:
        owner: discord.Member | discord.User | None = guild.owner
        if owner is None and guild.owner_id is not None:
            owner = await bot.fetch_user(guild.owner_id)
        if owner is None:
            log.info("joined guild %s: no system channel and no owner to tell", guild.id)
            return None
        await owner.send(f"{text} (**{guild.name}**)", embed=embed)
    except discord.HTTPException as exc:
        log.info("joined guild %s: no checklist sent (owner DM: %s)", guild.id, exc)
        return None
    log.info("joined guild %s: checklist sent to the owner %s by DM", guild.id, owner.id)
    return f"owner {owner.id}"
