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
- The reply is posted once per message: under a per-message lock the cases are re-read
  before replying. Posting and recording the reply are two steps a crash can separate, so
  after a restart the channel is searched for a reply the bot posted but did not record
  before a new one is posted; Discord is the record of what was posted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from dataclasses import replace
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
from bot.discord_glue.replies import (
    describe_http_error,
    outcome_embeds,
    publicly_shown,
    reply_target_gone,
)
from bot.discord_glue.second_opinion_flow import announce_resumed
from bot.errors import ScanInProgress
from bot.guild_config import GuildConfig
from bot.provider_health import account_problem
from bot.scanning import ScanLimits, ScanOutcome, ScanRequest
from bot.storage import ScanRecord, Trigger
from bot.timeline import picture_name, render_strip_async, wants_picture
from bot.verdict import Finding, ProviderName, verdict_finding
from cogs.autoscan._catch_up import channels_to_catch_up, unanswered_messages
from cogs.autoscan._marks import KeyedLocks, SearchMark, clear_stale_reaction
from cogs.autoscan._reply_queue import Answer, ReplyQueue, answered_ids
from cogs.autoscan._scope import (
    channel_in_scope,
    configured,
    exempt_by_fetch,
    from_a_person,
)

log = logging.getLogger(__name__)

#: How far after a message a restarted bot looks for its own unrecorded reply (one request).
_REPLY_SEARCH_LIMIT = 100
#: Messages remembered as queued from the gateway, for the next catch-up to leave alone.
_LIVE_REMEMBERED = 10_000


