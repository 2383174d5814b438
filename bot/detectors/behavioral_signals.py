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
import uuid
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    SecretStr,
    ValidationError,
    field_validator,
)

from bot.detectors._base import (
    PollPolicy,
    RetryPolicy,
    Submission,
    SubmitOptions,
    Upload,
    VendorAck,
)
from bot.detectors._bs_video import (
    VIDEO_FORMATS,
    normalize_visual,
    read_video_result,
    split_job_id,
    video_job_id,
)
from bot.detectors._http import describe, first_line
from bot.detectors._polling import JobState, JobTiming, PollingClient
from bot.detectors._upload import FilePart
from bot.errors import (
    ProductRefused,
    ProviderAuthError,
    ProviderError,
    ProviderJobFailed,
    ProviderNotFound,
    ProviderOutOfCredits,
    ProviderProtocolError,
    ProviderTimeout,
    ProviderUnavailable,
)
from bot.verdict import (
    Label,
    MediaKind,
    ProviderName,
    Segment,
    Verdict,
    VisualVerdict,
    generator_name,
)

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
#: How long an upload's answer may take once the file is sent: the SDK's upload read timeout
#: (`DEFAULT_UPLOAD_TIMEOUT = (10, 300)` in behavioralsignals 0.7.1 `configuration.py`).
UPLOAD_READ_TIMEOUT_S = 300.0
#: Looks at the process list after an upload's answer was lost.
_LOST_ANSWER_LOOKUPS = 3


# --- wire models -----------------------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Process(_Wire):
    """A process object (returned by submit, by get-process and in the list).

    Only `pid` is required, as in the SDK's `ProcessItem`; a `status` of null (the SDK's model
    allows it) reads as "not known yet".
    """

    pid: int
    cid: int | str | None = None
    name: str | None = None
    status: int | None = None
    statusmsg: str | None = None
    #: Seconds; 0 until the service has read the audio.
    duration: float | None = None
    #: Formats vary between endpoints ("...18.261564618", "...37.900Z"); kept as text.
    datetime: str | None = None
    meta: str | None = None


def _readable(model: type[BaseModel], item: Any) -> bool:
    try:
        model.model_validate(item)
    except ValidationError:
        return False
    return True


class _AnyBody(RootModel[Any]):
    """An answer whose body is not documented (the credential check)."""


