"""How both provider clients fail: each fault the services can produce, and what we raise."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import pytest
from pydantic import SecretStr

from bot.detectors import Detector, PollPolicy, RetryPolicy, SubmitOptions, Upload
from bot.detectors._http import ProviderHTTP, parse_retry_after, provider_message
from bot.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderJobFailed,
    ProviderNotFound,
    ProviderOutOfCredits,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from bot.verdict import Label, ProviderName, Verdict
from testkit.standins import StandIn
from testkit.standins import behavioral_signals as bs_module
from testkit.standins import resemble as rs_module
from tests.conftest import FAST_RETRY

BS, RS = ProviderName.BEHAVIORAL_SIGNALS, ProviderName.RESEMBLE
TINY_DEADLINE = PollPolicy(initial_s=0.001, factor=2.0, max_interval_s=0.01, deadline_s=0.2)


@dataclass
class Rig:
    """One provider's stand-in and a way to build clients of it."""

    provider: ProviderName
    standin: Any
    make_client: Callable[..., Detector]
    api_key: str
    unknown_job: str

    def require_polling(self) -> None:
        """Make jobs need status polls (Resemble would otherwise finish under Prefer: wait)."""
        if self.provider is RS:
            self.standin.processing_polls = 1
            self.standin.wait_hold_s = 0.001

    async def scan(self, client: Detector, upload: Upload) -> Verdict:
        # No optional product asked for: a 403 is then the key's, not a plan lacking one
        # (that case: test_generators, test_resemble_shapes).
        submission = await client.submit(upload, SubmitOptions(generator=False))
        return submission.verdict or await client.wait(submission.job_id)


@pytest.fixture(params=[BS, RS], ids=["behavioral_signals", "resemble"])
def rig(request: pytest.FixtureRequest) -> Rig:
    if request.param is BS:
        return Rig(
            BS,
            request.getfixturevalue("bs_standin"),
            request.getfixturevalue("make_bs_client"),
            bs_module.API_KEY,
            "999999",
        )
    return Rig(
        RS,
        request.getfixturevalue("resemble_standin"),
        request.getfixturevalue("make_resemble_client"),
        rs_module.API_KEY,
        str(uuid.uuid4()),
    )


def server_errors(standin: StandIn, route: str, status: int) -> int:
    return sum(1 for call in standin.calls if call.route == route and call.status == status)


# --- authentication, credits, unknown jobs -------------------------------------------------


async def test_wrong_key_is_an_auth_error(rig: Rig, make_wav_upload) -> None:
    """Fails if a refused API key is not ProviderAuthError carrying the service's message."""
    client = rig.make_client(api_key=SecretStr("wrong-key-0000"))
    with pytest.raises(ProviderAuthError, match="HTTP 401") as caught:
        await client.submit(make_wav_upload(), SubmitOptions())
    assert caught.value.status == 401
    assert ("Unauthorized" if rig.provider is BS else "Invalid API token") in str(caught.value)
    assert rig.standin.submissions == 1


async def test_bs_status_minus_2_is_out_of_credits(bs_standin, bs_client, make_wav_upload):
    """Fails if a process ending with status -2 is not ProviderOutOfCredits."""
    bs_standin.out_of_credits()
    submission = await bs_client.submit(make_wav_upload(), SubmitOptions())
    with pytest.raises(ProviderOutOfCredits, match="Insufficient credits"):
        await bs_client.wait(submission.job_id)
    assert bs_standin.result_fetches == 0


async def test_resemble_402_is_out_of_credits(resemble_standin, resemble_client, make_wav_upload):
    """Fails if Resemble's documented 402 is not ProviderOutOfCredits with its message."""
    resemble_standin.out_of_credits()
    with pytest.raises(ProviderOutOfCredits, match="balance is too low") as caught:
        await resemble_client.submit(make_wav_upload(), SubmitOptions())
    assert caught.value.status == 402
    assert resemble_standin.submissions == 1


async def test_unknown_job_is_not_found(rig: Rig) -> None:
    """Fails if polling a job the service does not know is not ProviderNotFound."""
    expected = "Process with id 999999 not found" if rig.provider is BS else "Detect not found"
    with pytest.raises(ProviderNotFound, match=expected):
        await rig.make_client().wait(rig.unknown_job)


