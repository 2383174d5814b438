"""Resemble AI Detect API v2: multipart upload, then poll the detect by its uuid.

Contract: the design notes' reference/resemble-detect-api.md (§2 create, §3 get, §9 errors,
§10 intelligence, §14 shapes in the vendor's own material). What a detect item says is
decided in `bot.detectors._resemble_items` (re-exported here).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import RootModel, SecretStr

from bot.detectors._base import (
    PollPolicy,
    RetryPolicy,
    Submission,
    SubmitOptions,
    Upload,
    VendorAck,
)
from bot.detectors._http import first_line
from bot.detectors._polling import JobTiming, PollingClient
from bot.detectors._resemble_items import (
    FRAME_LENGTH_S,
    PROVIDER,
    Acknowledgement,
    DetectEnvelope,
    DetectItem,
    JobState,
    ReportState,
    Scores,
    job_state,
    normalize_item,
    report_state,
    transcript_of,
)
from bot.detectors._upload import FilePart
from bot.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderJobFailed,
    ProviderNotFound,
    ProviderProtocolError,
    ProviderRejected,
)
from bot.verdict import MediaKind, ProviderName, Verdict

__all__ = [
    "FRAME_LENGTH_S",
    "DetectEnvelope",
    "DetectItem",
    "JobState",
    "ReportState",
    "ResembleClient",
    "Scores",
    "job_state",
    "normalize_item",
    "report_state",
    "transcript_of",
    "upload_name",
]

log = logging.getLogger(__name__)

#: Direct uploads above this are refused with HTTP 400 (Secure Uploads would be needed).
#: Decimal megabytes: the smaller reading of "150 MB", so we never upload a refused file.
MAX_UPLOAD_BYTES = 150 * 1000 * 1000
#: How long a transcript that was asked for is waited for once the detect is done: the
#: intelligence report runs apart and may finish later (the spec: "can still be processing
#: after Detect reaches completed"). Resemble's callback waits up to 10 minutes for it; a
#: member waiting on a verdict should not, and the verdict does not depend on it.
INTELLIGENCE_WAIT_S = 20.0
#: Optional products an upload may ask for, in the order they are given up when Resemble
#: answers 403 (the plan lacks one): form field names of POST /detect (reference §2).
_OPTIONAL_PRODUCTS = ("intelligence", "audio_source_tracing")

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


class _AnyBody(RootModel[Any]):
    """An answer only its status matters for (the credential check)."""


class ResembleClient(PollingClient):
    """The Resemble Detect API over the shared aiohttp session."""

    job_noun = "detect"

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
        super().__init__(
            http_session,
            provider=PROVIDER,
            api_key=api_key,
            headers={
                "Authorization": f"Bearer {api_key.get_secret_value()}",
                "Accept": "application/json",
            },
            retry=retry,
            poll=poll,
            request_timeout_s=request_timeout_s,
        )
        self._base = base_url.rstrip("/")
        self._zero_retention = zero_retention
        self._intelligence_wait_s = intelligence_wait_s
        #: Jobs submitted in this process that asked for a transcript; a job resumed after a
        #: restart is reported without one rather than with one nobody asked for.
        self._want_transcript: set[str] = set()
        #: Set once Resemble refused intelligence for this key (HTTP 403 for the product):
        #: later scans do not ask for it (nor pay the refused round trip) until a restart.
        self._intelligence_refused = False
        #: The same for audio source tracing.
        self._tracing_refused = False

    @property
    def provider(self) -> ProviderName:
        return PROVIDER

    def accepts(self, upload: Upload, options: SubmitOptions | None = None) -> bool:
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
        # Tracing is an audio product (reference §2 parameters: "audio"); a video's sound
        # is judged by `metrics` all the same, but tracing is not offered for it.
        if options.generator and upload.kind is not MediaKind.VIDEO and not self._tracing_refused:
            fields["audio_source_tracing"] = "true"
        timing = JobTiming(time.monotonic(), upload.duration_s)
        file = FilePart("file", upload.path, filename, content_type, options.on_sent)
        dropped: str | None = None
        while True:
            try:
                envelope = await self._create(fields, file)
                break
            except ProviderAuthError as exc:
                # A 403 is also the answer for a product the plan lacks (reference §9: "the
                # key lacks access to a requested product"), given before any detect is
                # created, so asking again without it bills nothing twice. Intelligence is
                # dropped first (the batch docs show it plan-gated), then tracing; refused
                # with neither, the key itself is refused.
                dropped = next((p for p in _OPTIONAL_PRODUCTS if p in fields), None)
                if exc.status != 403 or dropped is None:
                    raise
                del fields[dropped]
        if dropped is not None:
            # Only the product whose removal let the upload through is known to be lacking;
            # one dropped before it is asked for again by the next scan.
            self._refuse(dropped)
        want_transcript = "intelligence" in fields
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

    def _refuse(self, product: str) -> None:
        """Tell the operator once; every later scan simply goes without the product."""
        if product == "intelligence":
            if self._intelligence_refused:
                return
            self._intelligence_refused = True
            remedy = "set SPOOFWATCH_RESEMBLE_INTELLIGENCE=false"
            without = "transcripts"
        else:
            if self._tracing_refused:
                return
            self._tracing_refused = True
            remedy = "turn generator detection off (/spoofwatch settings generators)"
            without = "the generator's name"
        log.warning(
            "Resemble answered HTTP 403 to an upload asking for %s: this API key's plan "
            "lacks it. Scans continue without %s until Spoofwatch restarts; enable it on "
            "the Resemble plan, or %s.",
            product,
            without,
            remedy,
        )

    async def check_credentials(self) -> None:
        """Ask whether the key is taken, without billing anything.

        Resemble has no credential or balance endpoint; the detect list (`GET /detect`,
        reference §7: `page` required, `page_size` 10-1000) is the cheapest authenticated,
        unbilled call. Raises ProviderAuthError for a refused key, other ProviderErrors when
        the service cannot be asked. An empty wallet only shows on an upload (402).
        """
        try:
            await self._http.request(
                "GET",
                f"{self._base}/detect?page=1&page_size=10",
                _AnyBody,
                what="credential check",
                retry_safe=True,
            )
        except ProviderProtocolError as exc:
            if exc.status is None or not 200 <= exc.status < 300:
                raise

    @property
    def finds_jobs(self) -> bool:
        # Resemble keeps no metadata of ours, and zero-retention mode even replaces the file
        # name: nothing in its list identifies which attachment a detect was for.
        return False

    async def find_job(self, meta: Mapping[str, str], *, submitted_after: datetime) -> str | None:
        """Always None: Resemble cannot be asked (see `finds_jobs`)."""
        return None

    async def send_feedback(
        self, job_id: str, *, synthetic: bool, said_synthetic: bool
    ) -> VendorAck:
        """POST /detect/{uuid}/feedback (reference §7, from the OpenAPI spec): `correct` when
        the moderator agrees with the verdict, else what it should have been."""
        if synthetic == said_synthetic:
            kind = "correct"
        else:
            kind = "should_be_ai_generated" if synthetic else "should_be_authentic"
        # `comment` and `source` are optional and their vocabulary unstated: left out.
        body = {"type": kind}
        return await self._acknowledged(
            "POST", f"/detect/{quote(job_id, safe='')}/feedback", job_id, "feedback", body
        )

    async def delete_job(self, job_id: str) -> VendorAck:
        """DELETE /detect/{uuid} (reference §7): the detect and what Resemble kept of it."""
        return await self._acknowledged(
            "DELETE", f"/detect/{quote(job_id, safe='')}", job_id, "delete", None
        )

    async def _acknowledged(
        self, method: str, path: str, job_id: str, what: str, body: dict[str, str] | None
    ) -> VendorAck:
        """One call about a finished detect, its outcome recorded rather than raised."""
        try:
            answer = await self._http.request(
                method,
                f"{self._base}{path}",
                Acknowledgement,
                what=what,
                # Both are idempotent: feedback is upserted per user, a repeated delete 404s.
                retry_safe=True,
                json_body=body,
            )
        except ProviderNotFound:
            outcome = VendorAck.NOT_FOUND
        except ProviderAuthError as exc:
            outcome = VendorAck.REFUSED if exc.status == 403 else VendorAck.FAILED
        except ProviderError as exc:
            log.warning("Resemble %s of detect %s failed: %s", what, job_id, exc)
            outcome = VendorAck.FAILED
        else:
            outcome = VendorAck.FAILED if answer.success is False else VendorAck.DONE
        log.info("Resemble %s of detect %s: %s", what, job_id, outcome.value)
        return outcome

    async def wait(self, job_id: str) -> Verdict:
        """Poll the detect until it is final (`job_state`), then normalize it.

        A transcript that was asked for is waited for a little longer if the intelligence
        report is still being written (`_await_report`).
        """
        url = f"{self._base}/detect/{quote(job_id, safe='')}"
        deadline = time.monotonic() + self._poll.deadline_s
        item = await self._poll_until_done(job_id, lambda: self._get(url), job_state)
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
        except ProviderError as exc:
            # The detect's answer is already in hand; a failed read costs only the transcript.
            log.warning("Resemble detect %s: gave up waiting for its transcript: %s", job_id, exc)
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
            texts = (envelope.message, envelope.error)
            said = next((text for text in texts if isinstance(text, str) and text), None)
            said = self._http.redact(said or "no reason given")
            message = f"Resemble refused the {what}: {said}"
            if rejected:
                raise ProviderRejected(PROVIDER, message)
            raise ProviderProtocolError(PROVIDER, message)
        if envelope.item is None:
            raise ProviderProtocolError(PROVIDER, f"Resemble answered the {what} without an item.")
        return envelope.item
