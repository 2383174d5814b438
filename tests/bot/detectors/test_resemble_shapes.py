"""Resemble: every answer shape the vendor's own material allows gives the right verdict.

The shapes come from `testkit.standins.resemble.VENDOR_SHAPES` and the docs' examples quoted
below (each names its page); the decisions they exercise live in `bot.detectors.resemble`
(`job_state`, `_counted`, `report_state`, `transcript_of`).
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.detectors import SubmitOptions
from bot.detectors.resemble import (
    DetectEnvelope,
    DetectItem,
    JobState,
    ReportState,
    ResembleClient,
    job_state,
    normalize_item,
    report_state,
)
from bot.errors import ProviderAuthError
from bot.verdict import Label
from testkit.standins import ResembleStandIn, metrics, video_metrics
from testkit.standins import resemble as resemble_module
from testkit.standins.resemble import VENDOR_SHAPES
from tests.conftest import FAST_POLL, FAST_RETRY

#: The docs' synchronous create example (/detect/create, "Audio File Response"): finished,
#: with no `status`, and an intelligence report that is prose without a status either.
DOCS_SYNC_AUDIO: dict[str, Any] = {
    "uuid": "DETECTION_UUID",
    "metrics": {
        "image": "",
        "label": "fake",
        "score": ["0.9", "0.8", "0.7"],
        "consistency": "0.85",
        "aggregated_score": "0.80",
    },
    "created_at": "2024-01-15T10:30:00Z",
    "updated_at": "2024-01-15T10:30:05Z",
    "duration": "5.2",
    "media_type": "audio",
    "intelligence": {
        "description": "Adult male speaker with confident tone...",
        "created_at": "2024-01-15T10:30:05Z",
    },
}

#: The docs' asynchronous create example (/detect/create): running, no `status` either.
DOCS_ASYNC_CREATE: dict[str, Any] = {
    "uuid": "DETECTION_UUID",
    "metrics": {},
    "created_at": "2024-01-15T10:30:00Z",
    "updated_at": "2024-01-15T10:30:00Z",
    "media_type": "audio",
    "intelligence": None,
}


def _item(**fields: Any) -> DetectItem:
    return DetectItem.model_validate({"uuid": "u-1", "media_type": "audio", **fields})


# --- the one decision: is the detect finished? -------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"status": "completed", "metrics": {}}, JobState.COMPLETED),
        ({"status": "Completed", "metrics": metrics([0.1])}, JobState.COMPLETED),
        ({"status": "failed", "metrics": {}}, JobState.FAILED),
        ({"status": "processing", "metrics": {}}, JobState.RUNNING),
        # The vendor's own GET page renders `processing` beside full metrics: not final.
        ({"status": "processing", "metrics": metrics([0.9])}, JobState.RUNNING),
        ({"status": "pending", "metrics": {}}, JobState.RUNNING),
        ({"status": "queued", "metrics": metrics([0.9])}, JobState.RUNNING),
        ({"metrics": {}}, JobState.RUNNING),
        ({"metrics": None}, JobState.RUNNING),
        ({"metrics": metrics([0.1])}, JobState.COMPLETED),
        ({"status": None, "metrics": metrics([0.1])}, JobState.COMPLETED),
        # A video analysed by its frames only (`modality=video`) has results without metrics.
        ({"media_type": "video", "metrics": {}, "video_metrics": video_metrics(0.9)}, "done"),
        # Results the media type does not count say nothing about this detect.
        ({"metrics": {}, "video_metrics": video_metrics(0.9)}, JobState.RUNNING),
    ],
    ids=[
        "completed",
        "completed-capitalised",
        "failed",
        "processing",
        "processing-with-metrics",
        "pending",
        "unknown-status",
        "no-status-no-results",
        "no-status-null-metrics",
        "no-status-with-results",
        "null-status-with-results",
        "no-status-video-frames-only",
        "no-status-foreign-results-only",
    ],
)
def test_only_completed_failed_or_results_without_status_are_final(
    fields: dict[str, Any], expected: JobState | str
) -> None:
    """Fails if a status other than completed/failed ends the wait, or an item without a
    status is judged otherwise than by whether its counted results are there."""
    want = JobState.COMPLETED if expected == "done" else expected
    assert job_state(_item(**fields)) is want


def test_docs_synchronous_example_is_finished_and_read() -> None:
    """Fails if the docs' finished-without-status example is not final, or its prose
    intelligence is shown as a transcript."""
    item = DetectItem.model_validate(DOCS_SYNC_AUDIO)
    assert job_state(item) is JobState.COMPLETED
    assert report_state(item.intelligence) is ReportState.READY
    verdict = normalize_item(item, item.uuid, want_transcript=True)
    assert verdict.label is Label.SPOOFED
    assert verdict.spoofed_probability == pytest.approx(0.8)
    assert verdict.transcript is None


def test_docs_asynchronous_example_is_running() -> None:
    """Fails if the docs' just-created example (no status, `metrics: {}`) counts as done."""
    item = DetectItem.model_validate(DOCS_ASYNC_CREATE)
    assert job_state(item) is JobState.RUNNING
    assert report_state(item.intelligence) is ReportState.PENDING