# --- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "retry_after", ["0", formatdate(0, usegmt=True)], ids=["seconds", "http-date"]
)
async def test_429_with_retry_after_then_success(rig: Rig, make_wav_upload, retry_after):
    """Fails if an upload refused with 429 + Retry-After is not sent again and completed."""
    rig.standin.fail_next("submit", 429, headers={"Retry-After": retry_after})
    verdict = await rig.scan(rig.make_client(), make_wav_upload())
    assert verdict.label is Label.BONAFIDE
    assert rig.standin.submissions == 2


async def test_429_with_a_long_retry_after_is_reported_at_once(rig: Rig, make_wav_upload):
    """Fails if a Retry-After beyond our backoff cap is slept through or loses its value."""
    rig.standin.fail_next("submit", 429, headers={"Retry-After": "120"})
    with pytest.raises(ProviderRateLimited, match="retry after 120 s") as caught:
        await rig.scan(rig.make_client(), make_wav_upload())
    assert caught.value.retry_after == pytest.approx(120)
    assert rig.standin.submissions == 1


async def test_500_twice_then_success(rig: Rig, make_wav_upload) -> None:
    """Fails if a status poll answered 500 twice is not retried to the verdict."""
    rig.require_polling()
    rig.standin.fail_next("status", 500, times=2)
    verdict = await rig.scan(rig.make_client(), make_wav_upload())
    assert verdict.label is Label.BONAFIDE
    assert server_errors(rig.standin, "status", 500) == 2


async def test_submit_is_not_retried_after_a_500(rig: Rig, make_wav_upload) -> None:
    """Fails if an upload that may have created a job is sent a second time."""
    rig.standin.fail_next("submit", 500)
    with pytest.raises(ProviderUnavailable, match="HTTP 500"):
        await rig.scan(rig.make_client(), make_wav_upload())
    assert rig.standin.submissions == 1


async def test_503_forever_is_unavailable(rig: Rig, make_wav_upload) -> None:
    """Fails if a service answering 503 to every upload is not ProviderUnavailable after
    the retry budget (503 means nothing was created, so the upload may be repeated)."""
    rig.standin.fail_next("submit", 503, times=None)
    with pytest.raises(ProviderUnavailable, match="HTTP 503 on the upload after 3 attempts"):
        await rig.scan(rig.make_client(), make_wav_upload())
    assert rig.standin.submissions == FAST_RETRY.attempts


@pytest.mark.parametrize(
    ("status", "body", "error", "message", "sent"),
    [
        (400, {"message": "Bad file"}, ProviderRejected, "Bad file", 1),
        (413, None, ProviderRejected, "HTTP 413", 1),
        (422, {"errors": {"file": ["is too large"]}}, ProviderRejected, "file: is too large", 1),
        (403, {"error": "No access"}, ProviderAuthError, "No access", 1),
        (404, None, ProviderNotFound, "upload address", 1),
        (408, None, ProviderUnavailable, "HTTP 408", 1),
        (502, None, ProviderUnavailable, "HTTP 502", 1),
        (405, None, ProviderProtocolError, "undocumented HTTP 405", 1),
    ],
)
async def test_upload_failures_map_to_the_error_tree(
    rig: Rig, make_wav_upload, *, status, body, error, message, sent
) -> None:
    """Fails if an HTTP status on the upload maps to the wrong error, loses the provider's
    message, or is retried when the job may exist."""
    rig.standin.fail_next("submit", status, body=body)
    with pytest.raises(error, match=message):
        await rig.scan(rig.make_client(), make_wav_upload())
    assert rig.standin.submissions == sent


@pytest.mark.parametrize("status", [408, 409, 502])
async def test_status_polls_retry_retryable_statuses(rig: Rig, make_wav_upload, status) -> None:
    """Fails if an idempotent poll is not retried on 408/409/5xx until the budget runs out."""
    rig.require_polling()
    rig.standin.fail_next("status", status, times=None)
    with pytest.raises(ProviderUnavailable, match=f"HTTP {status}"):
        await rig.scan(rig.make_client(), make_wav_upload())
    assert rig.standin.status_polls == FAST_RETRY.attempts


