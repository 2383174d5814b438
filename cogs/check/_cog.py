"""`/check file|message [public]` and the message menu *Check for deepfake*."""

from __future__ import annotations

import logging
import re
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_glue.attachments import (
    Candidate,
    guess_kind,
    guild_provider,
    media_candidates,
    scan_limits,
    scan_request,
)
from bot.discord_glue.client import Spoofwatch
from bot.discord_glue.embeds import PROVIDER_NAMES
from bot.discord_glue.replies import outcome_embeds
from bot.errors import NotMedia, SpoofwatchError
from bot.guild_config import GuildConfig
from bot.scanning import ScanOutcome
from bot.storage import Trigger
from bot.timeline import picture_name, render_strip_async, wants_picture
from bot.verdict import MediaKind, ProviderName
from cogs.check._delivery import CheckAnswers

log = logging.getLogger(__name__)

_MESSAGE_LINK = re.compile(
    r"https?://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/channels/(\d+|@me)/(\d+)/(\d+)"
)
NO_MEDIA = "That message has no voice message, audio file or video to check."


class BadTarget(SpoofwatchError):
    kind = "bad_target"
    hint = "Give a message link (Copy Message Link) or a message id from this channel."


class ProviderChoice(SpoofwatchError):
    """`/check … provider:` asked for what cannot be had here (or by this member)."""

    kind = "provider_choice"
    hint = "Leave `provider` out to use this server's detection service."


#: `/check`'s `provider` option: one service, or both (billed twice, each case kept).
ProviderOption = Literal["behavioral_signals", "resemble", "both"]


