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

from bot.errors import InternalError, ProviderAccountError, ProviderError, SpoofwatchError
from bot.provenance import provenance_fields
from bot.verdict import (
    DEFAULT_THRESHOLD,
    Finding,
    ProviderName,
    Segment,
    Verdict,
    percent,
    segment_finding,
    verdict_finding,
)

__all__ = [
    "failure_embed",
    "fit_embed",
    "media_phrase",
    "member_words",
    "mention_list",
    "message_embeds",
    "per_embed_budget",
    "probability_bar",
    "sanitize",
    "timeline_summary",
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

FAILURE_COLOUR: Final = discord.Colour.light_grey()
FINDING_COLOURS: Final = {
    Finding.FLAGGED: discord.Colour.red(),
    Finding.GENUINE: discord.Colour.green(),
    Finding.UNCLEAR: discord.Colour.gold(),
}
#: The one vocabulary: what members, moderators and the README call each finding.
FINDING_WORDS: Final = {
    Finding.FLAGGED: "may be AI-generated",
    Finding.UNCLEAR: "unclear",
    Finding.GENUINE: "genuine",
}
TIMELINE_WORDS: Final = {
    Finding.FLAGGED: "🟥 Sounds generated",
    Finding.UNCLEAR: "🟨 Unclear",
    Finding.GENUINE: "🟩 Genuine",
}
_AUDIO_SUFFIXES = frozenset({"ogg", "oga", "opus", "mp3", "wav", "m4a", "flac", "aac", "amr"})
_VIDEO_SUFFIXES = frozenset({"mp4", "mov", "webm", "mkv", "m4v", "avi", "3gp"})
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
    threshold: float = DEFAULT_THRESHOLD,
    content_type: str | None = None,
    compact: bool = False,
    picture: str | None = None,
) -> discord.Embed:
    """The reply for one scanned attachment, in a member's words (DESIGN.md, "What users see").

    What it says follows `verdict_finding` at the guild's `threshold`, like the mod-log alert.
    A genuine result is one line when `compact` (automatic replies). `picture` names an
    attached timeline image (`attachment://…`); the text timeline stays as its fallback.
    `max_chars` is this embed's share of the message (see `per_embed_budget`).
    """
    finding = verdict_finding(verdict, threshold)
    what = media_phrase(filename, content_type, verdict.duration_s)
    provider = PROVIDER_NAMES.get(verdict.provider, str(verdict.provider))
    p = verdict.spoofed_probability
    rated = _rated(p)
    if compact and finding is Finding.GENUINE:
        line = f"✅ **No sign of AI generation** in this {what}"
        embed = discord.Embed(
            colour=FINDING_COLOURS[finding],
            description=f"{line}: {rated}." if rated else f"{line}.",
        )
        note = "reused an earlier scan's verdict · " if reused else ""
        embed.set_footer(text=_footer(case_number, f"{note}automated check, may be wrong"))
        _fit(embed, max_chars)
        return embed

    flagged_parts = [
        s for s in verdict.segments if segment_finding(s, threshold) is Finding.FLAGGED
    ]
    partly = 0 < len(flagged_parts) < len(verdict.segments)
    lines: list[str] = []
    if finding is Finding.FLAGGED:
        title = f"⚠️ {'Parts of this' if partly else 'This'} {what} may be AI-generated"
        lines.append(f"The detector {rated}." if rated else "The detector rates it synthetic.")
        lines.append(
            "Detectors can be wrong: treat this as a warning, not proof. Be careful with "
            "requests for codes, passwords or money."
        )
    elif finding is Finding.UNCLEAR:
        title = f"❔ Unclear whether this {what} is AI-generated"
        if p is None:
            lines.append("The detector could not judge it (too little clear speech, perhaps).")
        else:
            lines.append(
                f"The detector {rated}: not clearly genuine, but below the {percent(threshold)}% "
                "at which this server flags a file. Detectors can be wrong."
            )
        lines.append(
            "If it asks for anything sensitive (codes, passwords, money), check with the "
            "sender another way first, for example a call you start."
        )
    else:
        title = f"✅ No sign of AI generation in this {what}"
        lines.append(
            f"The detector {rated}. Detectors can be wrong." if rated else "Detectors can be wrong."
        )
    several = len(verdict.segments) > 1
    if several:
        lines.insert(1, timeline_summary(verdict.segments, threshold, verdict.duration_s))
    if reused:
        lines.append(f"-# {REUSED_NOTE}")
    embed = discord.Embed(
        title=_truncate(title, TITLE_LIMIT),
        colour=FINDING_COLOURS[finding],
        description="\n".join(lines),
    )
    for name, value in provenance_fields(verdict):
        embed.add_field(name=name, value=value)
    embed.set_footer(text=_footer(case_number, f"checked by {provider} · automated, may be wrong"))
    if picture:
        embed.set_image(url=f"attachment://{picture}")

    # The two long parts share what is left evenly, so a long transcript cannot starve the
    # timeline (or the reverse); a part that needs less than its share gives the rest away.
    snippet = (
        sanitize(verdict.transcript or "", limit=FIELD_VALUE_LIMIT - 2) if show_transcript else ""
    )
    quoted = f"> {snippet}" if snippet else ""
    timeline = _timeline(verdict.segments, threshold, FIELD_VALUE_LIMIT) if several else ""
    timeline_name = "Timeline"
    names = (len("Transcript") if quoted else 0) + (len(timeline_name) if timeline else 0)
    level = _water_level([len(quoted), len(timeline)], max_chars - len(embed) - names)
    # A part that must be cut below MIN_USEFUL_TEXT is left out: a sliver is only noise.
    if quoted and (len(quoted) <= level or level >= MIN_USEFUL_TEXT):
        embed.add_field(name="Transcript", value=_truncate(quoted, level), inline=False)
    worth_it = len(timeline) <= level or level >= MIN_USEFUL_TEXT
    if timeline and worth_it and (timeline := _timeline(verdict.segments, threshold, level)):
        embed.add_field(name=timeline_name, value=timeline, inline=False)
    _fit(embed, max_chars)
    return embed


