"""Verdict and failure embeds: pure functions from domain objects to `discord.Embed`.

Every embed built here stays within Discord's limits whatever the input (discord-platform.md
§3.7), and every piece of text that came from a user or a provider (file names, transcripts,
provider labels, error messages) goes through `sanitize` first: no mentions, no markdown.
Discord counts characters as code points (discord-api-docs#1315), which is what `len()` and
`len(embed)` count, so the arithmetic here is exact.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Final

import discord

from bot.errors import ProviderError, SpoofwatchError
from bot.provenance import provenance_fields
from bot.verdict import Label, ProviderName, Segment, Verdict

__all__ = [
    "failure_embed",
    "fit_embed",
    "mention_list",
    "message_embeds",
    "per_embed_budget",
    "probability_bar",
    "sanitize",
    "verdict_embed",
]

# Discord's limits (discord-platform.md §3.7).
TITLE_LIMIT: Final = 256
DESCRIPTION_LIMIT: Final = 4096
FIELD_COUNT_LIMIT: Final = 25
FIELD_NAME_LIMIT: Final = 256
FIELD_VALUE_LIMIT: Final = 1024
FOOTER_LIMIT: Final = 2048
AUTHOR_LIMIT: Final = 256
MESSAGE_CHAR_LIMIT: Final = 6000
MESSAGE_EMBED_LIMIT: Final = 10

ELLIPSIS: Final = "…"
NULL: Final = "—"
REUSED_NOTE: Final = "Reused the verdict of an earlier scan of the same file."
#: Timeline lines beyond this say "… N more segments": a wall of 500 lines helps no one.
TIMELINE_MAX_LINES: Final = 15
#: A transcript or timeline squeezed below this is noise; leave it out instead.
MIN_USEFUL_TEXT: Final = 40

FAILURE_COLOUR: Final = discord.Colour.orange()
LABEL_COLOURS: Final = {
    Label.SPOOFED: discord.Colour.red(),
    Label.BONAFIDE: discord.Colour.green(),
    Label.INCONCLUSIVE: discord.Colour.light_grey(),
}
OUTCOMES: Final = {
    Label.SPOOFED: "Likely deepfake",
    Label.BONAFIDE: "No sign of a deepfake",
    Label.INCONCLUSIVE: "Inconclusive",
}
SEGMENT_WORDS: Final = {
    Label.SPOOFED: "spoofed",
    Label.BONAFIDE: "genuine",
    Label.INCONCLUSIVE: "unclear",
}
PROVIDER_NAMES: Final = {
    ProviderName.BEHAVIORAL_SIGNALS: "Behavioral Signals",
    ProviderName.RESEMBLE: "Resemble AI",
}

_WHITESPACE = re.compile(r"\s+")
# Bidi overrides and isolates can make "gpj.exe" read as "exe.jpg"; they are not categorised
# as control characters, so they are listed by hand.
_INVISIBLE = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# escape_mentions only knows 17-20 digit ids and no channels; Discord renders any of these.
_MENTION = re.compile(r"<(@[!&]?|#)(?=\d)")


def sanitize(text: str, *, limit: int) -> str:
    """Make untrusted text safe to show: one line, no mentions, no markdown, ≤ `limit` chars.

    The limit applies to the escaped result, so callers can add it to an embed as is.
    """
    if len(text) <= _CACHED_TEXT_CHARS:
        # File names ("voice-message.ogg"), languages, provider labels: the same few
        # strings over and over, each costing a pass of several regular expressions.
        return _sanitize_cached(text, limit)
    return _sanitize(text, limit)


#: Texts up to this long have their `sanitize` result kept (a bounded cache).
_CACHED_TEXT_CHARS = 128


def _sanitize(text: str, limit: int) -> str:
    text = _WHITESPACE.sub(" ", text)
    text = "".join(
        c for c in text if c not in _INVISIBLE and unicodedata.category(c) not in {"Cc", "Cs"}
    ).strip()
    text = discord.utils.escape_mentions(_MENTION.sub("<\\1\u200b", text))
    # escape_markdown treats "[x](y)" as one token and escapes only its first character, leaving
    # everything up to the last "](...)" unescaped; escaping the pieces between brackets closes
    # that gap. ignore_links=False because a "URL" is exactly what an attacker would dress up.
    text = "\\[".join(discord.utils.escape_markdown(p, ignore_links=False) for p in text.split("["))
    return _truncate(text, limit)


_sanitize_cached = functools.lru_cache(maxsize=1024)(_sanitize)


def probability_bar(p: float | None, width: int = 10) -> str:
    """Render a probability as a bar and a percentage, `███████░░░ 72%`; `—` when unknown."""
    if p is None or not math.isfinite(p):
        return NULL
    # Half-up, not Python's half-to-even: 5% in ten cells is half a cell and should show one.
    percent = math.floor(min(max(p, 0.0), 1.0) * 100 + 0.5)
    filled = math.floor(percent * width / 100 + 0.5)
    return f"{'█' * filled}{'░' * (width - filled)} {percent}%"


def per_embed_budget(count: int) -> int:
    """Characters each of `count` embeds may use so that one message stays within 6000."""
    return MESSAGE_CHAR_LIMIT // min(max(count, 1), MESSAGE_EMBED_LIMIT)


def verdict_embed(
    verdict: Verdict,
    *,
    filename: str,
    case_number: int | None,
    reused: bool = False,
    show_transcript: bool = True,
    max_chars: int = MESSAGE_CHAR_LIMIT,
) -> discord.Embed:
    """The reply for one scanned attachment (DESIGN.md, "What users see").

    `max_chars` is this embed's share of the message (see `per_embed_budget`); the transcript
    and the timeline shrink to fit it, everything else is short by construction.
    """
    provider = PROVIDER_NAMES.get(verdict.provider, str(verdict.provider))
    embed = discord.Embed(
        title=_title(OUTCOMES[verdict.label], filename),
        colour=LABEL_COLOURS[verdict.label],
        description=REUSED_NOTE if reused else None,
    )
    embed.add_field(name="Spoofed probability", value=probability_bar(verdict.spoofed_probability))
    if verdict.provider_label and (label := sanitize(verdict.provider_label, limit=100)):
        embed.add_field(name=f"{provider} says", value=label)
    if (duration := _duration(verdict.duration_s)) is not None:
        embed.add_field(name="Duration", value=duration)
    if verdict.language and (language := sanitize(verdict.language, limit=40)):
        embed.add_field(name="Language", value=language)
    if verdict.speakers is not None and verdict.speakers >= 0:
        embed.add_field(name="Speakers", value=str(verdict.speakers))
    for name, value in provenance_fields(verdict):
        embed.add_field(name=name, value=value)
    embed.set_footer(text=_footer(case_number, provider))

    # The two long parts share what is left evenly, so a long transcript cannot starve the
    # timeline (or the reverse); a part that needs less than its share gives the rest away.
    snippet = (
        sanitize(verdict.transcript or "", limit=FIELD_VALUE_LIMIT - 2) if show_transcript else ""
    )
    quoted = f"> {snippet}" if snippet else ""
    several = len(verdict.segments) > 1
    timeline = _timeline(verdict.segments, FIELD_VALUE_LIMIT) if several else ""
    timeline_name = f"Timeline ({len(verdict.segments)} segments)"
    names = (len("Transcript") if quoted else 0) + (len(timeline_name) if timeline else 0)
    level = _water_level([len(quoted), len(timeline)], max_chars - len(embed) - names)
    # A part that must be cut below MIN_USEFUL_TEXT is left out: a sliver is only noise.
    if quoted and (len(quoted) <= level or level >= MIN_USEFUL_TEXT):
        embed.add_field(name="Transcript", value=_truncate(quoted, level), inline=False)
    worth_it = len(timeline) <= level or level >= MIN_USEFUL_TEXT
    if timeline and worth_it and (timeline := _timeline(verdict.segments, level)):
        embed.add_field(name=timeline_name, value=timeline, inline=False)
    _fit(embed, max_chars)
    return embed


def failure_embed(
    error: SpoofwatchError,
    *,
    filename: str,
    case_number: int | None,
    max_chars: int = MESSAGE_CHAR_LIMIT,
) -> discord.Embed:
    """The reply when a file could not be checked: what happened and what the user can do."""
    # Provider errors can carry text from the provider's response body: untrusted like the rest.
    embed = discord.Embed(
        title=_title("Could not check", filename),
        colour=FAILURE_COLOUR,
        description=sanitize(error.message, limit=1000) or None,
    )
    hint = error.hint or "Try again later; if it keeps failing, tell the server's moderators."
    embed.add_field(name="What to do", value=_truncate(hint, FIELD_VALUE_LIMIT), inline=False)
    embed.add_field(name="Error", value=f"`{error.kind}`")
    provider = None
    if isinstance(error, ProviderError):
        try:
            provider = PROVIDER_NAMES[ProviderName(error.provider)]
        except ValueError:
            provider = sanitize(error.provider, limit=64) or None
    embed.set_footer(text=_footer(case_number, provider))
    _fit(embed, max_chars)
    return embed


def fit_embed(embed: discord.Embed, max_chars: int = MESSAGE_CHAR_LIMIT) -> discord.Embed:
    """`embed` made sendable in place: every part within its limit, no empty field, ≤ `max_chars`.

    Every embed the cogs build goes through this (or `message_embeds`) last, so a value that
    sanitizes to nothing or an id of unexpected length can never get a message refused.
    """
    _fit(embed, max_chars)
    return embed


def mention_list(ids: Iterable[int], *, prefix: str = "#", limit: int) -> str:
    """`<#1>, <#2>, … +N more` within `limit` characters; "none" when there are no ids.

    Mentions are never cut in half: whole ones are kept while the "+N more" tail still fits.
    """
    mentions = [f"<{prefix}{i}>" for i in sorted(ids)]
    if not mentions:
        return "none"
    text = ", ".join(mentions)
    if len(text) <= limit:
        return text
    for shown in range(len(mentions) - 1, -1, -1):
        tail = f"{ELLIPSIS} +{len(mentions) - shown} more"
        text = ", ".join([*mentions[:shown], tail])
        if len(text) <= limit:
            return text
    return _truncate(f"{len(mentions)} in all", limit)


def message_embeds(embeds: Sequence[discord.Embed]) -> list[discord.Embed]:
    """Copies of `embeds` that one message can carry: ≤ 10 embeds, ≤ 6000 characters in all.

    Beyond ten, the tenth says how many files are not shown. When the total is too large, the
    longest embeds are trimmed to a common size (their longest texts first, see `_fit`), so
    every attachment keeps its verdict rather than some being dropped.
    """
    kept = [embed.copy() for embed in embeds[:MESSAGE_EMBED_LIMIT]]
    if not kept:
        return []
    for embed in kept:
        _clamp_parts(embed)
    if hidden := len(embeds) - len(kept):
        last = kept[-1]
        note = f"+{hidden} more file{'s' if hidden != 1 else ''} not shown"
        text = f"{last.footer.text} · {note}" if last.footer.text else note
        last.set_footer(text=_truncate(text, FOOTER_LIMIT), icon_url=last.footer.icon_url)
    cap = _water_level([len(embed) for embed in kept], MESSAGE_CHAR_LIMIT)
    for embed in kept:
        _fit(embed, cap)
    return kept


# --- helpers ---------------------------------------------------------------------------


def _title(outcome: str, filename: str) -> str:
    name = sanitize(filename, limit=TITLE_LIMIT - len(outcome) - 3)
    return f"{outcome} — {name}" if name else outcome


def _footer(case_number: int | None, provider: str | None) -> str | None:
    parts = [f"Case #{case_number}" if case_number is not None else None, provider]
    return " · ".join(p for p in parts if p) or None


def _duration(seconds: float | None) -> str | None:
    """`65.4` → `1:05`; an hour or more → `1:02:05`; `None` when unknown or nonsense."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def _segment_line(segment: Segment) -> str:
    span = f"{_duration(segment.start) or '?'}–{_duration(segment.end) or '?'}"
    p = segment.spoofed_probability
    bar = f" {probability_bar(p, width=5)}" if p is not None and math.isfinite(p) else ""
    return f"{span}{bar} {SEGMENT_WORDS[segment.label]}"


