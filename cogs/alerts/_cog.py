"""After an automatic scan: alert the mod-log, delete the message, as the guild's policy says."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from dataclasses import replace
from datetime import timedelta
from typing import Final

import aiohttp
import discord
from discord.ext import commands, tasks

from bot import metrics
from bot.alert_ledger import (
    ALERT_DUE,
    ALERT_NOT_POSTED,
    ALERT_POSTED,
    ALERT_SETTLED,
    alerted,
    is_suspicious,
    key_of,
)
from bot.discord_glue.client import Spoofwatch
from bot.discord_glue.modlog import GONE, modlog_channel, post
from bot.guild_config import ActionPolicy, GuildConfig
from bot.scanning import ScanOutcome
from bot.storage import AuditEvent, Review, ScanRecord
from bot.timeline import picture_name, render_strip_async, wants_picture
from bot.verdict import Finding, decide
from cogs.alerts._embeds import alert_case, alert_embed, late_alert, plain_alert
from cogs.alerts._outages import OutageNotices
from cogs.alerts._public import remove_verdict_reply, tell_poster
from cogs.alerts._views import AlertState, alert_view, submit_reason

log = logging.getLogger(__name__)

#: The author's latest cases read for the alert's "3rd flag for this member" line.
EARLIER_CASES_READ: Final = 100
#: Evidence kept on an automatic delete is read into memory: never more than this per file.
EVIDENCE_MAX_BYTES: Final = 25 * 1024 * 1024
EVIDENCE_READ_S: Final = 30.0

#: Due alerts read per pass (every guild's; each process posts those of its own guilds).
OWED_BATCH: Final = 500
#: How old a due alert must be before a pass after start-up takes it over: older than any
#: alert still on its way (a raid's alerts queue behind the mod-log's rate limit).
OWED_AFTER: Final = timedelta(minutes=10)
#: Messages a pass reads back in a mod-log for alerts posted just before a stop.
POSTED_SEARCH_LIMIT: Final = 1000


class Alerts(commands.Cog):
    def __init__(self, bot: Spoofwatch) -> None:
        self.bot = bot
        self.outages = OutageNotices(bot.clock)
        #: Which alerts are due, and which of them this process is on.
        self.ledger = bot.alert_ledger

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[Spoofwatch]) -> None:
        # The reason modals of the alert buttons (see `ReasonModal`).
        await submit_reason(interaction)

    async def cog_load(self) -> None:
        self.owed.start()

    async def cog_unload(self) -> None:
        self.owed.cancel()

    @tasks.loop(minutes=5)
    async def owed(self) -> None:
        """Post the alerts left due: at start-up every one an earlier run left (this
        process's own are in its ledger), later only those due for `OWED_AFTER`."""
        starting = self.owed.current_loop == 0
        await self.send_owed(older_than=timedelta(0) if starting else OWED_AFTER)

    @owed.before_loop
    async def _owed_after_ready(self) -> None:
        await self.bot.wait_until_ready()  # the guilds and their channels are known

    @owed.error
    async def _owed_failed(self, error: BaseException) -> None:
        log.error("posting owed alerts failed; will retry", exc_info=error)

    @commands.Cog.listener()
    async def on_scan_finished(
        self, message: discord.Message, outcomes: list[ScanOutcome], config: GuildConfig
    ) -> None:
        if message.guild is None:
            return
        # A second opinion's provider can be down too ("provider both"). A case finished
        # before a restart tells nothing of the providers now.
        live = [o for o in outcomes if not o.replayed]
        seconds = [o.second for o in live if o.second is not None]
        await self.outages.observe(message.guild, [*live, *seconds], config)
        if config.action is ActionPolicy.REPLY:
            return
        suspicious = []
        for outcome in (o for o in outcomes if is_suspicious(o, config.alert_threshold)):
            if alerted(outcome, config):
                if await self.ledger.due_before(outcome.record):
                    continue  # an earlier run owes it: `send_owed` posts it (or did)
                if not self.ledger.owes_here(outcome.record) and self.bot.user is not None:
                    # The answer records it before the reply; here only if that failed.
                    await self.ledger.record_due([outcome], config, actor_id=self.bot.user.id)
            suspicious.append(outcome)
        if not suspicious:
            return
        try:
            await self._act(message, outcomes, suspicious, config)
        finally:
            for outcome in suspicious:
                self.ledger.settled(key_of(outcome.record))

    async def _act(
        self,
        message: discord.Message,
        outcomes: list[ScanOutcome],
        suspicious: list[ScanOutcome],
        config: GuildConfig,
        *,
        late: bool = False,
    ) -> None:
        """What the guild's policy does about the flagged `suspicious` of `message`."""
        assert message.guild is not None
        deleted: str | None = None
        evidence: dict[int, discord.File] = {}
        done = False
        if config.action is ActionPolicy.DELETE_AND_ALERT:
            # Read before deleting: once the message is gone, so is the audio moderators
            # would judge by.
            if config.modlog_channel_id is not None:
                evidence = await _evidence(message, suspicious)
            done, deleted = await self._delete(message)
            if not done:
                evidence = {}
            if done and self.bot.user is not None:
                # An automatic deletion is a moderation action like a moderator's: the case
                # keeps who did it (the bot), when and why.
                for outcome in suspicious:
                    await self.bot.audit.admin.record_action(
                        message.guild.id,
                        outcome.record.case_number,
                        action="delete",
                        actor_id=self.bot.user.id,
                        outcome=deleted,
                    )
            if done:
                deleted = (deleted or "") + await self._after_delete(message, outcomes, suspicious)
        for outcome in suspicious:
            await self._alert(
                message,
                outcome,
                config,
                deleted,
                evidence.get(outcome.record.id),
                message_gone=done,
                late=late,
            )

    # --- alerts left due ------------------------------------------------------------------

    async def send_owed(self, *, older_than: timedelta = OWED_AFTER) -> int:
        """Post the alerts left due (their process stopped, or their try raised) at least
        `older_than` ago, in this process's guilds; how many were settled. Never raises."""
        try:
            owed = await self.bot.audit.cases.unresolved_events(
                ALERT_DUE, ALERT_SETTLED, limit=OWED_BATCH
            )
        except Exception:
            log.exception("could not read the alerts left due")
            return 0
        cutoff = self.bot.clock() - older_than
        settled = 0
        # Each mod-log's alerts since the oldest due, read back once for the whole pass.
        seen: dict[int, dict[int, discord.Message]] = {}
        for event in owed:
            guild = self.bot.get_guild(event.guild_id)
            key = (event.guild_id, event.case_number or 0)
            if guild is None or event.at > cutoff or self.ledger.on_its_way(key):
                continue  # another process's guild, or an alert still on its way
            self.ledger.taken(key)
            try:
                await self._send_late(guild, event, seen)
            except Exception as exc:
                log.exception("owed alert of case %s/#%s failed", *key)
                await self._not_posted(*key, f"the late alert failed ({type(exc).__name__})")
            finally:
                self.ledger.settled(key)
            settled += 1
        if settled:
            log.info("posted or settled %d alert(s) left due", settled)
        return settled

    async def _send_late(
        self, guild: discord.Guild, event: AuditEvent, seen: dict[int, dict[int, discord.Message]]
    ) -> None:
        assert event.case_number is not None
        record = await self.bot.audit.cases.case(guild.id, event.case_number)
        if record is None:
            await self._not_posted(
                guild.id, event.case_number, "the case was deleted before its alert was posted"
            )
            return
        config = await self.bot.guild_configs.get(guild.id)
        if config.modlog_channel_id is None:
            # Unset since the alert fell due: settled here, or every pass would come back to
            # it (and the policy's delete is not done late with no alert to say so).
            await self._not_posted(guild.id, record.case_number, "no mod-log channel is set")
            return
        found = await self._posted_before(guild, config, record.case_number, event, seen)
        if found is not None:
            # Posted just before the stop, never recorded: recorded now, not posted twice.
            log.info("case %s/#%s: its alert was posted before the stop", *key_of(record))
            await self._record(record, ALERT_POSTED, f"mod-log {found.channel.id}/{found.id}")
            metrics.alert_settled("found_after_restart")
            return
        log.warning("case %s/#%s: posting the alert left due", guild.id, record.case_number)
        outcome = await self.bot.scans.outcome_of(record)
        seconds = await self.bot.second_opinions.existing(guild.id, record.case_number)
        if seconds:
            outcome = replace(outcome, second=await self.bot.scans.outcome_of(seconds[-1]))
        message = await _message_of(guild, record)
        if message is not None:
            await self._act(message, [outcome], [outcome], config, late=True)
            return
        # The message is gone (deleted by its author, by a moderator, or by this policy
        # before the stop): what the case holds is the alert.
        channel = modlog_channel(guild, config)
        if channel is None:
            await self._not_posted(guild.id, record.case_number, GONE)
            return
        ping, mentions = _ping(config)
        has_second = outcome.second is not None and outcome.second.verdict is not None
        view = alert_view(
            record.case_number,
            AlertState(message_gone=True, second_opinion=has_second),
            second_from=self.bot.second_opinions.other(record),
        )
        posted = await post(
            channel,
            content=(f"{ping}\n" if ping else "") + late_alert(outcome),
            view=view,
            allowed_mentions=mentions,
        )
        if isinstance(posted, discord.Message):
            await self._record(record, ALERT_POSTED, f"mod-log {channel.id}/{posted.id}")
            metrics.alert_settled("posted_late")
        else:
            await self._not_posted(guild.id, record.case_number, f"mod-log {channel.id}: {posted}")

    async def _after_delete(
        self,
        message: discord.Message,
        outcomes: list[ScanOutcome],
        suspicious: list[ScanOutcome],
    ) -> str:
        """No verdict may reply to a deleted message, and the poster is told why by DM.

        Returns what the alert should add about it.
        """
        assert message.guild is not None
        notes = []
        removed: set[int] = set()
        for outcome in outcomes:
            # Re-read: the reply's id was recorded after this outcome was made.
            record = await self.bot.audit.cases.case(message.guild.id, outcome.record.case_number)
            if record is None or record.reply_message_id in removed:
                continue
            if record.reply_message_id is not None and await remove_verdict_reply(
                message.guild, record
            ):
                removed.add(record.reply_message_id)
        if removed:
            notes.append("Its verdict reply was removed.")
        told = await tell_poster(message, suspicious[0].record)
        notes.append(
            "The poster was told by DM how to ask for a review."
            if told
            else "The poster could not be told (DMs closed)."
        )
        return "\n" + "\n".join(notes)

    async def _delete(self, message: discord.Message) -> tuple[bool, str]:
        """Delete per policy; (whether it was deleted, what the alert should say)."""
        assert message.guild is not None
        try:
            await message.delete()
        except discord.NotFound:
            return False, "The message was already deleted."
        except discord.HTTPException as exc:
            log.warning(
                "cannot delete message %s of user %s in channel %s of guild %s per policy: %s",
                message.id,
                message.author.id,
                message.channel.id,
                message.guild.id,
                exc,
            )
            if isinstance(exc, discord.Forbidden):
                return False, (
                    "⚠️ Could not delete the message: Spoofwatch lacks Manage Messages there."
                )
            return False, f"⚠️ Could not delete the message: Discord said {exc.status}."
        log.info(
            "deleted message %s of user %s in guild %s (policy: delete and alert)",
            message.id,
            message.author.id,
            message.guild.id,
        )
        return True, "Message deleted automatically (server policy)."

    async def _alert(
        self,
        message: discord.Message,
        outcome: ScanOutcome,
        config: GuildConfig,
        deleted: str | None,
        evidence: discord.File | None = None,
        *,
        message_gone: bool = False,
        late: bool = False,
    ) -> None:
        assert message.guild is not None
        if config.modlog_channel_id is None:
            return  # no alert is owed (`bot.alert_ledger.alerted`)
        channel = modlog_channel(message.guild, config)
        case_number = outcome.record.case_number
        if channel is None:
            log.warning(
                "mod-log channel %s of guild %s is gone", config.modlog_channel_id, message.guild.id
            )
            await self._not_posted(message.guild.id, case_number, GONE)
            return
        has_second = outcome.second is not None and outcome.second.verdict is not None
        view = alert_view(
            case_number,
            AlertState(message_gone=message_gone, second_opinion=has_second),
            second_from=self.bot.second_opinions.other(outcome.record),
        )
        ping, mentions = _ping(config)
        earlier = await self._earlier_flags(message, outcome, config)
        picture = None
        verdict = outcome.verdict
        if verdict is not None and wants_picture(verdict.segments):
            try:
                data = await render_strip_async(
                    verdict.segments, config.alert_threshold, verdict.duration_s
                )
                picture = discord.File(io.BytesIO(data), filename=picture_name(case_number))
            except Exception:
                log.exception("timeline picture of case %s/#%s not drawn", channel.guild.id,
                              case_number)  # fmt: skip
        files = [f for f in (picture, evidence) if f is not None]
        first = await post(
            channel,
            content=ping,
            embed=alert_embed(
                message,
                outcome,
                deleted,
                threshold=config.alert_threshold,
                earlier=earlier,
                picture=picture.filename if picture else None,
                evidence=evidence.filename if evidence else None,
                late=late,
            ),
            view=view,
            files=files,
            allowed_mentions=mentions,
        )
        if isinstance(first, discord.Message):
            await self._record(outcome.record, ALERT_POSTED, f"mod-log {channel.id}/{first.id}")
            metrics.alert_settled("posted_late" if late else "posted")
            if evidence is not None:
                await self.bot.kept_evidence.kept(message.guild.id, case_number, first)
            return
        log.error(
            "alert for case %s/#%s not posted in %s (%s); posting a plain alert",
            message.guild.id,
            case_number,
            channel.id,
            first,
        )
        # A lost alert is lost moderation: a second, plain-text try carries what a moderator
        # needs (case, link, score), with the buttons unless they were what Discord refused.
        second = await post(
            channel,
            content=(f"{ping}\n" if ping else "") + plain_alert(message, outcome, deleted),
            view=None if "components" in first else view,
            allowed_mentions=mentions,
        )
        if isinstance(second, discord.Message):
            await self._record(outcome.record, ALERT_POSTED, f"mod-log {channel.id}/{second.id}")
            metrics.alert_settled("posted_late" if late else "posted")
            return
        log.error(
            "alert for case %s/#%s could not be posted in %s: %s; then %s",
            message.guild.id,
            case_number,
            channel.id,
            first,
            second,
        )
        await self._not_posted(message.guild.id, case_number, f"mod-log {channel.id}: {second}")

    async def _earlier_flags(
        self, message: discord.Message, outcome: ScanOutcome, config: GuildConfig
    ) -> tuple[int, int]:
        """(earlier flagged cases of this author in this guild, how many were confirmed)."""
        assert message.guild is not None
        try:
            records = await self.bot.audit.cases.by_author(
                message.guild.id, message.author.id, limit=EARLIER_CASES_READ
            )
        except Exception:  # the alert matters more than its history line
            log.exception("earlier cases of user %s not read", message.author.id)
            return 0, 0
        flagged = [
            r
            for r in records
            if r.case_number != outcome.record.case_number
            # A second opinion is another look at a file already counted, not a new flag.
            and r.second_opinion_of is None
            and r.label is not None
            and decide(r.label, r.spoofed_probability, config.alert_threshold) is Finding.FLAGGED
        ]
        return len(flagged), sum(r.review is Review.CONFIRMED for r in flagged)

    async def _not_posted(self, guild_id: int, case_number: int, why: str) -> None:
        """Record among the case's events that its alert never reached the mod-log."""
        metrics.alert_settled("not_posted")
        if self.bot.user is not None:
            await self.bot.audit.admin.record_action(
                guild_id,
                case_number,
                action=ALERT_NOT_POSTED,
                actor_id=self.bot.user.id,
                outcome=why,
            )

    async def _posted_before(
        self,
        guild: discord.Guild,
        config: GuildConfig,
        case_number: int,
        due: AuditEvent,
        seen: dict[int, dict[int, discord.Message]],
    ) -> discord.Message | None:
        """The case's alert, if the bot posted it in the mod-log after the alert was due (a
        stop between posting it and recording it leaves it so). The mod-log is read once
        per pass, from the first (oldest) alert due the pass meets in it."""
        channel = modlog_channel(guild, config)
        me = self.bot.user
        if channel is None or me is None:
            return None
        if channel.id not in seen:
            alerts: dict[int, discord.Message] = {}
            try:
                async for posted in channel.history(
                    # A minute's margin for the clocks (ours stamped `due`, Discord's the ids).
                    after=discord.Object(
                        discord.utils.time_snowflake(due.at - timedelta(minutes=1))
                    ),
                    limit=POSTED_SEARCH_LIMIT,
                    oldest_first=True,
                ):
                    if posted.author.id == me.id and (case := alert_case(posted)) is not None:
                        alerts.setdefault(case, posted)
            except discord.HTTPException as exc:
                log.info("cannot search mod-log %s for earlier alerts: %s", channel.id, exc)
            seen[channel.id] = alerts
        return seen[channel.id].get(case_number)

    async def _record(self, record: ScanRecord, action: str, what: str) -> None:
        """An event about the case's alert (due, posted), by the bot."""
        if self.bot.user is not None:
            await self.bot.audit.admin.record_action(
                record.guild_id,
                record.case_number,
                action=action,
                actor_id=self.bot.user.id,
                outcome=what,
            )


async def _message_of(guild: discord.Guild, record: ScanRecord) -> discord.Message | None:
    """The case's message, if it is still on Discord and readable."""
    channel = guild.get_channel_or_thread(record.channel_id or 0)
    if record.message_id is None or not isinstance(channel, discord.abc.Messageable):
        return None
    try:
        return await channel.fetch_message(record.message_id)
    except discord.HTTPException as exc:
        log.info("message of case #%s not fetched: %s", record.case_number, exc)
        return None


def _ping(config: GuildConfig) -> tuple[str | None, discord.AllowedMentions]:
    """The alert's ping of the guild's chosen role, allowed to mention that role alone."""
    if config.alert_role_id is None:
        return None, discord.AllowedMentions.none()
    role = discord.Object(id=config.alert_role_id)
    return f"<@&{config.alert_role_id}>", discord.AllowedMentions(
        everyone=False, users=False, roles=[role], replied_user=False
    )


async def _evidence(
    message: discord.Message, outcomes: list[ScanOutcome]
) -> dict[int, discord.File]:
    """The flagged files, read back from Discord before an automatic delete removes them.

    Only what the guild may upload (its boost level's limit) is kept; the rest is named in
    the alert as not kept.
    """
    assert message.guild is not None
    limit = min(message.guild.filesize_limit, EVIDENCE_MAX_BYTES)
    by_id = {a.id: a for a in message.attachments}
    files: dict[int, discord.File] = {}
    for outcome in outcomes:
        attachment = by_id.get(outcome.record.attachment_id or 0)
        if attachment is None or attachment.size > limit:
            continue
        try:
            data = await asyncio.wait_for(attachment.read(), EVIDENCE_READ_S)
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("evidence of case #%s not read: %s", outcome.record.case_number, exc)
            continue
        name = f"case-{outcome.record.case_number}-{_safe_name(attachment.filename)}"
        files[outcome.record.id] = discord.File(io.BytesIO(data), filename=name)
    return files


def _safe_name(filename: str) -> str:
    """A file name with only letters, digits, dots, dashes and underscores."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename)[-60:].lstrip(".")
    return safe or "file"
