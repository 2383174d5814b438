"""Watch guild channels; scan media in a worker, react 🔍 meanwhile, reply once per message."""

from __future__ import annotations

import asyncio
import logging

import discord
from discord.ext import commands

from bot.attachments import Candidate, guild_provider, media_candidates, scan_limits, scan_request
from bot.client import Spoofwatch
from bot.errors import ScanInProgress
from bot.guild_config import GuildConfig
from bot.replies import outcome_embeds
from bot.scanning import ScanOutcome
from bot.storage import ScanRecord, Trigger
from bot.verdict import Label

log = logging.getLogger(__name__)

SCANNING = "\N{LEFT-POINTING MAGNIFYING GLASS}"
#: Discord's "Unknown Message" / invalid reply target: the message was deleted meanwhile.
_GONE_CODES = {10003, 10008, 50035}


class AutoScan(commands.Cog):
    def __init__(self, bot: Spoofwatch) -> None:
        self.bot = bot
        self._resumer: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        self._resumer = asyncio.create_task(self.resume_unfinished(), name="resume-scans")

    async def cog_unload(self) -> None:
        if self._resumer is not None:
            self._resumer.cancel()

    async def resume_unfinished(self) -> None:
        """After a restart, finish the scans the last run left behind, and answer them once."""
        await self.bot.wait_until_ready()
        records = await self.bot.audit.unfinished_scans()
        if records:
            log.info("resuming %d unfinished scan(s)", len(records))
        for record in records:
            self.bot.scan_pool.submit(lambda r=record: self._resume(r))  # type: ignore[misc]

    async def _resume(self, record: ScanRecord) -> None:
        message = await self._refetch(record) if record.trigger is Trigger.AUTO else None
        request = None
        config = await self.bot.guild_configs.get(record.guild_id)
        if message is not None:
            candidate = next(
                (c for c in media_candidates(message) if c.attachment.id == record.attachment_id),
                None,
            )
            if candidate is not None:
                request = scan_request(
                    candidate,
                    message=message,
                    guild_id=record.guild_id,
                    channel_id=record.channel_id,
                    trigger=record.trigger,
                    requested_by=record.requested_by,
                    provider=record.provider,
                    limits=scan_limits(self.bot.settings, config),
                    config=config,
                    paid_transcripts=self.bot.settings.resemble_intelligence,
                )
        outcome = await self.bot.scans.resume(record, request)
        if message is not None:
            await self.answer(message, [outcome], config)

    async def _refetch(self, record: ScanRecord) -> discord.Message | None:
        """The message again, with fresh attachment URLs (the stored ones expire)."""
        if record.channel_id is None or record.message_id is None:
            return None
        channel = self.bot.get_channel(record.channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            return None
        try:
            return await channel.fetch_message(record.message_id)
        except discord.HTTPException:
            log.info("message of case #%s is gone; finishing without a reply", record.case_number)
            return None

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.guild is None or not _from_a_person(message, self.bot):
            return
        candidates = media_candidates(message)
        if not candidates:
            return
        config = await self.bot.guild_configs.get(message.guild.id)
        if not config.auto_scan or not _in_scope(message, config):
            return
        candidates = [c for c in candidates if c.kind in config.kinds]
        if not candidates:
            return
        log.debug(
            "queueing %d attachment(s) of message %s in guild %s",
            len(candidates),
            message.id,
            message.guild.id,
        )
        self.bot.scan_pool.submit(lambda: self.scan_message(message, candidates, config))

    async def scan_message(
        self, message: discord.Message, candidates: list[Candidate], config: GuildConfig
    ) -> None:
        """Scan every candidate of one message and answer with one reply."""
        assert message.guild is not None
        reacted = await _react(message)
        provider = guild_provider(self.bot.settings, config, self.bot.scans.providers)
        limits = scan_limits(self.bot.settings, config)
        outcomes: list[ScanOutcome] = []
        try:
            for candidate in candidates:
                request = scan_request(
                    candidate,
                    message=message,
                    guild_id=message.guild.id,
                    channel_id=message.channel.id,
                    trigger=Trigger.AUTO,
                    requested_by=None,
                    provider=provider,
                    limits=limits,
                    config=config,
                    paid_transcripts=self.bot.settings.resemble_intelligence,
                )
                outcomes.append(await self.bot.scans.scan(request))
        finally:
            if reacted:
                await _unreact(message, self.bot)
        await self.answer(message, outcomes, config)

    async def answer(
        self, message: discord.Message, outcomes: list[ScanOutcome], config: GuildConfig
    ) -> None:
        """Reply once (unless already replied), then tell other features the scan finished."""
        fresh = [
            o
            for o in outcomes
            if not isinstance(o.error, ScanInProgress) and o.record.reply_message_id is None
        ]
        shown = [
            o
            for o in fresh
            if config.reply_bonafide or o.verdict is None or o.verdict.label is not Label.BONAFIDE
        ]
        if shown:
            reply = await self._reply(message, shown, config)
            if reply is not None:
                for outcome in shown:
                    await self.bot.audit.mark_replied(outcome.record.id, reply.id)
        if fresh:
            self.bot.dispatch("scan_finished", message, fresh, config)

    async def _reply(
        self, message: discord.Message, outcomes: list[ScanOutcome], config: GuildConfig
    ) -> discord.Message | None:
        embeds = outcome_embeds(outcomes, show_transcript=config.show_transcripts)
        try:
            return await message.reply(
                embeds=embeds,
                mention_author=False,
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.Forbidden:
            log.warning(
                "cannot reply in channel %s of guild %s (missing permission); cases %s recorded",
                message.channel.id,
                message.guild.id if message.guild else None,
                [o.record.case_number for o in outcomes],
            )
        except discord.HTTPException as exc:
            if exc.code in _GONE_CODES or exc.status == 404:
                log.info("message %s was deleted before its verdict; no reply", message.id)
            else:
                log.warning("reply to message %s failed: %s", message.id, exc)
        return None


def _from_a_person(message: discord.Message, bot: Spoofwatch) -> bool:
    return not (message.author.bot or message.webhook_id is not None or message.author == bot.user)


def _in_scope(message: discord.Message, config: GuildConfig) -> bool:
    channel = message.channel
    # A thread is in scope through itself, its parent channel or the parent's category.
    parent = channel.parent if isinstance(channel, discord.Thread) else None
    placed = parent if parent is not None else channel
    return config.scans_channel(
        channel.id,
        parent.id if parent is not None else None,
        getattr(placed, "category_id", None),
    )


async def _react(message: discord.Message) -> bool:
    try:
        await message.add_reaction(SCANNING)
    except discord.HTTPException:
        return False
    return True


async def _unreact(message: discord.Message, bot: Spoofwatch) -> None:
    if bot.user is None:
        return
    try:
        await message.remove_reaction(SCANNING, bot.user)
    except discord.HTTPException:
        # The message may be gone, or reactions cleared by a moderator; nothing to undo.
        log.debug("could not remove the scanning reaction from %s", message.id)
