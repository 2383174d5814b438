"""The normalized verdict every provider result becomes (DESIGN.md, "The normalized verdict")."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Label(StrEnum):
    SPOOFED = "spoofed"
    BONAFIDE = "bonafide"
    INCONCLUSIVE = "inconclusive"


class ProviderName(StrEnum):
    BEHAVIORAL_SIGNALS = "behavioral_signals"
    RESEMBLE = "resemble"


class MediaKind(StrEnum):
    """What an attachment is, decided from its content type and by probing it."""

    VOICE = "voice"
    AUDIO = "audio"
    VIDEO = "video"


class Segment(BaseModel):
    model_config = ConfigDict(frozen=True)

    start: float
    end: float
    label: Label
    spoofed_probability: float | None = None


class Verdict(BaseModel):
    """One provider result, normalized."""

    model_config = ConfigDict(frozen=True)

    label: Label
    spoofed_probability: float | None = Field(default=None, ge=0.0, le=1.0)
    transcript: str | None = None
    language: str | None = None
    speakers: int | None = None
    segments: tuple[Segment, ...] = ()
    provider: ProviderName
    provider_job_id: str
    duration_s: float | None = None
    #: The provider's own words for its decision ("spoofed", "fake", "Fake"...), shown as-is.
    provider_label: str | None = None