#: How a failure's footer names its kind ("Case #3 · error code: provider_unavailable").
ERROR_CODE = "error code:"


def failure_embed(
    error: SpoofwatchError,
    *,
    filename: str,
    case_number: int | None,
    max_chars: int = MESSAGE_CHAR_LIMIT,
    content_type: str | None = None,
    compact: bool = False,
) -> discord.Embed:
    """The reply when a file could not be checked: what happened and what the member can do.

    Only words a member can act on: the technical detail of a service failure (status codes,
    the provider's own text) goes to the log and the mod-log, never here. `compact` (automatic
    scans) is one line. The error's kind is in the footer as a code to quote to moderators.
    """
    what = media_phrase(filename, content_type, None)
    embed = discord.Embed(title=f"Could not check this {what}", colour=FAILURE_COLOUR)
    said, hint = member_words(error)
    if compact:
        embed.description = f"{said} {hint}".strip()
    else:
        embed.description = said
        embed.add_field(name="What to do", value=_truncate(hint, FIELD_VALUE_LIMIT), inline=False)
    embed.set_footer(text=_footer(case_number, f"{ERROR_CODE} {error.kind}"))
    _fit(embed, max_chars)
    return embed


def member_words(error: SpoofwatchError) -> tuple[str, str]:
    """(what happened, what to do) in words for a member; never a provider's own text."""
    if isinstance(error, ProviderAccountError):
        # A refused key or an empty balance: the operator's to fix, never billing details.
        return (
            error.public_message,
            "The server's moderators have been told; try `/check` again later.",
        )
    if isinstance(error, ProviderError):
        return (
            "The checking service did not answer properly, so this file has no verdict.",
            "The server's moderators are told of outages; try `/check` again later.",
        )
    if isinstance(error, InternalError):
        return ("Something went wrong inside Spoofwatch.", error.hint)
    # Media and limit errors say what is wrong with the file in Spoofwatch's own words; only
    # the file name inside them came from a user, hence the sanitizing.
    said = sanitize(error.message, limit=500) or "The check did not finish."
    return said, error.hint or "Try again later; if it keeps failing, tell the moderators."


