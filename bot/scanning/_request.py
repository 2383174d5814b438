"""What a scan is asked to do and what it comes to: the words every stage speaks.

`ScanRequest` (with its `MediaSource` and `ScanLimits`) goes in at *accept*; `ScanOutcome`
comes out at *record*; `ScanStage` is what a listener hears on the way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from bot.errors import SpoofwatchError
from bot.storage import NewScan, ScanRecord, ScanStatus
from bot.verdict import Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MediaSource:
    """Where the bytes come from: a URL (a Discord attachment) or a local file (the CLI)."""

    url: str | None = None
    path: Path | None = None


class ScanStage(StrEnum):
    """The steps a scan reports as it reaches them (for a terminal's progress display)."""

    ACCEPTED = "accepted"
    UPLOADING = "uploading"
    SUBMITTED = "submitted"
    WAITING = "waiting"
    REUSED = "reused"
    DONE = "done"


#: Told of each stage with the case and, for SUBMITTED, the provider's job id. Called in the
#: scan's task: it must not block, and what it raises is logged and ignored.
StageListener = Callable[[ScanStage, ScanRecord, str | None], None]


def tell(
    listener: StageListener | None, stage: ScanStage, record: ScanRecord, detail: str | None = None
) -> None:
    """Report a stage; a listener's failure never fails the scan."""
    if listener is None:
        return
    try:
        listener(stage, record, detail)
    except Exception:
        log.exception("stage listener failed at %s of case #%s", stage, record.case_number)


@dataclass(frozen=True, slots=True)
class ScanLimits:
    max_file_bytes: int
    max_duration_s: float
    #: Scans a guild may send to the provider per UTC day; None = unlimited.
    daily_quota: int | None = None


@dataclass(frozen=True, slots=True)
class ScanRequest:
    new: NewScan
    source: MediaSource
    limits: ScanLimits
    voice_flag: bool = False
    #: Duration Discord reports for the attachment (voice messages), checked before download.
    declared_duration_s: float | None = None
    want_transcript: bool = False
    #: Ask which generator made a synthetic voice (the guild's `generator_detection`).
    want_generator: bool = True
    #: Judge a video's pictures too where the provider can (the guild's `video_faces`).
    want_visual: bool = True
    store_transcript: bool = True
    meta: Mapping[str, str] = field(default_factory=dict)
    on_stage: StageListener | None = None


def provider_meta(
    *,
    guild_id: int | None,
    channel_id: int | None,
    message_id: int | None,
    attachment_id: int | None,
) -> dict[str, str]:
    """The identifiers sent along with a job (Behavioral Signals echoes them in `meta`).

    The one place their shape is defined: `resume` looks a job up by the same keys.
    """
    return {
        "guild": str(guild_id or ""),
        "channel": str(channel_id or ""),
        "message": str(message_id or ""),
        "attachment": str(attachment_id or ""),
    }


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    record: ScanRecord
    verdict: Verdict | None = None
    error: SpoofwatchError | None = None
    #: The result of an earlier run, returned again for a repeated request (a replayed
    #: event, or a restart catching up): its `scan_finished` was announced by that run.
    replayed: bool = False
    #: The other provider's outcome on the same file, when one was asked for
    #: (`bot.opinions`): its own case, linked to this one.
    second: ScanOutcome | None = None

    @property
    def reused(self) -> bool:
        return self.record.status is ScanStatus.REUSED
