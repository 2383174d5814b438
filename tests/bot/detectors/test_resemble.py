"""Resemble: item normalization, upload naming, and the client against the loopback stand-in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.detectors import SubmitOptions, Upload, build_detector
from bot.detectors.resemble import ResembleClient, normalize_item, upload_name
from bot.errors import ProviderProtocolError, ProviderRejected
from bot.settings import Settings
from bot.verdict import Label, MediaKind, ProviderName
from testkit.standins import metrics, sha256_of, video_metrics

FIXTURES = Path(__file__).parent / "fixtures"


def item(**fields: Any) -> dict[str, Any]:
    return {"uuid": "u-1", "status": "completed", "media_type": "audio", **fields}


# --- normalization -----------------------------------------------------------------------


def test_seed_payload_is_judged_by_its_audio_metrics() -> None:
    """Fails if the vendor's GET example is misread: an audio item is judged by `metrics`
    (fake, 0.566), not by the frame score 0.9 it also carries, and its prose description is
    no transcript."""
    seed = json.loads((FIXTURES / "resemble_detect_seed.json").read_text())
    verdict = normalize_item(seed["item"], "string", want_transcript=True)
    assert verdict.label is Label.SPOOFED
    assert verdict.spoofed_probability == pytest.approx(0.566)
    assert verdict.provider_label == "fake"
    assert [s.spoofed_probability for s in verdict.segments] == pytest.approx([0.9, 0.8, 0.7])
    assert verdict.duration_s == pytest.approx(1.1)
    assert verdict.transcript is None
    assert verdict.provider is ProviderName.RESEMBLE


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("fake", Label.SPOOFED),
        ("Fake", Label.SPOOFED),
        (" FAKE ", Label.SPOOFED),
        ("real", Label.BONAFIDE),
        ("Real", Label.BONAFIDE),
        ("Likely Fake", Label.INCONCLUSIVE),
        ("", Label.INCONCLUSIVE),
        (None, Label.INCONCLUSIVE),
    ],
)
def test_label_is_mapped_case_insensitively(label: str | None, expected: Label) -> None:
    """Fails if fake/real are case-sensitive or an unknown label is not inconclusive."""
    verdict = normalize_item(
        item(metrics={"label": label, "aggregated_score": "0.6"}), "u-1", want_transcript=False
    )
    assert verdict.label is expected
    assert verdict.provider_label == label


@pytest.mark.parametrize("aggregated", ["0.8", 0.8])
def test_aggregated_score_may_be_string_or_number(aggregated: str | float) -> None:
    """Fails if aggregated_score is not read whether it is sent as text or as a number."""
    verdict = normalize_item(
        item(metrics={"label": "fake", "aggregated_score": aggregated}),
        "u-1",
        want_transcript=False,
    )
    assert verdict.spoofed_probability == pytest.approx(0.8)


def test_score_list_gives_one_segment_per_window_skipping_nulls() -> None:
    """Fails if segments are not one per frame_length window, or a trailing null is kept."""
    verdict = normalize_item(
        item(metrics=metrics([0.2, 0.7, None, 0.5, None]), duration=7.0),
        "u-1",
        want_transcript=False,
    )
    assert [(s.start, s.end, s.label) for s in verdict.segments] == [
        (0.0, 2.0, Label.BONAFIDE),
        (2.0, 4.0, Label.SPOOFED),
        (6.0, 7.0, Label.SPOOFED),  # 0.5 counts as spoofed; clipped to the duration
    ]


def test_frame_length_sets_the_window() -> None:
    """Fails if segment times ignore the frame_length the detect was made with."""
    verdict = normalize_item(
        item(metrics=metrics([0.1, 0.9])), "u-1", frame_length=3, want_transcript=False
    )
    assert [(s.start, s.end) for s in verdict.segments] == [(0.0, 3.0), (3.0, 6.0)]


@pytest.mark.parametrize(
    ("audio", "video", "label", "probability", "provider_label"),
    [
        (0.2, 0.9, Label.SPOOFED, 0.9, "Fake"),
        (0.8, 0.1, Label.SPOOFED, 0.8, "fake"),
        (0.1, 0.3, Label.BONAFIDE, 0.3, "Real"),
    ],
)
def test_video_higher_score_decides(
    audio: float, video: float, label: Label, probability: float, provider_label: str
) -> None:
    """Fails if the higher of the audio and frame scores does not decide, as Resemble's UI."""
    verdict = normalize_item(
        item(
            media_type="video",
            metrics=metrics([audio]),
            video_metrics={**video_metrics(video), "score": str(video)},
        ),
        "u-1",
        want_transcript=False,
    )
    assert verdict.label is label
    assert verdict.spoofed_probability == pytest.approx(probability)
    assert verdict.provider_label == provider_label


