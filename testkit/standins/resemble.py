"""A loopback Resemble AI Detect API v2, faithful to the contract notes.

Follows the design notes' reference/resemble-detect-api.md: Bearer auth, multipart `POST /detect`
with the direct-upload extension allowlist, the 150 MB cap and empty files refused with 400
JSON errors, `Prefer: wait` held until the detect finishes (up to a hold time), `GET
/detect/{uuid}` progressing from processing to completed, and the documented 402 and 404
bodies. Secure Uploads (`POST /secure_uploads`, then a JSON `POST /detect` with
`media_token`), which the official SDK uses for every file, are answered too.

`VENDOR_SHAPES` lists the other shapes Resemble's own material shows (each names its
source), as stand-in settings, for tests to run over.
"""

from __future__ import annotations

import json
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

from aiohttp import web

from testkit.standins._common import ReceivedFile, StandIn, media_type, sha256_of, wav_duration

API_KEY = "rs-test-key-9d41b07c55aa"
MAX_UPLOAD_BYTES = 150 * 1024 * 1024

_AUDIO = {".wav", ".mp3", ".m4a", ".ogg", ".aac", ".flac", ".amr"}
_VIDEO = {".3gp", ".3gpp", ".mp4", ".mov", ".avi", ".mkv", ".webm"}
_IMAGE = {".jpg", ".jpeg", ".png", ".gif", ".webp"}
ALLOWED_EXTENSIONS = _AUDIO | _VIDEO | _IMAGE
#: Containers that may hold only sound, so either audio/* or video/* matches them.
_EITHER = {".mp4", ".m4a", ".webm", ".mkv", ".ogg", ".3gp", ".3gpp"}

#: `DetectFeedback.type` in the OpenAPI spec (reference §7, S2).
FEEDBACK_TYPES = frozenset(
    {
        "correct",
        "should_be_ai_generated",
        "should_be_authentic",
        "should_be_non_ai",
        "should_be_neutral",
        "skipped",
    }
)

OUT_OF_CREDITS_BODY = {
    "success": False,
    "error_code": "insufficient_balance",
    "error": "Insufficient balance",
    "message": "Your team's balance is too low for this detection. Add funds to continue.",
    "details": {"estimated_cost_cents": 3, "detect_cost_cents": 3, "watermark_cost_cents": 0},
}


def metrics(scores: list[float | None], *, label: str | None = None) -> dict[str, Any]:
    """A `metrics` object as Resemble sends it: numbers as strings, label from the mean."""
    known = [s for s in scores if s is not None]
    aggregated = sum(known) / len(known) if known else 0.0
    return {
        "label": label or ("fake" if aggregated >= 0.5 else "real"),
        "score": [None if s is None else f"{s:.4g}" for s in scores],
        "consistency": "0.92",
        "aggregated_score": f"{aggregated:.4g}",
    }


def video_metrics(score: float, *, label: str | None = None) -> dict[str, Any]:
    """A `video_metrics` object (numbers as numbers, capitalised labels, a frame tree)."""
    conclusion = label or ("Fake" if score >= 0.5 else "Real")
    return {
        "label": conclusion,
        "score": score,
        "certainty": 0.9,
        "treeview": "…",
        "children": [
            {
                "type": "VideoResult",
                "conclusion": conclusion,
                "score": score,
                "certainty": 0.9,
                "certainty (%)": "90%",
                "children": [],
            }
        ],
    }