def _timeline(segments: Sequence[Segment], limit: int) -> str:
    """One line per segment, as many as fit in `limit`, then "… N more segments".

    "" when not even one segment line fits.
    """
    lines: list[str] = []
    for segment in segments[:TIMELINE_MAX_LINES]:
        line = _segment_line(segment)
        rest = len(segments) - len(lines) - 1
        # Room must remain for the "… N more" line that will follow this one.
        tail = [_more(rest)] if rest else []
        if len("\n".join([*lines, line, *tail])) > limit:
            break
        lines.append(line)
    if not lines:
        return ""
    if hidden := len(segments) - len(lines):
        lines.append(_more(hidden))
    return "\n".join(lines)


def _more(n: int) -> str:
    return f"{ELLIPSIS} {n} more segment{'s' if n != 1 else ''}"


def _truncate(text: str, limit: int) -> str:
    """Cut `text` to ≤ `limit` chars ending in "…", at a line break when there is one.

    Only ever removes a suffix, so text that was safely escaped stays safely escaped: a
    dangling backslash merely escapes the ellipsis.
    """
    if len(text) <= limit:
        return text
    if limit < 1:
        return ""
    cut = text.rfind("\n", 0, limit - 1)
    if cut > limit // 2:
        return f"{text[:cut]}\n{ELLIPSIS}"
    return text[: limit - 1].rstrip() + ELLIPSIS


