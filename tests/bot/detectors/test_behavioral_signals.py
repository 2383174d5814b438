"""Behavioral Signals: result normalization, and the client against the loopback stand-in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO
from unittest.mock import ANY

import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.detectors import SubmitOptions, Upload, _upload, build_detector
from bot.detectors.behavioral_signals import BehavioralSignalsClient, normalize_results
from bot.errors import (
    ProviderJobFailed,
    ProviderProtocolError,
    ProviderUnavailable,
    SettingsError,
)
from bot.settings import Settings
from bot.verdict import Label, MediaKind, ProviderName
from testkit.standins import BehavioralSignalsStandIn, sha256_of, utterance
from testkit.standins._common import Handler
from tests.conftest import FAST_POLL, FAST_RETRY

FIXTURES = Path(__file__).parent / "fixtures"


def results(*utterances: list[dict[str, Any]]) -> dict[str, Any]:
    items = [item for group in utterances for item in group]
    return {
        "pid": 7,
        "cid": 10000001,
        "code": 2,
        "message": "Processing Complete",
        "results": items,
    }


# --- normalization -----------------------------------------------------------------------


def test_seed_payload_normalizes_to_the_documented_verdict() -> None:
    """Fails if the vendor's own results example does not read as one spoofed utterance."""
    seed = json.loads((FIXTURES / "bs_results_seed.json").read_text())
    verdict = normalize_results(seed, "51234")
    assert verdict.label is Label.SPOOFED
    assert verdict.spoofed_probability == pytest.approx(0.9997)
    assert verdict.provider_label == "spoofed"
    assert verdict.transcript is not None
    assert verdict.transcript.startswith("This is deep fake example")
    assert verdict.transcript.endswith("cannot tell the difference")
    assert verdict.language == "en"
    assert verdict.speakers == 1
    assert verdict.duration_s == pytest.approx(13.151)
    assert [(s.start, s.end, s.label) for s in verdict.segments] == [(0.031, 13.151, Label.SPOOFED)]
    assert verdict.provider is ProviderName.BEHAVIORAL_SIGNALS
    assert verdict.provider_job_id == "51234"


def test_several_utterances_are_grouped_and_ordered_by_time() -> None:
    """Fails if items are not grouped per utterance id or segments/transcript leave time order."""
    late = utterance(1, 4.0, 7.5, text=" second part", speaker="SPEAKER_01", spoofed=0.91)
    early = utterance(0, 0.5, 3.9, text=" First part", speaker="SPEAKER_00", spoofed=0.12)
    verdict = normalize_results(results(late, early), "7")
    assert verdict.label is Label.SPOOFED
    assert verdict.spoofed_probability == pytest.approx(0.91)
    assert [(s.start, s.label) for s in verdict.segments] == [
        (0.5, Label.BONAFIDE),
        (4.0, Label.SPOOFED),
    ]
    assert verdict.transcript == "First part second part"
    assert verdict.speakers == 2
    assert verdict.duration_s == pytest.approx(7.5)


@pytest.mark.parametrize(
    ("labels", "expected", "provider_label"),
    [
        (["bonafide", "bonafide"], Label.BONAFIDE, "bonafide"),
        (["bonafide", "spoofed"], Label.SPOOFED, "spoofed"),
        (["spoofed", "spoofed"], Label.SPOOFED, "spoofed"),
        (["bonafide", "mystery"], Label.INCONCLUSIVE, "mystery"),
    ],
)
def test_file_label_aggregates_utterance_labels(
    labels: list[str], expected: Label, provider_label: str
) -> None:
    """Fails if the file label is not: any spoofed → spoofed, all bona fide → bona fide."""
    groups = [
        utterance(i, i * 2.0, i * 2.0 + 1.5, spoofed=0.3, final_label=label)
        for i, label in enumerate(labels)
    ]
    verdict = normalize_results(results(*groups), "7")
    assert verdict.label is expected
    assert verdict.provider_label == provider_label


def test_final_label_is_never_recomputed_from_the_posterior() -> None:
    """Fails if a thresholded finalLabel is overridden by comparing the posterior with 0.5."""
    verdict = normalize_results(
        results(utterance(0, 0.0, 2.0, spoofed=0.7, final_label="bonafide")), "7"
    )
    assert verdict.label is Label.BONAFIDE
    assert verdict.spoofed_probability == pytest.approx(0.7)