#: Answers Resemble's own material allows besides the plain ones, as `ResembleStandIn`
#: keyword arguments. A client must give the same verdict under each.
VENDOR_SHAPES: dict[str, dict[str, Any]] = {
    # The docs' asynchronous create example: no status while running, `metrics: {}`.
    "no-status-while-running": {"omit_status_while_processing": True, "processing_polls": 1},
    # The docs' synchronous create example and older GET examples: finished, no status.
    "no-status-when-done": {"omit_status_when_done": True, "processing_polls": 1},
    # Both at once: only the results tell running from finished.
    "no-status-ever": {
        "omit_status_while_processing": True,
        "omit_status_when_done": True,
        "processing_polls": 2,
    },
    # `pending`, the status the sibling watermark and Q&A objects use (reference §3, §10).
    "pending-while-running": {"running_status": "pending", "processing_polls": 2},
    # A running status nobody documented: still not final (the spec lists only
    # completed/failed as outcomes).
    "unknown-running-status": {"running_status": "queued", "processing_polls": 2},
    # The docs' GET example: an audio item that also carries image and video metrics.
    "foreign-metrics-on-audio": {"foreign_metrics": True},
}


@dataclass
class _Job:
    uuid: str
    upload: ReceivedFile
    filename: str
    media_type: str
    created: float
    fields: dict[str, str]
    scripted: dict[str, Any]
    failure: str | None = None
    polls: int = 0
    #: Status reads that found the detect finished (the intelligence report lags behind).
    done_polls: int = 0


