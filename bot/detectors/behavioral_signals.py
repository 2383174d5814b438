"""Behavioral Signals API v5 deepfake detection: upload, poll the process, read its results.

Contract: the design notes' reference/behavioral-signals-api.md (§2 endpoints, §3 process
object and status codes, §4 result items). Results are per utterance and there is no file-level
verdict; `normalize_results` builds one as DESIGN.md "The normalized verdict" prescribes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, RootModel, SecretStr, ValidationError

from bot.detectors._base import PollPolicy, RetryPolicy, Submission, SubmitOptions, Upload
from bot.detectors._http import ProviderHTTP, describe, first_line
from bot.detectors._polling import JobClock, JobTiming
from bot.detectors._upload import FilePart
from bot.errors import (
    ProviderJobFailed,
    ProviderNotFound,
    ProviderOutOfCredits,
    ProviderProtocolError,
    ProviderTimeout,
)
from bot.verdict import Label, MediaKind, ProviderName, Segment, Verdict

log = logging.getLogger(__name__)

PROVIDER = ProviderName.BEHAVIORAL_SIGNALS

#: Formats the deepfake upload is documented to take (".wav/.mp3"); everything else is
#: transcoded to 16 kHz mono WAV by the scan service first.
ACCEPTED_FORMATS = frozenset({"wav", "mp3"})

STATUS_PENDING = 0
STATUS_PROCESSING = 1
STATUS_COMPLETE = 2
STATUS_INSUFFICIENT_CREDITS = -2
_RUNNING = frozenset({STATUS_PENDING, STATUS_PROCESSING})
#: Lost jobs are looked for among at most this many of the newest processes.
_LIST_PAGE_SIZE = 1000
_LIST_MAX_PAGES = 5


# --- wire models -----------------------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Process(_Wire):
    """A process object (returned by submit and by get-process)."""

    pid: int
    cid: int | str | None = None
    name: str | None = None
    status: int
    statusmsg: str | None = None
    #: Seconds; 0 until the service has read the audio.
    duration: float | None = None
    #: Formats vary between endpoints ("...18.261564618", "...37.900Z"); kept as text.
    datetime: str | None = None
    meta: str | None = None


class ProcessList(RootModel[tuple[Process, ...]]):
    """The list call's answer: a bare JSON array of process objects."""


class Prediction(_Wire):
    label: str | None = None
    #: A probability as text ("0.9997", "1e-04") or null; numbers tolerated.
    posterior: str | float | None = None


class ResultItem(_Wire):
    """One task's output for one utterance; all tasks of an utterance share `id`."""

    id: str
    start_time: str | float = Field(alias="startTime")
    end_time: str | float = Field(alias="endTime")
    task: str
    prediction: tuple[Prediction, ...] = ()
    final_label: str | None = Field(default=None, alias="finalLabel")
    level: str | None = None


class ProcessResult(_Wire):
    """The results object of a completed process."""

    pid: int | None = None
    cid: int | str | None = None
    code: int | None = None
    message: str | None = None
    results: tuple[ResultItem, ...]


# --- normalization ---------------------------------------------------------------------


