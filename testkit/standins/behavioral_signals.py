"""A loopback Behavioral Signals API v5 (deepfake detection), faithful to the contract notes.

Follows the design notes' reference/behavioral-signals-api.md: `X-Auth-Token` on every call,
multipart upload of WAV/MP3 to `/detection/clients/{cid}/processes/audio`, process status
0 → 1 → 2, then results per utterance with string posteriors. A file that is neither WAV nor
MP3 is accepted and then fails with status -1 and an ffmpeg log, as the real service's
failures look.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from testkit.standins._common import (
    ReceivedFile,
    StandIn,
    media_type,
    sha256_of,
    sniff,
    wav_duration,
)

API_KEY = "bs-test-key-3f9c2a71d4e8"
CID = "10000001"

FFMPEG_FAILURE = (
    "Error while decoding the audio file: ffmpeg exited with status 1\n"
    "ffmpeg version 6.1.1 Copyright (c) 2000-2023 the FFmpeg developers\n"
    "[in#0 @ 0x55d0c0a1b2c0] Error opening input: Invalid data found when processing input\n"
    "Error opening input file /tmp/upload.\n"
)
INSUFFICIENT_CREDITS = (
    "Insufficient credits. Increase your balance in the Billing section of the console."
)


def utterance(
    uid: int | str,
    start: float,
    end: float,
    *,
    text: str | None = " hello there",
    speaker: str | None = "SPEAKER_00",
    language: str | None = "en",
    spoofed: float | str | None = 0.02,
    final_label: str | None = None,
    deepfake: bool = True,
    extra: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The result items of one utterance, in the documented shape (strings everywhere).

    `spoofed` is the `spoofed` posterior (a float, or a string such as "1e-04", or None);
    `final_label` defaults to the argmax. `deepfake=False` leaves the deepfake item out,
    as happens for very short utterances.
    """

    def item(task: str, predictions: list[dict[str, Any]], final: str | None) -> dict[str, Any]:
        return {
            "id": str(uid),
            "startTime": f"{start:.3f}",
            "endTime": f"{end:.3f}",
            "task": task,
            "prediction": [{**p, "dominantInSegments": []} for p in predictions],
            "finalLabel": final,
            "level": "utterance",
            "embedding": None,
        }

    items = []
    if text is not None:
        items.append(item("asr", [{"label": text, "posterior": None}], text))
    if speaker is not None:
        items.append(item("diarization", [{"label": speaker, "posterior": None}], speaker))
    if language is not None:
        others = [code for code in ("en", "es", "pt") if code != language][:2]
        items.append(
            item(
                "language",
                [
                    {"label": language, "posterior": "0.9990234375"},
                    {"label": others[0], "posterior": "7.838010787963867e-05"},
                    {"label": others[1], "posterior": "7.361173629760742e-05"},
                ],
                language,
            )
        )
    if deepfake:
        spoofed_value = _as_float(spoofed)
        spoofed_text = None if spoofed is None else _posterior(spoofed)
        bonafide_text = None if spoofed_value is None else _posterior(1.0 - spoofed_value)
        if final_label is None:
            final_label = "spoofed" if (spoofed_value or 0.0) >= 0.5 else "bonafide"
        items.append(
            item(
                "deepfake",
                [
                    {"label": "spoofed", "posterior": spoofed_text},
                    {"label": "bonafide", "posterior": bonafide_text},
                ],
                final_label,
            )
        )
    items.extend(extra)
    return items


#: Result items the vendor's SDK accepts that the documented example never shows, each named by
#: its source. Any of them may sit among the items of a finished process.
SDK_ALLOWED_ITEMS: dict[str, dict[str, Any]] = {
    # behavioralsignals 0.7.1 tests/test_models.py::test_result_with_empty_times_can_be_dumped:
    # an item whose startTime/endTime are "".
    "empty-times": {
        "id": "9",
        "startTime": "",
        "endTime": "",
        "task": "asr",
        "prediction": [{"label": " words", "posterior": None}],
        "finalLabel": " words",
        "level": "utterance",
    },
    # behavioralsignals 0.7.1 tests/test_utils.py (print_results given prediction=None) and
    # models.py ResultItem (`prediction: list[ModelPredictions] | None = None`).
    "null-prediction": {
        "id": "9",
        "startTime": "0.000",
        "endTime": "0.500",
        "task": "features",
        "prediction": None,
        "finalLabel": None,
        "level": "utterance",
    },
    # models.py ResultItem: every field Optional, `id` included; only `task` given here.
    "no-id": {"task": "gender", "finalLabel": "female"},
    # models.py ResultItem: no field is required, so an empty object reads.
    "empty-object": {},
    # Docs (embeddings page, as summarised in the reference notes §4.3/4.4): with
    # embeddings=true a `features` item per utterance, label/posterior/finalLabel null and the
    # 768-d embedding as a string.
    "docs-features": {
        "id": "9",
        "startTime": "0.031",
        "endTime": "1.200",
        "task": "features",
        "prediction": [{"label": None, "posterior": None, "dominantInSegments": []}],
        "finalLabel": None,
        "level": "utterance",
        "embedding": "[18.23, 4.84, -5.54]",
    },
}