async def test_unreachable_service_is_unavailable(rig: Rig, make_wav_upload) -> None:
    """Fails if a refused connection is not retried and reported as ProviderUnavailable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = rig.make_client(base_url=f"http://127.0.0.1:{port}/v5")
    with pytest.raises(ProviderUnavailable, match=r"Could not reach .* after 3 attempts"):
        await client.submit(make_wav_upload(), SubmitOptions())


# --- time limits ------------------------------------------------------------------------------


async def test_bs_hang_past_the_deadline_is_a_timeout(bs_standin, make_bs_client, make_wav_upload):
    """Fails if a status poll that never answers outlives the poll deadline."""
    bs_standin.hang("status", times=None)
    client = make_bs_client(poll=TINY_DEADLINE)
    submission = await client.submit(make_wav_upload(), SubmitOptions())
    with pytest.raises(ProviderTimeout, match=r"within 0\.2 s") as raised:
        await client.wait(submission.job_id)
    assert f"Behavioral Signals did not finish process {submission.job_id} " in str(raised.value)


async def test_resemble_job_never_finishing_is_a_timeout(
    resemble_standin, make_resemble_client, make_wav_upload
):
    """Fails if a detect stuck in processing is polled past the deadline."""
    resemble_standin.processing_polls = 10**9
    resemble_standin.wait_hold_s = 0.001
    client = make_resemble_client(poll=TINY_DEADLINE)
    submission = await client.submit(make_wav_upload(), SubmitOptions())
    with pytest.raises(ProviderTimeout, match=r"within 0\.2 s") as raised:
        await client.wait(submission.job_id)
    assert resemble_standin.status_polls > 1
    assert f"Resemble did not finish detect {submission.job_id} " in str(raised.value)


async def test_slow_status_answers_time_out_per_request(
    bs_standin, make_bs_client, make_wav_upload
):
    """Fails if a request that exceeds its own timeout is not retried, then ProviderTimeout."""
    bs_standin.hang("status", times=None)
    client = make_bs_client(request_timeout_s=0.05)
    submission = await client.submit(make_wav_upload(), SubmitOptions())
    with pytest.raises(ProviderTimeout, match="did not answer the job status after 3 attempts"):
        await client.wait(submission.job_id)
    assert bs_standin.status_polls == FAST_RETRY.attempts


async def test_upload_timing_out_is_not_retried(
    resemble_standin, make_resemble_client, make_wav_upload
):
    """Fails if an upload whose answer never came (the job may exist) is sent again."""
    resemble_standin.answer_delay_s = 30.0
    client = make_resemble_client(request_timeout_s=0.1)
    with pytest.raises(ProviderTimeout, match="did not answer the upload"):
        await client.submit(make_wav_upload(), SubmitOptions())
    assert resemble_standin.submissions == 1


# --- broken answers and failed jobs ---------------------------------------------------------


@pytest.mark.parametrize("route", ["submit", "status"])
async def test_malformed_json_is_a_protocol_error(rig: Rig, make_wav_upload, route) -> None:
    """Fails if a 200 whose body is not JSON yields anything but ProviderProtocolError."""
    rig.require_polling()
    rig.standin.malformed(route)
    with pytest.raises(ProviderProtocolError, match="not JSON"):
        await rig.scan(rig.make_client(), make_wav_upload())
    assert rig.standin.submissions == 1


async def test_drifted_json_is_a_protocol_error(rig: Rig, make_wav_upload) -> None:
    """Fails if valid JSON in an undocumented shape is not ProviderProtocolError."""
    rig.require_polling()
    rig.standin.fail_next("status", 200, body={"pid": "?", "item": []})
    with pytest.raises(ProviderProtocolError, match="unexpected shape"):
        await rig.scan(rig.make_client(), make_wav_upload())


async def test_resemble_success_false_is_a_rejection(
    resemble_standin, resemble_client, make_wav_upload
):
    """Fails if a 200 saying `success: false` is taken as an accepted upload."""
    resemble_standin.fail_next("submit", 200, body={"success": False, "message": "Bad modality"})
    with pytest.raises(ProviderRejected, match="Bad modality"):
        await resemble_client.submit(make_wav_upload(), SubmitOptions())


async def test_job_that_ends_failed(rig: Rig, make_wav_upload) -> None:
    """Fails if a job the service failed is not ProviderJobFailed with its first-line reason."""
    if rig.provider is BS:
        rig.standin.fail_jobs(-3, "Model inference failed\nTraceback (most recent call last):")
        reason = "Model inference failed"
    else:
        rig.standin.fail_jobs("Audio decoding failed\nstack")
        reason = "Audio decoding failed"
    with pytest.raises(ProviderJobFailed, match=reason) as caught:
        await rig.scan(rig.make_client(), make_wav_upload())
    assert "Traceback" not in str(caught.value)
    assert "stack" not in str(caught.value)


# --- secrets ----------------------------------------------------------------------------------


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


async def test_api_key_never_appears_in_errors_or_logs(
    rig: Rig, make_wav_upload, caplog: pytest.LogCaptureFixture
) -> None:
    """Fails if the API key shows up in any raised error (or its causes) or any log line."""
    caplog.set_level(logging.DEBUG)
    rig.require_polling()
    errors: list[ProviderError] = []
    scenarios: list[Callable[[], None]] = [
        lambda: rig.standin.fail_next("submit", 400, body={"message": f"bad key {rig.api_key}"}),
        lambda: rig.standin.fail_next("submit", 429, times=None, headers={"Retry-After": "0"}),
        lambda: rig.standin.fail_next("status", 503, times=None),
        lambda: rig.standin.malformed("status"),
        lambda: rig.standin.fail_jobs(
            **({"statusmsg": rig.api_key} if rig.provider is BS else {"error_message": rig.api_key})
        ),
    ]
    for arrange in scenarios:
        rig.standin.clear_faults()
        arrange()
        with pytest.raises(ProviderError) as caught:
            await rig.scan(rig.make_client(), make_wav_upload())
        errors.append(caught.value)
    with pytest.raises(ProviderNotFound) as caught_missing:
        await rig.make_client().wait(rig.unknown_job)
    errors.append(caught_missing.value)

    assert "[redacted]" in str(errors[0])
    for error in errors:
        for link in _chain(error):
            assert rig.api_key not in str(link)
            assert rig.api_key not in repr(link)
    assert rig.api_key not in caplog.text
    assert caplog.records  # the retries above were logged, so the check saw real lines


# --- helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        ("0.5", 0.5),
        ("-3", 0.0),
        (formatdate(1_000_010, usegmt=True), 10.0),
        ("soon", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_parses_seconds_and_dates(header: str | None, expected: float | None) -> None:
    """Fails if Retry-After is misread as delta-seconds or as an HTTP date."""
    assert parse_retry_after(header, now=1_000_000) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"success": false, "message": "Detect not found"}', "Detect not found"),
        (
            b'{"code": 404, "type": "error", "message": "Process 2 not found!"}',
            "Process 2 not found!",
        ),
        (b'{"error": "Insufficient balance", "message": "Top up"}', "Top up; Insufficient balance"),
        (b'{"errors": {"file": ["is empty", "bad type"]}}', "file: is empty; file: bad type"),
        (b'{"errors": ["one", "two"]}', "one; two"),
        (b"Service Unavailable", "Service Unavailable"),
        (b"<html><body>502</body></html>", None),
        (b'{"detail": "nothing we read"}', None),
        (b"", None),
    ],
)
def test_provider_message_reads_message_error_and_errors(body: bytes, expected: str | None):
    """Fails if the provider's own explanation is not extracted from its error body."""
    assert provider_message(body) == expected


@pytest.mark.parametrize("attempt", [1, 2, 3, 6])
def test_backoff_is_full_jitter_under_the_cap(attempt: int) -> None:
    """Fails if a retry waits longer than min(max_delay, base * 2^(attempt-1))."""
    http = ProviderHTTP(
        None,  # type: ignore[arg-type]
        provider=BS,
        headers={},
        retry=RetryPolicy(attempts=8, base_delay_s=0.5, max_delay_s=3.0),
        request_timeout_s=1.0,
    )
    cap = min(3.0, 0.5 * 2 ** (attempt - 1))
    delays = [http._delay(attempt, None) for _ in range(200)]
    assert all(0.0 <= d <= cap for d in delays)
    assert max(delays) > cap / 2  # jittered across the range, not pinned at zero


def test_retry_after_sets_the_delay() -> None:
    """Fails if a Retry-After within the cap is not waited exactly."""
    http = ProviderHTTP(
        None,  # type: ignore[arg-type]
        provider=RS,
        headers={},
        retry=RetryPolicy(attempts=3, base_delay_s=0.5, max_delay_s=8.0),
        request_timeout_s=1.0,
    )
    assert http._delay(1, 2.5) == 2.5
