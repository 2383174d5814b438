"""What a mod-log alert carries of its case, under the guild's retention: when the case is
deleted (the retention purge, `/spoofwatch forget`), the alert loses the member's words (the
transcript), their name and avatar as they were, the timeline picture and any copy of the
deleted message's file, and says why.

The audit log's events are the to-do list, so nothing is lost to a crash or an outage: every
alert posted is recorded as `alert_posted`, and one posted with the file also as
`evidence_kept` (channel and message in the reason); once its case is gone, `remove_owed`
edits the alert and records `evidence_removal` (an alert with the file) or `alert_redaction`
with the outcome. An alert or channel already gone (404) or out of reach (403) is an
outcome like any other, recorded once; Discord being down is not: the removal stays owed,
the first failed try is recorded, the run stops there (the other alerts would only wait out
the same outage), and the next run (hourly, and at start-up) tries again.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
from typing import Final, NamedTuple

import aiohttp
import discord

from bot.alert_ledger import ALERT_POSTED
from bot.discord_glue.replies import describe_http_error
from bot.storage import AuditEvent, AuditLog, ShardFilter, in_shards

log = logging.getLogger(__name__)

#: How the audit log names the bot when it acts on its own (as in `bot.provider_copies`).
ACTOR: Final = "spoofwatch"
KEPT: Final = "evidence_kept"
REMOVAL: Final = "evidence_removal"
REMOVAL_FAILED: Final = "evidence_removal_failed"
#: Every alert posted (recorded by the alerts cog, where it is in the reason), and the
#: removal of its case's details once the case is gone (for an alert without the file).
POSTED: Final = ALERT_POSTED
REDACTION: Final = "alert_redaction"
REDACTION_FAILED: Final = "alert_redaction_failed"
#: Owed removals handled per run; the rest wait for the next run.
BATCH: Final = 100
#: One alert's fetch and edit, past discord.py's own retries of 429 and 5xx.
EDIT_TIMEOUT_S: Final = 60.0
#: What the alert says once its file is gone (in place of "The file is attached here").
REMOVED_NOTE: Final = (
    "The file was removed: the case was deleted from the audit log under this server's "
    "retention setting (or `/spoofwatch forget`)."
)
#: What the alert's transcript says once its case is gone.
TRANSCRIPT_REMOVED: Final = "Removed with the case (retention setting or `/spoofwatch forget`)."
_ATTACHED = re.compile(r"The file is attached here \([^)]*\)\.")
_WHERE = re.compile(r"(?:alert|mod-log) (\d+)/(\d+)")


class _Edit(NamedTuple):
    """One kind of owed edit, by the event that settles it: what its outcomes say, and
    what a failed try is recorded as."""

    done: str
    left: str
    failed: str


_EDITS: Final = {
    REMOVAL: _Edit("file removed from the alert", "file left in place", REMOVAL_FAILED),
    REDACTION: _Edit("case removed from the alert", "alert left as it was", REDACTION_FAILED),
}


class KeptEvidence:
    """Records which alerts carry a file, and takes the case (and the file) off its alerts
    once the case is deleted."""

    def __init__(self, audit: AuditLog, *, shards: ShardFilter | None = None) -> None:
        self._audit = audit
        #: The guilds whose alerts this process edits (its shards'); None: every guild.
        self._shards = shards
        #: One run at a time in this process (the hourly purge and a `/spoofwatch forget`).
        self._running = asyncio.Lock()

    async def kept(self, guild_id: int, case_number: int, alert: discord.Message) -> None:
        """Record that this alert carries the case's file. Never raises: the alert is out."""
        try:
            await self._audit.admin.log_event(
                guild_id,
                actor=ACTOR,
                action=KEPT,
                target=f"case {case_number}",
                reason=f"alert {alert.channel.id}/{alert.id}",
            )
        except Exception:
            log.exception(
                "alert %s of case %s/#%s carries a file the retention purge will not find",
                alert.id,
                guild_id,
                case_number,
            )

    async def remove_owed(self, client: discord.Client) -> dict[int, int]:
        """Take the case's details (and the file) off every alert whose case was deleted;
        guild → alerts handled (edited, or found gone). Never raises."""
        async with self._running:
            try:
                kept = await self._audit.cases.unresolved_events(
                    KEPT, REMOVAL, case_deleted=True, limit=BATCH
                )
                posted = await self._audit.cases.unresolved_events(
                    POSTED, (REMOVAL, REDACTION), case_deleted=True, limit=BATCH
                )
            except Exception:
                log.exception("could not read the alerts whose case details are to be removed")
                return {}
            # An alert with the file is edited once, as `evidence_kept` (which settles its
            # `alert_posted` too).
            with_file = {(e.guild_id, e.case_number) for e in kept}
            owed = [(e, REMOVAL) for e in kept] + [
                (e, REDACTION) for e in posted if (e.guild_id, e.case_number) not in with_file
            ]
            handled: collections.Counter[int] = collections.Counter()
            for event, settles in owed:
                if not in_shards(self._shards, event.guild_id):
                    continue  # another process's guild: that process edits its alerts
                outcome = await self._remove(client, event, settles)
                if outcome is None:
                    break  # Discord is unreachable: the rest wait for the next run too
                handled[event.guild_id] += outcome
            return dict(handled)

    async def _remove(self, client: discord.Client, event: AuditEvent, settles: str) -> bool | None:
        """One alert: True once its outcome is recorded (as `settles`), False if that record
        failed, None if Discord could not be reached (it stays owed)."""
        assert event.case_number is not None
        where = _WHERE.search(event.reason)
        if where is None:  # not ours to read: resolve it rather than trip on it every hour
            return await self._record(event, settles, f"unreadable record '{event.reason}'")
        channel_id, message_id = int(where[1]), int(where[2])
        kind = _EDITS[settles]
        try:
            await asyncio.wait_for(_edit(client, channel_id, message_id), EDIT_TIMEOUT_S)
        except discord.NotFound:
            return await self._record(
                event, settles, "the alert or its channel is already gone (404)"
            )
        except discord.Forbidden as exc:
            why = f"the alert is out of reach, {kind.left} ({describe_http_error(exc)})"
            return await self._record(event, settles, why)
        except discord.HTTPException as exc:
            if exc.status < 500 and exc.status != 429:
                # Discord refused this edit for good; trying again every hour changes nothing.
                return await self._record(
                    event, settles, f"refused by Discord, {kind.left} ({describe_http_error(exc)})"
                )
            await self._failed(event, describe_http_error(exc), kind.failed)
            return None
        except (aiohttp.ClientError, TimeoutError) as exc:
            await self._failed(event, f"{type(exc).__name__}: {exc}", kind.failed)
            return None
        return await self._record(event, settles, kind.done)

    async def _failed(self, event: AuditEvent, why: str, action: str) -> None:
        """Record the first failed try of an owed removal (the next run tries again)."""
        log.warning(
            "evidence of case %s/#%s not yet removed from its alert: %s; will retry",
            event.guild_id,
            event.case_number,
            why,
        )
        assert event.case_number is not None
        try:
            events = await self._audit.cases.case_events(event.guild_id, event.case_number)
        except Exception:
            log.exception("could not read the events of case %s/#%s", event.guild_id,
                          event.case_number)  # fmt: skip
            return
        if not any(e.action == action and e.id > event.id for e in events):
            await self._record(event, action, f"{why}; will retry hourly")

    async def _record(self, event: AuditEvent, action: str, outcome: str) -> bool:
        try:
            await self._audit.admin.log_event(
                event.guild_id,
                actor=ACTOR,
                action=action,
                target=f"case {event.case_number}",
                reason=f"{event.reason}: {outcome}",
            )
        except Exception:
            log.exception("could not record %s of case %s/#%s", action, event.guild_id,
                          event.case_number)  # fmt: skip
            return False
        log.info(
            "%s: actor=%s target=guild %s case %s reason=%s",
            action,
            ACTOR,
            event.guild_id,
            event.case_number,
            outcome,
        )
        return action in (REMOVAL, REDACTION)


