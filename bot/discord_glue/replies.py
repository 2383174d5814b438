"""From scan outcomes to the embeds of one reply (Discord's limits respected)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import discord

from bot.discord_glue.embeds import failure_embed, message_embeds, per_embed_budget, verdict_embed
from bot.discord_glue.opinion_embeds import Opinion, opinions_embed
from bot.errors import SpoofwatchError
from bot.guild_config import GuildConfig, PublicReplies
from bot.opinions import combined
from bot.scanning import ScanOutcome
from bot.verdict import DEFAULT_THRESHOLD, Finding

#: Discord's error codes for a channel or message that no longer exists (docs:
#: topics/opcodes-and-status-codes.mdx, "JSON Error Codes").
_GONE_CODES = frozenset({10003, 10008})


def outcome_embeds(
    outcomes: Sequence[ScanOutcome],
    *,
    show_transcript: bool,
    threshold: float = DEFAULT_THRESHOLD,
    automatic: bool = False,
    pictures: Mapping[int, str] | None = None,
) -> list[discord.Embed]:
    """One embed per scanned attachment, all fitting one message.

    `automatic` (a reply nobody asked for): genuine results and failures in one line each.
    `pictures` maps a case's scan id to the name of its attached timeline image.
    """
    budget = per_embed_budget(max(1, min(len(outcomes), 10)))
    embeds = []
    for outcome in outcomes:
        record = outcome.record
        if outcome.second is not None:
            embeds.append(
                opinions_embed(
                    opinions_of(outcome),
                    combined(outcome, threshold),
                    filename=record.filename,
                    content_type=record.content_type,
                    max_chars=budget,
                )
            )
        elif outcome.verdict is not None:
            embeds.append(
                verdict_embed(
                    outcome.verdict,
                    filename=record.filename,
                    case_number=record.case_number,
                    reused=outcome.reused,
                    show_transcript=show_transcript,
                    max_chars=budget,
                    threshold=threshold,
                    content_type=record.content_type,
                    compact=automatic,
                    picture=(pictures or {}).get(record.id),
                )
            )
        else:
            error = outcome.error or SpoofwatchError("The scan did not finish.")
            embeds.append(
                failure_embed(
                    error,
                    filename=record.filename,
                    case_number=record.case_number,
                    max_chars=budget,
                    content_type=record.content_type,
                    compact=automatic,
                )
            )
    return message_embeds(embeds)


def publicly_shown(outcome: ScanOutcome, config: GuildConfig) -> bool:
    """Whether an automatic scan's outcome gets a reply in the channel (`public_replies`)."""
    if config.public_replies is PublicReplies.NEVER:
        return False
    if outcome.verdict is None and (outcome.second is None or outcome.second.verdict is None):
        # A short "could not check this one"; the mod-log hears of outages.
        return config.public_replies is PublicReplies.ALL
    if config.public_replies is PublicReplies.ALL:
        return True
    # With a second opinion, the combined outcome (a disputed file counts as flagged).
    return combined(outcome, config.alert_threshold).finding is Finding.FLAGGED


def opinions_of(outcome: ScanOutcome) -> list[Opinion]:
    """A scan and its second opinion as the two sides of `opinions_embed`."""
    sides = [outcome] + ([outcome.second] if outcome.second is not None else [])
    return [Opinion(o.record.provider, o.record.case_number, o.verdict, o.error) for o in sides]


def rejected_fields(exc: discord.HTTPException) -> dict[str, str]:
    """What a 400 "Invalid Form Body" (code 50035) refused, by field path.

    discord.py flattens Discord's nested ``errors`` object into lines of its text,
    ``In embeds.0.fields.3.value: This field is required``; this reads them back.
    """
    fields: dict[str, str] = {}
    for line in exc.text.splitlines():
        if line.startswith("In ") and ": " in line:
            path, _, message = line[3:].partition(": ")
            fields[path] = message
    return fields


def reply_target_gone(exc: discord.HTTPException) -> bool:
    """Whether a reply failed only because the message it answers was deleted meanwhile.

    Discord says so with 10008 Unknown Message, or with a 50035 whose only complaint is the
    ``message_reference`` (REPLIES_UNKNOWN_MESSAGE). Any other 50035 is a body Discord refused:
    a bug to report, never a deletion.
    """
    if exc.status == 404 or exc.code in _GONE_CODES:
        return True
    fields = rejected_fields(exc)
    return (
        exc.code == 50035
        and bool(fields)
        and all(p.startswith("message_reference") for p in fields)
    )


def describe_http_error(exc: discord.HTTPException) -> str:
    """One log-friendly line: status, code, message and every field Discord refused."""
    summary = exc.text.splitlines()[0] if exc.text else ""
    fields = "; ".join(f"{path}: {why}" for path, why in rejected_fields(exc).items())
    return f"HTTP {exc.status} (code {exc.code}) {summary}" + (f" [{fields}]" if fields else "")
