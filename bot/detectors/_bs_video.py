"""Behavioral Signals video processes (experimental at the vendor): what their results say.

A video process judges the sound as an audio process does (`audio_results`, the same items)
and the pictures apart (`video_results`, task `visual_deepfake` per the SDK's task list).
Reference: behavioral-signals-api.md §2 (endpoints) and §4.6 (result object). The labels of
the visual items are unconfirmed: the SDK's own test fixtures use `real`/`fake` in one place
and `spoofed` in another, so both spellings are read, and anything else is inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from bot.verdict import Label, VisualVerdict

#: Job ids of video processes carry this prefix, so `wait` (also after a restart, from the
#: id stored on the case) knows which of the two process families to ask about.
VIDEO_JOB_PREFIX = "video-"
#: ffprobe container names the video upload is sent as-is for: `.mp4` is what every vendor
#: example uploads (reference §4.6: other formats undocumented). Others go audio-only.
VIDEO_FORMATS = frozenset({"mp4", "mov"})

_SPOOFED_WORDS = frozenset({"spoofed", "fake"})
_GENUINE_WORDS = frozenset({"bonafide", "real"})


class VideoResult(BaseModel):
    """The results object of a finished video process (snake_case keys, as the SDK's
    `VideoResultResponse` declares them). Items are kept raw: the audio ones go through
    the audio normalization, the visual ones through `normalize_visual`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    pid: int | None = None
    audio_results: list[Any] | None = None
    video_results: list[Any] | None = None

    @field_validator("audio_results", "video_results", mode="before")
    @classmethod
    def _lists_only(cls, value: Any) -> Any:
        # Anything but a list (or null) is a shape nobody documented: nothing to read.
        return value if isinstance(value, list) else None


def video_job_id(pid: int | str) -> str:
    return f"{VIDEO_JOB_PREFIX}{pid}"


def split_job_id(job_id: str) -> tuple[bool, str]:
    """(is a video process, its pid as text)."""
    if job_id.startswith(VIDEO_JOB_PREFIX):
        return True, job_id[len(VIDEO_JOB_PREFIX) :]
    return False, job_id


def normalize_visual(items: list[Any] | None) -> VisualVerdict | None:
    """The pictures' verdict from `video_results`, or None when the service sent none.

    Per item the vendor's `finalLabel` decides (as for audio, never recomputed) and the
    probability is the posterior of its `spoofed`/`fake` prediction. The video is spoofed if
    any item is, bona fide if every deepfake-like item is, else inconclusive (also for an
    empty list: the frames were looked at and nothing came of it). Items of other tasks,
    and items in shapes nobody documented, are ignored.
    """
    if items is None:
        return None
    judged: list[tuple[float | None, str, str]] = []  # (probability, as sent, lower case)
    for item in items:
        if not isinstance(item, Mapping):
            continue
        task = str(item.get("task") or "").strip().lower()
        if task and "deepfake" not in task and "visual" not in task:
            continue
        raw = item.get("finalLabel")
        said = raw.strip() if isinstance(raw, str) else ""
        judged.append((_spoofed_posterior(item.get("prediction")), said, said.lower()))
    words = {word for _, _, word in judged}
    if words & _SPOOFED_WORDS:
        label, deciding_words = Label.SPOOFED, _SPOOFED_WORDS
    elif judged and words <= _GENUINE_WORDS:
        label, deciding_words = Label.BONAFIDE, _GENUINE_WORDS
    else:
        label, deciding_words = Label.INCONCLUSIVE, frozenset()
    deciding = [(p, said) for p, said, word in judged if word in deciding_words]
    probabilities = [p for p, _, _ in judged if p is not None]
    return VisualVerdict(
        label=label,
        spoofed_probability=max(probabilities, default=None),
        provider_label=(
            max(deciding, key=lambda d: -1.0 if d[0] is None else d[0])[1] if deciding else None
        ),
    )


def read_video_result(body: Any) -> VideoResult:
    try:
        return VideoResult.model_validate(body)
    except ValidationError:
        return VideoResult()


def _spoofed_posterior(predictions: Any) -> float | None:
    if not isinstance(predictions, list):
        return None
    for prediction in predictions:
        if not isinstance(prediction, Mapping):
            continue
        label = prediction.get("label")
        if isinstance(label, str) and label.strip().lower() in _SPOOFED_WORDS:
            return _probability(prediction.get("posterior"))
    return None


def _probability(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and 0.0 <= number <= 1.0 else None