def _water_level(lengths: Sequence[int], budget: int) -> int:
    """The largest cap C with sum(min(n, C)) ≤ budget: trim only what is longer than C."""
    if sum(lengths) <= budget:
        return max(lengths, default=0)
    low, high = 0, max(lengths)
    while low < high:
        mid = (low + high + 1) // 2
        if sum(min(n, mid) for n in lengths) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def _clamp_parts(embed: discord.Embed) -> None:
    """Hold each part of `embed` to its own Discord limit."""
    if embed.title:
        embed.title = _truncate(embed.title, TITLE_LIMIT)
    if embed.description:
        embed.description = _truncate(embed.description, DESCRIPTION_LIMIT)
    for index in reversed(range(FIELD_COUNT_LIMIT, len(embed.fields))):
        embed.remove_field(index)
    # Each part is set again only when that changes it: an embed built here is within its
    # limits already, and this runs three times for every reply. Discord requires both name and
    # value (OpenAPI spec, components/schemas/RichEmbedField) and trims whitespace before it
    # checks them (docs: resources/message.mdx, "Embed Limits"), so an empty or blank one is
    # refused with BASE_TYPE_REQUIRED (discord-platform.md, "Checked 2026-12"): "—" instead.
    for index, field in enumerate(embed.fields):
        name = _truncate(_non_empty(field.name), FIELD_NAME_LIMIT)
        value = _truncate(_non_empty(field.value), FIELD_VALUE_LIMIT)
        inline = bool(field.inline)
        if name != field.name or value != field.value or inline is not field.inline:
            embed.set_field_at(index, name=name, value=value, inline=inline)
    footer = embed.footer
    if footer.text and (text := _truncate(footer.text, FOOTER_LIMIT)) != footer.text:
        embed.set_footer(text=text, icon_url=footer.icon_url)
    author = embed.author
    if author.name and (name := _truncate(author.name, AUTHOR_LIMIT)) != author.name:
        embed.set_author(name=name, url=author.url, icon_url=author.icon_url)