#: Process-list rows the SDK's `ProcessItem` accepts (models.py: only `pid` is required;
#: `status` is `int | None`). Served by `list_extras`.
SDK_ALLOWED_PROCESSES: dict[str, dict[str, Any]] = {
    "null-status": {"pid": 40001, "cid": None, "name": None, "status": None, "meta": None},
    "pid-only": {"pid": 40002},
    # Docs (check-the-processing-progress, behavioral docs' example, per the reference notes
    # §3.1): `cid` quoted, `meta` "", a "Z" datetime with milliseconds.
    "docs-quoted-cid-empty-meta": {
        "pid": 40003,
        "cid": "10000001",
        "name": None,
        "status": 2,
        "statusmsg": "Processing Complete.",
        "duration": 3.2,
        "datetime": "2024-07-19T11:54:37.900Z",
        "meta": "",
    },
}


def generator_items(
    shape: str, uid: str, start: str, end: str, label: str, confidence: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generator detection's answer for one spoofed utterance, in one of `GENERATOR_SHAPES`:
    (extra items, fields added to the deepfake item).

    The vendor's generator-detection page names the predicted models (elevenlabs, playht,
    speechify, xtts-v2, others) "with a confidence score" but not the result's shape
    (reference §4.3: task name and fields unconfirmed). These are the plausible readings;
    the client must take each and ignore anything else.
    """

    def task_item(task: str) -> dict[str, Any]:
        other = "playht" if label != "playht" else "elevenlabs"
        return {
            "id": uid,
            "startTime": start,
            "endTime": end,
            "task": task,
            "prediction": [
                {"label": label, "posterior": f"{confidence:.4g}", "dominantInSegments": []},
                {"label": other, "posterior": f"{1 - confidence:.4g}", "dominantInSegments": []},
            ],
            "finalLabel": label,
            "level": "utterance",
            "embedding": None,
        }

    if shape == "task-generator":
        return [task_item("generator")], {}
    if shape == "task-generator-detection":
        return [task_item("generator_detection")], {}
    if shape == "field-name":
        return [], {"generator": label}
    if shape == "field-object":
        return [], {"generator": {"label": label, "confidence": confidence}}
    if shape == "unknown":
        return [], {"generator": [label, confidence], "source_model": {"x": 1}}
    raise ValueError(shape)


GENERATOR_SHAPES = (
    "task-generator",
    "task-generator-detection",
    "field-name",
    "field-object",
    "unknown",
)


def _as_float(value: float | str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None  # deliberately broken test data


def _posterior(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.4g}"


@dataclass
class _Job:
    pid: int
    name: str | None
    meta: str | None
    upload: ReceivedFile
    created: float
    duration: float
    #: None serves `"results": null` (a file with no speech; the SDK's `ResultResponse` has
    #: `results: list[ResultItem] | None`).
    results: list[dict[str, Any]] | None
    #: Leave `results` out of the answer altogether (same SDK model: the field is optional).
    omit_results: bool = False
    #: A terminal failure (status, statusmsg) to report instead of completing.
    failure: tuple[int, str] | None = None
    #: The upload asked for `enable_generator_detection=true`.
    generators: bool = False
    #: A video process (`/processes/video`), listed and read under that path only.
    video: bool = False
    polls: int = 0
    datetime: str = field(
        default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000"
    )


class BehavioralSignalsStandIn(StandIn):
    """The deepfake half of the Behavioral Signals API v5 on 127.0.0.1.

    Routes for fault injection: "auth", "submit", "list", "status", "results", and
    "submitted": the upload's answer after the process exists (a `hang` there is the SDK
    README's case of a timed-out upload that still created a process).
    """

    routes = frozenset(
        {
            "auth",
            "submit",
            "submitted",
            "list",
            "status",
            "results",
            "submit_video",
            "list_video",
            "status_video",
            "results_video",
        }
    )
    prefix = "/v5"

    def __init__(
        self,
        *,
        cid: str = CID,
        api_key: str = API_KEY,
        processing_polls: int = 2,
        processing_s: float = 0.0,
    ) -> None:
        super().__init__()
        self.cid = cid
        self.api_key = api_key
        #: Status polls answered 0/1 before a job reports 2 (or its failure).
        self.processing_polls = processing_polls
        #: ...and seconds that must pass since the upload.
        self.processing_s = processing_s
        self.jobs: dict[int, _Job] = {}
        self._scripted: dict[str, tuple[list[dict[str, Any]] | None, bool]] = {}
        #: Rows served in the process list besides the jobs (see SDK_ALLOWED_PROCESSES).
        self.list_extras: list[dict[str, Any]] = []
        #: Status polls of each job answered with `"status": null` first (the SDK's
        #: `ProcessItem.status` is `int | None`; get-process answers a ProcessItem).
        self.null_status_polls = 0
        #: Uploads whose connection is closed once their process exists, without an answer.
        self.drop_upload_answers = 0
        #: Results for any upload nobody scripted (e.g. transcoded files); None = one bona
        #: fide utterance spanning the audio.
        self.default_results: list[dict[str, Any]] | None = None
        #: Every this many-th upload (1st, then n+1st, ...) is judged spoofed (posterior 0.93)
        #: unless scripted; 0: none (the crash test's mod-log alerts). Only the posterior
        #: differs: the items keep `utterance()`'s documented shape (reference §4, results).
        self.spoofed_every = 0
        self._job_failures: list[tuple[int, str]] = []
        #: How generator detection answers (one of GENERATOR_SHAPES), what it names, and
        #: with what confidence, for utterances labelled spoofed of jobs that asked for it.
        self.generator_shape = "task-generator"
        self.generator_label = "elevenlabs"
        self.generator_confidence = 0.87
        #: The form fields of the last upload.
        self.last_fields: dict[str, str] = {}
        self._pids = itertools.count(51234)
        base = "/v5/detection/clients/{cid}/processes"
        self.app.router.add_get("/v5/auth", self._auth, name="auth")
        self.app.router.add_post(base + "/audio", self._submit, name="submit")
        self.app.router.add_get(base, self._list, name="list")
        self.app.router.add_get(base + "/{pid:\\d+}", self._status, name="status")
        self.app.router.add_get(base + "/{pid:\\d+}/results", self._results, name="results")
        # The experimental video family (reference §2, from the SDK's `upload_video`,
        # `get_video_process`, `list_video_processes`, `get_video_result`): the same shapes
        # under /processes/video, results split into `audio_results` and `video_results`.
        self.app.router.add_post(base + "/video", self._submit_video, name="submit_video")
        self.app.router.add_get(base + "/video", self._list_video, name="list_video")
        self.app.router.add_get(base + "/video/{pid:\\d+}", self._status_video, name="status_video")
        self.app.router.add_get(
            base + "/video/{pid:\\d+}/results", self._results_video, name="results_video"
        )
        #: Video uploads are refused with 403, as for a product the plan lacks (the status
        #: the vendor would use is not documented; 403 is what Resemble uses for it).
        self.video_refused = False
        #: What the frames of video processes are judged: `video_results` items with task
        #: `visual_deepfake` (SDK task list) labelled in this pair of words, (fake, real) as
        #: in one SDK test fixture or (spoofed, bonafide) as in another (reference §4.6).
        self.visual_words: tuple[str, str] = ("fake", "real")
        self.visual_spoofed = 0.04
        #: Serve `video_results` as this instead (e.g. None for null, or odd shapes).
        self.video_results_override: Any = ...

    @property
    def submissions(self) -> int:
        """Uploads received, audio and video (counted on arrival)."""
        return self.received["submit"] + self.received["submit_video"]

    # -- scripting ---------------------------------------------------------------------

    def script_result(
        self,
        key: bytes | str | Path,
        results: list[dict[str, Any]] | None,
        *,
        omit: bool = False,
    ) -> None:
        """Results (a list of items, e.g. from `utterance()`) for the file with this
        content (bytes, a path, or its sha256); None serves `"results": null` and
        `omit=True` leaves the field out."""
        self._scripted[sha256_of(key)] = (results, omit)

    def fail_jobs(self, status: int = -1, statusmsg: str = FFMPEG_FAILURE, times: int = 1) -> None:
        """The next `times` uploads end with this terminal status instead of results."""
        self._job_failures.extend([(status, statusmsg)] * times)

    def out_of_credits(self, times: int = 1) -> None:
        """The next uploads end with status -2 (insufficient credits), as documented."""
        self.fail_jobs(-2, INSUFFICIENT_CREDITS, times)

    # -- counters ----------------------------------------------------------------------

    @property
    def result_fetches(self) -> int:
        return self.received["results"]

    # -- handlers ----------------------------------------------------------------------

    def error_body(self, status: int) -> Any:
        messages = {
            401: "Unauthorized: invalid or missing API token",
            403: "Forbidden",
            404: "Not found",
            429: "Too many requests",
            500: "Internal server error",
            503: "Service unavailable",
        }
        return {"code": status, "message": messages.get(status, f"HTTP {status}")}

    def _error(self, status: int, message: str) -> web.Response:
        return web.json_response(
            {"code": status, "type": "error", "message": message}, status=status
        )

    def _denied(self, request: web.Request) -> web.Response | None:
        if request.headers.get("X-Auth-Token") != self.api_key:
            return self._error(401, "Unauthorized: invalid or missing API token")
        if request.match_info.get("cid", self.cid) != self.cid:
            return self._error(403, "Forbidden: the token does not belong to this project")
        return None

    async def _auth(self, request: web.Request) -> web.StreamResponse:
        # behavioralsignals 0.7.1 base.py `_authenticate`: GET /auth with X-Auth-Token and
        # X-Auth-Client (the cid); anything but 200 is a refusal. The body is not documented.
        if request.headers.get("X-Auth-Client") != self.cid:
            return self._error(401, "Unauthorized: unknown client")
        return self._denied(request) or await self.injected("auth") or web.json_response({})

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        return await self._accept(request, video=False)

    async def _submit_video(self, request: web.Request) -> web.StreamResponse:
        if denied := self._denied(request):
            return denied
        if self.video_refused:
            return self._error(403, "Video deepfake detection is not enabled for this project")
        return await self._accept(request, video=True)

    async def _accept(self, request: web.Request, *, video: bool) -> web.StreamResponse:
        if denied := self._denied(request):
            return denied
        if not media_type(request).startswith("multipart/"):
            return self._error(400, "Expected multipart/form-data with a file")
        fields, upload = await self.read_upload(request)
        self.last_fields = fields
        if fault := await self.injected("submit_video" if video else "submit"):
            return fault
        if upload is None:
            return self._error(400, "Missing file")
        for flag in ("embeddings", "enable_generator_detection"):
            if fields.get(flag, "false").lower() not in {"true", "false"}:
                return self._error(400, f"Invalid value for {flag}")
        meta = fields.get("meta")
        if meta is not None:
            try:
                json.loads(meta)
            except ValueError:
                return self._error(400, "meta must be a valid JSON string")

        failure = self._job_failures.pop(0) if self._job_failures else None
        # Video processes take MP4, the container every vendor example uploads (§4.6).
        kind = ("mp4" if upload.head[4:8] == b"ftyp" else None) if video else sniff(upload.head)
        if failure is None and (kind is None or upload.size == 0):
            failure = (-1, FFMPEG_FAILURE)  # the server decodes with ffmpeg, and that fails
        duration = (wav_duration(upload.head) if kind == "wav" else None) or 1.0
        results, omit = self._scripted.get(upload.sha256, (self.default_results, False))
        if results is None and upload.sha256 not in self._scripted:
            spoofed = (
                0.93 if self.spoofed_every and len(self.jobs) % self.spoofed_every == 0 else 0.02
            )
            results = utterance(0, 0.031, round(max(duration - 0.05, 0.1), 3), spoofed=spoofed)
        job = _Job(
            pid=next(self._pids),
            name=fields.get("name"),
            meta=meta,
            upload=upload,
            created=time.monotonic(),
            duration=duration,
            results=results,
            omit_results=omit,
            failure=failure,
            generators=fields.get("enable_generator_detection", "false").lower() == "true",
            video=video,
        )
        self.jobs[job.pid] = job
        if fault := await self.injected("submitted"):
            return fault
        if self.drop_upload_answers > 0:
            # The SDK README's case again: the process exists, the answer never arrives.
            self.drop_upload_answers -= 1
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        return web.json_response(self._process(job, 0, "Pending"))

    async def _list(self, request: web.Request) -> web.StreamResponse:
        return await self._listing(request, video=False)

    async def _list_video(self, request: web.Request) -> web.StreamResponse:
        return await self._listing(request, video=True)

    async def _listing(self, request: web.Request, *, video: bool) -> web.StreamResponse:
        if denied := self._denied(request):
            return denied
        if video and self.video_refused:
            return self._error(403, "Video deepfake detection is not enabled for this project")
        if fault := await self.injected("list_video" if video else "list"):
            return fault
        # A bare JSON array, as the SDK's list call expects.
        jobs = [job for job in self.jobs.values() if job.video == video]
        extras = [] if video else self.list_extras
        return web.json_response([self._process(job, *self._state(job)) for job in jobs] + extras)

    def _job(self, request: web.Request, *, video: bool) -> _Job | None:
        job = self.jobs.get(int(request.match_info["pid"]))
        return job if job is not None and job.video == video else None

    async def _status(self, request: web.Request) -> web.StreamResponse:
        return await self._status_of(request, video=False)

    async def _status_video(self, request: web.Request) -> web.StreamResponse:
        return await self._status_of(request, video=True)

    async def _status_of(self, request: web.Request, *, video: bool) -> web.StreamResponse:
        if denied := self._denied(request):
            return denied
        if fault := await self.injected("status_video" if video else "status"):
            return fault
        job = self._job(request, video=video)
        if job is None:
            return self._error(404, f"Process with id {request.match_info['pid']} not found!")
        status, message = self._state(job)
        job.polls += 1
        if job.polls <= self.null_status_polls:
            return web.json_response({**self._process(job, status, message), "status": None})
        return web.json_response(self._process(job, status, message))

    async def _results(self, request: web.Request) -> web.StreamResponse:
        return await self._results_of(request, video=False)

    async def _results_video(self, request: web.Request) -> web.StreamResponse:
        return await self._results_of(request, video=True)

    async def _results_of(self, request: web.Request, *, video: bool) -> web.StreamResponse:
        if denied := self._denied(request):
            return denied
        if fault := await self.injected("results_video" if video else "results"):
            return fault
        job = self._job(request, video=video)
        if job is None:
            return self._error(404, f"Process with id {request.match_info['pid']} not found!")
        status, _ = self._state(job)
        if status != 2:
            return self._error(400, f"Process with id {job.pid} has no results (status {status})")
        answer: dict[str, Any] = {
            "pid": job.pid,
            "cid": int(self.cid),
            "code": 2,
            "message": "Processing Complete",
            "results": self._with_generators(job.results) if job.generators else job.results,
        }
        if job.omit_results:
            del answer["results"]
        if video:
            # snake_case keys, as the SDK's `VideoResultResponse` declares (reference §4.6).
            answer["audio_results"] = answer.pop("results", None)
            answer["video_results"] = (
                self._visual_items(job)
                if self.video_results_override is ...
                else self.video_results_override
            )
        return web.json_response(answer)

    def _visual_items(self, job: _Job) -> list[dict[str, Any]]:
        """One `visual_deepfake` item over the whole clip, in the audio items' shape."""
        fake, real = self.visual_words
        p = self.visual_spoofed
        return [
            {
                "id": "0",
                "startTime": "0.000",
                "endTime": f"{job.duration:.3f}",
                "task": "visual_deepfake",
                "prediction": [
                    {"label": fake, "posterior": _posterior(p), "dominantInSegments": []},
                    {"label": real, "posterior": _posterior(1 - p), "dominantInSegments": []},
                ],
                "finalLabel": fake if p >= 0.5 else real,
                "level": "utterance",
                "embedding": None,
            }
        ]

    def _with_generators(self, results: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        """The results plus generator detection's answer for each spoofed utterance (only
        those, as the vendor's generator-detection page says)."""
        if results is None:
            return None
        served: list[dict[str, Any]] = []
        for item in results:
            if not isinstance(item, dict) or item.get("task") != "deepfake":
                served.append(item)
                continue
            if item.get("finalLabel") != "spoofed":
                served.append(item)
                continue
            extra, fields = generator_items(
                self.generator_shape,
                str(item.get("id")),
                str(item.get("startTime")),
                str(item.get("endTime")),
                self.generator_label,
                self.generator_confidence,
            )
            served.append({**item, **fields})
            served.extend(extra)
        return served

    def _state(self, job: _Job) -> tuple[int, str]:
        """Where the job stands now: pending on the first poll, then processing, then done."""
        ready = (
            job.polls >= self.processing_polls
            and time.monotonic() - job.created >= self.processing_s
        )
        if ready:
            return job.failure or (2, "Processing Complete.")
        return (0, "Pending") if job.polls == 0 else (1, "Processing")

    def _process(self, job: _Job, status: int, message: str) -> dict[str, Any]:
        return {
            "pid": job.pid,
            "cid": int(self.cid),
            "name": job.name,
            "status": status,
            "statusmsg": message,
            # 0 until the service has read the audio.
            "duration": 0.0 if status == 0 else job.duration,
            "datetime": job.datetime,
            "meta": job.meta,
        }
