"""Who made it: the generator a provider names, Resemble's fraud type, and where they go.

Resemble: `audio_source_tracing` (reference §10); Behavioral Signals:
`enable_generator_detection`, whose output shape is unconfirmed (reference §4.3), so every
plausible shape the stand-in serves is read and anything else ignored.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from bot.detectors import SubmitOptions, Upload
from bot.detectors.behavioral_signals import normalize_results
from bot.detectors.resemble import normalize_item
from bot.discord_glue.embeds import verdict_embed
from bot.provenance import LIKELY_MADE_WITH, generator_text
from bot.verdict import Label, MediaKind, ProviderName, Verdict, VisualVerdict, generator_name
from testkit.audit_log import GUILD_A, T0, finished_scan, new_scan, verdict
from testkit.standins.behavioral_signals import (
    GENERATOR_SHAPES,
    BehavioralSignalsStandIn,
    generator_items,
    utterance,
)
from testkit.standins.resemble import ResembleStandIn, metrics

# --- Resemble: audio source tracing -------------------------------------------------------


async def test_resemble_names_the_generator_of_fake_audio(
    resemble_standin: ResembleStandIn, resemble_client, make_wav_upload
) -> None:
    """Fails if tracing is not asked for, or the label it gives a fake file is not the
    verdict's generator."""
    upload = make_wav_upload()
    resemble_standin.script_result(
        upload.path, metrics=metrics([0.9, 0.95]), tracing_label="ElevenLabs"
    )
    submission = await resemble_client.submit(upload, SubmitOptions())
    assert resemble_standin.last_fields["audio_source_tracing"] == "true"
    verdict_ = submission.verdict or await resemble_client.wait(submission.job_id)
    assert verdict_.label is Label.SPOOFED
    assert verdict_.generator == "elevenlabs"


async def test_resemble_real_audio_has_no_generator(
    resemble_standin: ResembleStandIn, resemble_client, make_wav_upload
) -> None:
    """Fails if a genuine file gets a generator (tracing is absent for it, §10)."""
    submission = await resemble_client.submit(make_wav_upload(), SubmitOptions())
    verdict_ = submission.verdict or await resemble_client.wait(submission.job_id)
    assert verdict_.label is Label.BONAFIDE
    assert verdict_.generator is None


async def test_resemble_tracing_is_not_asked_when_the_guild_turned_it_off(
    resemble_standin: ResembleStandIn, resemble_client, make_wav_upload
) -> None:
    """Fails if SubmitOptions(generator=False) still asks for tracing."""
    await resemble_client.submit(make_wav_upload(), SubmitOptions(generator=False))
    assert "audio_source_tracing" not in resemble_standin.last_fields


async def test_resemble_tracing_is_not_asked_for_a_video(
    resemble_standin: ResembleStandIn, resemble_client, make_wav_upload
) -> None:
    """Fails if tracing, an audio product (§2 parameters), is asked for a video upload."""
    wav = make_wav_upload()
    video = Upload(
        path=wav.path,
        filename="clip.mp4",
        content_type="video/mp4",
        kind=MediaKind.VIDEO,
        format_name="mov,mp4,m4a,3gp,3g2,mj2",
    )
    await resemble_client.submit(video, SubmitOptions())
    assert "audio_source_tracing" not in resemble_standin.last_fields