def test_no_deepfake_items_is_inconclusive() -> None:
    """Fails if a file whose utterances all lack a deepfake item gets a verdict anyway."""
    verdict = normalize_results(
        results(utterance(0, 0.1, 0.8, deepfake=False), utterance(1, 1.0, 1.6, deepfake=False)),
        "7",
    )
    assert verdict.label is Label.INCONCLUSIVE
    assert verdict.spoofed_probability is None
    assert verdict.provider_label is None
    assert verdict.segments == ()
    assert verdict.transcript == "hello there hello there"


def test_empty_results_take_the_process_duration() -> None:
    """Fails if an empty result list is an error or loses the process's duration."""
    verdict = normalize_results(results(), "7", duration_s=4.25)
    assert verdict.label is Label.INCONCLUSIVE
    assert verdict.duration_s == pytest.approx(4.25)
    assert verdict.transcript is None
    assert verdict.language is None
    assert verdict.speakers is None


def test_null_posterior_leaves_the_probability_unknown() -> None:
    """Fails if a null posterior becomes 0 or an error instead of None."""
    verdict = normalize_results(
        results(
            utterance(0, 0.0, 2.0, spoofed=None, final_label="spoofed"),
            utterance(1, 2.0, 4.0, spoofed=None, final_label="bonafide"),
        ),
        "7",
    )
    assert verdict.label is Label.SPOOFED
    assert verdict.spoofed_probability is None
    assert [s.spoofed_probability for s in verdict.segments] == [None, None]


def test_scientific_notation_posterior_is_parsed() -> None:
    """Fails if a posterior written "1e-04" is not read as 0.0001."""
    verdict = normalize_results(results(utterance(0, 0.0, 2.0, spoofed="1e-04")), "7")
    assert verdict.spoofed_probability == pytest.approx(0.0001)
    assert verdict.label is Label.BONAFIDE


def test_unknown_tasks_and_fields_are_ignored() -> None:
    """Fails if a new task or an unknown field makes normalization fail or changes the verdict."""
    extra = [
        {
            "id": "0",
            "startTime": "0.000",
            "endTime": "2.000",
            "task": "features",
            "prediction": [{"label": None, "posterior": None, "dominantInSegments": []}],
            "finalLabel": None,
            "level": "utterance",
            "embedding": "[0.1, 0.2]",
        },
        {
            "id": "0",
            "startTime": "0.000",
            "endTime": "2.000",
            "task": "generator",
            "prediction": [{"label": "elevenlabs", "posterior": "0.8", "score": "1.0"}],
            "finalLabel": "elevenlabs",
            "newField": {"nested": True},
        },
    ]
    payload = results(utterance(0, 0.0, 2.0, spoofed=0.95, extra=extra))
    payload["unexpected"] = "ignored"
    verdict = normalize_results(payload, "7")
    assert verdict.label is Label.SPOOFED
    assert len(verdict.segments) == 1
    assert verdict.provider_label == "spoofed"


def test_language_is_the_one_covering_most_speech() -> None:
    """Fails if the language is chosen by count of utterances instead of speech time."""
    verdict = normalize_results(
        results(
            utterance(0, 0.0, 1.0, language="en"),
            utterance(1, 1.0, 2.0, language="en"),
            utterance(2, 2.0, 9.0, language="es"),
        ),
        "7",
    )
    assert verdict.language == "es"


@pytest.mark.parametrize(
    "payload",
    [
        results(utterance(0, 0.0, 2.0, spoofed="not-a-number")),
        results(utterance(0, 0.0, 2.0, spoofed="1.5")),
    ],
    ids=["posterior-text", "posterior-above-1"],
)
def test_drifted_results_are_a_protocol_error(payload: dict[str, Any]) -> None:
    """Fails if results that break the documented shape yield a verdict or a raw exception."""
    with pytest.raises(ProviderProtocolError, match="Behavioral Signals"):
        normalize_results(payload, "7")


