"""How audit-log values are laid out in SQLite columns, and back (compactness is a target).

The issue's budget is 600 bytes per case on disk at a million cases, indexes included, so:
enumerations are small integer codes, timestamps unix seconds, the sha256 32 raw bytes, the
canonical jump URL is derived instead of stored, and the per-segment detail is compact JSON,
zlib-compressed when that pays.
"""

from __future__ import annotations

import itertools
import json
import re
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bot.storage._models import NewScan, Review, ScanRecord, ScanStatus, Trigger
from bot.verdict import Label, ProviderName, Segment, Verdict, VisualVerdict

# Codes are part of the on-disk format: append new members, never renumber.
STATUS_CODES: dict[ScanStatus, int] = {
    ScanStatus.QUEUED: 0,
    ScanStatus.SUBMITTED: 1,
    ScanStatus.DONE: 2,
    ScanStatus.FAILED: 3,
    ScanStatus.REUSED: 4,
}
TRIGGER_CODES: dict[Trigger, int] = {
    Trigger.AUTO: 0,
    Trigger.CHECK: 1,
    Trigger.CONTEXT_MENU: 2,
    Trigger.CLI: 3,
    Trigger.SECOND_OPINION: 4,
}
PROVIDER_CODES: dict[ProviderName, int] = {
    ProviderName.BEHAVIORAL_SIGNALS: 0,
    ProviderName.RESEMBLE: 1,
}
LABEL_CODES: dict[Label, int] = {Label.SPOOFED: 0, Label.BONAFIDE: 1, Label.INCONCLUSIVE: 2}
REVIEW_CODES: dict[Review, int] = {Review.CONFIRMED: 0, Review.FALSE_POSITIVE: 1}

_LABEL_DIGITS = {label: str(code) for label, code in LABEL_CODES.items()}
_STATUSES = {code: member for member, code in STATUS_CODES.items()}
_TRIGGERS = {code: member for member, code in TRIGGER_CODES.items()}
_PROVIDERS = {code: member for member, code in PROVIDER_CODES.items()}
_LABELS = {code: member for member, code in LABEL_CODES.items()}
_REVIEWS = {code: member for member, code in REVIEW_CODES.items()}

#: Transcripts are kept as a snippet: enough for an embed field (1024 characters).
TRANSCRIPT_SNIPPET_CHARS = 1000
ERROR_MESSAGE_CHARS = 1000
REVIEW_NOTE_CHARS = 1000
#: Below this, zlib's header and checksum cost more than it saves.
_COMPRESS_FROM_BYTES = 160
#: `json.dumps` with non-default separators builds a new encoder at every call (~1 µs).
_compact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

