"""How the settings read to an admin: the settings embed and the echo of each change."""

from __future__ import annotations

import discord

from bot.embeds import fit_embed, mention_list
from bot.guild_config import GuildConfig

#: Discord refuses message content over 2,000 characters (discord-platform.md, "Checked
#: 2026-12"); the scope list can hold hundreds of channels, so every echo is held to this.
CONTENT_LIMIT = 2000
#: What the echo of a changed channel list may take of the reply ("… +N more" beyond).
_ECHO_LIST_CHARS = 600


def settings_embed(config: GuildConfig) -> discord.Embed:
    embed = discord.Embed(title="Spoofwatch settings", colour=discord.Colour.blurple())
    head = f"{config.scope.value}\nlisted: "
    listed = mention_list(config.scope_channels, limit=1024 - len(head))
    embed.add_field(name="Automatic scans", value="on" if config.auto_scan else "off")
    embed.add_field(name="Scope", value=head + listed)
    embed.add_field(name="Media", value=", ".join(sorted(k.value for k in config.kinds)) or "none")
    embed.add_field(name="Alert threshold", value=f"{config.alert_threshold:.0%}")
    embed.add_field(name="Action", value=config.action.value)
    embed.add_field(
        name="Mod-log",
        value=f"<#{config.modlog_channel_id}>"
        if config.modlog_channel_id
        else "not set (no alerts)",
    )
    embed.add_field(
        name="Alert ping",
        value=f"<@&{config.alert_role_id}>" if config.alert_role_id else "nobody",
    )
    embed.add_field(
        name="Exempt roles",
        value=mention_list(config.exempt_roles, prefix="@&", limit=1024) or "none",
    )
    embed.add_field(name="Reply to bona fide", value="yes" if config.reply_bonafide else "no")
    embed.add_field(
        name="Transcripts",
        value=f"shown: {show(config.show_transcripts)}, stored: {show(config.store_transcripts)}",
    )
    embed.add_field(name="Retention", value=f"{config.retention_days} days")
    embed.add_field(name="Provider", value=config.provider.value if config.provider else "default")
    embed.add_field(name="Daily quota", value=str(config.daily_quota or "unlimited"))
    embed.add_field(
        name="Limits",
        value=f"{show(config.max_file_mb)} MiB, {show(config.max_duration_s)} s",
    )
    return fit_embed(embed)


def clip(text: str) -> str:
    """`text` within Discord's content limit, cut at a line break when there is one."""
    if len(text) <= CONTENT_LIMIT:
        return text
    cut = text.rfind("\n", 0, CONTENT_LIMIT - 1)
    return (text[:cut] if cut > CONTENT_LIMIT // 2 else text[: CONTENT_LIMIT - 1]) + "…"


LABELS = {
    "auto_scan": "Automatic scans",
    "scope": "Scope",
    "scope_channels": "Listed channels",
    "kinds": "Media",
    "alert_threshold": "Alert threshold",
    "action": "Action",
    "modlog_channel_id": "Mod-log",
    "alert_role_id": "Alert ping",
    "exempt_roles": "Exempt roles",
    "reply_bonafide": "Reply to bona fide",
    "show_transcripts": "Transcripts shown",
    "store_transcripts": "Transcripts stored",
    "retention_days": "Retention",
    "provider": "Provider",
    "daily_quota": "Daily quota",
    "max_file_mb": "Largest file",
    "max_duration_s": "Longest recording",
}


def show_for(field: str, value: object) -> str:
    """A changed setting's value as the settings embed would word it."""
    if value is None:
        return {
            "modlog_channel_id": "not set (no alerts)",
            "daily_quota": "unlimited",
            "alert_role_id": "nobody",
        }.get(field, "default")
    if field == "alert_threshold" and isinstance(value, float):
        return f"{value:.0%}"
    if field == "modlog_channel_id":
        return f"<#{value}>"
    if field == "alert_role_id":
        return f"<@&{value}>"
    if field == "exempt_roles" and isinstance(value, frozenset | set):
        return mention_list(value, prefix="@&", limit=_ECHO_LIST_CHARS) or "none"
    if field == "scope_channels" and isinstance(value, frozenset | set):
        return mention_list(value, limit=_ECHO_LIST_CHARS)
    if field == "retention_days":
        return f"{value} days"
    if field == "max_file_mb":
        return f"{value} MiB"
    if field == "max_duration_s":
        return f"{value} s"
    if field == "auto_scan" and isinstance(value, bool):
        return "on" if value else "off"
    return show(value)


def show(value: object) -> str:
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, frozenset | set):
        return ", ".join(sorted(str(getattr(v, "value", v)) for v in value)) or "none"
    return str(getattr(value, "value", value))