# --- accepts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "format_name", "expected"),
    [
        (MediaKind.AUDIO, "wav", True),
        (MediaKind.AUDIO, "mp3", True),
        (MediaKind.VOICE, "ogg", False),
        (MediaKind.AUDIO, "flac", False),
        (MediaKind.AUDIO, "mov,mp4,m4a,3gp,3g2,mj2", False),
        (MediaKind.VIDEO, "mov,mp4,m4a,3gp,3g2,mj2", False),
        (MediaKind.VIDEO, "matroska,webm", False),
    ],
)
def test_accepts_only_wav_and_mp3_audio(
    bs_client: BehavioralSignalsClient, kind: MediaKind, format_name: str, expected: bool
) -> None:
    """Fails if anything but WAV/MP3 audio is sent without transcoding first."""
    upload = Upload(Path("x"), "x", "application/octet-stream", kind, format_name)
    assert bs_client.accepts(upload) is expected


# --- the client against the stand-in -----------------------------------------------------


async def test_submit_poll_and_verdict(bs_standin, bs_client, make_wav_upload) -> None:
    """Fails if upload → status polling → results does not produce the scripted verdict."""
    upload = make_wav_upload(seconds=1.0)
    bs_standin.script_result(
        upload.path,
        utterance(0, 0.05, 0.6, text=" synthetic words", spoofed=0.93)
        + utterance(1, 0.6, 0.95, text=" more", spoofed="1e-04", speaker="SPEAKER_01"),
    )
    submission = await bs_client.submit(upload, SubmitOptions(meta={"guild": "1"}))
    assert submission.verdict is None
    verdict = await bs_client.wait(submission.job_id)

    assert verdict.label is Label.SPOOFED
    assert verdict.spoofed_probability == pytest.approx(0.93)
    assert verdict.transcript == "synthetic words more"
    assert verdict.speakers == 2
    assert verdict.provider_job_id == submission.job_id
    assert bs_standin.uploaded_sha256s == [sha256_of(upload.path)]
    assert bs_standin.submissions == 1
    assert bs_standin.status_polls == 3  # pending, processing, complete
    assert bs_standin.result_fetches == 1


async def test_submit_sends_the_documented_form(bs_standin, bs_client, make_wav_upload) -> None:
    """Fails if the upload's form fields differ from the documented multipart request."""
    upload = make_wav_upload(name="clip.wav")
    submission = await bs_client.submit(upload, SubmitOptions(meta={"guild": "1", "msg": "2"}))
    job = bs_standin.jobs[int(submission.job_id)]
    assert job.name == "clip.wav"
    assert job.upload.filename == "clip.wav"
    # The caller's ids, and a key of this upload to find it by if the answer is lost.
    assert json.loads(job.meta or "") == {"guild": "1", "msg": "2", "upload": ANY}


class _ReadSizes:
    """An open file that records the size of every read made of it."""

    def __init__(self, handle: BinaryIO, reads: list[int]) -> None:
        self._handle, self._reads = handle, reads

    def read(self, size: int = -1) -> bytes:
        self._reads.append(size)
        return self._handle.read(size)

    def close(self) -> None:
        self._handle.close()


@pytest.mark.parametrize(("streaming", "chunk_kib"), [(1, 256), (16, 256), (32, 128), (64, 64)])
def test_uploads_in_flight_share_a_bounded_read_budget(streaming: int, chunk_kib: int) -> None:
    """Fails if reads do not shrink as uploads pile up (every read is memory until the socket
    takes it: 64 uploads in 256 KiB reads peaked ~17 MiB higher) or grow past 256 KiB."""
    assert _upload.upload_chunk(streaming) == chunk_kib * 1024