def media_phrase(filename: str, content_type: str | None, duration_s: float | None) -> str:
    """ "0:04 voice message", "1:00 video", "audio file": what the member posted, not its name.

    Discord names every voice message `voice-message.ogg`; anything else counts by its type.
    """
    base = (content_type or "").split(";")[0].strip().lower()
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if filename == "voice-message.ogg":
        kind = "voice message"
    elif base.startswith("video/") or suffix in _VIDEO_SUFFIXES:
        kind = "video"
    elif base.startswith("audio/") or suffix in _AUDIO_SUFFIXES:
        kind = "recording"
    else:
        kind = "file"
    length = _duration(duration_s)
    return f"{length} {kind}" if length else kind


def timeline_summary(
    segments: Sequence[Segment], threshold: float, duration_s: float | None = None
) -> str:
    """One line for a clip with several stretches: "8 of 20 stretches sound generated, mostly
    0:09–0:39" (flagged stretches at the guild's threshold)."""
    flagged = [s for s in segments if segment_finding(s, threshold) is Finding.FLAGGED]
    total = len(segments)
    noun = "stretch" if total == 1 else "stretches"
    if not flagged:
        return f"None of the {total} {noun} reaches this server's threshold."
    first, last = flagged[0].start, flagged[-1].end
    length = duration_s or (segments[-1].end - segments[0].start)
    if len(flagged) == total:
        where = ""
    elif length and (last - first) >= 0.8 * length:
        where = ", spread across the clip"
    else:
        where = f", mostly {_duration(first)}–{_duration(last)}"
    verb = "sounds" if len(flagged) == 1 else "sound"
    return f"{len(flagged)} of {total} {noun} {verb} generated{where}."


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


def _footer(case_number: int | None, note: str | None) -> str | None:
    parts = [f"Case #{case_number}" if case_number is not None else None, note]
    return " · ".join(p for p in parts if p) or None


def _duration(seconds: float | None) -> str | None:
    """`65.4` → `1:05`; an hour or more → `1:02:05`; `None` when unknown or nonsense."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def _rated(p: float | None) -> str:
    """ "rates it 71% likely synthetic", or "" when the provider gave no number."""
    if p is None or not math.isfinite(p):
        return ""
    return f"rates it **{percent(p)}% likely synthetic**"


def _ranges(segments: Sequence[Segment], threshold: float) -> list[tuple[Finding, float, float]]:
    """Neighbouring stretches with the same finding, merged: (finding, start, end)."""
    merged: list[tuple[Finding, float, float]] = []
    for segment in segments:
        found = segment_finding(segment, threshold)
        if merged and merged[-1][0] is found and abs(merged[-1][2] - segment.start) < 0.5:
            merged[-1] = (found, merged[-1][1], segment.end)
        else:
            merged.append((found, segment.start, segment.end))
    return merged


def _timeline(segments: Sequence[Segment], threshold: float, limit: int) -> str:
    """The picture in words: where it sounds generated and where it is unclear, each a line of
    merged stretches (the rest is genuine). Whole stretches only, then "… +N more"; "" when
    not even one fits `limit`.
    """
    ranges = _ranges(segments, threshold)
    wanted = [f for f in (Finding.FLAGGED, Finding.UNCLEAR) if any(r[0] is f for r in ranges)]
    if not wanted:
        line = "🟩 No stretch reaches this server's threshold."
        return line if len(line) <= limit else ""
    spans = {
        f: [f"{_duration(a) or '?'}–{_duration(b) or '?'}" for g, a, b in ranges if g is f]
        for f in wanted
    }
    full = [f"{TIMELINE_WORDS[f]}: " + ", ".join(spans[f]) for f in wanted]
    # Each line gets its fair share of the limit; a short line leaves the rest to the other.
    share = _water_level([len(line) for line in full], limit - len(wanted) + 1)
    lines = []
    for finding in wanted:
        head, listed = f"{TIMELINE_WORDS[finding]}: ", spans[finding]
        for shown in range(len(listed), 0, -1):
            rest = len(listed) - shown
            line = head + ", ".join(listed[:shown]) + (f" {_more(rest)}" if rest else "")
            if len(line) <= share:
                lines.append(line)
                break
    return "\n".join(lines)


def _more(n: int) -> str:
    return f"{ELLIPSIS} +{n} more"


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
