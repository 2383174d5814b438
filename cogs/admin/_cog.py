"""Per-guild settings and data deletion. Every change is saved, logged and echoed back."""

from __future__ import annotations

import logging
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import Spoofwatch, permission_name
from bot.embeds import fit_embed, mention_list
from bot.guild_config import ActionPolicy, ChannelScope, GuildConfig
from bot.permissions import check_member
from bot.provider_copies import deletion_summary
from bot.verdict import MediaKind, ProviderName

log = logging.getLogger(__name__)

Place = discord.TextChannel | discord.VoiceChannel | discord.CategoryChannel | discord.Thread
_SENDS = ("view_channel", "send_messages", "embed_links")
#: Discord refuses message content over 2,000 characters (discord-platform.md, "Checked
#: 2026-12"); the scope list can hold hundreds of channels, so every echo is held to this.
CONTENT_LIMIT = 2000
#: What the echo of a changed channel list may take of the reply ("… +N more" beyond).
_ECHO_LIST_CHARS = 600


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Admin(commands.GroupCog, group_name="spoofwatch", group_description="Spoofwatch for admins"):
    settings = app_commands.Group(name="settings", description="Configure Spoofwatch here")

    def __init__(self, bot: Spoofwatch) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[Spoofwatch]) -> bool:  # type: ignore[override]
        check_member(interaction, manage_guild=True)
        return True

    async def _update(
        self, interaction: discord.Interaction[Spoofwatch], note: str = "", **changes: Any
    ) -> None:
        guild_id = interaction.guild_id
        assert guild_id is not None
        current = await self.bot.guild_configs.get(guild_id)
        updated = GuildConfig.model_validate(current.model_dump() | changes)
        await self.bot.guild_configs.save(guild_id, updated)
        # The audit event keeps the field names (stable, searchable); the moderator reads
        # the words the settings embed uses.
        described = ", ".join(f"{k}={_show(v)}" for k, v in changes.items())
        spoken = "; ".join(f"{_LABELS.get(k, k)}: {_show_for(k, v)}" for k, v in changes.items())
        await self.bot.audit.admin.log_event(
            guild_id,
            actor=str(interaction.user.id),
            action="settings",
            target=f"guild:{guild_id}",
            reason=described,
        )
        log.info("guild %s settings changed by %s: %s", guild_id, interaction.user.id, described)
        text = _clip(f"Saved. {spoken}." + (f"\n{note}" if note else ""))
        await interaction.response.send_message(text, embed=settings_embed(updated), ephemeral=True)

    @settings.command(name="show")
    async def show(self, interaction: discord.Interaction[Spoofwatch]) -> None:
        """Show this server's Spoofwatch settings."""
        assert interaction.guild_id is not None
        config = await self.bot.guild_configs.get(interaction.guild_id)
        await interaction.response.send_message(embed=settings_embed(config), ephemeral=True)

    @settings.command(name="autoscan")
    @app_commands.describe(enabled="Scan new voice messages, audio files and videos by itself")
    async def autoscan(self, interaction: discord.Interaction[Spoofwatch], enabled: bool) -> None:
        """Turn automatic scans of new media on or off."""
        await self._update(interaction, auto_scan=enabled)

    @settings.command(name="scope")
    @app_commands.describe(mode="all channels, only the listed ones, or all except the listed")
    async def scope(
        self,
        interaction: discord.Interaction[Spoofwatch],
        mode: Literal["all", "only_listed", "all_except_listed"],
    ) -> None:
        """Choose which channels are scanned automatically."""
        await self._update(interaction, scope=ChannelScope(mode))

    @settings.command(name="channel-add")
    @app_commands.describe(channel="A channel, thread or category (its channels and threads)")
    async def channel_add(
        self, interaction: discord.Interaction[Spoofwatch], channel: Place
    ) -> None:
        """Add a channel or category to the scope list."""
        assert interaction.guild_id is not None
        config = await self.bot.guild_configs.get(interaction.guild_id)
        listed = config.scope_channels | {channel.id}
        # The list echo may end in "+N more"; this line always names the channel just added.
        note = f"Added {channel.mention}; {len(listed)} listed."
        await self._update(interaction, note=note, scope_channels=listed)

    @settings.command(name="channel-remove")
    @app_commands.describe(channel="A channel, thread or category on the scope list")
    async def channel_remove(
        self, interaction: discord.Interaction[Spoofwatch], channel: Place
    ) -> None:
        """Remove a channel or category from the scope list."""
        assert interaction.guild_id is not None
        config = await self.bot.guild_configs.get(interaction.guild_id)
        listed = config.scope_channels - {channel.id}
        note = f"Removed {channel.mention}; {len(listed)} listed."
        await self._update(interaction, note=note, scope_channels=listed)

    @settings.command(name="kinds")
    @app_commands.describe(
        voice_messages="Scan voice messages",
        audio_files="Scan audio files (MP3, WAV, OGG…)",
        videos="Scan videos (their sound track)",
    )
    async def kinds(
        self,
        interaction: discord.Interaction[Spoofwatch],
        voice_messages: bool,
        audio_files: bool,
        videos: bool,
    ) -> None:
        """Choose which media are scanned automatically."""
        chosen = {
            kind
            for kind, on in (
                (MediaKind.VOICE, voice_messages),
                (MediaKind.AUDIO, audio_files),
                (MediaKind.VIDEO, videos),
            )
            if on
        }
        await self._update(interaction, kinds=frozenset(chosen))

    @settings.command(name="threshold")
    @app_commands.describe(value="Spoofed probability (0–1) at which moderators are alerted")
    async def threshold(
        self,
        interaction: discord.Interaction[Spoofwatch],
        value: app_commands.Range[float, 0.0, 1.0],
    ) -> None:
        """Set the alert threshold."""
        await self._update(interaction, alert_threshold=value)

    @settings.command(name="action")
    @app_commands.describe(policy="What happens when a scan reaches the threshold")
    async def action(
        self,
        interaction: discord.Interaction[Spoofwatch],
        policy: Literal["reply", "alert", "delete_and_alert"],
    ) -> None:
        """Reply only; reply and alert the mod-log; or delete the message and alert."""
        chosen = ActionPolicy(policy)
        notes = []
        guild = interaction.guild
        assert guild is not None
        if (
            chosen is ActionPolicy.DELETE_AND_ALERT
            and not guild.me.guild_permissions.manage_messages
        ):
            chosen = ActionPolicy.ALERT
            notes.append(
                "⚠️ Spoofwatch lacks the Manage Messages permission, so it cannot delete "
                "messages; it will alert instead. Grant the permission and set this again."
            )
        config = await self.bot.guild_configs.get(guild.id)
        if chosen is not ActionPolicy.REPLY and config.modlog_channel_id is None:
            notes.append(
                "Alerts need a mod-log channel: set one with `/spoofwatch settings modlog`."
            )
        await self._update(interaction, note="\n".join(notes), action=chosen)

    @settings.command(name="modlog")
    @app_commands.describe(channel="Where alerts go (leave empty to turn alerts off)")
    async def modlog(
        self,
        interaction: discord.Interaction[Spoofwatch],
        channel: discord.TextChannel | None = None,
    ) -> None:
        """Set the mod-log channel for alerts."""
        if channel is not None:
            perms = channel.permissions_for(channel.guild.me)
            lacking = [p for p in _SENDS if not getattr(perms, p)]
            if lacking:
                await interaction.response.send_message(
                    f"Spoofwatch cannot post in {channel.mention}: it lacks "
                    + ", ".join(permission_name(p) for p in lacking)
                    + ". Nothing was changed.",
                    ephemeral=True,
                )
                return
        await self._update(interaction, modlog_channel_id=channel.id if channel else None)

    @settings.command(name="replies")
    @app_commands.describe(bonafide="Also reply when no deepfake is found")
    async def replies(self, interaction: discord.Interaction[Spoofwatch], bonafide: bool) -> None:
        """Choose whether automatic scans reply to bona fide results too."""
        await self._update(interaction, reply_bonafide=bonafide)

    @settings.command(name="transcripts")
    @app_commands.describe(
        show="Show transcripts in verdict replies",
        store="Keep transcripts in the audit log",
    )
    async def transcripts(
        self, interaction: discord.Interaction[Spoofwatch], show: bool, store: bool
    ) -> None:
        """Whether transcripts are shown in verdicts and stored in the audit log."""
        await self._update(interaction, show_transcripts=show, store_transcripts=store)

    @settings.command(name="generators")
    @app_commands.describe(enabled="Ask the provider which AI voice generator made a fake")
    async def generators(self, interaction: discord.Interaction[Spoofwatch], enabled: bool) -> None:
        """Name the likely generator of synthetic voices (no extra charge documented)."""
        await self._update(interaction, generator_detection=enabled)

    @settings.command(name="faces")
    @app_commands.describe(
        enabled="Judge videos' faces too (Behavioral Signals, experimental); off = sound only"
    )
    async def faces(self, interaction: discord.Interaction[Spoofwatch], enabled: bool) -> None:
        """Check videos for face swaps as well as voices (experimental; off saves cost)."""
        await self._update(interaction, video_faces=enabled)

    @settings.command(name="feedback")
    @app_commands.describe(
        enabled="Send moderators' confirm / not-a-deepfake decisions to the provider"
    )
    async def feedback(self, interaction: discord.Interaction[Spoofwatch], enabled: bool) -> None:
        """Share moderators' decisions with the provider (Resemble takes them) to improve it."""
        await self._update(interaction, provider_feedback=enabled)

    @settings.command(name="retention")
    @app_commands.describe(days="Cases older than this are deleted")
    async def retention(
        self, interaction: discord.Interaction[Spoofwatch], days: app_commands.Range[int, 1, 3650]
    ) -> None:
        """How long the audit log keeps cases."""
        await self._update(interaction, retention_days=days)

    @settings.command(name="provider")
    @app_commands.describe(provider="A detection service, or default for the operator's choice")
    async def provider(
        self,
        interaction: discord.Interaction[Spoofwatch],
        provider: Literal["behavioral_signals", "resemble", "default"],
    ) -> None:
        """Choose the detection service for this server (among those the operator set up)."""
        if provider == "default":
            await self._update(interaction, provider=None)
            return
        chosen = ProviderName(provider)
        if chosen not in self.bot.scans.providers:
            available = ", ".join(p.value for p in self.bot.scans.providers)
            await interaction.response.send_message(
                f"{provider} is not set up on this bot; available: {available}.", ephemeral=True
            )
            return
        await self._update(interaction, provider=chosen)

    @settings.command(name="quota")
    @app_commands.describe(per_day="Scans sent to the provider per day (0 = unlimited)")
    async def quota(
        self, interaction: discord.Interaction[Spoofwatch], per_day: app_commands.Range[int, 0]
    ) -> None:
        """Set the daily scan quota (reused verdicts do not count)."""
        await self._update(interaction, daily_quota=per_day or None)

    @settings.command(name="limits")
    @app_commands.describe(
        max_mb="Largest file scanned, in MiB (empty: the bot's default)",
        max_seconds="Longest recording scanned, in seconds (empty: the bot's default)",
    )
    async def limits(
        self,
        interaction: discord.Interaction[Spoofwatch],
        max_mb: app_commands.Range[float, 0.1, 500.0] | None = None,
        max_seconds: app_commands.Range[float, 1.0, 36000.0] | None = None,
    ) -> None:
        """Largest file (MiB) and longest recording (s) scanned; empty = the bot's defaults."""
        await self._update(interaction, max_file_mb=max_mb, max_duration_s=max_seconds)

    @app_commands.command(name="forget")
    @app_commands.describe(member="Whose cases to delete from this server's audit log")
    async def forget(
        self, interaction: discord.Interaction[Spoofwatch], member: discord.User
    ) -> None:
        """Delete every case of a member in this server, and the providers' copies where
        they allow it."""
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        jobs = await _provider_jobs(self.bot, interaction.guild_id, member.id)
        count = await self.bot.audit.admin.forget_author(
            interaction.guild_id, member.id, actor_id=interaction.user.id
        )
        copies = await self.bot.provider_copies.delete_copies(
            interaction.guild_id, jobs, why=f"forget of user {member.id}"
        )
        log.info(
            "forgot %d cases of user %s in guild %s at the request of %s",
            count,
            member.id,
            interaction.guild_id,
            interaction.user.id,
        )
        summary = deletion_summary(copies)
        await interaction.followup.send(
            f"Deleted {count} case{'s' if count != 1 else ''} of {member.mention}."
            + (f"\n-# {summary}" if summary else ""),
            ephemeral=True,
        )


