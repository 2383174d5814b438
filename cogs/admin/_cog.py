"""Per-guild settings and data deletion. Every change is saved, logged and echoed back."""

from __future__ import annotations

import logging
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_glue.client import Spoofwatch, permission_name
from bot.discord_glue.permissions import check_member
from bot.guild_config import ActionPolicy, ChannelScope, GuildConfig, PublicReplies
from bot.provider_copies import CaseJob, deletion_summary
from bot.verdict import MediaKind, ProviderName
from cogs.admin._checklist import checklist_embed, welcome
from cogs.admin._display import LABELS, clip, settings_embed, show, show_for
from cogs.help import answer_help

log = logging.getLogger(__name__)

Place = discord.TextChannel | discord.VoiceChannel | discord.CategoryChannel | discord.Thread
_SENDS = ("view_channel", "send_messages", "embed_links")
#: Subcommands that answer anyone who can reach them: Discord shows the group to Manage
#: Server by default, but a server admin may open it to others (Server Settings →
#: Integrations), and reading the help needs no permission.
OPEN_TO_ALL = frozenset({"spoofwatch help"})


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Admin(commands.GroupCog, group_name="spoofwatch", group_description="Spoofwatch for admins"):
    settings = app_commands.Group(name="settings", description="Configure Spoofwatch here")

    def __init__(self, bot: Spoofwatch) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[Spoofwatch]) -> bool:  # type: ignore[override]
        if interaction.command is not None and interaction.command.qualified_name in OPEN_TO_ALL:
            return True  # whoever a server admin let see this group may read its help
        check_member(interaction, manage_guild=True)
        return True

    @app_commands.command(name="help")
    async def help(self, interaction: discord.Interaction[Spoofwatch]) -> None:
        """What Spoofwatch does and how to use it (as /help, which every member has)."""
        await answer_help(interaction)

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
        described = ", ".join(f"{k}={show(v)}" for k, v in changes.items())
        spoken = "; ".join(f"{LABELS.get(k, k)}: {show_for(k, v)}" for k, v in changes.items())
        await self.bot.audit.admin.log_event(
            guild_id,
            actor=str(interaction.user.id),
            action="settings",
            target=f"guild:{guild_id}",
            reason=described,
        )
        log.info("guild %s settings changed by %s: %s", guild_id, interaction.user.id, described)
        text = clip(f"Saved. {spoken}." + (f"\n{note}" if note else ""))
        await interaction.response.send_message(
            text, embed=settings_embed(updated, self.bot.settings), ephemeral=True
        )

    @app_commands.command(name="setup")
    async def setup(self, interaction: discord.Interaction[Spoofwatch]) -> None:
        """What is set up and what is left: mod-log, permissions, threshold, replies, cost."""
        guild = interaction.guild
        assert guild is not None
        config = await self.bot.guild_configs.get(guild.id)
        await interaction.response.send_message(
            embed=checklist_embed(self.bot, guild, config), ephemeral=True
        )

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        await welcome(self.bot, guild)

    @settings.command(name="show")
    async def show(self, interaction: discord.Interaction[Spoofwatch]) -> None:
        """Show this server's Spoofwatch settings."""
        assert interaction.guild_id is not None
        config = await self.bot.guild_configs.get(interaction.guild_id)
        await interaction.response.send_message(
            embed=settings_embed(config, self.bot.settings), ephemeral=True
        )

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
    @app_commands.describe(
        value="Percent likely AI-generated at which moderators are alerted (80 = 80 %)"
    )
    async def threshold(
        self,
        interaction: discord.Interaction[Spoofwatch],
        value: app_commands.Range[float, 0.0, 100.0],
    ) -> None:
        """Set the alert threshold, as a percentage (0–1 is read as a fraction)."""
        # Lenient at the edge: "80" and "0.8" both mean 80 %; the setting is a fraction.
        await self._update(interaction, alert_threshold=value / 100 if value > 1 else value)

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

    @settings.command(name="alert-ping")
    @app_commands.describe(role="A role every alert mentions (leave empty to ping nobody)")
    async def alert_ping(
        self, interaction: discord.Interaction[Spoofwatch], role: discord.Role | None = None
    ) -> None:
        """Choose a role to ping with every alert."""
        note = ""
        if role is not None and not role.mentionable:
            guild = interaction.guild
            assert guild is not None
            perms = guild.me.guild_permissions
            if not perms.mention_everyone:
                note = (
                    f"⚠️ {role.mention} is not mentionable and Spoofwatch lacks Mention "
                    "@everyone, @here and All Roles: alerts will name it without pinging it."
                )
        await self._update(interaction, note=note, alert_role_id=role.id if role else None)

    @settings.command(name="exempt-add")
    @app_commands.describe(role="Members with this role are not scanned automatically")
    async def exempt_add(
        self, interaction: discord.Interaction[Spoofwatch], role: discord.Role
    ) -> None:
        """Exempt a role from automatic scans (trusted members; /check still works)."""
        assert interaction.guild_id is not None
        config = await self.bot.guild_configs.get(interaction.guild_id)
        exempt = config.exempt_roles | {role.id}
        note = f"Members with {role.mention} are no longer scanned automatically."
        await self._update(interaction, note=note, exempt_roles=exempt)

    @settings.command(name="exempt-remove")
    @app_commands.describe(role="A role on the exemption list")
    async def exempt_remove(
        self, interaction: discord.Interaction[Spoofwatch], role: discord.Role
    ) -> None:
        """Scan members with this role automatically again."""
        assert interaction.guild_id is not None
        config = await self.bot.guild_configs.get(interaction.guild_id)
        exempt = config.exempt_roles - {role.id}
        note = f"Removed {role.mention}; {len(exempt)} exempt role(s)."
        await self._update(interaction, note=note, exempt_roles=exempt)

    @settings.command(name="replies")
    @app_commands.describe(
        mode="all: every file (genuine in one line); flagged: only flagged files; never: none"
    )
    async def replies(
        self,
        interaction: discord.Interaction[Spoofwatch],
        mode: Literal["all", "flagged", "never"],
    ) -> None:
        """Choose which automatic scans get a public reply in the channel."""
        assert interaction.guild_id is not None
        config = await self.bot.guild_configs.get(interaction.guild_id)
        notes = []
        if mode != "all" and config.modlog_channel_id is None:
            notes.append(
                "⚠️ With fewer public replies, moderators learn of flagged files from the "
                "mod-log: set one with `/spoofwatch settings modlog`."
            )
        if mode == "never" and config.action is ActionPolicy.REPLY:
            notes.append(
                "⚠️ The action is `reply`, so flagged files now reach nobody: choose `alert` "
                "with `/spoofwatch settings action`."
            )
        note = "\n".join(notes)
        await self._update(interaction, note=note, public_replies=PublicReplies(mode))

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
    @app_commands.describe(
        days="Cases older than this are deleted, and the file kept on their mod-log alert"
    )
    async def retention(
        self, interaction: discord.Interaction[Spoofwatch], days: app_commands.Range[int, 1, 3650]
    ) -> None:
        """How long the audit log keeps cases (and the mod-log alerts their files)."""
        await self._update(interaction, retention_days=days)

    @settings.command(name="provider")
    @app_commands.describe(provider="A detection service, or default for the operator's choice")
    async def provider(
        self,
        interaction: discord.Interaction[Spoofwatch],
        provider: Literal["behavioral_signals", "resemble", "both", "default"],
    ) -> None:
        """Choose the detection service for this server; both = every file billed twice."""
        if provider == "both":
            if len(self.bot.scans.providers) < 2:
                await interaction.response.send_message(
                    "Only one detection service is set up on this bot, so files cannot be "
                    "checked by both.",
                    ephemeral=True,
                )
                return
            note = (
                "💰 Every automatically scanned file is now sent to **both** detection "
                "services: each file is **billed twice**, and both checks count against the "
                "daily quota. Replies and alerts follow the combined outcome; when the two "
                "disagree, moderators are alerted and members read that the detectors disagree."
            )
            await self._update(interaction, note=note, both_providers=True)
            return
        if provider == "default":
            await self._update(interaction, provider=None, both_providers=False)
            return
        chosen = ProviderName(provider)
        if chosen not in self.bot.scans.providers:
            available = ", ".join(p.value for p in self.bot.scans.providers)
            await interaction.response.send_message(
                f"{provider} is not set up on this bot; available: {available}.", ephemeral=True
            )
            return
        await self._update(interaction, provider=chosen, both_providers=False)

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
        """Delete a member's cases here, the files on their mod-log alerts, and the
        providers' copies."""
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = interaction.guild_id
        jobs = await _provider_jobs(self.bot, guild_id, member.id)
        count, copies = await self.bot.provider_copies.delete_with_cases(
            guild_id,
            jobs,
            lambda: self.bot.audit.admin.forget_author(
                guild_id, member.id, actor_id=interaction.user.id
            ),
            why=f"forget of user {member.id}",
        )
        alerts = (await self.bot.kept_evidence.remove_owed(self.bot)).get(interaction.guild_id, 0)
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
            + (f"\n-# {summary}" if summary else "")
            + (
                f"\n-# Their transcripts (and any kept file) were taken off {alerts} "
                f"mod-log alert{'s' if alerts != 1 else ''}."
                if alerts
                else ""
            ),
            ephemeral=True,
        )


async def _provider_jobs(bot: Spoofwatch, guild_id: int, author_id: int) -> list[CaseJob]:
    """The provider jobs of a member's cases, read before the cases are deleted."""
    jobs: list[CaseJob] = []
    page = 500
    while True:
        records = await bot.audit.cases.by_author(guild_id, author_id, limit=page, offset=len(jobs))
        jobs.extend(
            (record.provider, record.provider_job_id, record.case_number) for record in records
        )
        if len(records) < page:
            return jobs