class ResembleStandIn(StandIn):
    """Resemble's Detect API on 127.0.0.1.

    Routes for fault injection: "submit", "status", "secure_upload".
    """

    routes = frozenset({"submit", "status", "secure_upload", "delete", "feedback"})
    prefix = "/api/v2"

    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        processing_s: float = 0.0,
        processing_polls: int = 0,
        wait_hold_s: float = 5.0,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        omit_status_while_processing: bool = False,
        omit_status_when_done: bool = False,
        running_status: str = "processing",
        foreign_metrics: bool = False,
        intelligence_refused: bool = False,
        intelligence_polls: int = 0,
        intelligence_prose: bool = False,
        answer_delay_s: float = 0.0,
        tracing_refused: bool = False,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        #: A detect finishes this long after the upload...
        self.processing_s = processing_s
        #: ...and after this many status polls have seen it processing.
        self.processing_polls = processing_polls
        #: The longest `Prefer: wait` holds the upload's answer before returning `processing`.
        self.wait_hold_s = wait_hold_s
        self.max_upload_bytes = max_upload_bytes
        #: The create example in the docs has no `status`; this reproduces it.
        self.omit_status_while_processing = omit_status_while_processing
        #: A finished detect (and its intelligence report) without `status`: the docs'
        #: synchronous create example (/detect/create, "Audio File Response") and older GET
        #: examples show finished items so.
        self.omit_status_when_done = omit_status_when_done
        #: The status of a running detect. The spec's enum says `processing`; `pending` is
        #: what the sibling objects use (watermark, detect-intelligence Q&A: reference §3,
        #: §10), and a word nobody documented yet must be survivable too.
        self.running_status = running_status
        #: Audio items also carry `image_metrics` and `video_metrics` scoring "fake" at 0.9,
        #: as the docs' GET example (/detect/get) does for an audio item.
        self.foreign_metrics = foreign_metrics
        #: Uploads asking for `intelligence=true` are refused with 403, which Resemble answers
        #: when the key lacks a requested product (reference §9; its batch page quotes
        #: "Intelligence detect limit reached (Default plan)").
        self.intelligence_refused = intelligence_refused
        #: The intelligence report stays `processing` (description null) for this many status
        #: reads after the detect completed: it "can still be processing after Detect reaches
        #: completed" (the spec's status notes, reference §3).
        self.intelligence_polls = intelligence_polls
        #: The report's `description` is prose about the speaker instead of the structured
        #: object, as in every docs example of intelligence on a detect (/detect/create,
        #: /detect/get); the spec allows a string or an object.
        self.intelligence_prose = intelligence_prose
        #: Uploads asking for `audio_source_tracing=true` are refused with 403: the same
        #: answer as for any product the key's plan lacks (reference §9).
        self.tracing_refused = tracing_refused
        #: Answer 403 to feedback and delete calls, as for a product the plan lacks.
        self.feedback_refused = False
        self.delete_refused = False
        #: Feedback posted per detect uuid (upserted, as the spec says: one per user).
        self.feedback: dict[str, dict[str, Any]] = {}
        #: Detects deleted with DELETE /detect/{uuid}.
        self.deleted: list[str] = []
        #: The create's answer comes this long after the detect exists (a slow network or a
        #: loaded API: a fault, not a vendor shape).
        self.answer_delay_s = answer_delay_s
        self.jobs: dict[str, _Job] = {}
        self.last_fields: dict[str, str] = {}
        self.last_headers: dict[str, str] = {}
        self._scripted: dict[str, dict[str, Any]] = {}
        #: Item fields for any upload nobody scripted (empty = a bona fide default).
        self.default_item: dict[str, Any] = {}
        self._job_failures: list[str] = []
        #: Secure Uploads by token: the file and when its token stops working (1 hour).
        self.secure_uploads: dict[str, tuple[ReceivedFile, float]] = {}
        self.app.router.add_post("/api/v2/detect", self._submit, name="submit")
        self.app.router.add_post(
            "/api/v2/secure_uploads", self._secure_upload, name="secure_upload"
        )
        self.app.router.add_get("/api/v2/detect/{uuid}", self._status, name="status")
        self.app.router.add_get("/api/v2/detect", self._list, name="list")
        self.app.router.add_delete("/api/v2/detect/{uuid}", self._delete, name="delete")
        self.app.router.add_post(
            "/api/v2/detect/{uuid}/feedback", self._post_feedback, name="feedback"
        )

    # -- scripting ---------------------------------------------------------------------

    def script_result(self, key: bytes | str | Path, **item: Any) -> None:
        """Fields of the completed item (e.g. `metrics=metrics([...])`, `video_metrics=...`,
        `duration=...`, `transcription="..."` or `description=...`) for the file with this
        content (bytes, a path, or its sha256)."""
        self._scripted[sha256_of(key)] = item

    def fail_jobs(self, error_message: str = "Audio decoding failed", times: int = 1) -> None:
        """The next `times` detects end with status `failed` and this `error_message`."""
        self._job_failures.extend([error_message] * times)

    def out_of_credits(self, times: int = 1) -> None:
        """The next uploads are refused with the documented 402 body."""
        self.fail_next("submit", 402, times, body=OUT_OF_CREDITS_BODY)

    # -- handlers ----------------------------------------------------------------------

    def error_body(self, status: int) -> Any:
        if status == 402:
            return OUT_OF_CREDITS_BODY
        messages = {
            401: "Invalid API token",
            403: "Forbidden",
            404: "Detect not found",
            429: "Rate limit exceeded",
            500: "Internal server error",
            503: "Service temporarily unavailable",
        }
        return {"success": False, "message": messages.get(status, f"HTTP {status}")}

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return web.json_response({"success": False, "message": message}, status=status)

    def _denied(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        # The docs say Bearer; both official SDKs still send the legacy form, which works.
        if auth not in (f"Bearer {self.api_key}", f"Token token={self.api_key}"):
            return self._error(401, "Invalid API token")
        return None

    async def _list(self, request: web.Request) -> web.StreamResponse:
        """`GET /detect?page=&page_size=`: the team's detects, paginated (reference §7, from
        S1-S3: `page` required and >= 1, `page_size` 10-1000, the envelope below)."""
        denied = self._denied(request)
        if denied is not None:
            return denied
        try:
            page = int(request.query["page"])
            size = int(request.query.get("page_size", "10"))
        except (KeyError, ValueError):
            return self._error(400, "page is required")
        if page < 1 or not 10 <= size <= 1000:
            return self._error(400, "page must be >= 1 and page_size 10-1000")
        return web.json_response(
            {
                "success": True,
                "page": page,
                "num_pages": 1,
                "page_size": size,
                "total_count": 0,
                "items": [],
            }
        )

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        if denied := self._denied(request):
            return denied
        self.last_headers = dict(request.headers)
        content_type = media_type(request)
        if content_type == "application/json":
            fields, upload, refusal = await self._json_request(request)
            if refusal is not None:
                return refusal
        elif content_type.startswith("multipart/"):
            fields, upload = await self.read_upload(request)
        else:
            return self._error(400, "Send multipart/form-data (file) or JSON (media_token)")
        self.last_fields = fields
        if fault := await self.injected("submit"):
            return fault
        if upload is None:
            return self._error(400, "One of file, url or media_token is required")
        direct = content_type != "application/json"
        if problem := self._check(upload, fields, direct=direct):
            return self._error(400, problem)
        if self.intelligence_refused and fields.get("intelligence", "").lower() == "true":
            return self._error(403, "Intelligence detect limit reached (Default plan)")
        if self.tracing_refused and fields.get("audio_source_tracing", "").lower() == "true":
            return self._error(403, "Your plan does not include audio source tracing")

        extension = PurePath(upload.filename or "").suffix.lower()
        job = _Job(
            uuid=str(uuid.uuid4()),
            upload=upload,
            filename=upload.filename or "",
            media_type="video" if extension in _VIDEO else "audio",
            created=time.monotonic(),
            fields=fields,
            scripted=self._scripted.get(upload.sha256, self.default_item),
            failure=self._job_failures.pop(0) if self._job_failures else None,
        )
        self.jobs[job.uuid] = job
        if self.answer_delay_s > 0:
            await self.pause(self.answer_delay_s)
        if "wait" in request.headers.get("Prefer", "").lower():
            await self._hold(job)
            if self._ready(job):
                return web.json_response({"success": True, "item": self._item(job)})
        return web.json_response({"success": True, "item": self._pending_item(job)})

    async def _json_request(
        self, request: web.Request
    ) -> tuple[dict[str, str], ReceivedFile | None, web.Response | None]:
        """A JSON create: its options as form-style strings and the secure-uploaded file."""
        try:
            body = await request.json()
        except ValueError:
            return {}, None, self._error(400, "Invalid JSON body")
        if not isinstance(body, dict):
            return {}, None, self._error(400, "Invalid JSON body")
        sources = [key for key in ("url", "media_token") if body.get(key)]
        if len(sources) != 1:
            return {}, None, self._error(400, "Provide exactly one of file, url or media_token")
        if sources == ["url"]:
            # Resemble would fetch it; a loopback stand-in has nothing to fetch from.
            return {}, None, self._error(400, "This stand-in cannot fetch media URLs")
        found = self.secure_uploads.get(str(body["media_token"]))
        if found is None or found[1] < time.monotonic():
            return {}, None, self._error(400, "Invalid or expired media_token")
        fields = {
            key: (json.dumps(value) if isinstance(value, bool) else str(value))
            for key, value in body.items()
            if key != "media_token" and value is not None
        }
        return fields, found[0], None

    async def _secure_upload(self, request: web.Request) -> web.StreamResponse:
        """Secure Uploads: keep the file, answer a token valid for one hour."""
        if denied := self._denied(request):
            return denied
        if not media_type(request).startswith("multipart/"):
            return self._error(400, "Expected multipart/form-data with a file")
        _, upload = await self.read_upload(request)
        if fault := await self.injected("secure_upload"):
            return fault
        if upload is None or upload.size == 0:
            return self._error(400, "Missing or empty file")
        token = f"eyJ0eXAiOiJKV1QifQ.{secrets.token_urlsafe(24)}.{secrets.token_urlsafe(16)}"
        self.secure_uploads[token] = (upload, time.monotonic() + 3600)
        return web.json_response({"success": True, "token": token})

    def _check(self, upload: ReceivedFile, fields: dict[str, str], *, direct: bool) -> str | None:
        """The 400 reasons Resemble gives before any analysis or billing."""
        extension = PurePath(upload.filename or "").suffix.lower()
        if extension not in ALLOWED_EXTENSIONS:
            allowed = " ".join(sorted(ALLOWED_EXTENSIONS))
            return f"Unsupported file extension '{extension}'. Allowed: {allowed}"
        family = (upload.content_type or "").split("/")[0].lower()
        if upload.content_type not in (None, "application/octet-stream"):
            expected = {"image"} if extension in _IMAGE else {"audio"}
            if extension in _VIDEO:
                expected = {"video"}
            if extension in _EITHER:
                expected = {"audio", "video"}
            if family not in expected:
                return f"Content type {upload.content_type} does not match extension {extension}"
        if upload.size == 0:
            return "Uploaded file is empty"
        # Secure Uploads exist for files over the direct-upload cap.
        if direct and upload.size > self.max_upload_bytes:
            return (
                f"File exceeds the {self.max_upload_bytes // (1024 * 1024)} MB direct upload "
                "limit; use Secure Uploads (POST /secure_uploads) for larger files"
            )
        frame_length = fields.get("frame_length", "2")
        if not frame_length.isdigit() or not 1 <= int(frame_length) <= 4:
            return "frame_length must be an integer between 1 and 4"
        return None

    async def _hold(self, job: _Job) -> None:
        """Prefer: wait — answer when the detect is done, or after the hold time."""
        remaining = self.processing_s - (time.monotonic() - job.created)
        if self.processing_polls > 0 or remaining > self.wait_hold_s:
            await self.pause(self.wait_hold_s)  # it cannot finish while we hold
        elif remaining > 0:
            await self.pause(remaining)

    async def _status(self, request: web.Request) -> web.StreamResponse:
        if denied := self._denied(request):
            return denied
        if fault := await self.injected("status"):
            return fault
        job = self.jobs.get(request.match_info["uuid"])
        if job is None:
            return self._error(404, "Detect not found")
        ready = self._ready(job)
        job.polls += 1
        if ready:
            job.done_polls += 1
        return web.json_response(
            {"success": True, "item": self._item(job) if ready else self._pending_item(job)}
        )

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        """DELETE /detect/{uuid} (reference §7, from the OpenAPI spec S2): `{success,
        message}`; 404 for an unknown uuid; the detect is gone from get afterwards."""
        if denied := self._denied(request):
            return denied
        if fault := await self.injected("delete"):
            return fault
        if self.delete_refused:
            return self._error(403, "Forbidden")
        key = request.match_info["uuid"]
        if self.jobs.pop(key, None) is None:
            return self._error(404, "Detect not found")
        self.deleted.append(key)
        return web.json_response({"success": True, "message": "Detect deleted"})

    async def _post_feedback(self, request: web.Request) -> web.StreamResponse:
        """POST /detect/{uuid}/feedback (reference §7, S2): body `{type, comment?, source?}`,
        `type` from the spec's enum, `comment` ≤ 1000 characters, only on a completed
        detect (else 400), upserted per user."""
        if denied := self._denied(request):
            return denied
        if fault := await self.injected("feedback"):
            return fault
        if self.feedback_refused:
            return self._error(403, "Forbidden")
        job = self.jobs.get(request.match_info["uuid"])
        if job is None:
            return self._error(404, "Detect not found")
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "Invalid JSON body")
        if not isinstance(body, dict) or body.get("type") not in FEEDBACK_TYPES:
            return self._error(400, "type must be one of " + ", ".join(sorted(FEEDBACK_TYPES)))
        comment = body.get("comment")
        if comment is not None and (not isinstance(comment, str) or len(comment) > 1000):
            return self._error(400, "comment must be text of at most 1000 characters")
        if not self._ready(job) or job.failure is not None:
            return self._error(400, "Feedback is only allowed on a completed detect")
        self.feedback[job.uuid] = body
        return web.json_response({"success": True, "item": {"detect_uuid": job.uuid, **body}})

    def _ready(self, job: _Job) -> bool:
        return (
            job.polls >= self.processing_polls
            and time.monotonic() - job.created >= self.processing_s
        )

    def _common(self, job: _Job) -> dict[str, Any]:
        zero = job.fields.get("zero_retention_mode", "false").lower() == "true"
        extension = PurePath(job.filename).suffix.lower()
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        link = None if zero else f"https://storage.example.invalid/detect/{job.uuid}{extension}"
        return {
            "uuid": job.uuid,
            "media_type": job.media_type,
            "url": link,
            "audio_url": link,
            "filename": f"redacted_{secrets.token_hex(6)}{extension}" if zero else job.filename,
            "zero_retention_mode": zero,
            "file_deleted_at": None,
            "created_at": now,
            "updated_at": now,
        }

    def _pending_item(self, job: _Job) -> dict[str, Any]:
        item = {
            **self._common(job),
            "status": self.running_status,
            "metrics": {},
            "intelligence": None,
        }
        if self.omit_status_while_processing:
            del item["status"]
        return item

    def _item(self, job: _Job) -> dict[str, Any]:
        """The finished detect: the scripted fields over a plausible default."""
        common = self._common(job)
        if job.failure is not None:
            return {**common, "status": "failed", "error_message": job.failure, "metrics": {}}
        scripted = dict(job.scripted)
        frame_length = int(job.fields.get("frame_length", "2"))
        duration = scripted.pop("duration", None)
        if duration is None:
            duration = wav_duration(job.upload.head) or 3.0
        windows = max(1, math.ceil(float(duration) / frame_length))
        item: dict[str, Any] = {
            **common,
            "status": "completed",
            "metrics": metrics([0.05] * windows),
            "duration": duration,
            "error_message": None,
        }
        if job.media_type == "video":
            item["video_metrics"] = video_metrics(0.04)
        elif self.foreign_metrics:
            # As in the docs' GET example: numbers as strings in the video tree.
            item["image_metrics"] = {
                "type": "FinalResult",
                "label": "Fake",
                "score": 1,
                "children": [],
            }
            item["video_metrics"] = {**video_metrics(0.9), "score": "0.9", "certainty": "0.9"}
        transcription = scripted.pop("transcription", "hello there")
        description = scripted.pop(
            "description",
            {
                "speaker_info": "Adult speaker",
                "language": "English",
                "emotion": "neutral",
                "transcription": transcription,
                "fraud": {"type": "none", "confidence": 5, "reasoning": "…"},
            },
        )
        if self.intelligence_prose:
            description = "Adult speaker, calm and even tone, speaking English."
        if job.fields.get("intelligence", "false").lower() == "true":
            late = self.intelligence_polls > 0 and job.done_polls <= self.intelligence_polls
            item["intelligence"] = {
                "uuid": str(uuid.uuid4()),
                "status": "processing" if late else "completed",
                "description": None if late else description,
                "created_at": common["created_at"],
                "detect_uuid": job.uuid,
            }
            if self.omit_status_when_done and not late:
                del item["intelligence"]["status"]
        else:
            item["intelligence"] = None
        tracing = scripted.pop("tracing_label", "elevenlabs")
        # Present only when tracing was asked for and the audio was labelled fake (§10).
        asked = job.fields.get("audio_source_tracing", "false").lower() == "true"
        label = str(scripted.get("metrics", item["metrics"]).get("label", "")).lower()
        if asked and label == "fake":
            item["audio_source_tracing"] = {"label": tracing, "error_message": None}
        if common["zero_retention_mode"]:
            item["file_deleted_at"] = common["updated_at"]
        if self.omit_status_when_done:
            del item["status"]
        item.update(scripted)
        return item