def normalize_results(
    result: ProcessResult | Mapping[str, Any], job_id: str, *, duration_s: float | None = None
) -> Verdict:
    """Turn a results object into a `Verdict` (pure; `duration_s` is the process duration).

    Utterance label = the vendor's thresholded `finalLabel` (never recomputed); utterance
    probability = the `spoofed` posterior. The file is spoofed if any utterance is, bona fide
    if every deepfake item is, otherwise inconclusive.
    """
    if not isinstance(result, ProcessResult):
        try:
            result = ProcessResult.model_validate(result)
        except ValidationError as exc:
            raise _protocol(f"results in an unexpected shape: {describe(exc)}") from exc

    timed = sorted(
        ((_seconds(item.start_time), _seconds(item.end_time), item) for item in result.results),
        key=lambda entry: (entry[0], entry[1]),
    )

    # One deepfake item per utterance id; a repeated id keeps its first item.
    deepfake: dict[str, tuple[float, float, ResultItem]] = {}
    transcript_parts: list[str] = []
    language_time: dict[str, float] = defaultdict(float)
    speakers: set[str] = set()
    saw_diarization = False
    for start, end, item in timed:
        task = item.task.strip().lower()
        if task == "deepfake":
            deepfake.setdefault(item.id, (start, end, item))
        elif task == "asr":
            text = item.final_label
            if text is None and item.prediction:
                text = item.prediction[0].label
            if text and text.strip():
                transcript_parts.append(text.strip())
        elif task == "language":
            if item.final_label:
                language_time[item.final_label.strip()] += max(0.0, end - start)
        elif task == "diarization":
            saw_diarization = True
            if item.final_label and item.final_label.strip():
                speakers.add(item.final_label.strip())
        # Any other task (features, generator detection, future ones) is not ours to judge.

    segments: list[Segment] = []
    spoofed: list[tuple[float | None, str]] = []
    bonafide: list[tuple[float | None, str]] = []
    others: list[str] = []
    for start, end, item in deepfake.values():
        probability = _spoofed_posterior(item)
        raw = (item.final_label or "").strip()
        label = _LABELS.get(raw.lower(), Label.INCONCLUSIVE)
        segments.append(Segment(start=start, end=end, label=label, spoofed_probability=probability))
        if label is Label.SPOOFED:
            spoofed.append((probability, raw))
        elif label is Label.BONAFIDE:
            bonafide.append((probability, raw))
        else:
            others.append(raw)

    probabilities = [p for p in (seg.spoofed_probability for seg in segments) if p is not None]
    provider_label: str | None
    if spoofed:
        file_label, provider_label = Label.SPOOFED, _deciding(spoofed)
    elif bonafide and not others:
        file_label, provider_label = Label.BONAFIDE, _deciding(bonafide)
    else:
        file_label = Label.INCONCLUSIVE
        provider_label = next((raw for raw in others if raw), None)

    ends = [end for _, end, _ in timed]
    durations = [d for d in (max(ends, default=None), duration_s) if d is not None and d > 0]
    transcript = " ".join(transcript_parts).strip()
    return Verdict(
        label=file_label,
        spoofed_probability=max(probabilities, default=None),
        transcript=transcript or None,
        # Most speech time wins; on a tie the language heard first (dicts keep time order).
        language=max(language_time, key=language_time.__getitem__) if language_time else None,
        speakers=len(speakers) if saw_diarization else None,
        segments=tuple(sorted(segments, key=lambda seg: (seg.start, seg.end))),
        provider=PROVIDER,
        provider_job_id=job_id,
        # Utterances stop at the last word; the process knows the whole file's length.
        duration_s=max(durations, default=None),
        provider_label=provider_label,
    )


_LABELS = {"spoofed": Label.SPOOFED, "bonafide": Label.BONAFIDE}


def _deciding(utterances: list[tuple[float | None, str]]) -> str:
    """The raw finalLabel of the most confident utterance among those that decided."""
    return max(utterances, key=lambda u: -1.0 if u[0] is None else u[0])[1]


def _spoofed_posterior(item: ResultItem) -> float | None:
    for prediction in item.prediction:
        if (prediction.label or "").strip().lower() == "spoofed":
            if prediction.posterior is None:
                return None
            value = _number(prediction.posterior, "posterior")
            if not 0.0 <= value <= 1.0:
                raise _protocol(f"a posterior outside 0..1 ({value!r})")
            return value
    return None


def _seconds(value: str | float) -> float:
    seconds = _number(value, "time")
    if seconds < 0:
        raise _protocol(f"a negative time ({seconds!r})")
    return seconds