async def _provider_jobs(
    bot: Spoofwatch, guild_id: int, author_id: int
) -> list[tuple[ProviderName, str | None]]:
    """The provider jobs of a member's cases, read before the cases are deleted."""
    jobs: list[tuple[ProviderName, str | None]] = []
    page = 500
    while True:
        records = await bot.audit.cases.by_author(guild_id, author_id, limit=page, offset=len(jobs))
        jobs.extend((record.provider, record.provider_job_id) for record in records)
        if len(records) < page:
            return jobs


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
    embed.add_field(name="Reply to bona fide", value="yes" if config.reply_bonafide else "no")
    embed.add_field(
        name="Transcripts",
        value=f"shown: {_show(config.show_transcripts)}, stored: {_show(config.store_transcripts)}",
    )
    embed.add_field(name="Retention", value=f"{config.retention_days} days")
    embed.add_field(name="Provider", value=config.provider.value if config.provider else "default")
    embed.add_field(name="Daily quota", value=str(config.daily_quota or "unlimited"))
    embed.add_field(name="Generator detection", value=_show(config.generator_detection))
    embed.add_field(name="Video faces", value=_show(config.video_faces))
    embed.add_field(name="Feedback to provider", value=_show(config.provider_feedback))
    embed.add_field(
        name="Limits",
        value=f"{_show(config.max_file_mb)} MiB, {_show(config.max_duration_s)} s",
    )
    return fit_embed(embed)


