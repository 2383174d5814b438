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
_FAILED = frozenset({"failed", "error", "cancelled", "canceled"})

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


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


Number = str | float


class Metrics(_Wire):
    """Audio (or a video's audio track) results; `{}` while processing."""

    label: str | None = None
    #: One fake-probability per `frame_length` window; a trailing partial window is null.
    score: tuple[Number | None, ...] | None = None
    aggregated_score: Number | None = None
    consistency: Number | None = None


class VideoMetrics(_Wire):
    label: str | None = None
    score: Number | None = None
    certainty: Number | None = None


class Intelligence(_Wire):
    status: str | None = None
    #: Prose, or a structured object with `transcription` among many fields.
    description: str | dict[str, Any] | None = None


class DetectItem(_Wire):
    """A detect object, as create and get return it."""

    uuid: str
    status: str | None = None
    media_type: str | None = None
    metrics: Metrics | None = None
    video_metrics: VideoMetrics | None = None
    #: An object, or a list of them when asked with `experts=true`.
    intelligence: Intelligence | tuple[Intelligence, ...] | None = None
    duration: Number | None = None
    error_message: str | None = None


class DetectEnvelope(_Wire):
    success: bool | None = None
    item: DetectItem | None = None
    message: str | None = None
    #: Usually text; an object is tolerated (and then not quoted).
    error: Any = None


# --- normalization ---------------------------------------------------------------------


def normalize_item(
    item: DetectItem | Mapping[str, Any],
    job_id: str,
    *,
    frame_length: float = FRAME_LENGTH_S,
    want_transcript: bool,
) -> Verdict:
    """Turn a completed detect item into a `Verdict` (pure).

    For a video the higher of the audio score and the frames' score decides the label and
    the probability, as Resemble's own UI does. The transcript, LLM-written and untrusted,
    is taken only when it was asked for.
    """
    if not isinstance(item, DetectItem):
        try:
            item = DetectItem.model_validate(item)
        except ValidationError as exc:
            raise _protocol(f"a detect item in an unexpected shape: {describe(exc)}") from exc

    metrics = item.metrics or Metrics()
    duration = _number(item.duration, "duration")
    probability = _probability(metrics.aggregated_score, "aggregated_score")
    provider_label = metrics.label
    label = _label(metrics.label)

    if item.video_metrics is not None:
        video_score = _probability(item.video_metrics.score, "video score")
        if video_score is not None and (probability is None or video_score > probability):
            probability, provider_label = video_score, item.video_metrics.label
            label = _label(item.video_metrics.label)

    segments = []
    for index, raw in enumerate(metrics.score or ()):
        score = _probability(raw, "score")
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
        label=label,
        spoofed_probability=probability,
        transcript=_transcript(item.intelligence) if want_transcript else None,
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


def _transcript(intelligence: Intelligence | tuple[Intelligence, ...] | None) -> str | None:
    reports = intelligence if isinstance(intelligence, tuple) else (intelligence,)
    for report in reports:
        if report is None:
            continue
        description = report.description
        if isinstance(description, str) and description.lstrip().startswith("{"):
            # A structured report may arrive serialized; read it as one if it parses.
            try:
                parsed = json.loads(description)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                description = parsed
        if isinstance(description, dict):
            text = description.get("transcription")
            text = text if isinstance(text, str) else None
        else:
            text = description
        if text and text.strip():
            return text.strip()
    return None


def _probability(value: Number | None, what: str) -> float | None:
    number = _number(value, what)
    if number is not None and not 0.0 <= number <= 1.0:
        raise _protocol(f"a {what} outside 0..1 ({number!r})")
    return number


def _number(value: Number | None, what: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
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
    ) -> None:
        self._base = base_url.rstrip("/")
        self._poll = poll
        self._clock = JobClock(poll)
        self._zero_retention = zero_retention
        #: Jobs submitted in this process that asked for a transcript; a job resumed after a
        #: restart is reported without one rather than with one nobody asked for.
        self._want_transcript: set[str] = set()
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
        """Upload with `Prefer: wait`; the verdict comes back at once if Resemble finished."""
        filename, content_type = upload_name(upload) or (upload.filename, upload.content_type)
        fields = {
            "zero_retention_mode": "true" if self._zero_retention else "false",
            "frame_length": str(FRAME_LENGTH_S),
        }
        if options.transcript:
            fields["intelligence"] = "true"  # billed extra, so only when asked
        timing = JobTiming(time.monotonic(), upload.duration_s)
        envelope = await self._http.request(
            "POST",
            f"{self._base}/detect",
            DetectEnvelope,
            what="upload",
            retry_safe=False,
            fields=fields,
            file=FilePart("file", upload.path, filename, content_type, options.on_sent),
            headers={"Prefer": "wait"},
            client_timeout=self._http.upload_timeout(),
        )
        item = self._item(envelope, what="upload", rejected=True)
        status = (item.status or "processing").lower()
        log.info("Resemble accepted %s as detect %s (%s)", filename, item.uuid, status)
        if status == "completed":
            self._clock.finished_at_once(timing)
            verdict = normalize_item(item, item.uuid, want_transcript=options.transcript)
            return Submission(job_id=item.uuid, verdict=verdict)
        if options.transcript:
            self._want_transcript.add(item.uuid)
        # Prefer: wait held the answer until now: the detect ran all that time.
        timing.running_at = time.monotonic() - timing.submitted_at
        self._clock.started(item.uuid, timing)
        return Submission(job_id=item.uuid)

    @property
    def finds_jobs(self) -> bool:
        # Resemble keeps no metadata of ours, and zero-retention mode even replaces the file
        # name: nothing in its list identifies which attachment a detect was for.
        return False

    async def find_job(self, meta: Mapping[str, str], *, submitted_after: datetime) -> str | None:
        """Always None: Resemble cannot be asked (see `finds_jobs`)."""
        return None

    async def wait(self, job_id: str) -> Verdict:
        """Poll the detect until it leaves `processing`, then normalize it."""
        url = f"{self._base}/detect/{quote(job_id, safe='')}"
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

        status = (item.status or "").lower()
        if status in _FAILED:
            reason = first_line(self._http.redact(item.error_message or ""))
            raise ProviderJobFailed(
                PROVIDER,
                f"Resemble could not analyse the file (detect {job_id}, {status}): "
                f"{reason or 'no reason given'}",
            )
        verdict = normalize_item(item, job_id, want_transcript=want_transcript)
        log.info(
            "Resemble detect %s: %s (p=%s)", job_id, verdict.label, verdict.spoofed_probability
        )
        return verdict

    async def _poll_until_done(self, url: str, job_id: str) -> DetectItem:
        checks = self._clock.checks(job_id)
        while True:
            await checks.wait()
            envelope = await self._http.request(
                "GET", url, DetectEnvelope, what="job status", retry_safe=True
            )
            item = self._item(envelope, what="job status", rejected=False)
            # The create example omits `status`; absent means still running.
            status = (item.status or "processing").lower()
            if status != "processing":
                if status == "completed":
                    checks.done()  # failures end early: they say nothing about speed
                return item
            checks.still_running()
            log.debug("Resemble detect %s: still processing", job_id)

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
