"""Two providers' verdicts on one file, side by side, with their combined outcome.

The combined outcome is `bot.verdict.combine` (the README's "Second opinion" rule); this
module only words it. Members never read that a file *is* fake when the detectors disagree:
a disputed file's public wording says that they disagree and what to do, while moderators
(`audience="moderators"`) see it as flagged for review.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

import discord

from bot.discord_glue.embeds import (
    FAILURE_COLOUR,
    FIELD_VALUE_LIMIT,
    FINDING_COLOURS,
    MESSAGE_CHAR_LIMIT,
    PROVIDER_NAMES,
    fit_embed,
    media_phrase,
    member_words,
    sanitize,
)
from bot.errors import SpoofwatchError
from bot.verdict import Agreement, Combined, Finding, ProviderName, Verdict, percent

#: A disputed file's colour: neither the red of a flag nor the green of a genuine file.
DISPUTED_COLOUR: Final = discord.Colour.orange()
FINDING_MARKS: Final = {Finding.FLAGGED: "🟥", Finding.UNCLEAR: "🟨", Finding.GENUINE: "🟩"}
#: How the combined outcome is named, for members and moderators alike.
AGREEMENT_WORDS: Final = {
    Agreement.AGREE: "the detectors agree",
    Agreement.DISPUTED: "disputed: the detectors disagree",
    Agreement.UNCLEAR: "unclear: only one detector calls it genuine",
    Agreement.SINGLE: "one verdict only",
}

Audience = Literal["members", "moderators"]


class Opinion:
    """One provider's side: its verdict, or why there is none, and its case."""

    __slots__ = ("case_number", "error", "provider", "verdict")

    def __init__(
        self,
        provider: ProviderName,
        case_number: int | None,
        verdict: Verdict | None,
        error: SpoofwatchError | None = None,
    ) -> None:
        self.provider = provider
        self.case_number = case_number
        self.verdict = verdict
        self.error = error


def opinion_line(opinion: Opinion, finding: Finding | None, *, audience: Audience) -> str:
    """One provider's verdict in a line: its finding and score, or why it gave none."""
    case = f" · case #{opinion.case_number}" if opinion.case_number is not None else ""
    verdict = opinion.verdict
    if verdict is None or finding is None:
        if opinion.error is None:
            return f"⏳ no answer yet{case}"
        # Moderators read the error's code (the detail is in the log and on the case);
        # members only words they can act on, never a provider's own text.
        if audience == "moderators":
            said = f"failed ({opinion.error.kind})"
        else:
            said = f"could not check it: {member_words(opinion.error)[0]}"
        return f"⚪ {sanitize(said, limit=300)}{case}"
    p = verdict.spoofed_probability
    score = f"{percent(p)}% likely synthetic" if p is not None else "no score"
    words = {
        Finding.FLAGGED: "may be AI-generated",
        Finding.UNCLEAR: "unclear",
        Finding.GENUINE: "no sign of AI generation",
    }[finding]
    return f"{FINDING_MARKS[finding]} {words} · {score}{case}"


def title_for(combined: Combined, what: str, *, audience: Audience) -> str:
    if combined.disputed:
        return f"⚖️ The two detectors disagree about this {what}"
    if combined.finding is Finding.FLAGGED:
        both = "Both detectors say" if combined.agreement is Agreement.AGREE else "It looks like"
        return f"⚠️ {both} this {what} may be AI-generated"
    if combined.finding is Finding.GENUINE:
        return f"✅ No sign of AI generation in this {what}"
    return f"❔ Unclear whether this {what} is AI-generated"


def advice_for(combined: Combined, *, audience: Audience) -> str:
    if combined.disputed:
        if audience == "moderators":
            return (
                "One detector flags it and the other does not: treated as flagged so that a "
                "moderator looks, but neither verdict is taken over the other."
            )
        return (
            "One detector rates it likely AI-generated and the other does not, so nothing is "
            "decided. Check with the sender another way before acting on anything it asks "
            "(codes, passwords, money). Moderators can review it."
        )
    if combined.finding is Finding.FLAGGED:
        return (
            "Detectors can be wrong: treat this as a warning, not proof. Be careful with "
            "requests for codes, passwords or money."
        )
    if combined.finding is Finding.UNCLEAR:
        return (
            "If it asks for anything sensitive (codes, passwords, money), check with the "
            "sender another way first. Detectors can be wrong."
        )
    return "Detectors can be wrong."


def opinions_embed(
    opinions: Sequence[Opinion],
    combined: Combined,
    *,
    filename: str,
    content_type: str | None,
    audience: Audience = "members",
    max_chars: int = MESSAGE_CHAR_LIMIT,
) -> discord.Embed:
    """Both verdicts side by side (inline fields) and the one combined outcome."""
    duration = next((o.verdict.duration_s for o in opinions if o.verdict), None)
    what = media_phrase(filename, content_type, duration)
    if combined.disputed:
        colour = DISPUTED_COLOUR
    elif all(o.verdict is None for o in opinions):
        colour = FAILURE_COLOUR
    else:
        colour = FINDING_COLOURS[combined.finding]
    embed = discord.Embed(
        title=title_for(combined, what, audience=audience),
        colour=colour,
        description=advice_for(combined, audience=audience),
    )
    for opinion, finding in zip(opinions, combined.findings, strict=False):
        embed.add_field(
            name=PROVIDER_NAMES.get(opinion.provider, str(opinion.provider)),
            value=opinion_line(opinion, finding, audience=audience)[:FIELD_VALUE_LIMIT],
            inline=True,
        )
    embed.add_field(
        name="Combined",
        value=f"**{combined_words(combined)}**",
        inline=False,
    )
    cases = " + ".join(f"#{o.case_number}" for o in opinions if o.case_number is not None)
    embed.set_footer(text=f"Cases {cases} · second opinion · automated, may be wrong")
    return fit_embed(embed, max_chars)


def combined_words(combined: Combined) -> str:
    """The combined outcome in a few words ("disputed: the detectors disagree")."""
    outcome = {
        Finding.FLAGGED: "may be AI-generated",
        Finding.UNCLEAR: "unclear",
        Finding.GENUINE: "genuine",
    }[combined.finding]
    if combined.disputed:
        return AGREEMENT_WORDS[Agreement.DISPUTED]
    return f"{outcome} ({AGREEMENT_WORDS[combined.agreement]})"