def _non_empty(text: str | None) -> str:
    return text if text and text.strip() else NULL


def _fit(embed: discord.Embed, limit: int) -> None:
    """Shrink `embed` in place until `len(embed) <= limit`.

    First the long texts (description, field values) are cut to a common length; if that
    would leave them uselessly short, the last field (the least important) goes; only for
    absurdly small limits are the title and footer cut too.
    """
    limit = max(limit, 0)
    _clamp_parts(embed)
    while len(embed) > limit:
        values = [field.value or "" for field in embed.fields]
        description = embed.description or ""
        texts = [*values, description]
        room = limit - (len(embed) - sum(map(len, texts)))
        level = _water_level([len(t) for t in texts], room)
        if level >= MIN_USEFUL_TEXT:
            for index, field in enumerate(embed.fields):
                if len(values[index]) > level:
                    embed.set_field_at(
                        index,
                        name=field.name or "",
                        value=_truncate(values[index], level),
                        inline=bool(field.inline),
                    )
            if len(description) > level:
                embed.description = _truncate(description, level)
        elif len(embed.fields) > 1:
            embed.remove_field(len(embed.fields) - 1)
        elif embed.description:
            embed.description = None
        elif embed.fields:
            embed.clear_fields()
        elif embed.footer.text and len(embed.footer.text) > 1:
            excess = len(embed) - limit
            footer = _truncate(embed.footer.text, len(embed.footer.text) - excess)
            embed.set_footer(text=footer or None)
        else:
            embed.title = _truncate(embed.title or "", len(embed.title or "") - len(embed) + limit)
            if len(embed) > limit:
                embed.set_footer(text=None)
                embed.remove_author()
