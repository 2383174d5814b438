"""From scan outcomes to the embeds of one reply (Discord's limits respected)."""

from __future__ import annotations

from collections.abc import Sequence

import discord

from bot.embeds import failure_embed, message_embeds, per_embed_budget, verdict_embed
from bot.errors import SpoofwatchError
from bot.scanning import ScanOutcome


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