class AutoScan(commands.Cog):
    def __init__(self, bot: Spoofwatch) -> None:
        self.bot = bot
        self._resumer: asyncio.Task[None] | None = None
        self._catch_up: asyncio.Task[None] | None = None
        self._answering = KeyedLocks()
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

    async def _finish_quietly(self, record: ScanRecord) -> None:
        await self.bot.scans.resume(record, None)

    async def _finish_second_opinion(self, record: ScanRecord) -> None:
        outcome = await self.bot.scans.resume(record, None)
        if not isinstance(outcome.error, ScanInProgress):
            await announce_resumed(self.bot, outcome)

    async def _resume_message(self, records: list[ScanRecord]) -> None:
        """Finish one message's unfinished scans (and any attachment not yet accepted), then
        answer it once, unless the bot already did before the restart."""
        message = await self._refetch(records[0])
        if message is None or message.guild is None:
            for record in records:
                await self.bot.scans.resume(record, None)
            return
        config = await self.bot.guild_configs.get(message.guild.id)
        pending = {record.attachment_id: record for record in records}
        limits = scan_limits(self.bot.settings, config)
        wanted = {c.attachment.id for c in self._wanted(message, config)}
        outcomes: list[ScanOutcome] = []
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
            if resumed is not None:
                outcome = await self.bot.scans.resume(resumed, request)
            else:
                outcome = await self.bot.scans.scan(request)
            if isinstance(outcome.error, ScanInProgress):
                return  # another task owns this message and answers it
            if config.both_providers:
                outcome = await self.bot.second_opinions.alongside(outcome, request)
            outcomes.append(outcome)
        for record in pending.values():
            # The attachment is no longer on the message (edited away): close the case.
            await self.bot.scans.resume(record, None)
        await clear_stale_reaction(message, self.bot)
        # The database can be behind Discord: with synchronous=NORMAL a power loss drops the
        # last commits, so a scan may look unfinished although its verdict was posted.
        await self.answer(message, outcomes, config, check_existing=True)

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
            lambda: self.scan_message(message, candidates, config, received_at=received_at)
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
        *,
        recovering: bool = False,
        received_at: float | None = None,
    ) -> None:
        """Scan every candidate of one message and answer with one reply.

        `recovering` (catch-up after a restart): most such messages were scanned already,
        so no 🔍 flickers on them; a 🔍 the dead process left behind is removed.
        """
        # A 🔍 only for a scan still unanswered after the delay (counted from the gateway
        # event, so time queued behind other scans counts); it comes off while the reply is
        # posted: neither request stands between the message and its verdict.
        mark = None
        if not recovering:
            waited = 0.0 if received_at is None else asyncio.get_running_loop().time() - received_at
            mark = SearchMark(
                message,
                self.bot,
                delay_s=max(0.0, self.bot.settings.search_mark_delay_s - waited),
                busy=lambda: self.bot.pacing.channel_busy(message.channel.id),
            )
        try:
            outcomes = await self._scan_each(message, candidates, config)
        except BaseException:
            if mark is not None:
                await mark.take_off()
            raise
        cleanup = []
        if mark is not None:
            cleanup.append(mark.take_off())
        if recovering:
            cleanup.append(clear_stale_reaction(message, self.bot))
        if outcomes is None:
            # A duplicate event, or a restart's resume, owns this message; the owner
            # answers for every attachment.
            await asyncio.gather(*cleanup)
            return
        await asyncio.gather(self.answer(message, outcomes, config), *cleanup)

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

    async def _scan_each(
        self, message: discord.Message, candidates: list[Candidate], config: GuildConfig
    ) -> list[ScanOutcome] | None:
        """Scan the candidates one after the other; None when another task owns the message."""
        provider = guild_provider(self.bot.settings, config, self.bot.scans.providers)
        limits = scan_limits(self.bot.settings, config)
        outcomes: list[ScanOutcome] = []
        for candidate in candidates:
            request = self._request(candidate, message, config, provider, limits)
            outcome = await self.bot.scans.scan(request)
            if isinstance(outcome.error, ScanInProgress):
                return None
            if config.both_providers:
                # "provider both": the other provider too, as a linked case (bot.opinions).
                outcome = await self.bot.second_opinions.alongside(outcome, request)
            outcomes.append(outcome)
        return outcomes

    async def answer(
        self,
        message: discord.Message,
        outcomes: list[ScanOutcome],
        config: GuildConfig,
        *,
        check_existing: bool = False,
    ) -> None:
        """Reply once per message, then tell other features about scans that finished now.

        Under a per-message lock the cases are re-read, so of two tasks answering the same
        message only the first replies. `check_existing` (after a restart) first searches
        the channel for a reply posted before the crash but never recorded.
        """
        async with self._answering.hold(message.id):
            current = await self._current(outcomes)
            shown = [
                o
                for o in current
                if o.record.reply_message_id is None
                and publicly_shown(o, config)
                # A refused key or an empty balance is the operator's to fix: the mod-log
                # is told (cogs/health), the channel is not shown billing details.
                and (account_problem(o.error) is None or _has_second_verdict(o))
            ]
            if shown:
                reply_id = await self._existing_reply(message) if check_existing else None
                if reply_id is None:
                    reply = await self._reply(message, shown, config)
                    reply_id = reply.id if reply is not None else None
                else:
                    log.info(
                        "message %s was answered before the restart (reply %s)",
                        message.id,
                        reply_id,
                    )
                if reply_id is not None:
                    for outcome in shown:
                        await self.bot.audit.scans.mark_replied(outcome.record.id, reply_id)
                        if outcome.second is not None:
                            await self.bot.audit.scans.mark_replied(
                                outcome.second.record.id, reply_id
                            )
        # A replayed outcome was announced by the run that finished it.
        finished_now = [o for o in current if not o.replayed]
        if finished_now:
            self.bot.dispatch("scan_finished", message, finished_now, config)

    async def _current(self, outcomes: Iterable[ScanOutcome]) -> list[ScanOutcome]:
        """The outcomes with their cases as stored now (another task may have replied)."""
        current = []
        for outcome in outcomes:
            if isinstance(outcome.error, ScanInProgress):
                continue
            record = await self.bot.audit.scans.get_scan(outcome.record.id)
            if record is not None:  # else forgotten meanwhile (/spoofwatch forget)
                current.append(replace(outcome, record=record))
        return current

    async def _existing_reply(self, message: discord.Message) -> int | None:
        """The id of a reply by the bot to `message`, among the messages posted after it."""
        me = self.bot.user
        if me is None:
            return None
        try:
            async for later in message.channel.history(
                after=message, limit=_REPLY_SEARCH_LIMIT, oldest_first=True
            ):
                # A reply, or a combined answer whose card links to the message.
                if later.author.id == me.id and message.id in answered_ids(later):
                    return later.id
        except discord.HTTPException as exc:
            # Replying needs Read Message History too, so the reply will fail alike.
            log.info("cannot search channel %s for an earlier reply: %s", message.channel.id, exc)
        return None

    async def _reply(
        self, message: discord.Message, outcomes: list[ScanOutcome], config: GuildConfig
    ) -> discord.Message | None:
        pictures = await _timeline_pictures(outcomes, config.alert_threshold)
        embeds = outcome_embeds(
            outcomes,
            show_transcript=config.show_transcripts,
            threshold=config.alert_threshold,
            automatic=True,
            pictures={scan_id: name for scan_id, (name, _) in pictures.items()},
        )
        try:
            # Posted as the channel's message bucket allows: oldest first, and combined with
            # other waiting verdicts in a flooded channel (see _reply_queue).
            answer = Answer(embeds, list(pictures.values()), outcomes)
            return await self._replies.reply(message, answer)
        except discord.Forbidden:
            log.warning(
                "cannot reply in channel %s of guild %s (missing permission); cases %s recorded",
                message.channel.id,
                message.guild.id if message.guild else None,
                [o.record.case_number for o in outcomes],
            )
        except discord.HTTPException as exc:
            if reply_target_gone(exc):
                log.info("message %s was deleted before its verdict; no reply", message.id)
            else:
                # Any other 400 is a body Discord refused: say which fields, it is a bug.
                log.error("reply to message %s refused: %s", message.id, describe_http_error(exc))
        return None


def _has_second_verdict(outcome: ScanOutcome) -> bool:
    """A failed first scan whose second opinion ("provider both") still has a verdict."""
    return outcome.second is not None and outcome.second.verdict is not None


async def _timeline_pictures(
    outcomes: list[ScanOutcome], threshold: float
) -> dict[int, tuple[str, bytes]]:
    """scan id → (file name, PNG) for each full verdict with several stretches.

    A compact genuine line carries no picture. A picture that cannot be drawn is left out:
    the text timeline in the embed says the same.
    """
    pictures: dict[int, tuple[str, bytes]] = {}
    for outcome in outcomes[:10]:
        verdict = outcome.verdict
        if verdict is None or not wants_picture(verdict.segments) or outcome.second is not None:
            continue
        if verdict_finding(verdict, threshold) is Finding.GENUINE:
            continue
        try:
            data = await render_strip_async(verdict.segments, threshold, verdict.duration_s)
        except Exception:
            log.exception("timeline picture of case #%s not drawn", outcome.record.case_number)
            continue
        pictures[outcome.record.id] = (picture_name(outcome.record.case_number), data)
    return pictures
