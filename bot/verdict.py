"""The normalized verdict every provider result becomes (DESIGN.md, "The normalized verdict")."""

from __future__ import annotations

import re
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


class VisualVerdict(BaseModel):
    """What a provider said about a video's pictures (faces), apart from its sound.

    Behavioral Signals' video endpoint (experimental at the vendor) judges the frames in
    `video_results`; kept next to the audio verdict, never folded into its probability.
    """

    model_config = ConfigDict(frozen=True)

    label: Label
    spoofed_probability: float | None = Field(default=None, ge=0.0, le=1.0)
    #: The provider's own words ("fake", "spoofed", ...), shown as-is.
    provider_label: str | None = None


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
    #: The likely generator (TTS / voice-cloning product) named by the provider, lower case
    #: as sent ("elevenlabs"), or None when it named none. Untrusted provider text.
    generator: str | None = None
    #: The provider's confidence in `generator`, 0..1, when it gave one.
    generator_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    #: Resemble intelligence's structured fraud classification (`fraud.type`, e.g.
    #: "vishing"), when a report was asked for and named one other than "none".
    fraud_type: str | None = None
    #: A video's pictures judged apart from its sound (Behavioral Signals video jobs).
    visual: VisualVerdict | None = None


#: Generator labels that name no product: `real` is what Resemble's tracing says of audio it
#: judges not synthetic (reference §10); `others` is Behavioral Signals' low-confidence
#: catch-all (its generator-detection page); the rest are placeholders.
_NO_GENERATOR = frozenset({"real", "bonafide", "none", "unknown", "others", "other", "n/a"})
#: A generator is a short product name; anything longer is not one we store or show.
GENERATOR_NAME_CHARS = 40
#: What a product name is made of ("xtts-v2", "resemble_ai", "play.ht"): nothing that could
#: mention anyone or carry markdown into an embed.
_GENERATOR_CHARS = re.compile(r"[a-z0-9][a-z0-9 ._+-]*")


def generator_name(label: object) -> str | None:
    """A provider's generator label as stored and shown ("elevenlabs"), or None when it
    names no product. Lenient: anything that is not short text is ignored."""
    if not isinstance(label, str):
        return None
    text = " ".join(label.split()).lower()
    if text in _NO_GENERATOR or len(text) > GENERATOR_NAME_CHARS:
        return None
    return text if _GENERATOR_CHARS.fullmatch(text) else None
