"""What a mod-log alert says: the full alert, its plain-text fallbacks, and reading one back.

The alerts cog decides when and where an alert is posted; this is how it reads. `alert_case`
reads the case number back from any of the three shapes, so an alert posted just before a
stop can be found in the mod-log instead of posted twice.
"""

from __future__ import annotations

import re
from typing import Final

import discord

from bot.discord_glue.embeds import (
    PROVIDER_NAMES,
    fit_embed,
    media_phrase,
    sanitize,
    timeline_summary,
)
from bot.discord_glue.opinion_embeds import DISPUTED_COLOUR, combined_words, opinion_line
from bot.discord_glue.replies import opinions_of
from bot.opinions import combined
from bot.provenance import provenance_fields
from bot.scanning import ScanOutcome
from bot.verdict import DEFAULT_THRESHOLD, percent

_FOOTER_CASE = re.compile(r"Case #(\d+) ·")
_PLAIN_CASE = re.compile(r"⚠️ Possible deepfake — case #(\d+),")
#: Said on an alert posted late.
LATE_NOTE: Final = "Sent late: Spoofwatch stopped before it could post this alert."


def plain_alert(message: discord.Message, outcome: ScanOutcome, deleted: str | None) -> str:
    """The alert as one short text, for when Discord refused the embed."""
    verdict = outcome.verdict
    p = verdict.spoofed_probability if verdict is not None else None
    score = "no score" if p is None else f"{percent(p)}% likely synthetic"
    text = (
        f"⚠️ Possible deepfake — case #{outcome.record.case_number}, {score}, "
        f"by <@{message.author.id}> in <#{message.channel.id}>: {message.jump_url}\n"
        "-# The full alert could not be posted; `/audit case` shows the case."
    )
    return text + (f"\n{deleted}" if deleted else "")


def alert_case(message: discord.Message) -> int | None:
    """The case number of a mod-log alert (full, plain or late); None for anything else."""
    if message.embeds:
        embed = message.embeds[0]
        if not (embed.title or "").startswith(("Possible deepfake", "Disputed")):
            return None
        found = _FOOTER_CASE.match(embed.footer.text or "")
    else:
        found = _PLAIN_CASE.search(message.content)
    return int(found[1]) if found else None


def late_alert(outcome: ScanOutcome) -> str:
    """The alert posted late for a message no longer on Discord, from what the case holds."""
    record = outcome.record
    verdict = outcome.verdict or (outcome.second.verdict if outcome.second else None)
    p = verdict.spoofed_probability if verdict is not None else None
    score = "no score" if p is None else f"{percent(p)}% likely synthetic"
    who = f"<@{record.author_id}>" if record.author_id else "a member"
    where = f"<#{record.channel_id}>" if record.channel_id else "a channel"
    return (
        f"⚠️ Possible deepfake — case #{record.case_number}, {score}, by {who} in {where}. "
        "The message is no longer on Discord.\n"
        f"-# {LATE_NOTE} `/audit case` shows the case."
    )


def alert_embed(
    message: discord.Message,
    outcome: ScanOutcome,
    deleted: str | None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    earlier: tuple[int, int] = (0, 0),
    picture: str | None = None,
    evidence: str | None = None,
    late: bool = False,
) -> discord.Embed:
    """The mod-log alert: who, where, when, the score once against the threshold, the
    transcript and the timeline, and the member's earlier flags here, in one look."""
    verdict = outcome.verdict or (outcome.second.verdict if outcome.second else None)
    assert verdict is not None
    record = outcome.record
    p = verdict.spoofed_probability
    score = f"{percent(p)}%" if p is not None else "no score"
    author = message.author
    what = media_phrase(record.filename, record.content_type, verdict.duration_s)
    title = f"Possible deepfake · {score} (server threshold {percent(threshold)}%)"
    both = combined(outcome, threshold) if outcome.second is not None else None
    if both is not None and both.disputed:
        title = f"Disputed: the detectors disagree (server threshold {percent(threshold)}%)"
    embed = discord.Embed(
        title=title,
        colour=DISPUTED_COLOUR if both is not None and both.disputed else discord.Colour.red(),
        timestamp=message.created_at,
    )
    embed.set_author(
        name=sanitize(f"{author.display_name} (@{author.name})", limit=200) or str(author.id),
        icon_url=author.display_avatar.url,
    )
    where = (
        f"in {message.channel.mention}" if hasattr(message.channel, "mention") else "in a channel"
    )
    count, confirmed = earlier
    history = (
        "first flag for this member"
        if count == 0
        else f"{_ordinal(count + 1)} flag for this member"
        + (f" ({confirmed} confirmed)" if confirmed else "")
    )
    lines = [
        f"{author.mention} {where} · <t:{int(message.created_at.timestamp())}:R> · {what} · "
        f"{history}"
    ]
    if deleted is None:
        lines.append(f"[Open the message]({message.jump_url})")
    if len(verdict.segments) > 1:
        lines.append(timeline_summary(verdict.segments, threshold, verdict.duration_s))
    if late:
        lines.append(f"-# {LATE_NOTE}")
    embed.description = "\n".join(lines)
    if verdict.transcript and (transcript := sanitize(verdict.transcript, limit=1000)):
        embed.add_field(name="Transcript", value=f"> {transcript}", inline=False)
    for name, value in provenance_fields(verdict):
        embed.add_field(name=name, value=value)
    if both is not None:
        for opinion, finding in zip(opinions_of(outcome), both.findings, strict=False):
            name = PROVIDER_NAMES.get(opinion.provider, str(opinion.provider))
            line = opinion_line(opinion, finding, audience="moderators")
            embed.add_field(name=name, value=line)
        embed.add_field(name="Combined", value=combined_words(both), inline=False)
    if deleted:
        kept = (
            f"\nThe file is attached here ({evidence})." if evidence else
            "\nThe file could not be kept (over the upload limit, or unreadable)."
        ) if deleted.startswith("Message deleted") else ""  # fmt: skip
        embed.add_field(name="Actions", value=deleted + kept, inline=False)
    if picture:
        embed.set_image(url=f"attachment://{picture}")
    provider = PROVIDER_NAMES.get(verdict.provider, str(verdict.provider))
    embed.set_footer(text=f"Case #{record.case_number} · {provider} · user ID {author.id}")
    # Whatever the names sanitized to (possibly nothing), the embed is sendable.
    return fit_embed(embed)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
