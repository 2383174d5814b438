"""What every detection-service client offers the scan lifecycle."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from bot.verdict import MediaKind, ProviderName, Verdict


@dataclass(frozen=True, slots=True)
class Upload:
    """A file on disk, ready to be sent to a provider."""

    path: Path
    filename: str
    content_type: str
    kind: MediaKind
    #: ffprobe's container name ("ogg", "wav", "mov,mp4,m4a,3gp,3g2,mj2", ...).
    format_name: str
    #: Seconds of media, when known: how long the provider should take depends on it.
    duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class SubmitOptions:
    #: Ask for a transcript where it costs extra (Resemble `intelligence`).
    transcript: bool = False
    #: Ask which generator made a synthetic voice (Resemble `audio_source_tracing`,
    #: Behavioral Signals `enable_generator_detection`); neither vendor documents a charge.
    generator: bool = True
    #: Judge a video's pictures as well as its sound where the provider can (Behavioral
    #: Signals' experimental video endpoint); off sends only the sound, as before.
    visual: bool = False
    #: Free-form identifiers the provider may echo back (Behavioral Signals `meta`).
    meta: dict[str, str] | None = None
    #: Called once the file's last byte is handed to the connection: from then on the scan
    #: only waits on the provider (the scan's `bot.worker_pool.Worker.hand_off`).
    on_sent: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    """The provider accepted the job. `verdict` is set when its answer already held the result."""

    job_id: str
    verdict: Verdict | None = None


class VendorAck(StrEnum):
    """How a provider answered a call about a job it already judged (feedback, delete).

    Never an error to the moderator: every outcome is recorded and the action goes on.
    """

    DONE = "done"
    #: HTTP 403: the plan lacks the product, or the vendor does not allow it for this job.
    REFUSED = "refused"
    #: HTTP 404: the job is already gone (or was never this key's).
    NOT_FOUND = "not_found"
    #: The vendor offers no such call (Behavioral Signals has no feedback or delete).
    UNSUPPORTED = "unsupported"
    #: Anything else: an outage, a timeout, a bad key.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of one HTTP request: only on connection errors and 408/409/429/5xx."""

    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Waiting for a job: checks around its expected finish, else capped exponential backoff,
    under an overall deadline (see `bot.detectors._polling`)."""

    initial_s: float = 1.0
    factor: float = 1.5
    max_interval_s: float = 5.0
    deadline_s: float = 300.0


class Detector(Protocol):
    """One deepfake-detection service, spoken to over the shared aiohttp session."""

    @property
    def provider(self) -> ProviderName: ...

    def accepts(self, upload: Upload, options: SubmitOptions | None = None) -> bool:
        """Whether the service takes this file as it is, sent with `options` (else it is
        transcoded to WAV)."""
        ...

    async def submit(self, upload: Upload, options: SubmitOptions) -> Submission:
        """Send the file. Never retried once the request may have reached the service."""
        ...

    async def wait(self, job_id: str) -> Verdict:
        """Poll the job until it is terminal and return its verdict, or raise ProviderError."""
        ...

    async def check_credentials(self) -> None:
        """Ask the service, billing nothing, whether it takes the credentials.

        Raises ProviderAuthError for refused credentials (or ProviderOutOfCredits where the
        service says so), other ProviderErrors when it cannot be asked right now.
        """
        ...

    @property
    def finds_jobs(self) -> bool:
        """Whether `find_job` can tell a job that exists from one that was never created."""
        ...

    async def find_job(self, meta: Mapping[str, str], *, submitted_after: datetime) -> str | None:
        """The newest job submitted with all these `meta` items, or None if there is none.

        Recovers the job id of an upload whose answer was lost (a crash, a timeout).
        """
        ...

    async def send_feedback(
        self, job_id: str, *, synthetic: bool, said_synthetic: bool
    ) -> VendorAck:
        """Tell the vendor a moderator's decision on its verdict: whether the media is
        synthetic (`synthetic`) and whether the verdict said so (`said_synthetic`)."""
        ...

    async def delete_job(self, job_id: str) -> VendorAck:
        """Delete the vendor's copy of the job (its record and any media it kept)."""
        ...