async def _edit(client: discord.Client, channel_id: int, message_id: int) -> None:
    """Take the deleted case off the alert: every attachment (the file, and the timeline
    picture drawn from the case), the transcript, and the member's name and avatar as they
    were; say so where the alert named the file. The case number, score and buttons stay."""
    message = await client.get_partial_messageable(channel_id).fetch_message(message_id)
    embeds = []
    for embed in message.embeds:
        if embed.image and (embed.image.url or "").startswith("attachment://"):
            embed.set_image(url=None)
        embed.remove_author()
        for index, embed_field in enumerate(embed.fields):
            value = embed_field.value or ""
            if embed_field.name == "Transcript":
                value = TRANSCRIPT_REMOVED
            elif _ATTACHED.search(value):
                value = _ATTACHED.sub(REMOVED_NOTE, value)
            else:
                continue
            embed.set_field_at(
                index, name=embed_field.name or "", value=value, inline=bool(embed_field.inline)
            )
        embeds.append(embed)
    # PATCH /channels/{channel_id}/messages/{message_id} with `attachments: []`: Discord keeps
    # only the attachments listed (Discord OpenAPI spec, MessageEditRequestPartial.attachments;
    # docs "Edit Message": "supply the attachments field which specifies the files to retain").
    await message.edit(embeds=embeds, attachments=[])
