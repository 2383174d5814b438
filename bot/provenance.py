"""What a verdict says beyond "synthetic or not", in moderators' words: the likely generator,
the kind of fraud, and a video's faces. Pure text for the verdict embed, the mod-log alert
and `/audit case`; every value here is built from vetted vocabularies (`generator_name`,
`FRAUD_TYPES`), so it needs no further escaping.
"""

from __future__ import annotations

from bot.verdict import Label, Verdict, VisualVerdict

LIKELY_MADE_WITH = "Likely made with"
FRAUD_FIELD = "Kind of fraud"
FACES_FIELD = "Faces (experimental)"

#: How vendors spell the products they name (Behavioral Signals' generator-detection page:
#: elevenlabs, playht, speechify, xtts-v2; Resemble's tracing examples: resemble_ai).
_TITLES = {
    "elevenlabs": "ElevenLabs",
    "playht": "PlayHT",
    "play.ht": "PlayHT",
    "speechify": "Speechify",
    "xtts-v2": "XTTS v2",
    "xtts_v2": "XTTS v2",
    "resemble_ai": "Resemble AI",
    "resemble": "Resemble AI",
    "openai": "OpenAI",
}
_FRAUD_TITLES = {
    "vishing": "Vishing (voice phishing)",
    "synthetic_media_fraud": "Synthetic media fraud",
    "tech_support_scam": "Tech-support scam",
}


def generator_title(name: str) -> str:
    """A generator's display name: the vendor's spelling when known, else the name as
    stored with underscores as spaces (an underscore would start markdown italics)."""
    key = " ".join(name.split()).lower()
    return _TITLES.get(key) or key.replace("_", " ").replace("*", "")


def generator_text(verdict: Verdict) -> str | None:
    """ "ElevenLabs (87% confidence)", or None when no generator is worth showing.

    Shown only on a verdict that is not bona fide: vendors name a generator only for speech
    they judged synthetic, and a name next to "genuine" would only confuse.
    """
    if verdict.generator is None or verdict.label is Label.BONAFIDE:
        return None
    title = generator_title(verdict.generator)
    if verdict.generator_confidence is None:
        return title
    return f"{title} ({verdict.generator_confidence:.0%} confidence)"


def fraud_text(fraud_type: str | None) -> str | None:
    """The kind of fraud Resemble's report named, or None."""
    if fraud_type is None:
        return None
    return _FRAUD_TITLES.get(fraud_type) or fraud_type.replace("_", " ").capitalize()


def visual_text(visual: VisualVerdict | None) -> str | None:
    """ "Likely fake — 87%" for a video's pictures, or None when they were not judged."""
    if visual is None:
        return None
    words = {
        Label.SPOOFED: "Likely fake (face swap or generated)",
        Label.BONAFIDE: "No sign of manipulation",
        Label.INCONCLUSIVE: "Inconclusive",
    }[visual.label]
    p = visual.spoofed_probability
    return words if p is None else f"{words} — {p:.0%}"


def provenance_fields(verdict: Verdict) -> list[tuple[str, str]]:
    """(name, value) embed fields for whatever of the three the verdict carries."""
    fields = []
    if (made_with := generator_text(verdict)) is not None:
        fields.append((LIKELY_MADE_WITH, made_with))
    if (fraud := fraud_text(verdict.fraud_type)) is not None:
        fields.append((FRAUD_FIELD, fraud))
    if (faces := visual_text(verdict.visual)) is not None:
        fields.append((FACES_FIELD, faces))
    return fields