@pytest.mark.parametrize(
    "envelope",
    [
        {"success": True, "item": DOCS_ASYNC_CREATE, "message": {"detail": "queued"}},
        {"item": DOCS_ASYNC_CREATE},
        {"success": True, "item": {**DOCS_ASYNC_CREATE, "status": None, "watermark": None}},
    ],
    ids=["object-message", "no-success", "null-status-and-extras"],
)
def test_envelopes_parse_leniently(envelope: dict[str, Any]) -> None:
    """Fails if an envelope whose optional parts are missing, null or of another type is
    refused instead of read for its item."""
    parsed = DetectEnvelope.model_validate(envelope)
    assert parsed.item is not None
    assert parsed.item.uuid == "DETECTION_UUID"


# --- which metrics count ------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"video_metrics": video_metrics(0.9), "image_metrics": {"label": "Fake", "score": 1}},
        {"video_metrics": {"label": "Fake", "score": "n/a"}},
        {"video_metrics": "not an object", "image_metrics": ["nor", "this"]},
        {"video_metrics": {"score": {"nested": True}}, "intelligence": "text"},
    ],
    ids=["fake-frames", "unreadable-frame-score", "odd-types", "nested-score"],
)
def test_audio_item_is_judged_by_its_metrics_whatever_else_it_carries(
    extra: dict[str, Any],
) -> None:
    """Fails if an audio item's video/image metrics (the docs' GET example has them) change
    its verdict or, being odd, cost it."""
    item = _item(status="completed", metrics=metrics([0.05, 0.1], label="real"), **extra)
    verdict = normalize_item(item, "u-1", want_transcript=True)
    assert verdict.label is Label.BONAFIDE
    assert verdict.spoofed_probability == pytest.approx(0.075)
    assert verdict.provider_label == "real"


@pytest.mark.parametrize(
    ("fields", "label", "probability"),
    [
        ({"metrics": metrics([0.2], label="real")}, Label.BONAFIDE, 0.2),
        ({"metrics": {}, "image_metrics": {"label": "Fake", "score": 1}}, Label.SPOOFED, 1.0),
        ({"metrics": None, "video_metrics": video_metrics(0.95)}, Label.SPOOFED, 0.95),
    ],
    ids=["metrics", "image-metrics", "video-metrics"],
)
def test_item_without_media_type_reads_metrics_first(
    fields: dict[str, Any], label: Label, probability: float
) -> None:
    """Fails if an item without `media_type` is not read as Resemble's own client reads it:
    `metrics`, else `image_metrics`, else `video_metrics`."""
    item = DetectItem.model_validate({"uuid": "u-1", "status": "completed", **fields})
    verdict = normalize_item(item, "u-1", want_transcript=False)
    assert verdict.label is label
    assert verdict.spoofed_probability == pytest.approx(probability)