class ProcessList(RootModel[tuple[Process, ...]]):
    """The list call's answer: a bare JSON array of process objects.

    A row that is not a process (no usable `pid`) is skipped, so one odd row never breaks
    the look-up of a lost job among the others.
    """

    @field_validator("root", mode="before")
    @classmethod
    def _skip_unreadable_rows(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [row for row in value if _readable(Process, row)]


class Prediction(_Wire):
    label: str | None = None
    #: A probability as text ("0.9997", "1e-04") or null; numbers tolerated.
    posterior: str | float | None = None


class ResultItem(_Wire):
    """One task's output for one utterance; all tasks of an utterance share `id`.

    Every field may be missing or null, as in the SDK's `ResultItem` (its tests send
    `startTime: ""` and `prediction: null`). `unreadable` marks an item that could not be
    read at all: it keeps its task, so an unreadable deepfake item can stop a bona fide
    verdict instead of silently vanishing.
    """

    id: str | int | None = None
    start_time: str | float | None = Field(default=None, alias="startTime")
    end_time: str | float | None = Field(default=None, alias="endTime")
    task: str | None = None
    prediction: tuple[Prediction, ...] | None = None
    final_label: str | None = Field(default=None, alias="finalLabel")
    level: str | None = None
    unreadable: bool = False
    #: Not in the documented item shape: one plausible place for generator detection's
    #: answer (a name, or `{label, posterior|confidence}`) on the deepfake item itself.
    generator: Any = None


def _neutralised(item: Any) -> Any:
    """An item as it came when it reads, else a placeholder that keeps only its task."""
    if _readable(ResultItem, item):
        return item
    task = item.get("task") if isinstance(item, dict) else None
    return {"task": task if isinstance(task, str) else None, "unreadable": True}


class ProcessResult(_Wire):
    """The results object of a completed process; `results` may be null or missing (a file
    with no speech), as the SDK's `ResultResponse` allows."""

    pid: int | None = None
    cid: int | str | None = None
    code: int | None = None
    message: str | None = None
    results: tuple[ResultItem, ...] | None = None

    @field_validator("results", mode="before")
    @classmethod
    def _neutralise_unreadable_items(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [_neutralised(item) for item in value]


# --- normalization ---------------------------------------------------------------------


def normalize_results(
    result: ProcessResult | Mapping[str, Any], job_id: str, *, duration_s: float | None = None
) -> Verdict:
    """Turn a results object into a `Verdict` (pure; `duration_s` is the process duration).

    Utterance label = the vendor's thresholded `finalLabel` (never recomputed); utterance
    probability = the `spoofed` posterior. The file is spoofed if any utterance is, bona fide
    if every deepfake item is, otherwise inconclusive: also when `results` is null or missing
    (nothing to judge) or a deepfake item could not be read. Times are only for the timeline:
    an utterance without usable ones still counts.
    """
    if not isinstance(result, ProcessResult):
        try:
            result = ProcessResult.model_validate(result)
        except ValidationError as exc:
            raise _protocol(f"results in an unexpected shape: {describe(exc)}") from exc

    items = result.results or ()  # null or missing: a finished job with nothing to judge
    timed = sorted(
        (
            (_seconds(item.start_time), _seconds(item.end_time), index, item)
            for index, item in enumerate(items)
        ),
        # Untimed items last, in the order they came.
        key=lambda entry: (_order(entry[0]), _order(entry[1]), entry[2]),
    )

    # One deepfake item per utterance id (a repeated id keeps its first item); an item
    # without an id is an utterance of its own.
    deepfake: dict[str | int, tuple[float | None, float | None, ResultItem]] = {}
    transcript_parts: list[str] = []
    language_time: dict[str, float] = defaultdict(float)
    speakers: set[str] = set()
    saw_diarization = False
    generators: list[tuple[str | None, float | None]] = []
    for start, end, index, item in timed:
        task = (item.task or "").strip().lower()
        predictions = item.prediction or ()
        if task == "deepfake":
            key: str | int = f"#{index}" if item.id is None else item.id
            deepfake.setdefault(key, (start, end, item))
        elif task == "asr":
            text = item.final_label
            if text is None and predictions:
                text = predictions[0].label
            if text and text.strip():
                transcript_parts.append(text.strip())
        elif task == "language":
            if item.final_label and start is not None and end is not None:
                language_time[item.final_label.strip()] += max(0.0, end - start)
        elif task == "diarization":
            saw_diarization = True
            if item.final_label and item.final_label.strip():
                speakers.add(item.final_label.strip())
        elif "generator" in task:
            generators.append(_generator_prediction(item))
        # Any other task (features, future ones) is not ours to judge.

    segments: list[Segment] = []
    probabilities: list[float] = []
    spoofed: list[tuple[float | None, str]] = []
    bonafide: list[tuple[float | None, str]] = []
    others: list[str] = []
    for start, end, item in deepfake.values():
        probability = None if item.unreadable else _spoofed_posterior(item)
        raw = (item.final_label or "").strip()
        # An unreadable deepfake item says nothing, so it can only make the file inconclusive.
        label = Label.INCONCLUSIVE if item.unreadable else _LABELS.get(raw.lower())
        label = label or Label.INCONCLUSIVE
        if probability is not None:
            probabilities.append(probability)
        if start is not None and end is not None:
            # An utterance with no usable times still counts; it just has no place on the
            # timeline.
            segments.append(
                Segment(start=start, end=end, label=label, spoofed_probability=probability)
            )
        if label is Label.SPOOFED:
            spoofed.append((probability, raw))
            if item.generator is not None:
                generators.append(_generator_field(item.generator))
        elif label is Label.BONAFIDE:
            bonafide.append((probability, raw))
        else:
            others.append(raw)

    provider_label: str | None
    if spoofed:
        file_label, provider_label = Label.SPOOFED, _deciding(spoofed)
    elif bonafide and not others:
        file_label, provider_label = Label.BONAFIDE, _deciding(bonafide)
    else:
        file_label = Label.INCONCLUSIVE
        provider_label = next((raw for raw in others if raw), None)

    # Generator detection names the model of spoofed utterances only (the vendor's
    # generator-detection page); the most confident named one speaks for the file.
    named = [(name, conf) for name, conf in generators if name is not None]
    generator, generator_confidence = (
        max(named, key=lambda g: -1.0 if g[1] is None else g[1])
        if spoofed and named
        else (None, None)
    )
    ends = [end for _, end, _, _ in timed if end is not None]
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
        generator=generator,
        generator_confidence=generator_confidence,
    )


def combine_visual(audio: Verdict, visual: VisualVerdict | None) -> Verdict:
    """The file's verdict from its sound's and its pictures': spoofed if either is (a face
    swap over a real voice is a deepfake), bona fide only if both are, else inconclusive;
    the higher probability. The pictures' own verdict stays on `visual`."""
    if visual is None:
        return audio
    labels = {audio.label, visual.label}
    if Label.SPOOFED in labels:
        label = Label.SPOOFED
    elif labels == {Label.BONAFIDE}:
        label = Label.BONAFIDE
    else:
        label = Label.INCONCLUSIVE
    known = [p for p in (audio.spoofed_probability, visual.spoofed_probability) if p is not None]
    provider_label = audio.provider_label
    if visual.label is Label.SPOOFED and audio.label is not Label.SPOOFED:
        provider_label = visual.provider_label
    return audio.model_copy(
        update={
            "label": label,
            "spoofed_probability": max(known, default=None),
            "provider_label": provider_label,
            "visual": visual,
        }
    )


def _generator_prediction(item: ResultItem) -> tuple[str | None, float | None]:
    """(name, confidence) from a generator-detection result item, or (None, None).

    The vendor names the models it predicts (`elevenlabs`, `playht`, `speechify`,
    `xtts-v2`, `others`) "with a confidence score", but not the item's shape (reference
    §4.3: task name and fields unconfirmed). Read as every other task is: `finalLabel` is
    the decision, the confidence is that label's posterior; without a `finalLabel`, the
    prediction with the highest posterior. An unreadable item is ignored.
    """
    if item.unreadable:
        return None, None
    scored = [(p.label, _lenient_probability(p.posterior)) for p in item.prediction or ()]
    if item.final_label:
        chosen = item.final_label.strip().lower()
        confidence = next(
            (c for label, c in scored if (label or "").strip().lower() == chosen), None
        )
        return generator_name(item.final_label), confidence
    scored = [(label, c) for label, c in scored if label]
    if not scored:
        return None, None
    label, confidence = max(scored, key=lambda lc: -1.0 if lc[1] is None else lc[1])
    return generator_name(label), confidence


def _generator_field(value: Any) -> tuple[str | None, float | None]:
    """(name, confidence) from a `generator` field on a deepfake item, whatever it holds:
    a name, or an object with `label`/`name` and `posterior`/`confidence`/`score`."""
    if isinstance(value, str):
        return generator_name(value), None
    if not isinstance(value, dict):
        return None, None
    name = generator_name(value.get("label", value.get("name")))
    raw = next((value[k] for k in ("posterior", "confidence", "score") if k in value), None)
    return name, _lenient_probability(raw)


def _lenient_probability(value: Any) -> float | None:
    """A 0..1 number from text or a number, else None (never an error: extra information)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    if 1.0 < number <= 100.0:  # a percentage
        number /= 100.0
    return number if 0.0 <= number <= 1.0 else None


_LABELS = {"spoofed": Label.SPOOFED, "bonafide": Label.BONAFIDE}


def _deciding(utterances: list[tuple[float | None, str]]) -> str:
    """The raw finalLabel of the most confident utterance among those that decided."""
    return max(utterances, key=lambda u: -1.0 if u[0] is None else u[0])[1]


def _spoofed_posterior(item: ResultItem) -> float | None:
    for prediction in item.prediction or ():
        if (prediction.label or "").strip().lower() == "spoofed":
            if prediction.posterior is None or prediction.posterior == "":
                return None
            value = _number(prediction.posterior, "posterior")
            if not 0.0 <= value <= 1.0:
                raise _protocol(f"a posterior outside 0..1 ({value!r})")
            return value
    return None


def _seconds(value: str | float | None) -> float | None:
    """An item's time in seconds, or None when it is missing or unusable.

    The SDK's models allow "" (its tests send it); a time is only a place on the timeline,
    so one that is not a non-negative finite number is left out rather than costing the
    verdict.
    """
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _order(seconds: float | None) -> float:
    return math.inf if seconds is None else seconds


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


class BehavioralSignalsClient(PollingClient):
    """The Behavioral Signals deepfake API over the shared aiohttp session."""

    job_noun = "process"

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
        upload_read_timeout_s: float = UPLOAD_READ_TIMEOUT_S,
    ) -> None:
        super().__init__(
            http_session,
            provider=PROVIDER,
            api_key=api_key,
            headers={"X-Auth-Token": api_key.get_secret_value(), "accept": "application/json"},
            retry=retry,
            poll=poll,
            request_timeout_s=request_timeout_s,
        )
        self._base = f"{base_url.rstrip('/')}/detection/clients/{cid}/processes"
        self._auth_url = f"{base_url.rstrip('/')}/auth"
        self._cid = cid
        #: Set once the service refused the video endpoint to this key (HTTP 403/404 for
        #: the product): later videos go audio-only until a restart.
        self._video_refused = False
        self._upload_read_timeout_s = upload_read_timeout_s

    @property
    def provider(self) -> ProviderName:
        return PROVIDER

    def accepts(self, upload: Upload, options: SubmitOptions | None = None) -> bool:
        """WAV and MP3 audio, the formats the audio upload is documented to take; and an MP4
        video as it is when `options.visual` asks for its faces to be judged too."""
        formats = {name.strip().lower() for name in upload.format_name.split(",")}
        if upload.kind is MediaKind.VIDEO:
            return self._as_video(upload, options) and bool(formats & VIDEO_FORMATS)
        return bool(formats & ACCEPTED_FORMATS)

    def _as_video(self, upload: Upload, options: SubmitOptions | None) -> bool:
        """Whether this upload goes to the video endpoint (faces and voice)."""
        return (
            upload.kind is MediaKind.VIDEO
            and options is not None
            and options.visual
            and not self._video_refused
        )

    async def submit(self, upload: Upload, options: SubmitOptions) -> Submission:
        """Upload the audio as a new process; never sent twice.

        When the answer is lost after the whole file went out (no answer in time, the
        connection dropped), the service may still have created the process (the SDK's
        README says so): it is looked up by its `meta` before anything else happens, so the
        billed process is kept rather than lost and a re-scan does not bill a second one.
        """
        fields = {
            "name": upload.filename,
            "embeddings": "false",
            # Experimental at the vendor, and no extra charge is documented (reference §2.1).
            "enable_generator_detection": "true" if options.generator else "false",
        }
        # Echoed back in `meta`, so a lost answer can be reconciled from the list call: the
        # caller's ids (found again after a restart) and a key of this one upload (found
        # again after a timeout, and never confused with an earlier scan of the same file).
        attempt = {"upload": uuid.uuid4().hex}
        fields["meta"] = json.dumps({**(options.meta or {}), **attempt}, separators=(",", ":"))
        sent = False

        def on_sent() -> None:
            nonlocal sent
            sent = True
            if options.on_sent is not None:
                options.on_sent()

        asked_at = datetime.now(UTC)
        # Videos whose faces are to be judged go to the (experimental) video endpoint, with
        # the same form fields (reference §2: "multipart, same fields as audio").
        video = upload.kind is MediaKind.VIDEO and self.accepts(upload, options)
        try:
            process = await self._http.request(
                "POST",
                f"{self._base}/video" if video else f"{self._base}/audio",
                Process,
                what="video upload" if video else "upload",
                retry_safe=False,
                fields=fields,
                file=FilePart("file", upload.path, upload.filename, upload.content_type, on_sent),
                client_timeout=self._upload_timeout(),
            )
        except (ProviderAuthError, ProviderNotFound) as exc:
            if video and exc.status in (403, 404):
                # The video product is not on this key's plan (or not offered): answered
                # before any process exists, so nothing was billed. Said once to the
                # operator; the scan service sends this video's sound instead.
                self._refuse_video(exc)
                raise ProductRefused(PROVIDER, "video", str(exc), status=exc.status) from exc
            raise
        except (ProviderTimeout, ProviderUnavailable) as exc:
            # No answer came, or a gateway's 5xx (502/504) stood in for it; a 503 says the
            # request was refused before anything was made. Only a file that went out whole
            # can have become a process.
            answered = exc.status is not None and (exc.status < 500 or exc.status == 503)
            if answered or not sent:
                raise
            job_id = await self._find_after_lost_answer(attempt, asked_at, exc)
            self._clock.started(job_id, JobTiming(time.monotonic(), upload.duration_s))
            return Submission(job_id=job_id)
        log.info(
            "Behavioral Signals accepted %s as process %d (status %s)",
            upload.filename,
            process.pid,
            process.status,
        )
        # Processing starts once the whole file has arrived, which is when this answer comes.
        job_id = video_job_id(process.pid) if video else str(process.pid)
        self._clock.started(job_id, JobTiming(time.monotonic(), upload.duration_s))
        return Submission(job_id=job_id)

    def _refuse_video(self, exc: ProviderError) -> None:
        if self._video_refused:
            return
        self._video_refused = True
        log.warning(
            "Behavioral Signals refused a video upload (%s): this key's plan seems to lack "
            "video deepfake detection. Videos are judged on their sound only until "
            "Spoofwatch restarts; turn faces off (/spoofwatch settings faces) to stop trying.",
            exc,
        )

    def _upload_timeout(self) -> aiohttp.ClientTimeout:
        """The SDK's upload timeouts: the answer to an upload may take minutes to come."""
        return aiohttp.ClientTimeout(
            # A backstop only: an upload legitimately takes as long as the uplink needs.
            total=max(self._http.request_timeout_s * 10, self._upload_read_timeout_s * 2),
            sock_connect=self._http.request_timeout_s,
            sock_read=self._upload_read_timeout_s,
        )

    async def _find_after_lost_answer(
        self, meta: Mapping[str, str], asked_at: datetime, lost: ProviderError
    ) -> str:
        """The process an upload with a lost answer created, or `lost` re-raised if none.

        Looks a few times, a poll interval apart, in case the process is listed a moment
        after it was made.
        """
        log.warning(
            "Behavioral Signals did not answer an upload that was sent whole (%s); "
            "looking for the process it may have created",
            lost,
        )
        for attempt in range(_LOST_ANSWER_LOOKUPS):
            if attempt:
                await asyncio.sleep(self._poll.max_interval_s)
            try:
                job_id = await self.find_job(meta, submitted_after=asked_at)
            except ProviderError as exc:
                log.error(
                    "Behavioral Signals: could not look for the process of an unanswered "
                    "upload (%s); it may exist (meta %s), so it is not sent again",
                    exc,
                    json.dumps(dict(meta), separators=(",", ":")),
                )
                raise lost from exc
            if job_id is not None:
                log.warning(
                    "Behavioral Signals: the unanswered upload created process %s; "
                    "following it instead of sending the file again",
                    job_id,
                )
                return job_id
        log.info("Behavioral Signals: the unanswered upload created no process")
        raise lost

    async def check_credentials(self) -> None:
        """`GET /auth` as the SDK does when it starts: cheap, and refused for a bad key/cid.

        Raises ProviderAuthError for a refused key or project id, other ProviderErrors when
        the service cannot be asked. The answer's body is not documented and not read: like
        the SDK, only the status counts.
        """
        try:
            await self._http.request(
                "GET",
                self._auth_url,
                _AnyBody,
                what="credential check",
                retry_safe=True,
                headers={"X-Auth-Client": self._cid},
            )
        except ProviderProtocolError as exc:
            if exc.status is None or not 200 <= exc.status < 300:
                raise

    @property
    def finds_jobs(self) -> bool:
        return True

    async def find_job(self, meta: Mapping[str, str], *, submitted_after: datetime) -> str | None:
        """The newest process whose echoed `meta` holds all of `meta` (the SDK's advice:
        "check list_processes() before re-uploading"). Looks at processes created from the
        day before `submitted_after` (the service's dates may be in another time zone),
        newest first, at most 5000 of them."""
        since = (submitted_after - timedelta(days=1)).strftime("%Y-%m-%d")
        # Audio processes, then video ones (their own list, same query: reference §2), so
        # a billed video process is found again as surely as an audio one.
        for base, make_id in ((self._base, str), (f"{self._base}/video", video_job_id)):
            if base != self._base and self._video_refused:
                break
            for page in range(_LIST_MAX_PAGES):
                query = urlencode(
                    {"page": page, "pageSize": _LIST_PAGE_SIZE, "sort": "desc", "startDate": since}
                )
                try:
                    listed = await self._http.request(
                        "GET", f"{base}?{query}", ProcessList, what="process list", retry_safe=True
                    )
                except (ProviderAuthError, ProviderNotFound) as exc:
                    if base == self._base or exc.status not in (403, 404):
                        raise
                    break  # no video product on this plan: no video process to find
                # Newest first by id as well, whatever order the service really used.
                for process in sorted(listed.root, key=lambda p: p.pid, reverse=True):
                    if _meta_matches(process.meta, meta):
                        return make_id(process.pid)
                if len(listed.root) < _LIST_PAGE_SIZE:
                    break
        return None

    async def send_feedback(
        self, job_id: str, *, synthetic: bool, said_synthetic: bool
    ) -> VendorAck:
        """Behavioral Signals takes no feedback on a process (none in its API reference)."""
        return VendorAck.UNSUPPORTED

    async def delete_job(self, job_id: str) -> VendorAck:
        """Behavioral Signals documents no delete or cancel endpoint (reference §2)."""
        return VendorAck.UNSUPPORTED

    async def wait(self, job_id: str) -> Verdict:
        """Poll the process until it is terminal, then fetch and normalize its results."""
        video, pid = split_job_id(job_id)
        if not pid.isdigit():
            raise ProviderNotFound(PROVIDER, f"{job_id!r} is not a Behavioral Signals process id.")
        url = f"{self._base}/video/{pid}" if video else f"{self._base}/{pid}"
        process = await self._poll_until_done(
            job_id,
            lambda: self._http.request("GET", url, Process, what="job status", retry_safe=True),
            _process_state,
        )

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
        if video:
            verdict = await self._video_verdict(url, job_id, process)
        else:
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

    async def _video_verdict(self, url: str, job_id: str, process: Process) -> Verdict:
        """A video process's verdict: the sound as an audio process's, the pictures kept
        next to it (`Verdict.visual`), and the file spoofed if either is, with the higher
        probability, as Resemble's headline does for its video scores (DESIGN.md)."""
        body = await self._http.request(
            "GET", f"{url}/results", _AnyBody, what="video results", retry_safe=True
        )
        result = read_video_result(body.root)
        audio = normalize_results(
            {"results": result.audio_results}, job_id, duration_s=process.duration
        )
        visual = normalize_visual(result.video_results)
        return combine_visual(audio, visual)


def _process_state(process: Process) -> JobState:
    """A null status (the SDK's model allows it) says nothing yet: still running."""
    if process.status is None or process.status in _RUNNING:
        return JobState.RUNNING
    return JobState.COMPLETED if process.status == STATUS_COMPLETE else JobState.FAILED