async def test_the_upload_streams_the_file_whole_in_bounded_reads(
    http_session, make_wav_upload, monkeypatch
) -> None:
    """Fails if a file of several reads is not sent byte for byte under a Content-Length
    (not chunked), or is read in steps over the budget's share, or all at once."""
    upload = make_wav_upload(seconds=30.0)  # 960 kB: four reads of 256 KiB
    size = upload.path.stat().st_size
    reads: list[int] = []
    lengths: list[str | None] = []
    opened = _upload._open_sized

    def open_recorded(path: Path) -> tuple[Any, int]:
        handle, length = opened(path)
        return _ReadSizes(handle, reads), length

    @web.middleware
    async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST":
            lengths.append(request.headers.get("Content-Length"))
            assert "Transfer-Encoding" not in request.headers
        return await handler(request)

    monkeypatch.setattr(_upload, "_open_sized", open_recorded)
    standin = BehavioralSignalsStandIn(processing_polls=0)
    standin.app.middlewares.append(headers)
    async with standin:
        client = BehavioralSignalsClient(
            http_session,
            cid=standin.cid,
            api_key=SecretStr(standin.api_key),
            base_url=standin.url,
            retry=FAST_RETRY,
            poll=FAST_POLL,
            request_timeout_s=5.0,
        )
        await client.submit(upload, SubmitOptions())
    assert standin.uploaded_sha256s == [sha256_of(upload.path)]
    assert len(lengths) == 1 and lengths[0] is not None and int(lengths[0]) > size
    assert sum(reads) == size
    assert reads == [_upload.UPLOAD_CHUNK_MAX] * (size // _upload.UPLOAD_CHUNK_MAX) + [
        size % _upload.UPLOAD_CHUNK_MAX
    ]


async def test_a_file_that_shrinks_during_its_upload_fails_without_a_job(
    bs_standin, bs_client, make_wav_upload, monkeypatch
) -> None:
    """Fails if an upload whose file is shorter than the Content-Length already sent waits
    for bytes that never come, creates a job, or is sent again."""
    upload = make_wav_upload(seconds=3.0)
    opened = _upload._open_sized
    monkeypatch.setattr(_upload, "_open_sized", lambda path: (opened(path)[0], 10**6))
    with pytest.raises(ProviderUnavailable, match="connection lost"):
        await bs_client.submit(upload, SubmitOptions())
    assert bs_standin.submissions == 1
    assert bs_standin.jobs == {}


async def test_unscripted_file_gets_the_default_bonafide_result(
    bs_standin, bs_client, make_wav_upload
) -> None:
    """Fails if a file with no scripted result does not get the stand-in's default verdict."""
    upload = make_wav_upload(seconds=2.0)
    submission = await bs_client.submit(upload, SubmitOptions())
    verdict = await bs_client.wait(submission.job_id)
    assert verdict.label is Label.BONAFIDE
    assert verdict.language == "en"
    assert verdict.duration_s == pytest.approx(2.0)


async def test_non_wav_upload_fails_with_the_first_line_of_the_log(
    bs_standin, bs_client, tmp_path
) -> None:
    """Fails if an undecodable upload is not a job failure carrying only the first log line."""
    path = tmp_path / "voice.ogg"
    path.write_bytes(b"OggS\x00\x02" + bytes(200))
    upload = Upload(path, "voice.ogg", "audio/ogg", MediaKind.VOICE, "ogg")
    submission = await bs_client.submit(upload, SubmitOptions())
    with pytest.raises(ProviderJobFailed, match="status -1") as caught:
        await bs_client.wait(submission.job_id)
    assert "ffmpeg exited with status 1" in str(caught.value)
    assert "Copyright" not in str(caught.value)


def test_build_detector_makes_a_behavioral_signals_client() -> None:
    """Fails if settings naming Behavioral Signals do not build its client."""
    settings = Settings(
        _env_file=None,
        provider=ProviderName.BEHAVIORAL_SIGNALS,
        behavioralsignals_cid="10000001",
        behavioralsignals_api_key=SecretStr("k"),
    )
    detector = build_detector(settings, http_session=None)  # type: ignore[arg-type]
    assert isinstance(detector, BehavioralSignalsClient)
    assert detector.provider is ProviderName.BEHAVIORAL_SIGNALS


def test_build_detector_names_missing_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails if a provider without credentials is built instead of refused by name."""
    monkeypatch.delenv("BEHAVIORALSIGNALS_API_KEY", raising=False)
    settings = Settings(_env_file=None, behavioralsignals_cid="10000001")
    with pytest.raises(SettingsError, match="BEHAVIORALSIGNALS_API_KEY"):
        build_detector(settings, http_session=None, provider=ProviderName.BEHAVIORAL_SIGNALS)  # type: ignore[arg-type]