class Check(commands.Cog):
    def __init__(self, bot: Spoofwatch) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(
            name="Check for deepfake",
            callback=self.check_menu,
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=False, private_channel=False
            ),
        )

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @app_commands.command(name="check")
    @app_commands.describe(
        file="A voice recording or video to check",
        message="Link or id of a message in this server whose media to check",
        public="Show the answer to everyone in the channel (default: only you)",
        provider="Moderators: ask this detection service, or both (billed twice) for a "
        "second opinion",
    )
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def check(
        self,
        interaction: discord.Interaction[Spoofwatch],
        file: discord.Attachment | None = None,
        message: str | None = None,
        public: bool = False,
        provider: ProviderOption | None = None,
    ) -> None:
        """Check a file or a message for deepfaked speech."""
        await interaction.response.defer(ephemeral=not public, thinking=True)
        answers = CheckAnswers(interaction, public=public)
        if provider is not None:
            self._check_provider_choice(interaction, provider)
        await self._cooldown(interaction)
        if (file is None) == (message is None):
            raise BadTarget("Give either a file or a message to check (one of the two).")
        if file is not None:
            kind = guess_kind(file, voice_flag=False) or MediaKind.AUDIO
            candidate = Candidate(file, kind, file.is_voice_message())
            await self._scan(
                interaction, [candidate], None, Trigger.CHECK, answers, chosen=provider
            )
        else:
            assert message is not None
            target = await self._resolve(interaction, message)
            candidates = media_candidates(target)
            if not candidates:
                raise NotMedia(NO_MEDIA)
            await self._scan(
                interaction, candidates, target, Trigger.CHECK, answers, chosen=provider
            )

    async def check_menu(
        self, interaction: discord.Interaction[Spoofwatch], message: discord.Message
    ) -> None:
        # Context menus cannot live inside a class, so the cog builds one from this method.
        await interaction.response.defer(ephemeral=True, thinking=True)
        answers = CheckAnswers(interaction, public=False)
        await self._cooldown(interaction)
        candidates = media_candidates(message)
        if not candidates:
            raise NotMedia(NO_MEDIA)
        await self._scan(interaction, candidates, message, Trigger.CONTEXT_MENU, answers)

    def _check_provider_choice(
        self, interaction: discord.Interaction[Spoofwatch], chosen: ProviderOption
    ) -> None:
        """Only moderators choose (each choice may bill again), among configured services."""
        if interaction.guild is None or not interaction.permissions.manage_messages:
            raise ProviderChoice(
                "Choosing the detection service is for moderators (Manage Messages)."
            )
        configured = self.bot.scans.providers
        if chosen == "both":
            if len(configured) < 2:
                raise ProviderChoice(
                    "Only one detection service is set up here, so there is no second opinion."
                )
        elif ProviderName(chosen) not in configured:
            raise ProviderChoice(
                f"{PROVIDER_NAMES[ProviderName(chosen)]} is not set up on this bot."
            )

    async def _cooldown(self, interaction: discord.Interaction[Spoofwatch]) -> None:
        # Moderators are trusted with the service's cost; members share a per-user budget.
        if interaction.guild is not None and interaction.permissions.manage_messages:
            return
        await self.bot.check_cooldown.hit(interaction.user.id)

    async def _resolve(
        self, interaction: discord.Interaction[Spoofwatch], text: str
    ) -> discord.Message:
        """The message a link or id points at, if the asking member may read it."""
        if interaction.guild is None:
            raise BadTarget("In direct messages, attach the file instead of naming a message.")
        text = text.strip()
        link = _MESSAGE_LINK.search(text)
        if link:
            guild_part, channel_id, message_id = link.groups()
            if guild_part != str(interaction.guild.id):
                raise BadTarget("That message is not in this server.")
            channel = interaction.guild.get_channel_or_thread(int(channel_id))
        elif text.isdigit():
            message_id = text
            channel = interaction.channel  # type: ignore[assignment]
        else:
            raise BadTarget("That is neither a message link nor a message id.")
        if not isinstance(channel, discord.TextChannel | discord.Thread | discord.VoiceChannel):
            raise BadTarget("That message is not in a channel Spoofwatch can see.")
        member = interaction.user
        if not isinstance(member, discord.Member) or not (
            channel.permissions_for(member).read_message_history
        ):
            raise BadTarget("You cannot read that channel, so you cannot check its messages.")
        try:
            return await channel.fetch_message(int(message_id))
        except discord.NotFound:
            raise BadTarget("That message does not exist (or was deleted).") from None
        except discord.Forbidden:
            raise BadTarget("Spoofwatch cannot read that channel.") from None

    async def _scan(
        self,
        interaction: discord.Interaction[Spoofwatch],
        candidates: list[Candidate],
        message: discord.Message | None,
        trigger: Trigger,
        answers: CheckAnswers,
        *,
        chosen: ProviderOption | None = None,
    ) -> None:
        """Scan each file in turn and answer it as soon as it is done (one message per file).

        One answer for all would keep the member waiting for the slowest file, and could
        outlast the interaction's token.
        """
        guild_id = interaction.guild.id if interaction.guild else None
        config = await self._config(guild_id)
        provider = guild_provider(self.bot.settings, config, self.bot.scans.providers)
        # The other service is asked as a second opinion beside the server's own verdict
        # (reused at no cost when the file was checked already), so both show side by side
        # and the /check case of the message keeps the server's provider.
        both = chosen == "both" or (chosen is not None and ProviderName(chosen) is not provider)
        limits = scan_limits(self.bot.settings, config)
        for candidate in candidates[:10]:
            request = scan_request(
                candidate,
                message=message,
                guild_id=guild_id,
                channel_id=message.channel.id if message else interaction.channel_id,
                trigger=trigger,
                requested_by=interaction.user.id,
                provider=provider,
                limits=limits,
                config=config,
                paid_transcripts=self.bot.settings.resemble_intelligence,
            )
            outcome = await self.bot.scans.scan(request)
            if both:
                # The other service too, as a case linked to this one (bot.opinions).
                outcome = await self.bot.second_opinions.alongside(outcome, request)
            pictures = await _picture(outcome, config.alert_threshold)
            await answers.send(
                outcome_embeds(
                    [outcome],
                    show_transcript=config.show_transcripts,
                    threshold=config.alert_threshold,
                    pictures={outcome.record.id: pictures[0][0]} if pictures else None,
                ),
                pictures,
            )
            # A refused key or an empty balance: the operator and the mod-log are told.
            await self.bot.provider_health.observe(outcome.record.provider, outcome.error)
            if outcome.second is not None:
                second = outcome.second
                await self.bot.provider_health.observe(second.record.provider, second.error)

    async def _config(self, guild_id: int | None) -> GuildConfig:
        return await self.bot.guild_configs.get(guild_id) if guild_id else GuildConfig()


async def _picture(outcome: ScanOutcome, threshold: float) -> list[tuple[str, bytes]]:
    """The timeline strip of a verdict with several stretches, as (file name, PNG)."""
    verdict = outcome.verdict
    if verdict is None or not wants_picture(verdict.segments) or outcome.second is not None:
        return []
    try:
        data = await render_strip_async(verdict.segments, threshold, verdict.duration_s)
    except Exception:  # the text timeline in the embed says the same
        log.exception("timeline picture of case #%s not drawn", outcome.record.case_number)
        return []
    return [(picture_name(outcome.record.case_number), data)]
