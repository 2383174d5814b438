"""The normalized verdict every provider result becomes (DESIGN.md, "The normalized verdict")."""

from __future__ import annotations

import re
from dataclasses import dataclass
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


class Finding(StrEnum):
    """What a verdict means for people, at a guild's threshold: the one decision all views share.

    Colour, title, whether a public reply is posted and whether moderators are alerted all
    follow from this, so a reply can never say "may be AI-generated" beside a silent mod-log
    (or the reverse).
    """

    FLAGGED = "flagged"
    UNCLEAR = "unclear"
    GENUINE = "genuine"


#: Below this a score is "a strong indication the media is real" in Resemble's published
#: bands (resemble-detect-api.md §4: 0–0.3 real, 0.3–0.5 inconclusive, 0.5–0.7 likely
#: synthetic, ≥ 0.7 high-confidence synthetic). Behavioral Signals publishes no bands; its
#: posterior is read on the same scale.
GENUINE_BELOW = 0.3
#: The guild threshold when there is no guild (a /check in direct messages, the CLI).
DEFAULT_THRESHOLD = 0.5


def decide(label: Label, probability: float | None, threshold: float) -> Finding:
    """Flagged at or above the threshold; genuine only when clearly below it; else unclear.

    The provider's own label (its decision at its own threshold, about 0.5) decides only when
    it gave no number: letting it flag regardless would make a guild's threshold meaningless.
    """
    if probability is None:
        return {
            Label.SPOOFED: Finding.FLAGGED,
            Label.BONAFIDE: Finding.GENUINE,
            Label.INCONCLUSIVE: Finding.UNCLEAR,
        }[label]
    if probability >= threshold:
        return Finding.FLAGGED
    if probability < GENUINE_BELOW and label is Label.BONAFIDE:
        return Finding.GENUINE
    # Below the threshold but not clearly genuine (or the provider could not decide).
    return Finding.UNCLEAR


def verdict_finding(verdict: Verdict, threshold: float) -> Finding:
    return decide(verdict.label, verdict.spoofed_probability, threshold)


def segment_finding(segment: Segment, threshold: float) -> Finding:
    # A segment's label is the provider's for that stretch; a number, when given, decides.
    label = segment.label
    p = segment.spoofed_probability
    if p is not None and label is not Label.INCONCLUSIVE:
        label = Label.SPOOFED if p >= threshold else Label.BONAFIDE
    return decide(label, p, threshold)


def percent(p: float) -> int:
    """A probability as a whole percentage, rounded down: 0.899 is 89 %, never "90 %" below a
    90 % threshold."""
    # The epsilon absorbs binary fractions: 0.29 * 100 is 28.999999999999996.
    return int(min(max(p, 0.0), 1.0) * 100 + 1e-9)


class Agreement(StrEnum):
    """How two providers' findings on one file relate (a second opinion)."""

    #: Both reached the same finding.
    AGREE = "agree"
    #: One flagged the file and the other did not: neither is taken over the other.
    DISPUTED = "disputed"
    #: Neither flagged it, but only one called it genuine: the less certain finding stands.
    UNCLEAR = "unclear"
    #: Only one verdict exists (the other provider failed or has not answered).
    SINGLE = "single"


@dataclass(frozen=True, slots=True)
class Combined:
    """The one outcome of two verdicts on a file, and what moderation does with it.

    `finding` drives colour, public reply and mod-log alert, as a single verdict's does: a
    disputed file is `FLAGGED` so moderators look at it, while `agreement` lets the public
    wording say only that the detectors disagree, never that the member posted a fake.
    """

    finding: Finding
    agreement: Agreement
    findings: tuple[Finding | None, Finding | None]

    @property
    def disputed(self) -> bool:
        return self.agreement is Agreement.DISPUTED


def combine(first: Verdict | None, second: Verdict | None, threshold: float) -> Combined:
    """The combined outcome of two providers' verdicts on the same file (README, "Second
    opinion"). Each verdict is first decided alone (`decide`, at the guild's threshold);
    scores are never averaged:

    - both the same finding → that finding (agree);
    - one flagged, the other not → disputed: moderators are alerted, members read that the
      detectors disagree;
    - unclear and genuine → unclear (a file is called genuine only when both say so);
    - one verdict missing (a provider failed) → the other one's finding, alone.
    """
    return combine_findings(
        (
            None if first is None else verdict_finding(first, threshold),
            None if second is None else verdict_finding(second, threshold),
        )
    )


def combine_findings(findings: tuple[Finding | None, Finding | None]) -> Combined:
    """`combine` for two findings already decided (None: that provider gave no verdict)."""
    present = [f for f in findings if f is not None]
    if not present:
        return Combined(Finding.UNCLEAR, Agreement.SINGLE, findings)
    if len(present) == 1:
        return Combined(present[0], Agreement.SINGLE, findings)
    a, b = present
    if a is b:
        return Combined(a, Agreement.AGREE, findings)
    if Finding.FLAGGED in (a, b):
        return Combined(Finding.FLAGGED, Agreement.DISPUTED, findings)
    return Combined(Finding.UNCLEAR, Agreement.UNCLEAR, findings)
