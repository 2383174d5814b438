"""Behavioral Signals: every shape the vendor's SDK models accept reads, and none costs a verdict.

The shapes come from behavioralsignals 0.7.1 (`models.py`, its tests and README), served by
the stand-in (`SDK_ALLOWED_ITEMS`, `SDK_ALLOWED_PROCESSES`, `script_result(None)`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from bot.detectors import SubmitOptions, build_detector
from bot.detectors.behavioral_signals import BehavioralSignalsClient, normalize_results
from bot.errors import ProviderTimeout
from bot.settings import Settings
from bot.verdict import Label, ProviderName
from testkit.standins import utterance
from testkit.standins.behavioral_signals import SDK_ALLOWED_ITEMS, SDK_ALLOWED_PROCESSES


def results(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"pid": 7, "cid": 10000001, "code": 2, "message": "Complete", "results": items}


# --- normalization -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"pid": 7, "code": 2, "message": "Processing Complete", "results": None},
        {"pid": 7, "code": 2, "message": "Processing Complete"},
        {},
    ],
    ids=["results-null", "results-missing", "empty-object"],
)
def test_finished_job_without_results_is_inconclusive(payload: dict[str, Any]) -> None:
    """Fails if a finished process with null/missing results is not an inconclusive verdict."""
    verdict = normalize_results(payload, "7", duration_s=2.5)
    assert verdict.label is Label.INCONCLUSIVE
    assert verdict.spoofed_probability is None
    assert verdict.segments == ()
    assert verdict.duration_s == pytest.approx(2.5)


@pytest.mark.parametrize("name", sorted(SDK_ALLOWED_ITEMS))
@pytest.mark.parametrize("spoofed", [0.97, 0.03], ids=["spoofed", "bonafide"])
def test_an_sdk_allowed_odd_item_never_costs_the_verdict(name: str, spoofed: float) -> None:
    """Fails if one SDK-allowed odd item beside a deepfake utterance changes the verdict."""
    items = [*utterance(0, 0.5, 2.0, spoofed=spoofed), SDK_ALLOWED_ITEMS[name]]
    verdict = normalize_results(results(items), "7")
    expected = Label.SPOOFED if spoofed > 0.5 else Label.BONAFIDE
    assert verdict.label is expected
    assert verdict.spoofed_probability == pytest.approx(spoofed)
    assert [(s.start, s.end) for s in verdict.segments] == [(0.5, 2.0)]


def test_a_deepfake_item_with_empty_times_still_decides() -> None:
    """Fails if a spoofed utterance with startTime/endTime "" (SDK tests) is dropped or fails."""
    item = {**utterance(0, 0.0, 1.0, spoofed=0.9)[-1], "startTime": "", "endTime": ""}
    verdict = normalize_results(results([*utterance(1, 1.0, 2.0, spoofed=0.1), item]), "7")
    assert verdict.label is Label.SPOOFED
    assert verdict.spoofed_probability == pytest.approx(0.9)
    # No place on the timeline for it: only the timed utterance has a segment.
    assert [(s.start, s.label) for s in verdict.segments] == [(1.0, Label.BONAFIDE)]


def test_deepfake_items_without_id_are_separate_utterances() -> None:
    """Fails if id-less deepfake items are merged into one (keeping only the first)."""
    bonafide = {**utterance(0, 0.0, 1.0, spoofed=0.1)[-1]}
    spoofed = {**utterance(1, 1.0, 2.0, spoofed=0.95)[-1]}
    del bonafide["id"], spoofed["id"]
    verdict = normalize_results(results([bonafide, spoofed]), "7")
    assert verdict.label is Label.SPOOFED
    assert len(verdict.segments) == 2


def test_a_deepfake_item_with_null_prediction_keeps_its_label() -> None:
    """Fails if `prediction: null` on a deepfake item fails the results or drops its label."""
    item = {**utterance(0, 0.0, 1.0, spoofed=0.9)[-1], "prediction": None}
    verdict = normalize_results(results([item]), "7")
    assert verdict.label is Label.SPOOFED
    assert verdict.spoofed_probability is None


def test_an_unreadable_deepfake_item_makes_the_file_inconclusive_not_bonafide() -> None:
    """Fails if a deepfake item that cannot be read is dropped (leaving a bona fide verdict) or
    fails the whole answer."""
    broken = {"id": "1", "task": "deepfake", "prediction": "not a list", "finalLabel": "spoofed"}
    verdict = normalize_results(results([*utterance(0, 0.0, 1.0, spoofed=0.1), broken]), "7")
    assert verdict.label is Label.INCONCLUSIVE


def test_an_unreadable_item_of_another_task_is_ignored() -> None:
    """Fails if an unreadable row in a task the bot does not use costs the verdict."""
    broken = {"id": "1", "task": "emotion", "prediction": 5, "startTime": {"x": 1}}
    verdict = normalize_results(results([*utterance(0, 0.0, 1.0, spoofed=0.1), broken, 7]), "7")
    assert verdict.label is Label.BONAFIDE


# --- the client against the stand-in serving these shapes --------------------------------


@pytest.mark.parametrize("omit", [False, True], ids=["results-null", "results-missing"])
async def test_a_silent_clip_is_an_inconclusive_scan(
    bs_standin, bs_client, make_wav_upload, omit: bool
) -> None:
    """Fails if a finished process answering null/no results fails as a protocol error."""
    upload = make_wav_upload(seconds=1.0)
    bs_standin.script_result(upload.path, None, omit=omit)
    submission = await bs_client.submit(upload, SubmitOptions())
    verdict = await bs_client.wait(submission.job_id)
    assert verdict.label is Label.INCONCLUSIVE
    assert bs_standin.result_fetches == 1


@pytest.mark.parametrize("name", sorted(SDK_ALLOWED_ITEMS))
async def test_odd_items_served_by_the_service_keep_the_verdict(
    bs_standin, bs_client, make_wav_upload, name: str
) -> None:
    """Fails if an SDK-allowed odd item in a real answer costs the scan its verdict."""
    upload = make_wav_upload(seconds=1.0)
    bs_standin.script_result(
        upload.path, [*utterance(0, 0.1, 0.9, spoofed=0.92), SDK_ALLOWED_ITEMS[name]]
    )
    submission = await bs_client.submit(upload, SubmitOptions())
    verdict = await bs_client.wait(submission.job_id)
    assert verdict.label is Label.SPOOFED


async def test_a_null_status_keeps_polling(bs_standin, bs_client, make_wav_upload) -> None:
    """Fails if a process answering `status: null` is taken as a failed job."""
    bs_standin.null_status_polls = 2
    bs_standin.processing_polls = 3
    upload = make_wav_upload(seconds=1.0)
    submission = await bs_client.submit(upload, SubmitOptions())
    verdict = await bs_client.wait(submission.job_id)
    assert verdict.label is Label.BONAFIDE
    assert bs_standin.status_polls == 4


@pytest.mark.parametrize("name", sorted(SDK_ALLOWED_PROCESSES))
async def test_odd_rows_in_the_process_list_do_not_break_recovery(
    bs_standin, bs_client, make_wav_upload, name: str
) -> None:
    """Fails if one SDK-allowed odd row in the process list stops a lost job being found."""
    upload = make_wav_upload(seconds=1.0)
    submission = await bs_client.submit(upload, SubmitOptions(meta={"attachment": "42"}))
    # The SDK-allowed row, and one that is not a process at all (no pid).
    bs_standin.list_extras = [SDK_ALLOWED_PROCESSES[name], {"name": "no pid"}]
    found = await bs_client.find_job(
        {"attachment": "42"}, submitted_after=datetime.now(UTC).replace(microsecond=0)
    )
    assert found == submission.job_id


# --- an upload whose answer is lost ------------------------------------------------------


@pytest.mark.parametrize("meta", [{"attachment": "42"}, None], ids=["scan-ids", "no-ids"])
async def test_an_unanswered_upload_follows_the_process_it_created(
    bs_standin,
    make_bs_client,
    make_wav_upload,
    caplog: pytest.LogCaptureFixture,
    meta: dict[str, str] | None,
) -> None:
    """Fails if an upload that timed out after creating a process fails (or is sent again)
    instead of following that process."""
    client = make_bs_client(upload_read_timeout_s=0.2)
    bs_standin.hang("submitted", seconds=5.0)
    upload = make_wav_upload(seconds=1.0)
    with caplog.at_level(logging.WARNING):
        submission = await client.submit(upload, SubmitOptions(meta=meta))
    (job,) = bs_standin.jobs.values()
    assert submission.job_id == str(job.pid)
    assert bs_standin.submissions == 1
    verdict = await client.wait(submission.job_id)
    assert verdict.label is Label.BONAFIDE
    assert "following it instead of sending the file again" in caplog.text


async def test_an_upload_whose_connection_drops_follows_the_process_it_created(
    bs_standin, bs_client, make_wav_upload
) -> None:
    """Fails if an upload whose connection closed after its process was made fails instead of
    following that process."""
    bs_standin.drop_upload_answers = 1
    upload = make_wav_upload(seconds=1.0)
    submission = await bs_client.submit(upload, SubmitOptions(meta={"attachment": "42"}))
    (job,) = bs_standin.jobs.values()
    assert submission.job_id == str(job.pid)
    assert bs_standin.submissions == 1


@pytest.mark.parametrize("status", [502, 504])
async def test_a_gateway_error_after_the_process_exists_follows_it(
    bs_standin, bs_client, make_wav_upload, status: int
) -> None:
    """Fails if a gateway's 502/504 standing in for an upload's answer loses the process
    the upload created."""
    bs_standin.fail_next("submitted", status)
    upload = make_wav_upload(seconds=1.0)
    submission = await bs_client.submit(upload, SubmitOptions(meta={"attachment": "42"}))
    (job,) = bs_standin.jobs.values()
    assert submission.job_id == str(job.pid)
    assert bs_standin.submissions == 1


async def test_an_unanswered_upload_without_a_process_still_fails(
    bs_standin, make_bs_client, make_wav_upload
) -> None:
    """Fails if an unanswered upload that created no process is retried, or adopts the job
    of an earlier scan of the same file."""
    client = make_bs_client(upload_read_timeout_s=0.2)
    upload = make_wav_upload(seconds=1.0)
    earlier = await client.submit(upload, SubmitOptions(meta={"attachment": "42"}))
    bs_standin.hang("submit", seconds=5.0)  # before any process is made
    with pytest.raises(ProviderTimeout):
        await client.submit(upload, SubmitOptions(meta={"attachment": "42"}))
    assert list(bs_standin.jobs) == [int(earlier.job_id)]
    assert bs_standin.submissions == 2
    assert bs_standin.received["list"] == 3


def test_the_upload_waits_as_long_as_the_sdk(bs_client) -> None:
    """Fails if the upload's answer is given less time than the SDK's 300 s."""
    assert bs_client._upload_timeout().sock_read == 300.0


def test_the_upload_timeout_setting_reaches_the_client() -> None:
    """Fails if BEHAVIORALSIGNALS_UPLOAD_TIMEOUT_S does not set how long an upload's answer
    may take."""
    settings = Settings(
        _env_file=None,
        provider=ProviderName.BEHAVIORAL_SIGNALS,
        behavioralsignals_cid="10000001",
        behavioralsignals_api_key=SecretStr("k"),
        behavioralsignals_upload_timeout_s=42.0,
    )
    detector = build_detector(settings, http_session=None)  # type: ignore[arg-type]
    assert isinstance(detector, BehavioralSignalsClient)
    assert detector._upload_timeout().sock_read == 42.0