async def test_a_plan_without_tracing_scans_without_it_and_warns_once(
    resemble_standin: ResembleStandIn,
    make_resemble_client,
    make_wav_upload,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fails if the vendor refusing tracing (403, a product the plan lacks) fails the scan,
    bills twice, or is asked again by later scans."""
    resemble_standin.tracing_refused = True
    client = make_resemble_client()
    caplog.set_level(logging.WARNING, logger="bot.detectors.resemble")
    for _ in range(3):
        submission = await client.submit(make_wav_upload(), SubmitOptions())
        verdict_ = submission.verdict or await client.wait(submission.job_id)
        assert verdict_.label is Label.BONAFIDE
        assert verdict_.generator is None
    warnings = [r for r in caplog.records if "audio_source_tracing" in r.getMessage()]
    assert len(warnings) == 1
    # The refused ask (no detect created), the same upload without it, then two more.
    assert resemble_standin.submissions == 4
    assert len(resemble_standin.jobs) == 3


async def test_a_plan_without_intelligence_keeps_tracing(
    resemble_standin: ResembleStandIn, make_resemble_client, make_wav_upload
) -> None:
    """Fails if lacking intelligence also stops the client asking for tracing."""
    resemble_standin.intelligence_refused = True
    client = make_resemble_client()
    await client.submit(make_wav_upload(), SubmitOptions(transcript=True))
    await client.submit(make_wav_upload(), SubmitOptions(transcript=True))
    assert resemble_standin.last_fields.get("audio_source_tracing") == "true"
    assert "intelligence" not in resemble_standin.last_fields


def _fake_item(**extra: Any) -> dict[str, Any]:
    return {
        "uuid": "u-1",
        "status": "completed",
        "media_type": "audio",
        "metrics": metrics([0.9]),
        **extra,
    }


@pytest.mark.parametrize(
    ("tracing", "expected"),
    [
        ({"label": "resemble_ai", "error_message": None}, "resemble_ai"),
        ({"label": "real", "error_message": None}, None),
        ({"label": "elevenlabs", "error_message": "tracing failed"}, None),
        ({"label": None}, None),
        ({"label": 7}, None),
        ({"label": "@everyone"}, None),
        ({"label": "x" * 200}, None),
        ("elevenlabs", None),
        ([{"label": "elevenlabs"}], None),
        (None, None),
    ],
    ids=[
        "named", "real", "error", "null", "number", "mention", "too-long", "string",
        "list", "absent",
    ],
)  # fmt: skip
def test_tracing_shapes_are_read_leniently(tracing: Any, expected: str | None) -> None:
    """Fails if an odd tracing value raises or yields a generator it should not."""
    verdict_ = normalize_item(
        _fake_item(audio_source_tracing=tracing), "u-1", want_transcript=False
    )
    assert verdict_.label is Label.SPOOFED
    assert verdict_.generator == expected


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ({"transcription": "hi", "fraud": {"type": "vishing", "confidence": 80}}, "vishing"),
        ({"transcription": "hi", "fraud": {"type": "none", "confidence": 5}}, None),
        ({"fraud": {"type": "Something New"}}, None),
        ({"fraud": "vishing"}, None),
        ('{"fraud": {"type": "extortion"}}', "extortion"),
        ("Adult male speaker, calm.", None),
    ],
    ids=["vishing", "none", "unknown-type", "not-an-object", "json-string", "prose"],
)
def test_fraud_type_from_structured_intelligence(description: Any, expected: str | None) -> None:
    """Fails if Resemble's structured `fraud.type` is not kept, or anything outside the
    documented vocabulary (or prose) becomes one."""
    item = _fake_item(intelligence={"status": "completed", "description": description})
    assert normalize_item(item, "u-1", want_transcript=True).fraud_type == expected


def test_fraud_type_is_not_taken_when_no_report_was_asked_for() -> None:
    """Fails if a report nobody asked for (a resumed job) yields a fraud type."""
    item = _fake_item(
        intelligence={"status": "completed", "description": {"fraud": {"type": "vishing"}}}
    )
    assert normalize_item(item, "u-1", want_transcript=False).fraud_type is None


# --- Behavioral Signals: generator detection ------------------------------------------------


def _spoofed_results(shape: str, label: str = "elevenlabs") -> list[dict[str, Any]]:
    items = utterance(0, 0.0, 2.0, spoofed=0.97)
    extra, fields = generator_items(shape, "0", "0.000", "2.000", label, 0.87)
    return [*items[:-1], {**items[-1], **fields}, *extra]


@pytest.mark.parametrize("shape", [s for s in GENERATOR_SHAPES if s != "unknown"])
def test_bs_generator_shapes_are_all_read(shape: str) -> None:
    """Fails if a plausible generator-detection shape is not read into the verdict."""
    verdict_ = normalize_results({"results": _spoofed_results(shape)}, "1")
    assert verdict_.label is Label.SPOOFED
    assert verdict_.generator == "elevenlabs"
    if shape.startswith("task") or shape == "field-object":
        assert verdict_.generator_confidence == pytest.approx(0.87)


def test_bs_unknown_generator_shape_is_ignored() -> None:
    """Fails if an unknown shape raises or yields a generator."""
    verdict_ = normalize_results({"results": _spoofed_results("unknown")}, "1")
    assert verdict_.label is Label.SPOOFED
    assert verdict_.generator is None


def test_bs_others_names_no_generator() -> None:
    """Fails if the vendor's low-confidence catch-all `others` is shown as a product."""
    verdict_ = normalize_results({"results": _spoofed_results("task-generator", "others")}, "1")
    assert verdict_.generator is None


def test_bs_generator_on_a_genuine_file_is_not_kept() -> None:
    """Fails if a generator item next to bona fide utterances makes the verdict name one."""
    items = utterance(0, 0.0, 2.0, spoofed=0.02)
    extra, _ = generator_items("task-generator", "0", "0.000", "2.000", "playht", 0.6)
    verdict_ = normalize_results({"results": [*items, *extra]}, "1")
    assert verdict_.label is Label.BONAFIDE
    assert verdict_.generator is None


def test_bs_most_confident_generator_speaks_for_the_file() -> None:
    """Fails if, of two spoofed utterances, the less confident generator is kept."""
    first = utterance(0, 0.0, 2.0, spoofed=0.97)
    second = utterance(1, 2.0, 4.0, spoofed=0.99)
    low, _ = generator_items("task-generator", "0", "0.000", "2.000", "playht", 0.4)
    high, _ = generator_items("task-generator", "1", "2.000", "4.000", "speechify", 0.9)
    verdict_ = normalize_results({"results": [*first, *low, *second, *high]}, "1")
    assert (verdict_.generator, verdict_.generator_confidence) == ("speechify", 0.9)


@pytest.mark.parametrize("asked", [True, False])
async def test_bs_upload_asks_for_generator_detection_as_told(
    bs_standin: BehavioralSignalsStandIn, bs_client, make_wav_upload, asked: bool
) -> None:
    """Fails if `enable_generator_detection` does not follow SubmitOptions.generator, or
    the stand-in's generator answer does not reach the verdict."""
    upload = make_wav_upload()
    bs_standin.script_result(upload.path, utterance(0, 0.031, 0.9, spoofed=0.98))
    submission = await bs_client.submit(upload, SubmitOptions(generator=asked))
    assert bs_standin.last_fields["enable_generator_detection"] == str(asked).lower()
    verdict_ = await bs_client.wait(submission.job_id)
    assert verdict_.label is Label.SPOOFED
    assert verdict_.generator == ("elevenlabs" if asked else None)


# --- storage: kept on the case, searchable ---------------------------------------------------


def _made_with(name: str | None, **extra: Any) -> Verdict:
    return verdict(Label.SPOOFED, 0.93).model_copy(
        update={"generator": name, "generator_confidence": 0.8 if name else None, **extra}
    )


async def test_generator_is_kept_on_the_case_and_searchable(log) -> None:
    """Fails if the generator is not stored on the case, or `flagged(generator=...)` does
    not return exactly the cases that generator made (any case, either backend)."""
    eleven = await finished_scan(log, result=_made_with("elevenlabs"))
    await finished_scan(log, result=_made_with("playht"))
    await finished_scan(log, result=_made_with(None))
    assert eleven.generator == "elevenlabs"
    since = T0 - timedelta(days=1)
    found = await log.cases.flagged(
        GUILD_A, since=since, threshold=0.5, limit=10, generator="ElevenLabs"
    )
    assert [r.case_number for r in found] == [eleven.case_number]
    assert (
        await log.cases.count_flagged(GUILD_A, since=since, threshold=0.5, generator="elevenlabs")
        == 1
    )
    assert await log.cases.count_flagged(GUILD_A, since=since, threshold=0.5) == 3


async def test_a_reused_verdict_keeps_generator_fraud_and_faces(log) -> None:
    """Fails if reusing a stored verdict loses the generator, its confidence, the fraud type
    or the visual verdict."""
    original = _made_with(
        "xtts-v2",
        fraud_type="vishing",
        visual=VisualVerdict(label=Label.SPOOFED, spoofed_probability=0.7, provider_label="fake"),
    )
    sha = "ab" * 32
    record = await finished_scan(log, new_scan(), original, sha256=sha)
    stored = await log.scans.find_verdict(sha, record.provider)
    assert stored is not None
    assert stored.verdict.generator == "xtts-v2"
    assert stored.verdict.generator_confidence == 0.8
    assert stored.verdict.fraud_type == "vishing"
    assert stored.verdict.visual == original.visual


# --- shown -------------------------------------------------------------------------------------


def test_verdict_embed_says_likely_made_with() -> None:
    """Fails if the verdict embed does not show the generator by its vendor spelling."""
    embed = verdict_embed(_made_with("elevenlabs"), filename="v.ogg", case_number=3)
    fields = {field.name: field.value for field in embed.fields}
    assert fields[LIKELY_MADE_WITH] == "ElevenLabs (80% confidence)"


def test_a_genuine_verdict_shows_no_generator() -> None:
    """Fails if a bona fide verdict carrying a generator shows it."""
    genuine = verdict(Label.BONAFIDE, 0.1).model_copy(update={"generator": "elevenlabs"})
    assert generator_text(genuine) is None


@pytest.mark.parametrize(
    "raw", ["@everyone", "<@123>", "**bold**", "`code`", "a\nb" * 30, "[x](http://e)"]
)
def test_generator_names_cannot_carry_markdown_or_mentions(raw: str) -> None:
    """Fails if provider text that is not a plain product name becomes a generator."""
    assert generator_name(raw) is None


def test_provider_name_is_untouched_by_generator() -> None:
    """Fails if the verdict model no longer accepts a verdict without the new fields."""
    plain = Verdict(label=Label.BONAFIDE, provider=ProviderName.RESEMBLE, provider_job_id="x")
    assert (plain.generator, plain.fraud_type, plain.visual) == (None, None, None)
