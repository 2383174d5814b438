"""Resemble AI Detect API v2: multipart upload with `Prefer: wait`, then poll if needed.

Contract: the design notes' reference/resemble-detect-api.md (§2 create, §3 get, §4 scores,
§9 errors, §10 intelligence). Numbers arrive as strings or numbers and are coerced;
`normalize_item` builds the verdict as DESIGN.md "The normalized verdict" prescribes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from bot.detectors._base import PollPolicy, RetryPolicy, Submission, SubmitOptions, Upload
from bot.detectors._http import ProviderHTTP, describe, first_line
from bot.detectors._polling import JobClock, JobTiming
from bot.detectors._upload import FilePart
from bot.errors import (
    ProviderAuthError,
    ProviderJobFailed,
    ProviderProtocolError,
    ProviderRejected,
    ProviderTimeout,
)
from bot.verdict import Label, MediaKind, ProviderName, Segment, Verdict

log = logging.getLogger(__name__)

PROVIDER = ProviderName.RESEMBLE

#: Direct uploads above this are refused with HTTP 400 (Secure Uploads would be needed).
#: Decimal megabytes: the smaller reading of "150 MB", so we never upload a refused file.
MAX_UPLOAD_BYTES = 150 * 1000 * 1000
FRAME_LENGTH_S = 2
#: How long a transcript that was asked for is waited for once the detect is done: the
#: intelligence report runs apart and may finish later (the spec: "can still be processing
#: after Detect reaches completed"). Resemble's callback waits up to 10 minutes for it; a
#: member waiting on a verdict should not, and the verdict does not depend on it.
INTELLIGENCE_WAIT_S = 20.0

#: Extensions Resemble's direct upload allows (it validates them), with a matching type.
CONTENT_TYPES = {
    ".ogg": "audio/ogg",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".flac": "audio/flac",
    ".aac": "audio/aac",
    ".mp4": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
}
#: ffprobe container name → the extensions that name it, preferred one first.
_FORMAT_EXTENSIONS = {
    "ogg": (".ogg",),
    "wav": (".wav",),
    "mp3": (".mp3",),
    "flac": (".flac",),
    "aac": (".aac",),
    "mov": (".mp4", ".mov", ".m4a"),
    "mp4": (".mp4", ".mov", ".m4a"),
    "m4a": (".m4a", ".mp4", ".mov"),
    "matroska": (".mkv", ".webm"),
    "webm": (".webm", ".mkv"),
    "avi": (".avi",),
}


# --- wire models -----------------------------------------------------------------------
#
# Lenient at the wire: only `uuid` is required. The metrics objects, the intelligence report
# and the numbers inside them are kept as sent, and checked only where `normalize_item` uses
# them, so an odd value in a part that does not count (the `video_metrics` the docs' own GET
# example puts on an audio item) never costs a verdict.


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Scores(_Wire):
    """What the bot reads of `metrics`, `video_metrics` or `image_metrics`.

    Numbers arrive as strings or numbers (docs examples show both); `score` is a list per
    `frame_length` window in `metrics` (a trailing partial window is null) and one number in
    the other two. `{}` while processing.
    """

    label: Any = None
    score: Any = None
    aggregated_score: Any = None

    @property
    def has_result(self) -> bool:
        return any(
            value not in (None, "", [], ())
            for value in (self.label, self.score, self.aggregated_score)
        )


class DetectItem(_Wire):
    """A detect object, as create, get and list return it."""

    uuid: str
    #: `processing|completed|failed` in the spec; absent from the docs' create examples.
    status: Any = None
    #: `audio|video|image`: which of the metrics objects count.
    media_type: Any = None
    metrics: Any = None
    video_metrics: Any = None
    image_metrics: Any = None
    #: An object, or a list of them when asked with `experts=true`; null until it starts.
    intelligence: Any = None
    duration: Any = None
    error_message: Any = None


class DetectEnvelope(_Wire):
    success: bool | None = None
    item: DetectItem | None = None
    message: str | None = None
    #: Usually text; an object is tolerated (and then not quoted).
    error: Any = None


# --- deciding --------------------------------------------------------------------------


class JobState(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


def job_state(item: DetectItem) -> JobState:
    """Whether a detect is finished: the one place that decides it.

    Only `completed` and `failed` are final (the spec's enum). `processing`, `pending` (which
    the watermark and Q&A objects use) and anything new keep the bot polling, bounded by the
    deadline. An item with no `status` is finished when its results are there: the docs'
    synchronous create example and older GET examples omit `status`, and Resemble's own
    clients (resemble-mcp `action_server.py`) take such an item as final; without results
    (the docs' asynchronous create example: `metrics: {}`) it is still running.
    """
    status = _text(item.status)
    if status == "completed":
        return JobState.COMPLETED
    if status == "failed":
        return JobState.FAILED
    if status is None and any(_scores(raw).has_result for _, raw in _counted(item)):
        return JobState.COMPLETED
    return JobState.RUNNING


def _counted(item: DetectItem) -> tuple[tuple[str, Any], ...]:
    """The metrics objects that decide this item, by its `media_type`, as (name, raw value).

    An audio item is judged by `metrics` alone, even when it also carries `video_metrics`
    and `image_metrics` (the docs' GET example does, with a frame score of 0.9 on a voice
    file); a video by its audio track and its frames; an image by `image_metrics`. Without a
    `media_type`, Resemble's own client reads `metrics`, then `image_metrics`, then
    `video_metrics` (resemble-mcp `action_server.py`), and so does the bot.
    """
    media = _text(item.media_type)
    if media == "audio":
        return (("metrics", item.metrics),)
    if media == "video":
        return (("metrics", item.metrics), ("video_metrics", item.video_metrics))
    if media == "image":
        return (("image_metrics", item.image_metrics),)
    for name in ("metrics", "image_metrics", "video_metrics"):
        raw = getattr(item, name)
        if _scores(raw).has_result:
            return ((name, raw),)
    return ()


def _scores(raw: Any) -> Scores:
    if isinstance(raw, dict):
        return Scores.model_validate(raw)
    return Scores()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    return text or None


# --- normalization ---------------------------------------------------------------------


def normalize_item(
    item: DetectItem | Mapping[str, Any],
    job_id: str,
    *,
    frame_length: float = FRAME_LENGTH_S,
    want_transcript: bool,
) -> Verdict:
    """Turn a completed detect item into a `Verdict` (pure).

    The metrics its `media_type` names decide (`_counted`); for a video the higher of the
    audio score and the frames' score decides the label and the probability, as Resemble's
    own headline does. The transcript, LLM-written and untrusted, is taken only when asked
    for, and only from the report's structured `transcription` (`transcript_of`).
    """
    if not isinstance(item, DetectItem):
        try:
            item = DetectItem.model_validate(item)
        except ValidationError as exc:
            raise _protocol(f"a detect item in an unexpected shape: {describe(exc)}") from exc

    counted = _counted(item)
    for name, raw in counted:
        if raw is not None and not isinstance(raw, dict):
            raise _protocol(f"{name} in an unexpected shape ({type(raw).__name__})")
    duration = _number(item.duration, "duration")
    probability: float | None = None
    provider_label: str | None = None
    audio = Scores()
    for name, raw in counted:
        scores = _scores(raw)
        if name == "metrics":
            audio = scores
        # `metrics` carries `aggregated_score` (and a list per window); the others one `score`.
        value = scores.aggregated_score if name == "metrics" else scores.score
        score = _probability(value, f"{name} score")
        label = scores.label if isinstance(scores.label, str) else None
        if score is not None and (probability is None or score > probability):
            probability, provider_label = score, label
        elif probability is None and provider_label is None:
            provider_label = label

    segments = []
    chunks = audio.score if isinstance(audio.score, list | tuple) else ()
    for index, raw_score in enumerate(chunks):
        score = _probability(raw_score, "score")
        if score is None:
            continue
        start = index * frame_length
        end = start + frame_length
        if duration is not None and start < duration < end:
            end = duration
        segments.append(
            Segment(
                start=start,
                end=end,
                label=Label.SPOOFED if score >= 0.5 else Label.BONAFIDE,
                spoofed_probability=score,
            )
        )

    return Verdict(
        label=_label(provider_label),
        spoofed_probability=probability,
        transcript=transcript_of(item.intelligence) if want_transcript else None,
        segments=tuple(segments),
        provider=PROVIDER,
        provider_job_id=job_id,
        duration_s=duration,
        provider_label=provider_label,
    )


def _label(raw: str | None) -> Label:
    value = (raw or "").strip().lower()
    if value == "fake":
        return Label.SPOOFED
    if value == "real":
        return Label.BONAFIDE
    # "Likely Fake" (intelligence escalation), empty, or anything new: not a verdict we know.
    return Label.INCONCLUSIVE


# --- intelligence ----------------------------------------------------------------------


class ReportState(StrEnum):
    READY = "ready"
    PENDING = "pending"
    UNAVAILABLE = "unavailable"


def _reports(intelligence: Any) -> list[dict[str, Any]]:
    """The intelligence reports of an item: one object, or a list (`experts=true`)."""
    reports = intelligence if isinstance(intelligence, list) else [intelligence]
    return [report for report in reports if isinstance(report, dict)]


def report_state(intelligence: Any) -> ReportState:
    """Whether the intelligence report asked for has arrived.

    It runs apart from the detect and "can still be processing after Detect reaches
    completed" (the spec's status notes); the item then carries it with a non-final status,
    or none yet (`intelligence: null`, as in the docs' asynchronous create example). A
    report without a status but with a description is finished (the docs' synchronous
    example); `failed`, or only reports whose description is null, mean it is not coming.
    """
    reports = _reports(intelligence)
    if not reports:
        return ReportState.PENDING
    states = []
    for report in reports:
        status = _text(report.get("status"))
        if status == "completed" or (status is None and report.get("description") is not None):
            return ReportState.READY
        states.append(status)
    if all(status in ("failed", "completed") or status is None for status in states):
        return ReportState.UNAVAILABLE
    return ReportState.PENDING


def transcript_of(intelligence: Any) -> str | None:
    """The transcript in an intelligence report, or None.

    Only the structured report's `transcription` field is a transcript. `description` may
    instead be prose about the speaker ("Adult male speaker with confident tone...", the
    docs' examples), which must never be shown as what was said. A structured report may
    also arrive serialized as a JSON string. The text is LLM-written from the media:
    untrusted, and sanitized wherever it is shown.
    """
    for report in _reports(intelligence):
        description = report.get("description")
        if isinstance(description, str) and description.lstrip().startswith("{"):
            try:
                description = json.loads(description)
            except ValueError:
                description = None
        if not isinstance(description, dict):
            continue
        text = description.get("transcription")
        if isinstance(text, str) and text.strip():
            return text.strip()
    return None


def _probability(value: Any, what: str) -> float | None:
    number = _number(value, what)
    if number is not None and not 0.0 <= number <= 1.0:
        raise _protocol(f"a {what} outside 0..1 ({number!r})")
    return number


def _number(value: Any, what: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _protocol(f"a {what} that is not a number ({type(value).__name__})")
    try:
        number = float(value)
    except ValueError:
        raise _protocol(f"a {what} that is not a number ({str(value)[:40]!r})") from None
    if not math.isfinite(number):
        raise _protocol(f"a {what} that is not finite ({str(value)[:40]!r})")
    return number


def _protocol(detail: str) -> ProviderProtocolError:
    return ProviderProtocolError(PROVIDER, f"Resemble sent {detail}.")


# --- uploads ---------------------------------------------------------------------------


def upload_name(upload: Upload) -> tuple[str, str] | None:
    """The filename and content type to upload under, or None if Resemble takes no such file.

    Resemble checks the extension (and that the type matches it), so both come from what
    ffprobe found in the file, not from whatever the attachment happened to be called.
    """
    stated = PurePath(upload.filename).suffix.lower()
    candidates: list[str] = []
    for name in upload.format_name.lower().split(","):
        candidates.extend(_FORMAT_EXTENSIONS.get(name.strip(), ()))
    if not candidates:
        return None
    if stated in candidates:
        extension = stated
    elif upload.kind is not MediaKind.VIDEO and ".m4a" in candidates:
        extension = ".m4a"  # an MP4 container without pictures
    else:
        extension = candidates[0]
    content_type = CONTENT_TYPES[extension]
    stem = re.sub(r"[^\w.-]+", "_", PurePath(upload.filename).stem).strip("._")[:100]
    return f"{stem or 'media'}{extension}", content_type


# --- client ----------------------------------------------------------------------------


class ResembleClient:
    """The Resemble Detect API over the shared aiohttp session."""

    def __init__(
        self,
        http_session: aiohttp.ClientSession,
        *,
        api_key: SecretStr,
        base_url: str,
        retry: RetryPolicy,
        poll: PollPolicy,
        request_timeout_s: float,
        zero_retention: bool = True,
        intelligence_wait_s: float = INTELLIGENCE_WAIT_S,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._poll = poll
        self._clock = JobClock(poll)
        self._zero_retention = zero_retention
        self._intelligence_wait_s = intelligence_wait_s
        #: Jobs submitted in this process that asked for a transcript; a job resumed after a
        #: restart is reported without one rather than with one nobody asked for.
        self._want_transcript: set[str] = set()
        #: Set once Resemble refused intelligence for this key (HTTP 403 for the product):
        #: later scans do not ask for it (nor pay the refused round trip) until a restart.
        self._intelligence_refused = False
        self._http = ProviderHTTP(
            http_session,
            provider=PROVIDER,
            headers={
                "Authorization": f"Bearer {api_key.get_secret_value()}",
                "Accept": "application/json",
            },
            retry=retry,
            request_timeout_s=request_timeout_s,
            secrets=[api_key.get_secret_value()],
        )

    @property
    def provider(self) -> ProviderName:
        return PROVIDER

    def accepts(self, upload: Upload) -> bool:
        """Containers Resemble's direct upload takes, up to its 150 MB limit."""
        if upload_name(upload) is None:
            return False
        try:
            # One stat() of a local temp file: cheap enough for this synchronous check.
            return upload.path.stat().st_size <= MAX_UPLOAD_BYTES
        except OSError:
            return False

    async def submit(self, upload: Upload, options: SubmitOptions) -> Submission:
        """Upload the file; Resemble answers at once with the detect's uuid.

        No `Prefer: wait`: that holds the answer, and with it the only copy of the uuid,
        until the detect is done, for a time nobody documents. Held past the request
        timeout (or through a restart), the detect is created and billed but the bot cannot
        find it again, and the user's retry bills a second one. The asynchronous create
        "responds immediately with a job UUID" (docs, /detect/create), which the scan
        records before waiting; Resemble's own clients create this way and poll by uuid
        (resemble-mcp `action_server.py` `detect_deepfake`; the SDKs' `detect_and_get`).
        """
        filename, content_type = upload_name(upload) or (upload.filename, upload.content_type)
        fields = {
            "zero_retention_mode": "true" if self._zero_retention else "false",
            "frame_length": str(FRAME_LENGTH_S),
        }
        want_transcript = options.transcript and not self._intelligence_refused
        if want_transcript:
            fields["intelligence"] = "true"  # billed extra, so only when asked
        timing = JobTiming(time.monotonic(), upload.duration_s)
        file = FilePart("file", upload.path, filename, content_type, options.on_sent)
        try:
            envelope = await self._create(fields, file)
        except ProviderAuthError as exc:
            if exc.status != 403 or not want_transcript:
                raise
            # A 403 is also the answer for a product the plan lacks (reference §9: "the key
            # lacks access to a requested product"), given before any detect is created, so
            # asking again without it bills nothing twice. Refused again: the key is bad.
            del fields["intelligence"]
            envelope = await self._create(fields, file)
            want_transcript = False
            self._refuse_intelligence()
        item = self._item(envelope, what="upload", rejected=True)
        state = job_state(item)
        log.info("Resemble accepted %s as detect %s (%s)", filename, item.uuid, state)
        if state is JobState.COMPLETED and (
            not want_transcript or report_state(item.intelligence) is not ReportState.PENDING
        ):
            self._clock.finished_at_once(timing)
            verdict = normalize_item(item, item.uuid, want_transcript=want_transcript)
            return Submission(job_id=item.uuid, verdict=verdict)
        if want_transcript:
            self._want_transcript.add(item.uuid)
        # The answer saw the detect running: it has been since at least then.
        timing.running_at = time.monotonic() - timing.submitted_at
        self._clock.started(item.uuid, timing)
        return Submission(job_id=item.uuid)

    async def _create(self, fields: dict[str, str], file: FilePart) -> DetectEnvelope:
        return await self._http.request(
            "POST",
            f"{self._base}/detect",
            DetectEnvelope,
            what="upload",
            retry_safe=False,
            fields=fields,
            file=file,
            client_timeout=self._http.upload_timeout(),
        )

    def _refuse_intelligence(self) -> None:
        """Tell the operator once; every later scan simply goes without a transcript."""
        if self._intelligence_refused:
            return
        self._intelligence_refused = True
        log.warning(
            "Resemble answered HTTP 403 to an upload asking for intelligence and accepted the "
            "same upload without it: this API key's plan lacks intelligence. Scans continue "
            "without transcripts until Spoofwatch restarts; enable intelligence on the "
            "Resemble plan, or set SPOOFWATCH_RESEMBLE_INTELLIGENCE=false."
        )

    @property
    def finds_jobs(self) -> bool:
        # Resemble keeps no metadata of ours, and zero-retention mode even replaces the file
        # name: nothing in its list identifies which attachment a detect was for.
        return False

    async def find_job(self, meta: Mapping[str, str], *, submitted_after: datetime) -> str | None:
        """Always None: Resemble cannot be asked (see `finds_jobs`)."""
        return None

    async def wait(self, job_id: str) -> Verdict:
        """Poll the detect until it is final (`job_state`), then normalize it.

        A transcript that was asked for is waited for a little longer if the intelligence
        report is still being written (`_await_report`).
        """
        url = f"{self._base}/detect/{quote(job_id, safe='')}"
        deadline = time.monotonic() + self._poll.deadline_s
        try:
            async with asyncio.timeout(self._poll.deadline_s):
                item = await self._poll_until_done(url, job_id)
        except TimeoutError as exc:
            raise ProviderTimeout(
                PROVIDER,
                f"Resemble did not finish detect {job_id} within {self._poll.deadline_s:g} s; "
                "it may still finish later.",
            ) from exc
        want_transcript = job_id in self._want_transcript
        self._want_transcript.discard(job_id)

        if job_state(item) is JobState.FAILED:
            message = item.error_message if isinstance(item.error_message, str) else ""
            reason = first_line(self._http.redact(message))
            raise ProviderJobFailed(
                PROVIDER,
                f"Resemble could not analyse the file (detect {job_id}, failed): "
                f"{reason or 'no reason given'}",
            )
        if want_transcript:
            item = await self._await_report(url, job_id, item, deadline)
        verdict = normalize_item(item, job_id, want_transcript=want_transcript)
        log.info(
            "Resemble detect %s: %s (p=%s)", job_id, verdict.label, verdict.spoofed_probability
        )
        return verdict

    async def _poll_until_done(self, url: str, job_id: str) -> DetectItem:
        checks = self._clock.checks(job_id)
        while True:
            await checks.wait()
            item = await self._get(url)
            state = job_state(item)
            if state is not JobState.RUNNING:
                if state is JobState.COMPLETED:
                    checks.done()  # failures end early: they say nothing about speed
                return item
            checks.still_running()
            log.debug("Resemble detect %s: still running (%s)", job_id, item.status)

    async def _await_report(
        self, url: str, job_id: str, item: DetectItem, deadline: float
    ) -> DetectItem:
        """The item once its intelligence report is there, or as it is when the wait ends.

        Bounded by `intelligence_wait_s` and the scan's deadline: the verdict matters more
        than the transcript, which is then reported as not available.
        """
        limit = min(self._intelligence_wait_s, deadline - time.monotonic())
        interval = self._poll.initial_s
        try:
            async with asyncio.timeout(max(0.0, limit)):
                while report_state(item.intelligence) is ReportState.PENDING:
                    await asyncio.sleep(interval)
                    interval = min(interval * self._poll.factor, self._poll.max_interval_s)
                    item = await self._get(url)
        except TimeoutError:
            pass
        if transcript_of(item.intelligence) is None:
            log.info(
                "Resemble detect %s: no transcript available (intelligence %s)",
                job_id,
                report_state(item.intelligence),
            )
        return item

    async def _get(self, url: str) -> DetectItem:
        envelope = await self._http.request(
            "GET", url, DetectEnvelope, what="job status", retry_safe=True
        )
        return self._item(envelope, what="job status", rejected=False)

    def _item(self, envelope: DetectEnvelope, *, what: str, rejected: bool) -> DetectItem:
        """The item of a 2xx answer, which may still say `success: false` (the SDK's habit)."""
        if envelope.success is False:
            error = envelope.error if isinstance(envelope.error, str) else None
            said = self._http.redact(envelope.message or error or "no reason given")
            message = f"Resemble refused the {what}: {said}"
            if rejected:
                raise ProviderRejected(PROVIDER, message)
            raise ProviderProtocolError(PROVIDER, message)
        if envelope.item is None:
            raise ProviderProtocolError(PROVIDER, f"Resemble answered the {what} without an item.")
        return envelope.item
