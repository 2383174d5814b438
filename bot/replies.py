"""From scan outcomes to the embeds of one reply (Discord's limits respected)."""

from __future__ import annotations

from collections.abc import Sequence

import discord

from bot.embeds import failure_embed, message_embeds, per_embed_budget, verdict_embed
from bot.errors import SpoofwatchError
from bot.scanning import ScanOutcome

#: Discord's error codes for a channel or message that no longer exists (docs:
#: topics/opcodes-and-status-codes.mdx, "JSON Error Codes").
_GONE_CODES = frozenset({10003, 10008})


def outcome_embeds(
    outcomes: Sequence[ScanOutcome], *, show_transcript: bool
) -> list[discord.Embed]:
    """One embed per scanned attachment, all fitting one message."""
    budget = per_embed_budget(max(1, min(len(outcomes), 10)))
    embeds = []
    for outcome in outcomes:
        record = outcome.record
        if outcome.verdict is not None:
            embeds.append(
                verdict_embed(
                    outcome.verdict,
                    filename=record.filename,
                    case_number=record.case_number,
                    reused=outcome.reused,
                    show_transcript=show_transcript,
                    max_chars=budget,
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
                )
            )
    return message_embeds(embeds)


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
