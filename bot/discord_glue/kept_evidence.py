"""The copy of a deleted message's file that a mod-log alert carries, under the guild's
retention: when the case is deleted (the retention purge, `/spoofwatch forget`), the file is
taken off the alert and the alert says why.

The audit log's events are the to-do list, so nothing is lost to a crash or an outage: an
alert posted with the file is recorded as `evidence_kept` (channel and message in the
reason); once its case is gone, `remove_owed` edits the alert and records `evidence_removal`
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
from typing import Final

import aiohttp
import discord

from bot.discord_glue.replies import describe_http_error
from bot.storage import AuditEvent, AuditLog, ShardFilter

log = logging.getLogger(__name__)

#: How the audit log names the bot when it acts on its own (as in `bot.provider_copies`).
ACTOR: Final = "spoofwatch"
KEPT: Final = "evidence_kept"
REMOVAL: Final = "evidence_removal"
REMOVAL_FAILED: Final = "evidence_removal_failed"
#: Owed removals handled per run; the rest wait for the next run.
BATCH: Final = 100
#: One alert's fetch and edit, past discord.py's own retries of 429 and 5xx.
EDIT_TIMEOUT_S: Final = 60.0
#: What the alert says once its file is gone (in place of "The file is attached here").
REMOVED_NOTE: Final = (
    "The file was removed: the case was deleted from the audit log under this server's "
    "retention setting (or `/spoofwatch forget`)."
)
_ATTACHED = re.compile(r"The file is attached here \([^)]*\)\.")
_WHERE = re.compile(r"alert (\d+)/(\d+)")


class KeptEvidence:
    """Records which alerts carry a file, and takes the file off once the case is deleted."""

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
        """Take the file off every alert whose case was deleted; guild → alerts handled
        (edited, or found gone). Never raises."""
        async with self._running:
            try:
                owed = await self._audit.cases.unresolved_events(
                    KEPT, REMOVAL, case_deleted=True, limit=BATCH
                )
            except Exception:
                log.exception("could not read the alerts whose evidence is to be removed")
                return {}
            handled: collections.Counter[int] = collections.Counter()
            for event in owed:
                if self._shards is not None and not self._shards.owns(event.guild_id):
                    continue  # another process's guild: that process edits its alerts
                outcome = await self._remove(client, event)
                if outcome is None:
                    break  # Discord is unreachable: the rest wait for the next run too
                handled[event.guild_id] += outcome
            return dict(handled)

    async def _remove(self, client: discord.Client, event: AuditEvent) -> bool | None:
        """One alert: True once its outcome is recorded, False if that record failed, None
        if Discord could not be reached (it stays owed)."""
        assert event.case_number is not None
        where = _WHERE.search(event.reason)
        if where is None:  # not ours to read: resolve it rather than trip on it every hour
            return await self._resolve(event, f"unreadable record '{event.reason}'")
        channel_id, message_id = int(where[1]), int(where[2])
        try:
            await asyncio.wait_for(_edit(client, channel_id, message_id), EDIT_TIMEOUT_S)
        except discord.NotFound:
            return await self._resolve(event, "the alert or its channel is already gone (404)")
        except discord.Forbidden as exc:
            return await self._resolve(
                event, f"the alert is out of reach, file left in place ({describe_http_error(exc)})"
            )
        except discord.HTTPException as exc:
            if exc.status < 500 and exc.status != 429:
                # Discord refused this edit for good; trying again every hour changes nothing.
                return await self._resolve(
                    event, f"refused by Discord, file left in place ({describe_http_error(exc)})"
                )
            await self._failed(event, describe_http_error(exc))
            return None
        except (aiohttp.ClientError, TimeoutError) as exc:
            await self._failed(event, f"{type(exc).__name__}: {exc}")
            return None
        return await self._resolve(event, "file removed from the alert")

    async def _resolve(self, event: AuditEvent, outcome: str) -> bool:
        return await self._record(event, REMOVAL, outcome)

    async def _failed(self, event: AuditEvent, why: str) -> None:
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
        if not any(e.action == REMOVAL_FAILED and e.id > event.id for e in events):
            await self._record(event, REMOVAL_FAILED, f"{why}; will retry hourly")

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
        return action == REMOVAL


async def _edit(client: discord.Client, channel_id: int, message_id: int) -> None:
    """Take every attachment off the alert (the file, and the timeline picture drawn from the
    deleted case) and say so where the alert named the file."""
    message = await client.get_partial_messageable(channel_id).fetch_message(message_id)
    embeds = []
    for embed in message.embeds:
        if embed.image and (embed.image.url or "").startswith("attachment://"):
            embed.set_image(url=None)
        for index, embed_field in enumerate(embed.fields):
            if embed_field.value and _ATTACHED.search(embed_field.value):
                embed.set_field_at(
                    index,
                    name=embed_field.name or "",
                    value=_ATTACHED.sub(REMOVED_NOTE, embed_field.value),
                    inline=bool(embed_field.inline),
                )
        embeds.append(embed)
    # PATCH /channels/{channel_id}/messages/{message_id} with `attachments: []`: Discord keeps
    # only the attachments listed (Discord OpenAPI spec, MessageEditRequestPartial.attachments;
    # docs "Edit Message": "supply the attachments field which specifies the files to retain").
    await message.edit(embeds=embeds, attachments=[])
