"""The scan pipeline: the one life every scan lives, Discord-free.

The stages, in order, and where each lives:

=========  =========================================================  ======================
stage      what happens                                               where
=========  =========================================================  ======================
accept     the case row is written first (`ScanService.scan`;         `_service.py`
           `resume` picks up a row a restart left)
fetch      the bytes to disk, size-capped, allowed hosts only         `_media.py` (`MediaSteps`)
probe      what the bytes really are; kind and length checked         `_media.py` (`MediaSteps`)
reuse?     a verdict on the same bytes is reused; the bytes are       `_jobs.py`
           claimed so one file is sent once; the daily quota
prepare    16 kHz mono WAV for a provider that needs it               `_media.py` (`MediaSteps`)
submit     one billed job, its id stored at once; returns `Sent`      `_jobs.py`
           (the worker was told when the last byte went out)
wait       poll until the job is final, without a worker              `_jobs.py`
record     `mark_done` / `mark_failed`: a `ScanOutcome`               `_service.py`
answer     one reply per message, recorded on its cases               `_answer.py`
           (`ScanService.scan_message`; the Discord side renders
           and posts it through an `Answerer`)
=========  =========================================================  ======================

`_request.py` holds the words the stages share: `ScanRequest` in, `ScanOutcome` out.
The media steps are one object passed in (`MediaTools` by default, a fake in a test), and
the scan's worker is passed in too (`bot.worker_pool.Worker`): the scan hands it on once it
only waits on the network.
"""

from bot.scanning._answer import Answerer, Reply
from bot.scanning._jobs import Sent
from bot.scanning._media import MediaSteps, MediaTools
from bot.scanning._request import (
    MediaSource,
    ScanLimits,
    ScanOutcome,
    ScanRequest,
    ScanStage,
    StageListener,
    provider_meta,
)
from bot.scanning._service import (
    Alongside,
    Clock,
    MessagePart,
    ScanService,
    utc_now,
)

__all__ = [
    "Alongside",
    "Answerer",
    "Clock",
    "MediaSource",
    "MediaSteps",
    "MediaTools",
    "MessagePart",
    "Reply",
    "ScanLimits",
    "ScanOutcome",
    "ScanRequest",
    "ScanService",
    "ScanStage",
    "Sent",
    "StageListener",
    "provider_meta",
    "utc_now",
]