def test_video_without_audio_metrics_uses_the_frames() -> None:
    """Fails if a video analysed only by its frames (modality=video) is inconclusive."""
    verdict = normalize_item(
        item(media_type="video", metrics={}, video_metrics=video_metrics(0.97)),
        "u-1",
        want_transcript=False,
    )
    assert verdict.label is Label.SPOOFED
    assert verdict.spoofed_probability == pytest.approx(0.97)


@pytest.mark.parametrize(
    ("intelligence", "want", "expected"),
    [
        ({"description": {"transcription": " Hi all ", "language": "English"}}, True, "Hi all"),
        ({"description": "A calm adult voice."}, True, None),
        ({"description": json.dumps({"transcription": "from text"})}, True, "from text"),
        ([{"description": {"transcription": "expert"}}], True, "expert"),
        ({"description": {"transcription": "secret plans"}}, False, None),
        ({"description": {"emotion": "calm"}}, True, None),
        (None, True, None),
    ],
    ids=["structured", "prose", "serialized", "experts-list", "not-asked", "no-text", "absent"],
)
def test_transcript_comes_from_intelligence_only_when_asked(
    intelligence: Any, want: bool, expected: str | None
) -> None:
    """Fails if the transcript is misread from intelligence, prose about the speaker is
    taken for one, or it is shown when nobody asked."""
    verdict = normalize_item(
        item(metrics=metrics([0.1]), intelligence=intelligence), "u-1", want_transcript=want
    )
    assert verdict.transcript == expected


def test_empty_metrics_are_inconclusive_and_extra_fields_ignored() -> None:
    """Fails if `metrics: {}` is an error, or unknown fields break parsing."""
    verdict = normalize_item(
        item(metrics={}, duration="5.2", watermark={"status": "pending"}, c2pa_manifest={}),
        "u-1",
        want_transcript=False,
    )
    assert verdict.label is Label.INCONCLUSIVE
    assert verdict.spoofed_probability is None
    assert verdict.segments == ()
    assert verdict.duration_s == pytest.approx(5.2)


@pytest.mark.parametrize(
    "fields",
    [
        {"metrics": {"label": "fake", "aggregated_score": "high"}},
        {"metrics": {"label": "fake", "aggregated_score": "85"}},
        {"metrics": {"score": ["0.1", "x"]}},
        {"duration": "long"},
    ],
    ids=["score-text", "score-percent", "chunk-text", "duration-text"],
)
def test_drifted_items_are_a_protocol_error(fields: dict[str, Any]) -> None:
    """Fails if numbers that break the documented contract yield a verdict or a raw error."""
    with pytest.raises(ProviderProtocolError, match="Resemble"):
        normalize_item(item(**fields), "u-1", want_transcript=False)


# --- upload naming and accepts -----------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "kind", "format_name", "expected"),
    [
        ("voice-message.ogg", MediaKind.VOICE, "ogg", ("voice-message.ogg", "audio/ogg")),
        ("voice-message", MediaKind.VOICE, "ogg", ("voice-message.ogg", "audio/ogg")),
        ("clip.mov", MediaKind.VIDEO, "mov,mp4,m4a,3gp,3g2,mj2", ("clip.mov", "video/quicktime")),
        ("clip.bin", MediaKind.VIDEO, "mov,mp4,m4a,3gp,3g2,mj2", ("clip.mp4", "video/mp4")),
        ("memo.bin", MediaKind.AUDIO, "mov,mp4,m4a,3gp,3g2,mj2", ("memo.m4a", "audio/mp4")),
        ("v.webm", MediaKind.VIDEO, "matroska,webm", ("v.webm", "video/webm")),
        ("song.mp3", MediaKind.AUDIO, "mp3", ("song.mp3", "audio/mpeg")),
        ('we"ird name!.wav', MediaKind.AUDIO, "wav", ("we_ird_name.wav", "audio/wav")),
        ("x.tta", MediaKind.AUDIO, "tta", None),
    ],
)
def test_upload_name_follows_the_container(
    filename: str, kind: MediaKind, format_name: str, expected: tuple[str, str] | None
) -> None:
    """Fails if the extension sent does not match what the file is (Resemble checks it)."""
    upload = Upload(Path("x"), filename, "application/octet-stream", kind, format_name)
    assert upload_name(upload) == expected


@pytest.mark.parametrize(
    ("size", "format_name", "expected"),
    [
        (1000, "ogg", True),
        (150 * 1000 * 1000, "wav", True),
        (150 * 1000 * 1000 + 1, "wav", False),
        (1000, "tta", False),
    ],
)
def test_accepts_documented_containers_up_to_150_mb(
    resemble_client: ResembleClient, tmp_path: Path, size: int, format_name: str, expected: bool
) -> None:
    """Fails if a file over 150 MB or in an unlisted container is sent as it is."""
    path = tmp_path / "media"
    with path.open("wb") as handle:
        handle.truncate(size)  # sparse: no real disk use
    upload = Upload(path, "media", "application/octet-stream", MediaKind.AUDIO, format_name)
    assert resemble_client.accepts(upload) is expected


