"""Faces as well as voices: Behavioral Signals' (experimental) video processes.

Reference §2 (the `/processes/video` family) and §4.6 (results with `audio_results` and
`video_results`; visual labels unconfirmed, so `fake/real` and `spoofed/bonafide` are both
served by the stand-in and both read).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from bot.detectors import SubmitOptions, Upload
from bot.detectors._bs_video import normalize_visual
from bot.detectors.behavioral_signals import BehavioralSignalsClient
from bot.provenance import FACES_FIELD, visual_text
from bot.storage import AuditLog
from bot.verdict import Label, MediaKind
from testkit.media_factory import MediaFiles
from testkit.scan_support import cli_request, make_service
from testkit.standins import BehavioralSignalsStandIn


def _video_request(media: MediaFiles, *, visual: bool = True, path=None):
    request = cli_request(path or media.video_mp4, content_type="video/mp4")
    return replace(request, want_visual=visual)


def _video_upload(media: MediaFiles) -> Upload:
    return Upload(
        path=media.video_mp4,
        filename="video.mp4",
        content_type="video/mp4",
        kind=MediaKind.VIDEO,
        format_name="mov,mp4,m4a,3gp,3g2,mj2",
    )


@pytest.mark.parametrize("words", [("fake", "real"), ("spoofed", "bonafide")])
async def test_a_face_swap_over_a_real_voice_is_caught(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    bs_standin: BehavioralSignalsStandIn,
    media: MediaFiles,
    words: tuple[str, str],
) -> None:
    """Fails if a video is not sent whole to the video endpoint, or frames judged fake over
    a genuine voice do not make the case spoofed with the visual verdict kept beside it,
    whichever pair of label words the service uses."""
    bs_standin.visual_words = words
    bs_standin.visual_spoofed = 0.93
    bs_standin.default_results = None  # one bona fide utterance over the sound
    scans = make_service(audit, http_session, bs_client)
    outcome = await scans.scan(_video_request(media))
    assert outcome.error is None, outcome.error
    [job] = bs_standin.jobs.values()
    assert job.video and job.upload.head[4:8] == b"ftyp"
    verdict = outcome.verdict
    assert verdict is not None and verdict.visual is not None
    assert verdict.visual.label is Label.SPOOFED
    assert verdict.visual.provider_label == words[0]
    assert verdict.label is Label.SPOOFED
    assert verdict.spoofed_probability == pytest.approx(0.93)
    assert verdict.provider_job_id == f"video-{job.pid}"
    assert outcome.record.label is Label.SPOOFED


async def test_a_genuine_video_stays_genuine(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    bs_standin: BehavioralSignalsStandIn,
    media: MediaFiles,
) -> None:
    """Fails if genuine sound and genuine frames are not a bona fide verdict with both kept."""
    scans = make_service(audit, http_session, bs_client)
    outcome = await scans.scan(_video_request(media))
    assert outcome.verdict is not None and outcome.verdict.visual is not None
    assert outcome.verdict.label is Label.BONAFIDE
    assert outcome.verdict.visual.label is Label.BONAFIDE


async def test_audio_only_guilds_send_the_sound(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    bs_standin: BehavioralSignalsStandIn,
    media: MediaFiles,
) -> None:
    """Fails if a guild that chose audio-only still uploads the video (and pays for it)."""
    scans = make_service(audit, http_session, bs_client)
    outcome = await scans.scan(_video_request(media, visual=False))
    assert outcome.verdict is not None and outcome.verdict.visual is None
    [job] = bs_standin.jobs.values()
    assert not job.video and job.upload.head.startswith(b"RIFF")


async def test_an_undocumented_video_format_goes_audio_only(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    bs_standin: BehavioralSignalsStandIn,
    media: MediaFiles,
) -> None:
    """Fails if a WebM video (no documented video format but MP4) is sent as it is."""
    scans = make_service(audit, http_session, bs_client)
    request = replace(cli_request(media.video_webm, content_type="video/webm"), want_visual=True)
    outcome = await scans.scan(request)
    assert outcome.error is None, outcome.error
    [job] = bs_standin.jobs.values()
    assert not job.video


async def test_a_plan_without_video_scans_the_sound_instead(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    bs_standin: BehavioralSignalsStandIn,
    media: MediaFiles,
) -> None:
    """Fails if the vendor refusing the video product fails the scan, creates a billed
    process for the refused upload, or keeps trying videos afterwards."""
    bs_standin.video_refused = True
    scans = make_service(audit, http_session, bs_client)
    first = await scans.scan(_video_request(media))
    assert first.error is None, first.error
    assert first.verdict is not None and first.verdict.visual is None
    [job] = bs_standin.jobs.values()
    assert not job.video
    # The refused video upload (no process made), then the file's sound.
    assert (bs_standin.received["submit_video"], bs_standin.received["submit"]) == (1, 1)
    # Later videos are not offered to the video endpoint again.
    assert not bs_client.accepts(_video_upload(media), SubmitOptions(visual=True))


async def test_a_video_process_is_resumed_from_its_stored_id(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    bs_standin: BehavioralSignalsStandIn,
    media: MediaFiles,
) -> None:
    """Fails if a scan left `submitted` with a video process is not finished by polling the
    video process (after a restart), or is uploaded again."""
    submission = await bs_client.submit(_video_upload(media), SubmitOptions(visual=True))
    record, _ = await audit.scans.create_scan(_video_request(media).new)
    await audit.scans.mark_submitted(record.id, submission.job_id)
    [unfinished] = await audit.scans.unfinished_scans()
    scans = make_service(audit, http_session, bs_client)
    outcome = await scans.resume(unfinished, None)
    assert outcome.error is None, outcome.error
    assert outcome.verdict is not None and outcome.verdict.visual is not None
    assert bs_standin.submissions == 1


async def test_a_lost_video_upload_answer_follows_the_video_process(
    bs_standin: BehavioralSignalsStandIn, bs_client: BehavioralSignalsClient, media: MediaFiles
) -> None:
    """Fails if the process a video upload created is not found again in the video list
    when the upload's answer is lost (the billed job would be lost)."""
    bs_standin.drop_upload_answers = 1
    submission = await bs_client.submit(
        _video_upload(media), SubmitOptions(visual=True, meta={"attachment": "42"})
    )
    (job,) = bs_standin.jobs.values()
    assert job.video
    assert submission.job_id == f"video-{job.pid}"
    assert bs_standin.submissions == 1
    verdict = await bs_client.wait(submission.job_id)
    assert verdict.visual is not None


