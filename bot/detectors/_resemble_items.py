"""Resemble detect items: lenient wire models and the one place that decides on them.

Everything Resemble's material shows a detect item to carry is accepted at the wire
(`DetectItem`); `job_state` decides whether it is finished, `normalize_item` what it says
(DESIGN.md "The normalized verdict"), `report_state` and `transcript_of` what its
intelligence report holds. Sources: the design notes' reference/resemble-detect-api.md
(§2-§4, §10, §14), the docs' examples and Resemble's own clients, named where they decide.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.detectors._http import describe
from bot.detectors._polling import JobState
from bot.errors import ProviderProtocolError
from bot.verdict import Label, ProviderName, Segment, Verdict, generator_name

PROVIDER = ProviderName.RESEMBLE
FRAME_LENGTH_S = 2


# --- wire models -----------------------------------------------------------------------
#
# Lenient at the wire: only `uuid` is required. The metrics objects, the intelligence report
# and the numbers inside them are kept as sent, and checked only where `normalize_item` uses
# them, so an odd value in a part that does not count (the `video_metrics` the docs' own GET
# example puts on an audio item) never costs a verdict.


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Scores(_Wire):
    """What the bot reads of `metrics`, `video_metrics` or `image_metrics`.

    Numbers arrive as strings or numbers (docs examples show both); `score` is a list per
    `frame_length` window in `metrics` (a trailing partial window is null) and one number in
    the other two. `{}` while processing.
    """

    label: Any = None
    score: Any = None
    aggregated_score: Any = None

    @property
    def has_result(self) -> bool:
        return any(
            value not in (None, "", [], ())
            for value in (self.label, self.score, self.aggregated_score)
        )


class DetectItem(_Wire):
    """A detect object, as create, get and list return it."""

    uuid: str
    #: `processing|completed|failed` in the spec; absent from the docs' create examples.
    status: Any = None
    #: `audio|video|image`: which of the metrics objects count.
    media_type: Any = None
    metrics: Any = None
    video_metrics: Any = None
    image_metrics: Any = None
    #: An object, or a list of them when asked with `experts=true`; null until it starts.
    intelligence: Any = None
    #: `{label, error_message}`, present only when the audio was labelled fake (§10).
    audio_source_tracing: Any = None
    duration: Any = None
    error_message: Any = None


class Acknowledgement(_Wire):
    """The answer to feedback or a delete: `{success, message}` (reference §7)."""

    success: Any = None
    message: Any = None


class DetectEnvelope(_Wire):
    success: bool | None = None
    item: DetectItem | None = None
    #: Usually text; anything else is tolerated (and then not quoted), like `error`.
    message: Any = None
    error: Any = None


# --- deciding --------------------------------------------------------------------------


def job_state(item: DetectItem) -> JobState:
    """Whether a detect is finished: the one place that decides it.

    Only `completed` and `failed` are final (the spec's enum). `processing`, `pending` (which
    the watermark and Q&A objects use) and anything new keep the bot polling, bounded by the
    deadline. An item with no `status` is finished when its results are there: the docs'
    synchronous create example and older GET examples omit `status`, and Resemble's own
    clients (resemble-mcp `action_server.py`) take such an item as final; without results
    (the docs' asynchronous create example: `metrics: {}`) it is still running.
    """
    status = _text(item.status)
    if status == "completed":
        return JobState.COMPLETED
    if status == "failed":
        return JobState.FAILED
    if status is None and any(_scores(raw).has_result for _, raw in _counted(item)):
        return JobState.COMPLETED
    return JobState.RUNNING


def _counted(item: DetectItem) -> tuple[tuple[str, Any], ...]:
    """The metrics objects that decide this item, by its `media_type`, as (name, raw value).

    An audio item is judged by `metrics` alone, even when it also carries `video_metrics`
    and `image_metrics` (the docs' GET example does, with a frame score of 0.9 on a voice
    file); a video by its audio track and its frames; an image by `image_metrics`. Without a
    `media_type`, Resemble's own client reads `metrics`, then `image_metrics`, then
    `video_metrics` (resemble-mcp `action_server.py`), and so does the bot.
    """
    media = _text(item.media_type)
    if media == "audio":
        return (("metrics", item.metrics),)
    if media == "video":
        return (("metrics", item.metrics), ("video_metrics", item.video_metrics))
    if media == "image":
        return (("image_metrics", item.image_metrics),)
    for name in ("metrics", "image_metrics", "video_metrics"):
        raw = getattr(item, name)
        if _scores(raw).has_result:
            return ((name, raw),)
    return ()


def _scores(raw: Any) -> Scores:
    if isinstance(raw, dict):
        return Scores.model_validate(raw)
    return Scores()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    return text or None


# --- normalization ---------------------------------------------------------------------


def normalize_item(
    item: DetectItem | Mapping[str, Any],
    job_id: str,
    *,
    frame_length: float = FRAME_LENGTH_S,
    want_transcript: bool,
) -> Verdict:
    """Turn a completed detect item into a `Verdict` (pure).

    The metrics its `media_type` names decide (`_counted`); for a video the higher of the
    audio score and the frames' score decides the label and the probability, as Resemble's
    own headline does. The transcript, LLM-written and untrusted, is taken only when asked
    for, and only from the report's structured `transcription` (`transcript_of`).
    """
    if not isinstance(item, DetectItem):
        try:
            item = DetectItem.model_validate(item)
        except ValidationError as exc:
            raise _protocol(f"a detect item in an unexpected shape: {describe(exc)}") from exc

    counted = _counted(item)
    for name, raw in counted:
        if raw is not None and not isinstance(raw, dict):
            raise _protocol(f"{name} in an unexpected shape ({type(raw).__name__})")
    duration = _number(item.duration, "duration")
    probability: float | None = None
    provider_label: str | None = None
    audio = Scores()
    for name, raw in counted:
        scores = _scores(raw)
        if name == "metrics":
            audio = scores
        # `metrics` carries `aggregated_score` (and a list per window); the others one `score`.
        value = scores.aggregated_score if name == "metrics" else scores.score
        score = _probability(value, f"{name} score")
        label = scores.label if isinstance(scores.label, str) else None
        if score is not None and (probability is None or score > probability):
            probability, provider_label = score, label
        elif probability is None and provider_label is None:
            provider_label = label

    segments = []
    chunks = audio.score if isinstance(audio.score, list | tuple) else ()
    for index, raw_score in enumerate(chunks):
        score = _probability(raw_score, "score")
        if score is None:
            continue
        start = index * frame_length
        end = start + frame_length
        if duration is not None and start < duration < end:
            end = duration
        segments.append(
            Segment(
                start=start,
                end=end,
                label=Label.SPOOFED if score >= 0.5 else Label.BONAFIDE,
                spoofed_probability=score,
            )
        )

    return Verdict(
        label=_label(provider_label),
        spoofed_probability=probability,
        transcript=transcript_of(item.intelligence) if want_transcript else None,
        segments=tuple(segments),
        generator=generator_of(item.audio_source_tracing),
        fraud_type=fraud_type_of(item.intelligence) if want_transcript else None,
        provider=PROVIDER,
        provider_job_id=job_id,
        duration_s=duration,
        provider_label=provider_label,
    )


def _label(raw: str | None) -> Label:
    value = (raw or "").strip().lower()
    if value == "fake":
        return Label.SPOOFED
    if value == "real":
        return Label.BONAFIDE
    # "Likely Fake" (intelligence escalation), empty, or anything new: not a verdict we know.
    return Label.INCONCLUSIVE


# --- intelligence ----------------------------------------------------------------------


class ReportState(StrEnum):
    READY = "ready"
    PENDING = "pending"
    UNAVAILABLE = "unavailable"


def _reports(intelligence: Any) -> list[dict[str, Any]]:
    """The intelligence reports of an item: one object, or a list (`experts=true`)."""
    reports = intelligence if isinstance(intelligence, list) else [intelligence]
    return [report for report in reports if isinstance(report, dict)]


def report_state(intelligence: Any) -> ReportState:
    """Whether the intelligence report asked for has arrived.

    It runs apart from the detect and "can still be processing after Detect reaches
    completed" (the spec's status notes); the item then carries it with a non-final status,
    or none yet (`intelligence: null`, as in the docs' asynchronous create example). A
    report without a status but with a description is finished (the docs' synchronous
    example); `failed`, or only reports whose description is null, mean it is not coming.
    """
    reports = _reports(intelligence)
    if not reports:
        return ReportState.PENDING
    states = []
    for report in reports:
        status = _text(report.get("status"))
        if status == "completed" or (status is None and report.get("description") is not None):
            return ReportState.READY
        states.append(status)
    if all(status in ("failed", "completed") or status is None for status in states):
        return ReportState.UNAVAILABLE
    return ReportState.PENDING


def transcript_of(intelligence: Any) -> str | None:
    """The transcript in an intelligence report, or None.

    Only the structured report's `transcription` field is a transcript. `description` may
    instead be prose about the speaker ("Adult male speaker with confident tone...", the
    docs' examples), which must never be shown as what was said. A structured report may
    also arrive serialized as a JSON string. The text is LLM-written from the media:
    untrusted, and sanitized wherever it is shown.
    """
    for report in _reports(intelligence):
        description = _structured(report.get("description"))
        if description is None:
            continue
        text = description.get("transcription")
        if isinstance(text, str) and text.strip():
            return text.strip()
    return None


# --- source tracing and fraud -----------------------------------------------------------


def generator_of(tracing: Any) -> str | None:
    """The generator platform `audio_source_tracing` names ("elevenlabs"), or None.

    Its shape is `{label, error_message}` (reference §10, from Resemble's OpenAPI and its
    audio-source-tracing overview). Anything else, an error message, or a label that names
    no product is ignored: tracing is extra information, never a reason to fail a verdict.
    """
    if not isinstance(tracing, dict):
        return None
    error = tracing.get("error_message")
    if isinstance(error, str) and error.strip():
        return None
    return generator_name(tracing.get("label"))


#: `fraud.type` values (reference §10, from the OpenAPI schema); others are kept as "other".
FRAUD_TYPES = frozenset(
    {
        "vishing",
        "impersonation",
        "romance_scam",
        "tech_support_scam",
        "financial_fraud",
        "extortion",
        "political_manipulation",
        "synthetic_media_fraud",
        "insurance_fraud",
        "employment_fraud",
        "other",
    }
)


def fraud_type_of(intelligence: Any) -> str | None:
    """The structured report's `fraud.type` when it names a kind of fraud, else None.

    Only the documented vocabulary is kept (an LLM writes the report: free text never
    becomes a label); `none`, prose descriptions and unknown shapes give None.
    """
    for report in _reports(intelligence):
        description = _structured(report.get("description"))
        fraud = description.get("fraud") if description else None
        kind = fraud.get("type") if isinstance(fraud, dict) else None
        if isinstance(kind, str):
            text = kind.strip().lower()
            if text in FRAUD_TYPES:
                return text
    return None


def _structured(description: Any) -> dict[str, Any] | None:
    """A structured intelligence description, also when it arrives as a JSON string."""
    if isinstance(description, str) and description.lstrip().startswith("{"):
        try:
            description = json.loads(description)
        except ValueError:
            return None
    return description if isinstance(description, dict) else None


def _probability(value: Any, what: str) -> float | None:
    number = _number(value, what)
    if number is not None and not 0.0 <= number <= 1.0:
        raise _protocol(f"a {what} outside 0..1 ({number!r})")
    return number


def _number(value: Any, what: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _protocol(f"a {what} that is not a number ({type(value).__name__})")
    try:
        number = float(value)
    except ValueError:
        raise _protocol(f"a {what} that is not a number ({str(value)[:40]!r})") from None
    if not math.isfinite(number):
        raise _protocol(f"a {what} that is not finite ({str(value)[:40]!r})")
    return number


def _protocol(detail: str) -> ProviderProtocolError:
    return ProviderProtocolError(PROVIDER, f"Resemble sent {detail}.")
