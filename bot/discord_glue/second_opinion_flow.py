"""Discord glue for a moderator's second opinion (the alert's and `/audit case`'s button).

Finds the case's file again (its message, with a fresh URL; else the copy an alert kept
when the message was deleted), asks the other provider through `bot.opinions`, and words
the answer. Shared by the alerts and audit features, as `bot.discord_glue.attachments` is by the
features that scan.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import discord

from bot.discord_glue.attachments import (
    Candidate,
    guess_kind,
    media_candidates,
    scan_limits,
    scan_request,
)
from bot.discord_glue.client import Spoofwatch
from bot.discord_glue.embeds import PROVIDER_NAMES
from bot.discord_glue.modlog import modlog_channel, post
from bot.discord_glue.opinion_embeds import Opinion, combined_words, opinion_line, opinions_embed
from bot.scanning import ScanOutcome, provider_meta
from bot.storage import ScanRecord, ScanStatus, Trigger
from bot.verdict import Combined, Verdict, combine

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SecondOpinionAnswer:
    """What a moderator is shown after asking: one line for the case's actions, and the
    side-by-side embed when there is a verdict to compare."""

    done: bool
    line: str
    embed: discord.Embed | None = None


async def find_file_again(
    bot: Spoofwatch, record: ScanRecord, kept: Sequence[discord.Attachment] = ()
) -> Candidate | None:
    """The case's attachment with a fresh URL (stored ones expire), or a kept copy."""
    channel = bot.get_channel(record.channel_id) if record.channel_id else None
    if isinstance(channel, discord.abc.Messageable) and record.message_id is not None:
        try:
            message = await channel.fetch_message(record.message_id)
        except discord.HTTPException as exc:
            log.info("message of case #%s not fetched again: %s", record.case_number, exc)
        else:
            for candidate in media_candidates(message):
                if candidate.attachment.id == record.attachment_id:
                    return candidate
    for attachment in kept:
        # The file an automatic delete kept on the alert (`case-<n>-<name>`).
        if not attachment.filename.startswith(f"case-{record.case_number}-"):
            continue
        kind = guess_kind(attachment, voice_flag=False)
        if kind is not None:
            return Candidate(attachment, kind, voice_flag=False)
    return None


async def ask_second_opinion(
    bot: Spoofwatch,
    record: ScanRecord,
    *,
    requested_by: int,
    kept: Sequence[discord.Attachment] = (),
) -> SecondOpinionAnswer:
    """Ask the other provider about `record`'s file, once: a second press shows the answer
    already recorded instead of billing again."""
    provider = bot.second_opinions.other(record)
    if provider is None:
        return SecondOpinionAnswer(
            False, "Only one detection service is set up here, so there is no second opinion."
        )
    config = await bot.guild_configs.get(record.guild_id)
    earlier = [
        r
        for r in await bot.second_opinions.existing(record.guild_id, record.case_number)
        if r.provider is provider
    ]
    if any(r.label is not None for r in earlier):
        second = earlier[-1]
        outcome = await _recorded(bot, second)
        return _answer(record, outcome, config.alert_threshold, already=True)
    request = None
    candidate = await find_file_again(bot, record, kept)
    if candidate is not None:
        request = scan_request(
            candidate,
            message=None,
            guild_id=record.guild_id,
            channel_id=record.channel_id,
            trigger=Trigger.SECOND_OPINION,
            requested_by=requested_by,
            provider=provider,
            limits=scan_limits(bot.settings, config),
            config=config,
            paid_transcripts=bot.settings.resemble_intelligence,
        )
        request = replace(
            request,
            meta=provider_meta(
                guild_id=record.guild_id,
                channel_id=record.channel_id,
                message_id=record.message_id,
                attachment_id=record.attachment_id,
            ),
        )
    # An earlier attempt that failed is kept; asking again is a new case.
    retry = any(r.status is ScanStatus.FAILED for r in earlier)
    outcome = await bot.second_opinions.ask(record, request, provider, retry=retry)
    return _answer(record, outcome, config.alert_threshold)


async def _recorded(bot: Spoofwatch, second: ScanRecord) -> ScanOutcome:
    if second.sha256 is not None:
        stored = await bot.audit.scans.find_verdict(second.sha256, second.provider)
        if stored is not None:
            return ScanOutcome(record=second, verdict=stored.verdict, replayed=True)
    return ScanOutcome(record=second, replayed=True)


def _answer(
    first: ScanRecord,
    second: ScanOutcome,
    threshold: float,
    *,
    already: bool = False,
) -> SecondOpinionAnswer:
    name = PROVIDER_NAMES.get(second.record.provider, str(second.record.provider))
    first_verdict = first_verdict_of(first)
    both: Combined = combine(first_verdict, second.verdict, threshold)
    opinions = [
        Opinion(first.provider, first.case_number, first_verdict),
        Opinion(second.record.provider, second.record.case_number, second.verdict, second.error),
    ]
    line = opinion_line(opinions[1], both.findings[1], audience="moderators")
    prefix = "Second opinion already given" if already else "Second opinion"
    text = f"{prefix} by {name}: {line}"
    if second.verdict is None:
        return SecondOpinionAnswer(False, text)
    embed = opinions_embed(
        opinions,
        both,
        filename=first.filename,
        content_type=first.content_type,
        audience="moderators",
    )
    return SecondOpinionAnswer(True, f"{text} — combined: {combined_words(both)}", embed)


def first_verdict_of(record: ScanRecord) -> Verdict | None:
    """A case's verdict from its summary columns (what `combine` needs: label and
    probability), or None when it has none."""
    if record.label is None:
        return None
    return Verdict(
        label=record.label,
        spoofed_probability=record.spoofed_probability,
        provider=record.provider,
        provider_job_id=record.provider_job_id or "",
        duration_s=record.duration_s,
    )


async def announce_resumed(bot: Spoofwatch, outcome: ScanOutcome) -> bool:
    """Tell the mod-log how a moderator's second opinion ended when a restart cut it short.

    The button's interaction died with the process, so its answer (or its failure, which
    invites asking again) goes to the guild's mod-log channel instead, with both verdicts
    side by side. False, and logged, when there is no first case or no mod-log to post in.
    """
    second = outcome.record
    if second.second_opinion_of is None:
        return False
    first = await bot.audit.cases.case(second.guild_id, second.second_opinion_of)
    config = await bot.guild_configs.get(second.guild_id)
    channel = modlog_channel(bot.get_guild(second.guild_id), config)
    if first is None or channel is None:
        log.warning(
            "second opinion case #%s finished after a restart; no mod-log to tell",
            second.case_number,
        )
        return False
    answer = _answer(first, outcome, config.alert_threshold)
    asked = f" (asked by <@{second.requested_by}>)" if second.requested_by else ""
    again = "" if answer.done else " Press *Second opinion* on the alert to ask again."
    content = (
        f"Case #{first.case_number}: the second opinion asked before a restart has finished"
        f"{asked}. {answer.line}{again}"
    )
    posted = await post(
        channel, content=content[:2000], embed=answer.embed or discord.utils.MISSING
    )
    if isinstance(posted, str):
        log.warning(
            "could not post the resumed second opinion of case #%s: %s", second.case_number, posted
        )
        return False
    return True