# --- intelligence -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intelligence", "expected"),
    [
        (None, ReportState.PENDING),
        ({"status": "processing", "description": None}, ReportState.PENDING),
        ({"status": "pending", "description": None}, ReportState.PENDING),
        ({"description": None}, ReportState.UNAVAILABLE),
        ({"status": "failed", "description": None}, ReportState.UNAVAILABLE),
        ({"status": "completed", "description": {"transcription": "hi"}}, ReportState.READY),
        ({"description": "Adult speaker"}, ReportState.READY),
        ([], ReportState.PENDING),
        ([{"status": "completed", "description": "x"}], ReportState.READY),
    ],
    ids=[
        "not-started",
        "processing",
        "pending",
        "null-description",
        "failed",
        "completed",
        "no-status-prose",
        "experts-none-yet",
        "experts-one",
    ],
)
def test_report_state(intelligence: Any, expected: ReportState) -> None:
    """Fails if an intelligence report still being written is taken as finished, or a
    finished or failed one as still coming."""
    assert report_state(intelligence) is expected


# --- the client against each vendor shape -------------------------------------------------


@pytest.mark.parametrize("shape", sorted(VENDOR_SHAPES))
async def test_every_vendor_shape_gives_the_verdict(
    resemble_standin: ResembleStandIn, make_resemble_client, make_wav_upload, shape: str
) -> None:
    """Fails if a shape Resemble's material shows (missing status, pending, an unknown
    running status, foreign metrics on audio) yields anything but the audio's verdict,
    found as soon as it is final."""
    settings = VENDOR_SHAPES[shape]
    for name, value in settings.items():
        setattr(resemble_standin, name, value)
    upload = make_wav_upload(seconds=4.0)
    resemble_standin.script_result(upload.path, metrics=metrics([0.04, 0.06], label="real"))
    client = make_resemble_client()
    submission = await client.submit(upload, SubmitOptions())
    verdict = submission.verdict or await client.wait(submission.job_id)
    assert verdict.label is Label.BONAFIDE
    assert verdict.spoofed_probability == pytest.approx(0.05)
    # Found at the first status read that could see it final, not at the deadline.
    assert resemble_standin.status_polls == settings.get("processing_polls", 0) + 1


async def test_a_long_analysis_never_loses_the_job_id(
    resemble_standin: ResembleStandIn, make_resemble_client, make_wav_upload
) -> None:
    """Fails if an analysis outlasting the request timeout (Resemble would hold a
    `Prefer: wait` answer that long) costs the job id: the upload must answer with it at
    once and the verdict come by polling, with one detect created."""
    resemble_standin.wait_hold_s = 30.0  # what Prefer: wait would hold the answer for
    resemble_standin.processing_s = 0.5
    client = make_resemble_client(request_timeout_s=0.2)
    submission = await client.submit(make_wav_upload(), SubmitOptions())
    assert list(resemble_standin.jobs) == [submission.job_id]
    verdict = await client.wait(submission.job_id)
    assert verdict.label is Label.BONAFIDE
    assert resemble_standin.submissions == 1


# --- a plan without intelligence ----------------------------------------------------------


