"""Watch guild channels; scan media in a worker, 🔍 on slow scans, reply once per message.

Durability across restarts (SIGKILL included), in three parts:

- Scans the last run left unfinished are read from the database before the gateway connects
  (so none of them can be running here) and resumed per message: existing provider jobs are
  polled, never submitted again (see `ScanService.resume`).
- Discord does not deliver the messages posted while the bot was away, nor again the ones
  it received but died before recording. On every new gateway session the bot therefore
  reads back each watched channel's newest messages (`SPOOFWATCH_CATCH_UP_MESSAGES`, none
  older than `SPOOFWATCH_CATCH_UP_HOURS`) and scans media that has no reply from it. The
  scan's row is idempotent per message and attachment, so seeing a message twice is harmless.
- The reply is posted once per message, whichever of the three finishes it: the scan
  service answers a message once (`ScanService.scan_message`) and this cog only draws and
  posts the reply (`MessageAnswer`). Posting and recording the reply are two steps a crash
  can separate, so after a restart the channel is searched for a reply the bot posted but
  did not record before a new one is posted; Discord is the record of what was posted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import timedelta

import discord
from discord.ext import commands

from bot.discord_glue.attachments import (
    Candidate,
    guild_provider,
    media_candidates,
    scan_limits,
    scan_request,
)
from bot.discord_glue.client import Spoofwatch
from bot.discord_glue.second_opinion_flow import announce_resumed
from bot.errors import ScanInProgress
from bot.guild_config import GuildConfig
from bot.scanning import MessagePart, ScanLimits, ScanRequest
from bot.storage import ScanRecord, Trigger
from bot.verdict import ProviderName
from bot.worker_pool import Worker
from cogs.autoscan._answer import MessageAnswer
from cogs.autoscan._catch_up import channels_to_catch_up, unanswered_messages
from cogs.autoscan._reply_queue import ReplyQueue
from cogs.autoscan._scope import (
    channel_in_scope,
    configured,
    exempt_by_fetch,
    from_a_person,
)

log = logging.getLogger(__name__)

#: Messages remembered as queued from the gateway, for the next catch-up to leave alone.
_LIVE_REMEMBERED = 10_000


class AutoScan(commands.Cog):
    def __init__(self, bot: Spoofwatch) -> None:
        self.bot = bot
        self._resumer: asyncio.Task[None] | None = None
        self._catch_up: asyncio.Task[None] | None = None
        #: Replies in a flooded channel: oldest first, combined when they must wait.
        self._replies = ReplyQueue(bot.pacing, combine=bot.settings.combine_replies)
        #: Messages `on_message` queued since the last catch-up finished (oldest first).
        #: A new session's catch-up reads back the channels' newest messages while the
        #: gateway goes on delivering: whatever arrived before `on_ready` (discord.py holds
        #: it back while guilds load) is being scanned already, so it is not queued twice.
        self._queued_live: dict[int, None] = {}

    async def cog_load(self) -> None:
        # Read before the gateway connects: every unfinished scan now was left by an earlier
        # run, so no task of this process is running it and resuming cannot run it twice.
        # Only this process's shards' guilds: the other processes resume their own.
        unfinished = await self.bot.audit.scans.unfinished_scans(self.bot.settings.shard_filter)
        self._resumer = asyncio.create_task(self.resume_unfinished(unfinished), name="resume-scans")

    async def cog_unload(self) -> None:
        for task in (self._resumer, self._catch_up):
            if task is not None:
                task.cancel()
        self._replies.close()

    async def resume_unfinished(self, records: list[ScanRecord]) -> None:
        """After a restart, finish the scans the last run left behind, and answer them once."""
        await self.bot.wait_until_ready()
        if records:
            log.info("resuming %d unfinished scan(s)", len(records))
        by_message: dict[tuple[int, int], list[ScanRecord]] = {}
        for record in records:
            if (
                record.trigger is Trigger.AUTO
                and record.channel_id is not None
                and record.message_id is not None
            ):
                by_message.setdefault((record.channel_id, record.message_id), []).append(record)
            elif record.trigger is Trigger.SECOND_OPINION and record.requested_by is not None:
                # A moderator's button: its interaction is gone, so the mod-log is told.
                self.bot.scan_pool.submit(functools.partial(self._finish_second_opinion, record))
            else:
                # /check and the menu answered through an interaction that is gone now:
                # finish the case for the audit log; there is nobody to reply to.
                self.bot.scan_pool.submit(functools.partial(self._finish_quietly, record))
        for group in by_message.values():
            self.bot.scan_pool.submit(functools.partial(self._resume_message, group))

    async def _finish_quietly(self, record: ScanRecord, worker: Worker) -> None:
        await self.bot.scans.resume(record, None, worker=worker)

    async def _finish_second_opinion(self, record: ScanRecord, worker: Worker) -> None:
        outcome = await self.bot.scans.resume(record, None, worker=worker)
        if not isinstance(outcome.error, ScanInProgress):
            await announce_resumed(self.bot, outcome)

    async def _resume_message(self, records: list[ScanRecord], worker: Worker) -> None:
        """Finish one message's unfinished scans (and any attachment not yet accepted), then
        answer it once, unless the bot already did before the restart."""
        message = await self._refetch(records[0])
        if message is None or message.guild is None:
            for record in records:
                await self.bot.scans.resume(record, None, worker=worker)
            return
        config = await self.bot.guild_configs.get(message.guild.id)
        pending = {record.attachment_id: record for record in records}
        limits = scan_limits(self.bot.settings, config)
        wanted = {c.attachment.id for c in self._wanted(message, config)}
        parts: list[MessagePart] = []
        for candidate in media_candidates(message):
            key = candidate.attachment.id
            resumed = pending.pop(key) if key in pending else None
            if resumed is None and key not in wanted:
                continue
            provider = (
                resumed.provider
                if resumed is not None
                else guild_provider(self.bot.settings, config, self.bot.scans.providers)
            )
            request = self._request(candidate, message, config, provider, limits)
            parts.append(MessagePart(request, resumed))
        await self._scan_and_answer(
            message, parts, config, worker, recovering=True, check_existing=True
        )
        for record in pending.values():
            # The attachment is no longer on the message (edited away): close the case.
            await self.bot.scans.resume(record, None, worker=worker)

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
    async def on_ready(self) -> None:
        # Every new gateway session, not only the first: after a lost session (not a
        # RESUME) Discord does not replay what was posted in between either.
        if self.bot.settings.catch_up_messages == 0:
            return
        if self._catch_up is not None and not self._catch_up.done():
            return
        self._catch_up = asyncio.create_task(self.catch_up(), name="catch-up")

    async def catch_up(self) -> None:
        """Scan media posted while the bot was away, or received but never recorded."""
        settings = self.bot.settings
        # Discord's clock: message ids carry their creation time in it.
        cutoff = discord.utils.utcnow() - timedelta(hours=settings.catch_up_hours)
        queued = 0
        for guild in list(self.bot.guilds):
            config = await self.bot.guild_configs.get(guild.id)
            if not config.auto_scan:
                continue
            for channel in channels_to_catch_up(guild, cutoff):
                if not channel_in_scope(channel, config):
                    continue
                try:
                    messages = await unanswered_messages(
                        channel, self.bot, limit=settings.catch_up_messages, cutoff=cutoff
                    )
                except discord.HTTPException as exc:
                    log.info(
                        "catch-up: cannot read channel %s of guild %s: %s",
                        channel.id,
                        guild.id,
                        exc,
                    )
                    continue
                for message in messages:
                    if message.id in self._queued_live:
                        continue  # queued from the gateway; that scan answers it
                    candidates = self._wanted(message, config)
                    if candidates and await exempt_by_fetch(message, config):
                        continue
                    if candidates:
                        self.bot.scan_pool.submit(
                            functools.partial(
                                self.scan_message, message, candidates, config, recovering=True
                            )
                        )
                        queued += 1
        log.info("catch-up: %d unanswered message(s) with media queued", queued)
        # Later messages can only reach a later session's catch-up through its history
        # read, and one queued before now that is still running is a replay there (as it
        # always was): what is remembered from here on is what the next catch-up needs.
        self._queued_live.clear()

    def _wanted(self, message: discord.Message, config: GuildConfig) -> list[Candidate]:
        """The attachments of `message` this guild's settings want scanned automatically."""
        if message.guild is None or not from_a_person(message, self.bot):
            return []
        return configured(message, config, media_candidates(message))

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.guild is None or not from_a_person(message, self.bot):
            return
        found = media_candidates(message)
        if not found:
            return  # most messages: no database read for them
        config = await self.bot.guild_configs.get(message.guild.id)
        candidates = configured(message, config, found)  # what `_wanted` would say
        if not candidates:
            return
        log.debug(
            "queueing %d attachment(s) of message %s in guild %s",
            len(candidates),
            message.id,
            message.guild.id,
        )
        received_at = asyncio.get_running_loop().time()
        self.bot.scan_pool.submit(
            lambda worker: self.scan_message(
                message, candidates, config, worker, received_at=received_at
            )
        )
        if self.bot.settings.catch_up_messages:
            self._remember_live(message.id)

    def _remember_live(self, message_id: int) -> None:
        live = self._queued_live
        live[message_id] = None
        if len(live) > _LIVE_REMEMBERED:
            del live[next(iter(live))]

    async def scan_message(
        self,
        message: discord.Message,
        candidates: list[Candidate],
        config: GuildConfig,
        worker: Worker,
        *,
        recovering: bool = False,
        received_at: float | None = None,
    ) -> None:
        """Scan every candidate of one message and answer with one reply.

        `recovering` (catch-up after a restart): most such messages were scanned already,
        so no 🔍 flickers on them; a 🔍 the dead process left behind is removed.
        """
        provider = guild_provider(self.bot.settings, config, self.bot.scans.providers)
        limits = scan_limits(self.bot.settings, config)
        parts = [
            MessagePart(self._request(candidate, message, config, provider, limits))
            for candidate in candidates
        ]
        await self._scan_and_answer(
            message, parts, config, worker, recovering=recovering, received_at=received_at
        )

    async def _scan_and_answer(
        self,
        message: discord.Message,
        parts: list[MessagePart],
        config: GuildConfig,
        worker: Worker,
        *,
        recovering: bool,
        check_existing: bool = False,
        received_at: float | None = None,
    ) -> None:
        """The one way a message is scanned and answered: live, caught up, or resumed."""
        answer = MessageAnswer(
            self.bot,
            self._replies,
            message,
            config,
            worker,
            recovering=recovering,
            check_existing=check_existing,
            received_at=received_at,
        )
        try:
            current = await self.bot.scans.scan_message(
                message.id,
                parts,
                answer,
                worker=worker,
                # "provider both": the other provider too, as a linked case (bot.opinions).
                alongside=self.bot.second_opinions.alongside if config.both_providers else None,
            )
        except BaseException:
            await answer.abandon()
            raise
        # None: a duplicate event, or a restart's resume, owns this message and answers it.
        # A case is announced (alerts, provider health) by the task whose answer found it
        # unanswered: the run that finished it announces only after its reply, so a case a
        # restart finds finished but unanswered was never announced, replayed or not.
        finished_now = [o for o in current or [] if o.record.reply_message_id is None]
        if finished_now:
            self.bot.dispatch("scan_finished", message, finished_now, config)
        await answer.close()

    def _request(
        self,
        candidate: Candidate,
        message: discord.Message,
        config: GuildConfig,
        provider: ProviderName,
        limits: ScanLimits,
    ) -> ScanRequest:
        """The automatic scan of one attachment of `message`."""
        assert message.guild is not None
        return scan_request(
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