def _clip(text: str) -> str:
    """`text` within Discord's content limit, cut at a line break when there is one."""
    if len(text) <= CONTENT_LIMIT:
        return text
    cut = text.rfind("\n", 0, CONTENT_LIMIT - 1)
    return (text[:cut] if cut > CONTENT_LIMIT // 2 else text[: CONTENT_LIMIT - 1]) + "…"


_LABELS = {
    "auto_scan": "Automatic scans",
    "scope": "Scope",
    "scope_channels": "Listed channels",
    "kinds": "Media",
    "alert_threshold": "Alert threshold",
    "action": "Action",
    "modlog_channel_id": "Mod-log",
    "reply_bonafide": "Reply to bona fide",
    "show_transcripts": "Transcripts shown",
    "store_transcripts": "Transcripts stored",
    "retention_days": "Retention",
    "provider": "Provider",
    "daily_quota": "Daily quota",
    "max_file_mb": "Largest file",
    "max_duration_s": "Longest recording",
    "generator_detection": "Generator detection",
    "video_faces": "Video faces",
    "provider_feedback": "Feedback to provider",
}


def _show_for(field: str, value: object) -> str:
    """A changed setting's value as the settings embed would word it."""
    if value is None:
        return {
            "modlog_channel_id": "not set (no alerts)",
            "daily_quota": "unlimited",
        }.get(field, "default")
    if field == "alert_threshold" and isinstance(value, float):
        return f"{value:.0%}"
    if field == "modlog_channel_id":
        return f"<#{value}>"
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
    return _show(value)


def _show(value: object) -> str:
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, frozenset | set):
        return ", ".join(sorted(str(getattr(v, "value", v)) for v in value)) or "none"
    return str(getattr(value, "value", value))