async def test_intelligence_refused_falls_back_and_warns_once(
    resemble_standin: ResembleStandIn,
    make_resemble_client,
    make_wav_upload,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fails if a 403 for intelligence is reported as a bad key instead of scanning without
    it, or the operator is warned more than once."""
    resemble_standin.intelligence_refused = True
    client = make_resemble_client()
    caplog.set_level(logging.WARNING, logger="bot.detectors.resemble")
    for _ in range(3):
        submission = await client.submit(make_wav_upload(), SubmitOptions(transcript=True))
        verdict = submission.verdict or await client.wait(submission.job_id)
        assert verdict.label is Label.BONAFIDE
        assert verdict.transcript is None
    warnings = [r for r in caplog.records if "intelligence" in r.getMessage()]
    assert len(warnings) == 1
    # The refused ask, the same upload without it, then two scans that no longer ask.
    assert resemble_standin.submissions == 4
    assert len(resemble_standin.jobs) == 3


async def test_a_403_without_intelligence_is_still_a_bad_key(
    resemble_standin: ResembleStandIn, make_resemble_client, make_wav_upload
) -> None:
    """Fails if a 403 that persists without intelligence is not ProviderAuthError, or makes
    the client stop asking for intelligence."""
    resemble_standin.fail_next("submit", 403, times=3)
    client = make_resemble_client()
    with pytest.raises(ProviderAuthError):
        await client.submit(make_wav_upload(), SubmitOptions(transcript=True))
    # Asked with intelligence and tracing, without intelligence, then without either.
    assert resemble_standin.submissions == 3
    submission = await client.submit(make_wav_upload(), SubmitOptions(transcript=True))
    assert resemble_standin.last_fields["intelligence"] == "true"
    verdict = submission.verdict or await client.wait(submission.job_id)
    assert verdict.transcript == "hello there"


# --- a late or prose intelligence report --------------------------------------------------


async def test_late_intelligence_is_waited_for(
    resemble_standin: ResembleStandIn, make_resemble_client, make_wav_upload
) -> None:
    """Fails if a transcript still being written when the detect completes is not fetched
    when it arrives."""
    resemble_standin.intelligence_polls = 2
    upload = make_wav_upload()
    resemble_standin.script_result(upload.path, transcription="words that came late")
    client = make_resemble_client()
    submission = await client.submit(upload, SubmitOptions(transcript=True))
    verdict = submission.verdict or await client.wait(submission.job_id)
    assert verdict.transcript == "words that came late"
    assert resemble_standin.status_polls == 3


async def test_intelligence_that_never_arrives_does_not_hold_the_verdict(
    resemble_standin: ResembleStandIn, make_resemble_client, make_wav_upload
) -> None:
    """Fails if the wait for a report that never comes is unbounded or costs the verdict."""
    resemble_standin.intelligence_polls = 10**9
    client = make_resemble_client(intelligence_wait_s=0.2)
    submission = await client.submit(make_wav_upload(), SubmitOptions(transcript=True))
    verdict = submission.verdict or await client.wait(submission.job_id)
    assert verdict.label is Label.BONAFIDE
    assert verdict.transcript is None


class _FailsOnceDone(ResembleStandIn):
    """Status reads fail (503) once a detect was seen finished: an outage while only the
    transcript is still awaited."""

    async def _status(self, request: web.Request) -> web.StreamResponse:
        if any(job.done_polls for job in self.jobs.values()):
            return self._error(503, "Service temporarily unavailable")
        return await super()._status(request)


async def test_an_outage_while_awaiting_intelligence_keeps_the_verdict(
    http_session: aiohttp.ClientSession, make_wav_upload
) -> None:
    """Fails if failed status reads during the wait for a late transcript cost the verdict
    that was already in hand."""
    async with _FailsOnceDone(intelligence_polls=10**9) as standin:
        client = ResembleClient(
            http_session,
            api_key=SecretStr(resemble_module.API_KEY),
            base_url=standin.url,
            retry=FAST_RETRY,
            poll=FAST_POLL,
            request_timeout_s=5.0,
        )
        submission = await client.submit(make_wav_upload(), SubmitOptions(transcript=True))
        verdict = await client.wait(submission.job_id)
    assert verdict.label is Label.BONAFIDE
    assert verdict.transcript is None
    assert standin.status_polls > 1


async def test_prose_intelligence_is_not_a_transcript(
    resemble_standin: ResembleStandIn, make_resemble_client, make_wav_upload
) -> None:
    """Fails if a prose description of the speaker (every docs example) is shown as what
    was said."""
    resemble_standin.intelligence_prose = True
    client = make_resemble_client()
    submission = await client.submit(make_wav_upload(), SubmitOptions(transcript=True))
    verdict = submission.verdict or await client.wait(submission.job_id)
    assert verdict.label is Label.BONAFIDE
    assert verdict.transcript is None