# The `scans` columns are the models' fields, named once there: a case is read from a column
# per `ScanRecord` field, an accepted scan inserted with a column per `NewScan` field and its
# `created_at`. One field is named apart from its column: `trigger`, an SQL keyword.
_COLUMN_OF_FIELD = {"trigger": "scan_trigger"}
#: `ScanRecord`'s fields, in the order `record_from_row` reads them.
SCAN_FIELDS: tuple[str, ...] = tuple(ScanRecord.model_fields)
#: Every column of `scans` a case is read from (all but `detail`), in `SCAN_FIELDS` order.
SCAN_COLUMNS: tuple[str, ...] = tuple(_COLUMN_OF_FIELD.get(f, f) for f in SCAN_FIELDS)
SELECT_SCAN = ", ".join(SCAN_COLUMNS)
#: The columns `create_scan` binds (`insert_params`), in parameter order.
INSERT_COLUMNS: tuple[str, ...] = (
    *(_COLUMN_OF_FIELD.get(f, f) for f in NewScan.model_fields),
    "created_at",
)
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def to_epoch(moment: datetime) -> int:
    """Unix seconds; a naive datetime is taken to be UTC (the bot only makes aware ones)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def from_epoch(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def pack_sha256(sha256: str) -> bytes | str:
    """32 raw bytes for a hex digest; anything else is kept as given rather than refused."""
    return bytes.fromhex(sha256) if _HEX64.fullmatch(sha256) else sha256


def unpack_sha256(value: bytes | str | None) -> str | None:
    return value.hex() if isinstance(value, bytes) else value


def canonical_jump_url(guild_id: int, channel_id: int | None, message_id: int | None) -> str:
    if channel_id is None or message_id is None:
        return ""  # matches no real URL, so it is never mistaken for one
    # Discord's own links use "@me" for direct messages; NO_GUILD (0) is not a guild.
    guild = str(guild_id) if guild_id else "@me"
    return f"https://discord.com/channels/{guild}/{channel_id}/{message_id}"


def pack_jump_url(
    url: str | None, guild_id: int, channel_id: int | None, message_id: int | None
) -> str | None:
    """'' stands for the canonical link, which the ids already say (~80 bytes per case)."""
    if url is not None and url == canonical_jump_url(guild_id, channel_id, message_id):
        return ""
    return url


def unpack_jump_url(
    stored: str | None, guild_id: int, channel_id: int | None, message_id: int | None
) -> str | None:
    if stored == "":
        return canonical_jump_url(guild_id, channel_id, message_id)
    return stored


def snippet(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


def pack_job_id(job_id: str | None) -> bytes | str | None:
    """16 raw bytes for a canonical UUID (Resemble's job ids, 36 characters as text)."""
    if job_id is not None and _UUID.fullmatch(job_id):
        return bytes.fromhex(job_id.replace("-", ""))
    return job_id


def unpack_job_id(value: bytes | str | None) -> str | None:
    if isinstance(value, bytes):  # the same text as str(uuid.UUID(bytes=value)), faster
        h = value.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    return value


def pack_detail(verdict: Verdict) -> bytes | str | None:
    """What a verdict has beyond the summary columns: segments and the provider's label.

    Segments are stored by column — boundaries `b` when each segment starts where the last
    ended (always, for Resemble's fixed chunks), else start/end pairs `t`; label codes `c` as
    one string; probabilities `p` — because a two-minute Resemble scan has 60 of them and
    JSON objects would repeat four key names in each.
    """
    detail: dict[str, Any] = {}
    segments = verdict.segments
    if segments:
        starts = [_num(s.start) for s in segments]
        ends = [_num(s.end) for s in segments]
        if starts[1:] == ends[:-1]:
            detail["b"] = [starts[0], *ends]
        else:
            detail["t"] = [x for pair in zip(starts, ends, strict=True) for x in pair]
        detail["c"] = "".join([_LABEL_DIGITS[s.label] for s in segments])
        detail["p"] = [s.spoofed_probability for s in segments]
    if verdict.provider_label is not None:
        detail["l"] = verdict.provider_label
    # The generator's name has a column of its own (searched by /audit flagged).
    if verdict.generator_confidence is not None:
        detail["gc"] = verdict.generator_confidence
    if verdict.fraud_type is not None:
        detail["f"] = verdict.fraud_type
    if verdict.visual is not None:
        visual = verdict.visual
        detail["v"] = [_LABEL_DIGITS[visual.label], visual.spoofed_probability]
        if visual.provider_label is not None:
            detail["v"].append(visual.provider_label)
    if not detail:
        return None
    text = _compact_json(detail)
    if len(text) >= _COMPRESS_FROM_BYTES:
        raw = text.encode()
        packed = zlib.compress(raw, 9)
        if len(packed) < len(raw):
            return packed  # stored as a BLOB; plain JSON is stored as TEXT
    return text


def unpack_detail(value: bytes | str | None) -> tuple[tuple[Segment, ...], str | None]:
    if value is None:
        return (), None
    text = zlib.decompress(value).decode() if isinstance(value, bytes) else value
    detail = json.loads(text)
    codes, probabilities = detail.get("c", ""), detail.get("p", [])
    if "b" in detail:
        bounds = detail["b"]
        spans = list(itertools.pairwise(bounds))
    else:
        times = detail.get("t", [])
        spans = list(zip(times[::2], times[1::2], strict=True))
    segments = tuple(
        Segment(start=start, end=end, label=_LABELS[int(code)], spoofed_probability=probability)
        for (start, end), code, probability in zip(spans, codes, probabilities, strict=True)
    )
    return segments, detail.get("l")


def unpack_extras(value: bytes | str | None) -> dict[str, Any]:
    """The verdict fields beyond segments and label that `pack_detail` kept, as keywords."""
    if value is None:
        return {}
    text = zlib.decompress(value).decode() if isinstance(value, bytes) else value
    detail = json.loads(text)
    extras: dict[str, Any] = {}
    if "gc" in detail:
        extras["generator_confidence"] = detail["gc"]
    if "f" in detail:
        extras["fraud_type"] = detail["f"]
    if "v" in detail:
        code, probability, *said = detail["v"]
        extras["visual"] = VisualVerdict(
            label=_LABELS[int(code)],
            spoofed_probability=probability,
            provider_label=said[0] if said else None,
        )
    return extras


def _num(value: float) -> float | int:
    """2.0 → 2: two characters fewer per boundary in the JSON."""
    return int(value) if value.is_integer() else value


def generator_key(generator: str | None) -> str | None:
    """A searched generator as stored (`bot.verdict.generator_name`): lower case, inner
    spaces collapsed."""
    return None if generator is None else " ".join(generator.split()).lower()


def provider_from_code(code: int) -> ProviderName:
    return _PROVIDERS[code]


def label_from_code(code: int) -> Label:
    return _LABELS[code]


def record_from_row(row: Sequence[Any]) -> ScanRecord:
    """A `scans` row (columns in `SCAN_COLUMNS` order) as a validated `ScanRecord`."""
    # Rows come from `SELECT {SELECT_SCAN}`: one value per field, so no length check (~0.3 µs).
    values = dict(zip(SCAN_FIELDS, row))  # noqa: B905
    values["jump_url"] = unpack_jump_url(
        values["jump_url"], values["guild_id"], values["channel_id"], values["message_id"]
    )
    values["sha256"] = unpack_sha256(values["sha256"])
    values["provider_job_id"] = unpack_job_id(values["provider_job_id"])
    values["trigger"] = _TRIGGERS[values["trigger"]]
    values["provider"] = _PROVIDERS[values["provider"]]
    values["status"] = _STATUSES[values["status"]]
    values["created_at"] = from_epoch(values["created_at"])
    values["submitted_at"] = from_epoch(values["submitted_at"])
    values["finished_at"] = from_epoch(values["finished_at"])
    values["reviewed_at"] = from_epoch(values["reviewed_at"])
    if values["label"] is not None:
        values["label"] = _LABELS[values["label"]]
    if values["review"] is not None:
        values["review"] = _REVIEWS[values["review"]]
    return ScanRecord.model_validate(values)


def insert_params(new: NewScan, created_at: int) -> tuple[Any, ...]:
    """The values `create_scan` binds for `new`, in `INSERT_COLUMNS` order: codes for the
    enumerations, '' for a canonical jump URL, everything else as given."""
    values = dict(new)
    values["trigger"] = TRIGGER_CODES[new.trigger]
    values["provider"] = PROVIDER_CODES[new.provider]
    values["jump_url"] = pack_jump_url(new.jump_url, new.guild_id, new.channel_id, new.message_id)
    return (*values.values(), created_at)


def queued_record(scan_id: int, case_number: int, params: Sequence[Any]) -> ScanRecord:
    """The case `create_scan` just inserted with `params` (`insert_params`) and was given
    `scan_id` and `case_number` for: read from the values bound, since the database stores
    them as given, instead of copied back."""
    row: list[Any] = [None] * len(SCAN_COLUMNS)
    for position, value in zip(_INSERT_POSITIONS, params, strict=True):
        row[position] = value
    row[_ID] = scan_id
    row[_CASE_NUMBER] = case_number
    row[_STATUS] = STATUS_CODES[ScanStatus.QUEUED]
    return record_from_row(row)


_INSERT_POSITIONS = tuple(SCAN_COLUMNS.index(column) for column in INSERT_COLUMNS)
_ID, _CASE_NUMBER, _STATUS = (SCAN_COLUMNS.index(c) for c in ("id", "case_number", "status"))


def verdict_from_row(row: Sequence[Any]) -> Verdict:
    """Rebuild a verdict from `VERDICT_COLUMNS`.

    The transcript is the stored snippet (or None where the guild keeps no transcripts), and
    `duration_s` falls back to the probed media duration when the provider gave none.
    """
    (
        label, probability, transcript, language, speakers, provider, job_id, duration, detail,
        generator,
    ) = row  # fmt: skip
    segments, provider_label = unpack_detail(detail)
    extras = unpack_extras(detail)
    return Verdict(
        label=_LABELS[label],
        spoofed_probability=probability,
        transcript=transcript,
        language=language,
        speakers=speakers,
        segments=segments,
        provider=_PROVIDERS[provider],
        provider_job_id=unpack_job_id(job_id) or "",
        duration_s=duration,
        provider_label=provider_label,
        generator=generator,
        **extras,
    )


VERDICT_COLUMNS = (
    "label, spoofed_probability, transcript, language, speakers, provider, "
    "provider_job_id, duration_s, detail, generator"
)
