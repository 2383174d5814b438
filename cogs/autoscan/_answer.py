"""The Discord side of answering a message: the 🔍 while its scans run, then the reply.

`MessageAnswer` is the `bot.scanning.Answerer` of one message: the scan service calls it
once the message's scans have ended, with the outcomes nobody answered yet, and records the
reply it posts. It decides what the channel is shown, draws the verdict cards and timeline
pictures, and posts them through the channel's reply queue (`_reply_queue`).

The 🔍: on real Discord every request counts: one reaction call per 0.25 s per channel
(adding and removing share it) and 50 requests/s for the whole bot. A verdict that arrives
within a second or two needs no "still working" sign, so the mark goes on only when the scan
is still unanswered after `SPOOFWATCH_SEARCH_MARK_DELAY_S`, and not at all in a channel whose
Discord buckets are already busy (a raid): there it would only delay the replies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import discord

from bot.discord_glue.client import Spoofwatch
from bot.discord_glue.replies import (
    describe_http_error,
    outcome_embeds,
    publicly_shown,
    reply_target_gone,
)
from bot.guild_config import GuildConfig
from bot.provider_health import account_problem
from bot.scanning import Reply, ScanOutcome
from bot.timeline import picture_name, render_strip_async, wants_picture
from bot.verdict import Finding, verdict_finding
from bot.worker_pool import Worker
from cogs.autoscan._reply_queue import Answer, ReplyQueue, answered_ids

log = logging.getLogger(__name__)

#: How far after a message a restarted bot looks for its own unrecorded reply (one request).
_REPLY_SEARCH_LIMIT = 100

SCANNING = "\N{LEFT-POINTING MAGNIFYING GLASS}"


async def react(message: discord.Message) -> bool:
    try:
        await message.add_reaction(SCANNING)
    except discord.HTTPException:
        return False
    return True


async def unreact(message: discord.Message, bot: Spoofwatch) -> None:
    if bot.user is None:
        return
    try:
        await message.remove_reaction(SCANNING, bot.user)
    except discord.HTTPException:
        # The message may be gone, or reactions cleared by a moderator; nothing to undo.
        log.debug("could not remove the scanning reaction from %s", message.id)


def _never_busy() -> bool:
    return False


class SearchMark:
    """The 🔍 of one scan: on after `delay_s` unless answered or `busy()`; off once answered."""

    def __init__(
        self,
        message: discord.Message,
        bot: Spoofwatch,
        *,
        delay_s: float,
        busy: Callable[[], bool] = _never_busy,
    ) -> None:
        self._message = message
        self._bot = bot
        self._busy = busy
        #: Set once the add request is under way: from then on it must be undone.
        self._placing = False
        self._task = asyncio.create_task(self._put_on_later(delay_s), name="search-mark")

    async def _put_on_later(self, delay_s: float) -> bool:
        await asyncio.sleep(delay_s)
        if self._busy():
            log.debug("channel %s is busy: no 🔍 on %s", self._message.channel.id, self._message.id)
            return False
        self._placing = True
        return await react(self._message)

    @property
    def placing(self) -> bool:
        """Whether the mark was (or is being) put on."""
        return self._placing

    async def take_off(self) -> None:
        """The scan is answered (or failed): no mark from now on, and none left behind."""
        if not self._placing:
            # Still waiting out the delay (or decided against it): nothing was sent.
            self._task.cancel()
            return
        if await self._task:
            await unreact(self._message, self._bot)


async def clear_stale_reaction(message: discord.Message, bot: Spoofwatch) -> None:
    """Remove a 🔍 a process killed mid-scan left on the message."""
    if any(r.me and str(r.emoji) == SCANNING for r in message.reactions):
        await unreact(message, bot)


class MessageAnswer:
    """The answer to one message: its 🔍 while the scans run, then its one reply."""

    def __init__(
        self,
        bot: Spoofwatch,
        replies: ReplyQueue,
        message: discord.Message,
        config: GuildConfig,
        worker: Worker,
        *,
        recovering: bool = False,
        check_existing: bool = False,
        received_at: float | None = None,
    ) -> None:
        """`recovering` (after a restart): most such messages were scanned already, so no
        🔍 flickers on them, and a 🔍 the dead process left behind is removed.
        `check_existing`: first search the channel for a reply posted before a crash but
        never recorded (the database can be behind Discord: with synchronous=NORMAL a power
        loss drops the last commits)."""
        self._bot = bot
        self._replies = replies
        self._message = message
        self._config = config
        self._worker = worker
        self._recovering = recovering
        self._check_existing = check_existing
        self._tidying: asyncio.Future[list[None]] | None = None
        # A 🔍 only for a scan still unanswered after the delay (counted from the gateway
        # event, so time queued behind other scans counts); it comes off while the reply is
        # posted: neither request stands between the message and its verdict.
        self._mark: SearchMark | None = None
        if not recovering:
            loop = asyncio.get_running_loop()
            waited = 0.0 if received_at is None else loop.time() - received_at
            self._mark = SearchMark(
                message,
                bot,
                delay_s=max(0.0, bot.settings.search_mark_delay_s - waited),
                busy=lambda: bot.pacing.channel_busy(message.channel.id),
            )

    def scanned(self) -> None:
        if self._tidying is not None:
            return
        tidy: list[Coroutine[Any, Any, None]] = []
        if self._mark is not None:
            tidy.append(self._mark.take_off())
        if self._recovering:
            tidy.append(clear_stale_reaction(self._message, self._bot))
        self._tidying = asyncio.ensure_future(asyncio.gather(*tidy))

    async def close(self) -> None:
        """The message's answer is over (or another task owns it): no mark left behind."""
        self.scanned()
        assert self._tidying is not None
        await self._tidying

    async def abandon(self) -> None:
        """A scan raised (a shutdown): the mark comes off, nothing else is sent."""
        if self._tidying is not None:
            await self._tidying
        elif self._mark is not None:
            await self._mark.take_off()

    async def reply(self, unanswered: list[ScanOutcome]) -> Reply | None:
        me = self._bot.user
        if me is not None:
            # Before the reply: once it is on Discord, a restart's catch-up never comes back
            # to this message, and an alert a stop cut short would be lost unrecorded.
            await self._bot.alert_ledger.record_due(unanswered, self._config, actor_id=me.id)
        shown = [
            o
            for o in unanswered
            if publicly_shown(o, self._config)
            # A refused key or an empty balance is the operator's to fix: the mod-log is
            # told (cogs/health), the channel is not shown billing details.
            and (account_problem(o.error) is None or _has_second_verdict(o))
        ]
        if not shown:
            return None
        message = self._message
        reply_id = await self._existing_reply() if self._check_existing else None
        if reply_id is None:
            posted = await self._post(shown)
            reply_id = posted.id if posted is not None else None
        else:
            log.info("message %s was answered before the restart (reply %s)", message.id, reply_id)
        return Reply(reply_id, shown) if reply_id is not None else None

    async def _existing_reply(self) -> int | None:
        """The id of a reply by the bot to the message, among the messages posted after it."""
        me, message = self._bot.user, self._message
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

    async def _post(self, outcomes: list[ScanOutcome]) -> discord.Message | None:
        message, config = self._message, self._config
        pictures = await _timeline_pictures(outcomes, config.alert_threshold)
        embeds = outcome_embeds(
            outcomes,
            show_transcript=config.show_transcripts,
            threshold=config.alert_threshold,
            automatic=True,
            pictures={scan_id: name for scan_id, (name, _) in pictures.items()},
        )
        # From here the scan only waits on Discord (for room in the channel's bucket, or for
        # discord.py, which holds the call that used up a bucket until its window ends), and
        # a flooded channel must not stall scans elsewhere: the worker goes on.
        self._worker.hand_off()
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