def _number(value: str | float, what: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise _protocol(f"a {what} that is not a number ({str(value)[:40]!r})") from None
    if not math.isfinite(number):
        raise _protocol(f"a {what} that is not finite ({str(value)[:40]!r})")
    return number


def _meta_matches(echoed: str | None, wanted: Mapping[str, str]) -> bool:
    """Whether a process's `meta` (JSON text, "" or null) holds every wanted item."""
    if not echoed:
        return False
    try:
        parsed = json.loads(echoed)
    except ValueError:
        return False
    return isinstance(parsed, dict) and all(parsed.get(k) == v for k, v in wanted.items())


def _protocol(detail: str) -> ProviderProtocolError:
    return ProviderProtocolError(PROVIDER, f"Behavioral Signals sent {detail}.")


# --- client ----------------------------------------------------------------------------


class BehavioralSignalsClient:
    """The Behavioral Signals deepfake API over the shared aiohttp session."""

    def __init__(
        self,
        http_session: aiohttp.ClientSession,
        *,
        cid: str,
        api_key: SecretStr,
        base_url: str,
        retry: RetryPolicy,
        poll: PollPolicy,
        request_timeout_s: float,
    ) -> None:
        self._base = f"{base_url.rstrip('/')}/detection/clients/{cid}/processes"
        self._poll = poll
        self._clock = JobClock(poll)
        self._http = ProviderHTTP(
            http_session,
            provider=PROVIDER,
            headers={"X-Auth-Token": api_key.get_secret_value(), "accept": "application/json"},
            retry=retry,
            request_timeout_s=request_timeout_s,
            secrets=[api_key.get_secret_value()],
        )

    @property
    def provider(self) -> ProviderName:
        return PROVIDER

    def accepts(self, upload: Upload) -> bool:
        """Only WAV and MP3 audio, the formats the upload is documented to take."""
        if upload.kind is MediaKind.VIDEO:
            return False
        formats = {name.strip().lower() for name in upload.format_name.split(",")}
        return bool(formats & ACCEPTED_FORMATS)

    async def submit(self, upload: Upload, options: SubmitOptions) -> Submission:
        """Upload the audio as a new process; never retried once it may have arrived."""
        fields = {
            "name": upload.filename,
            "embeddings": "false",
            "enable_generator_detection": "false",
        }
        if options.meta:
            # Echoed back in `meta`, so a lost answer can be reconciled from the list call.
            fields["meta"] = json.dumps(options.meta, separators=(",", ":"))
        process = await self._http.request(
            "POST",
            f"{self._base}/audio",
            Process,
            what="upload",
            retry_safe=False,
            fields=fields,
            file=FilePart(
                "file", upload.path, upload.filename, upload.content_type, options.on_sent
            ),
            client_timeout=self._http.upload_timeout(),
        )
        log.info(
            "Behavioral Signals accepted %s as process %d (status %d)",
            upload.filename,
            process.pid,
            process.status,
        )
        # Processing starts once the whole file has arrived, which is when this answer comes.
        self._clock.started(str(process.pid), JobTiming(time.monotonic(), upload.duration_s))
        return Submission(job_id=str(process.pid))

    @property
    def finds_jobs(self) -> bool:
        return True

    async def find_job(self, meta: Mapping[str, str], *, submitted_after: datetime) -> str | None:
        """The newest process whose echoed `meta` holds all of `meta` (the SDK's advice:
        "check list_processes() before re-uploading"). Looks at processes created from the
        day before `submitted_after` (the service's dates may be in another time zone),
        newest first, at most 5000 of them."""
        since = (submitted_after - timedelta(days=1)).strftime("%Y-%m-%d")
        for page in range(_LIST_MAX_PAGES):
            query = urlencode(
                {"page": page, "pageSize": _LIST_PAGE_SIZE, "sort": "desc", "startDate": since}
            )
            listed = await self._http.request(
                "GET", f"{self._base}?{query}", ProcessList, what="process list", retry_safe=True
            )
            # Newest first by id as well, whatever order the service really used.
            for process in sorted(listed.root, key=lambda p: p.pid, reverse=True):
                if _meta_matches(process.meta, meta):
                    return str(process.pid)
            if len(listed.root) < _LIST_PAGE_SIZE:
                break
        return None

    async def wait(self, job_id: str) -> Verdict:
        """Poll the process until it is terminal, then fetch and normalize its results."""
        if not job_id.isdigit():
            raise ProviderNotFound(PROVIDER, f"{job_id!r} is not a Behavioral Signals process id.")
        url = f"{self._base}/{job_id}"
        try:
            async with asyncio.timeout(self._poll.deadline_s):
                process = await self._poll_until_done(url, job_id)
        except TimeoutError as exc:
            raise ProviderTimeout(
                PROVIDER,
                f"Behavioral Signals did not finish process {job_id} within "
                f"{self._poll.deadline_s:g} s; it may still finish later.",
            ) from exc

        if process.status == STATUS_INSUFFICIENT_CREDITS:
            raise ProviderOutOfCredits(
                PROVIDER,
                f"Behavioral Signals stopped process {job_id} for insufficient credits: "
                f"{first_line(self._http.redact(process.statusmsg or '')) or 'no reason given'}",
            )
        if process.status != STATUS_COMPLETE:
            raise ProviderJobFailed(
                PROVIDER,
                f"Behavioral Signals could not process the file (process {job_id}, status "
                f"{process.status}): "
                f"{first_line(self._http.redact(process.statusmsg or '')) or 'no reason given'}",
            )
        result = await self._http.request(
            "GET", f"{url}/results", ProcessResult, what="results", retry_safe=True
        )
        verdict = normalize_results(result, job_id, duration_s=process.duration)
        log.info(
            "Behavioral Signals process %s: %s (p=%s)",
            job_id,
            verdict.label,
            verdict.spoofed_probability,
        )
        return verdict

    async def _poll_until_done(self, url: str, job_id: str) -> Process:
        checks = self._clock.checks(job_id)
        while True:
            await checks.wait()
            process = await self._http.request(
                "GET", url, Process, what="job status", retry_safe=True
            )
            if process.status not in _RUNNING:
                if process.status == STATUS_COMPLETE:
                    checks.done()  # failures end early: they say nothing about speed
                return process
            checks.still_running()
            log.debug("Behavioral Signals process %s: status %d", job_id, process.status)
