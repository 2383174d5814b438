"""How the settings read to an admin: the settings embed and the echo of each change."""

from __future__ import annotations

import discord

from bot.discord_glue.embeds import PROVIDER_NAMES, fit_embed, mention_list
from bot.guild_config import ActionPolicy, ChannelScope, GuildConfig, PublicReplies
from bot.settings import MIB, Settings
from bot.verdict import MediaKind

#: Discord refuses message content over 2,000 characters (discord-platform.md, "Checked
#: 2026-12"); the scope list can hold hundreds of channels, so every echo is held to this.
CONTENT_LIMIT = 2000
#: What the echo of a changed channel list may take of the reply ("… +N more" beyond).
_ECHO_LIST_CHARS = 600


def settings_embed(config: GuildConfig, defaults: Settings) -> discord.Embed:
    """This server's settings in words, with the bot's defaults filled in where it has none."""
    embed = discord.Embed(title="Spoofwatch settings", colour=discord.Colour.blurple())
    if config.modlog_channel_id is None:
        embed.description = (
            "⚠️ **No mod-log channel.** Alerts, review requests and outage notices have "
            "nowhere to go: set one with `/spoofwatch settings modlog`."
        )
    head = f"{SCOPE_WORDS[config.scope]}"
    if config.scope is not ChannelScope.ALL:
        head += ": "
        head += mention_list(config.scope_channels, limit=1024 - len(head))
    elif config.scope_channels:
        head += f" ({len(config.scope_channels)} listed, unused in this mode)"
    embed.add_field(name="Automatic scans", value="on" if config.auto_scan else "off")
    embed.add_field(name="Scope", value=head)
    embed.add_field(
        name="Media",
        value=", ".join(KIND_WORDS[k] for k in MediaKind if k in config.kinds) or "none",
    )
    embed.add_field(name="Public replies", value=REPLY_WORDS[config.public_replies])
    embed.add_field(name="Alert threshold", value=f"{config.alert_threshold:.0%}")
    embed.add_field(name="When flagged", value=ACTION_WORDS[config.action])
    embed.add_field(
        name="Mod-log",
        value=f"<#{config.modlog_channel_id}>" if config.modlog_channel_id else "not set",
    )
    embed.add_field(
        name="Alert ping",
        value=f"<@&{config.alert_role_id}>" if config.alert_role_id else "nobody",
    )
    embed.add_field(
        name="Exempt roles",
        value=mention_list(config.exempt_roles, prefix="@&", limit=1024) or "none",
    )
    embed.add_field(
        name="Transcripts",
        value=f"{'shown' if config.show_transcripts else 'hidden'}, "
        f"{'stored' if config.store_transcripts else 'not stored'}",
    )
    embed.add_field(
        name="Retention",
        value=f"{config.retention_days} days (cases, and the files kept on mod-log alerts)",
    )
    provider = config.provider or defaults.provider
    chosen = f"{PROVIDER_NAMES[provider]}{'' if config.provider else ' (bot default)'}"
    if config.both_providers:
        chosen = f"both, {chosen} first (every file billed twice)"
    embed.add_field(name="Provider", value=chosen)
    embed.add_field(name="Daily quota", value=str(config.daily_quota or "unlimited"))
    largest = (
        f"{_number(config.max_file_mb)} MiB (this server)"
        if config.max_file_mb is not None
        else f"{_number(defaults.max_file_bytes / MIB)} MiB (bot default)"
    )
    longest = (
        f"{_seconds(config.max_duration_s)} (this server)"
        if config.max_duration_s is not None
        else f"{_seconds(defaults.max_duration_s)} (bot default)"
    )
    embed.add_field(name="Generator detection", value=show(config.generator_detection))
    embed.add_field(name="Video faces (experimental)", value=show(config.video_faces))
    embed.add_field(name="Feedback to the provider", value=show(config.provider_feedback))
    embed.add_field(name="Largest file", value=largest)
    embed.add_field(name="Longest recording", value=longest)
    return fit_embed(embed)


SCOPE_WORDS = {
    ChannelScope.ALL: "every channel",
    ChannelScope.ONLY_LISTED: "only",
    ChannelScope.ALL_EXCEPT_LISTED: "every channel except",
}
KIND_WORDS = {
    MediaKind.VOICE: "voice messages",
    MediaKind.AUDIO: "audio files",
    MediaKind.VIDEO: "videos",
}
REPLY_WORDS = {
    PublicReplies.ALL: "every file (genuine in one line)",
    PublicReplies.FLAGGED: "flagged files only",
    PublicReplies.NEVER: "none (moderators only)",
}
ACTION_WORDS = {
    ActionPolicy.REPLY: "reply only",
    ActionPolicy.ALERT: "alert the mod-log",
    ActionPolicy.DELETE_AND_ALERT: "delete the message and alert",
}


def _number(value: float) -> str:
    """25.0 → "25", 0.5 → "0.5"."""
    return f"{value:g}"


def _seconds(value: float) -> str:
    """600 → "10 min", 90 → "90 s"."""
    return f"{value / 60:g} min" if value >= 60 and value % 60 == 0 else f"{value:g} s"


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
    "action": "When flagged",
    "modlog_channel_id": "Mod-log",
    "alert_role_id": "Alert ping",
    "exempt_roles": "Exempt roles",
    "public_replies": "Public replies",
    "show_transcripts": "Transcripts shown",
    "store_transcripts": "Transcripts stored",
    "retention_days": "Retention",
    "provider": "Provider",
    "both_providers": "Checked by both providers (billed twice)",
    "daily_quota": "Daily quota",
    "max_file_mb": "Largest file",
    "max_duration_s": "Longest recording",
    "generator_detection": "Generator detection",
    "video_faces": "Video faces (experimental)",
    "provider_feedback": "Feedback to the provider",
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
    if field == "public_replies" and isinstance(value, PublicReplies):
        return REPLY_WORDS[value]
    if field == "action" and isinstance(value, ActionPolicy):
        return ACTION_WORDS[value]
    if field == "scope" and isinstance(value, ChannelScope):
        return value.value.replace("_", " ")
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