async def test_find_job_looks_in_the_video_list_too(
    bs_standin: BehavioralSignalsStandIn, bs_client: BehavioralSignalsClient, media: MediaFiles
) -> None:
    """Fails if crash recovery's lookup by meta misses a video process."""
    asked = datetime.now(UTC)
    await bs_client.submit(
        _video_upload(media), SubmitOptions(visual=True, meta={"message": "777"})
    )
    (job,) = bs_standin.jobs.values()
    found = await bs_client.find_job({"message": "777"}, submitted_after=asked)
    assert found == f"video-{job.pid}"


@pytest.mark.parametrize(
    ("items", "label", "probability"),
    [
        (None, None, None),
        ([], Label.INCONCLUSIVE, None),
        ([{"task": "visual_deepfake", "finalLabel": "Fake",
           "prediction": [{"label": "fake", "posterior": "0.8"}]}], Label.SPOOFED, 0.8),
        ([{"task": "visual_deepfake", "finalLabel": "real",
           "prediction": [{"label": "fake", "posterior": "1e-03"}]}], Label.BONAFIDE, 0.001),
        ([{"task": "visual_deepfake", "finalLabel": "maybe"}], Label.INCONCLUSIVE, None),
        (["junk", 3, {"task": "asr", "finalLabel": "fake"}], Label.INCONCLUSIVE, None),
        ([{"task": "visual_deepfake", "finalLabel": "spoofed",
           "prediction": [{"label": "spoofed", "posterior": "NaN"}]}], Label.SPOOFED, None),
        ([{"finalLabel": "bonafide", "prediction": "odd"}], Label.BONAFIDE, None),
    ],
    ids=[
        "null", "empty", "fake", "real-sci-notation", "unknown-word", "junk-and-other-tasks",
        "nan-posterior", "no-task-odd-prediction",
    ],
)  # fmt: skip
def test_visual_results_are_read_leniently(
    items: Any, label: Label | None, probability: float | None
) -> None:
    """Fails if an odd `video_results` raises, or is read as a verdict it does not say."""
    visual = normalize_visual(items)
    if label is None:
        assert visual is None
        return
    assert visual is not None
    assert visual.label is label
    assert visual.spoofed_probability == (
        None if probability is None else pytest.approx(probability)
    )


def test_the_faces_verdict_is_shown_and_marked_experimental() -> None:
    """Fails if the visual verdict's line does not say what the frames showed, or its field
    is not marked experimental as the vendor marks the endpoint."""
    visual = normalize_visual(
        [{"finalLabel": "fake", "prediction": [{"label": "fake", "posterior": "0.9"}]}]
    )
    text = visual_text(visual)
    assert text is not None and "fake" in text.lower() and "90%" in text
    assert "experimental" in FACES_FIELD.lower()