# --- the client against the stand-in -----------------------------------------------------


async def test_upload_answers_the_job_id_and_the_verdict_is_polled(
    resemble_standin, resemble_client, make_wav_upload
) -> None:
    """Fails if the upload does not hand back the detect's uuid at once, or its verdict is
    not then polled for under that uuid."""
    upload = make_wav_upload(seconds=4.0)
    resemble_standin.script_result(upload.path, metrics=metrics([0.9, 0.7], label="fake"))
    submission = await resemble_client.submit(upload, SubmitOptions())
    assert submission.job_id in resemble_standin.jobs
    verdict = submission.verdict or await resemble_client.wait(submission.job_id)
    assert verdict.label is Label.SPOOFED
    assert verdict.spoofed_probability == pytest.approx(0.8)
    assert verdict.provider_job_id == submission.job_id
    assert verdict.transcript is None
    assert resemble_standin.uploaded_sha256s == [sha256_of(upload.path)]


async def test_upload_sends_the_documented_request(
    resemble_standin, resemble_client, make_wav_upload
) -> None:
    """Fails if the upload holds its answer with Prefer: wait, lacks zero retention or
    frame_length, asks for (billed) intelligence unasked, or leaves out source tracing
    (asked for by default: no charge is documented for it)."""
    await resemble_client.submit(make_wav_upload(), SubmitOptions())
    assert "Prefer" not in resemble_standin.last_headers
    assert resemble_standin.last_fields == {
        "zero_retention_mode": "true",
        "frame_length": "2",
        "audio_source_tracing": "true",
    }


async def test_transcript_is_requested_and_returned(
    resemble_standin, resemble_client, make_wav_upload
) -> None:
    """Fails if SubmitOptions.transcript does not turn on intelligence and yield its text."""
    upload = make_wav_upload()
    resemble_standin.script_result(upload.path, transcription="the words spoken")
    submission = await resemble_client.submit(upload, SubmitOptions(transcript=True))
    assert resemble_standin.last_fields["intelligence"] == "true"
    verdict = submission.verdict or await resemble_client.wait(submission.job_id)
    assert verdict.transcript == "the words spoken"


async def test_unfinished_upload_falls_back_to_polling(
    resemble_standin, resemble_client, make_wav_upload
) -> None:
    """Fails if a detect still processing after Prefer: wait is not polled to its verdict."""
    resemble_standin.processing_polls = 2
    resemble_standin.wait_hold_s = 0.01
    upload = make_wav_upload()
    resemble_standin.script_result(
        upload.path, metrics=metrics([0.1, 0.2]), transcription="polled words"
    )
    submission = await resemble_client.submit(upload, SubmitOptions(transcript=True))
    assert submission.verdict is None
    verdict = await resemble_client.wait(submission.job_id)
    assert verdict.label is Label.BONAFIDE
    assert verdict.transcript == "polled words"
    assert resemble_standin.status_polls == 3


async def test_missing_status_is_treated_as_processing(
    resemble_standin, resemble_client, make_wav_upload
) -> None:
    """Fails if an item without `status` (as in the create example) is taken as finished."""
    resemble_standin.processing_polls = 1
    resemble_standin.wait_hold_s = 0.01
    resemble_standin.omit_status_while_processing = True
    submission = await resemble_client.submit(make_wav_upload(), SubmitOptions())
    assert submission.verdict is None
    verdict = await resemble_client.wait(submission.job_id)
    assert verdict.label is Label.BONAFIDE
    assert resemble_standin.status_polls == 2


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.wav", b"", "empty"),
        ("notes.txt", b"hello", "Unsupported file extension"),
    ],
)
async def test_stand_in_refusals_are_rejections(
    resemble_standin, resemble_client, tmp_path, *, name, content, message
) -> None:
    """Fails if Resemble's 400 refusals are not ProviderRejected carrying its message."""
    path = tmp_path / name
    path.write_bytes(content)
    upload = Upload(path, name, "application/octet-stream", MediaKind.AUDIO, "unknown")
    with pytest.raises(ProviderRejected, match=message):
        await resemble_client.submit(upload, SubmitOptions())
    assert resemble_standin.submissions == 1


def test_build_detector_makes_a_resemble_client() -> None:
    """Fails if settings naming Resemble do not build its client."""
    settings = Settings(
        _env_file=None, provider=ProviderName.RESEMBLE, resemble_api_key=SecretStr("k")
    )
    detector = build_detector(settings, http_session=None)  # type: ignore[arg-type]
    assert isinstance(detector, ResembleClient)
    assert detector.provider is ProviderName.RESEMBLE
