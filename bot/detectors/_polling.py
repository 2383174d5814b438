"""When to ask a provider whether a job is done: around the moment it is expected to finish.

Neither service can call us back, so the verdict reaches Discord only at the first status
check after the job finished. Plain backoff (1 s, ×1.5, capped at 5 s) answers a 60 s job
up to 5 s late after 16 checks. Jobs of one provider take a fairly steady time per second of
media, so each client learns that speed from the jobs it has seen finish (`ProcessingSpeed`)
and checks sparsely until just before the expected finish, then densely, then backs off again
if the job overruns (`poll_offsets`). Until the first job has finished, and for jobs resumed
after a restart (whose start time is lost), it is the plain backoff. bench/time_to_verdict.py
measures both.
"""

from __future__ import annotations

import statistics
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass

from bot.detectors._base import PollPolicy

#: Durations under this count as this (a 0.3 s clip still costs a job's fixed overhead).
_MIN_MEDIA_S = 1.0
#: Around the expected finish, dense checks start this fraction of the expected time early.
_LEAD_FRACTION = 0.1
#: Jobs submitted but not yet waited for, kept per client; beyond this the oldest go.
_MAX_TRACKED = 4096


class ProcessingSpeed:
    """How long a provider takes per second of media: the median of its recent jobs."""

    def __init__(self, window: int = 32) -> None:
        self._ratios: deque[float] = deque(maxlen=window)

    def record(self, media_s: float | None, processing_s: float) -> None:
        """One finished job: `processing_s` from submission to (about) its finish."""
        if media_s is None or media_s <= 0 or processing_s < 0:
            return
        self._ratios.append(processing_s / max(media_s, _MIN_MEDIA_S))

    def expected_s(self, media_s: float | None) -> float | None:
        """Seconds a job on `media_s` of media should take; None until a job was seen."""
        if media_s is None or media_s <= 0 or not self._ratios:
            return None
        return statistics.median(self._ratios) * max(media_s, _MIN_MEDIA_S)


def poll_offsets(policy: PollPolicy, expected_s: float | None) -> Iterator[float]:
    """Seconds after submission at which to check a job, forever (the caller's deadline ends it).

    Without an expectation: at once, then capped exponential backoff. With one: the first
    check a little before the expected finish (10 % of it, at least one dense interval, at
    most the backoff cap), checks every dense interval until as long after it,
    then backoff from there.
    """
    if expected_s is None:
        offset, interval = 0.0, policy.initial_s
        yield offset
        while True:
            offset += interval
            yield offset
            interval = min(interval * policy.factor, policy.max_interval_s)
    dense = min(policy.dense_interval_s, policy.initial_s)
    lead = min(max(dense, _LEAD_FRACTION * expected_s), max(policy.max_interval_s, dense))
    offset = max(0.0, expected_s - lead)
    yield offset
    while offset < expected_s + lead:
        offset += dense
        yield offset
    interval = dense
    while True:
        interval = min(interval * policy.factor, policy.max_interval_s)
        offset += interval
        yield offset


@dataclass(slots=True)
class JobTiming:
    """What a client knows about when one of its jobs started."""

    #: time.monotonic() when the upload began.
    submitted_at: float
    media_s: float | None
    #: Seconds after submission when the job was last seen still running.
    running_at: float = 0.0


class JobClock:
    """A client's timing of its jobs: schedules their checks, learns from their finish."""

    def __init__(self, policy: PollPolicy) -> None:
        self.policy = policy
        self.speed = ProcessingSpeed()
        self._jobs: OrderedDict[str, JobTiming] = OrderedDict()

    def started(self, job_id: str, timing: JobTiming) -> None:
        """A job was accepted and is still running (its checks come later)."""
        self._jobs[job_id] = timing
        while len(self._jobs) > _MAX_TRACKED:
            self._jobs.popitem(last=False)

    def finished_at_once(self, timing: JobTiming) -> None:
        """A job that came back finished with its upload (Prefer: wait): an exact sample."""
        self.speed.record(timing.media_s, time.monotonic() - timing.submitted_at)

    def checks(self, job_id: str) -> JobChecks:
        """The checks of a job about to be waited for (resumed jobs get plain backoff)."""
        timing = self._jobs.pop(job_id, None)
        return JobChecks(self, timing)


class JobChecks:
    """The status checks of one job: when the next is due, and learning from the last."""

    def __init__(self, clock: JobClock, timing: JobTiming | None) -> None:
        self._clock = clock
        self._timing = timing
        self._origin = timing.submitted_at if timing else time.monotonic()
        expected = clock.speed.expected_s(timing.media_s) if timing else None
        self._offsets = poll_offsets(clock.policy, expected)
        self._last_running = timing.running_at if timing else 0.0
        self._upcoming: float | None = None

    def delay(self) -> float:
        """Seconds to sleep before the next check: 0 when one is overdue.

        Overdue checks (the upload itself or a Prefer: wait hold took that long) become one
        check now, never a burst.
        """
        elapsed = time.monotonic() - self._origin
        offset = self._upcoming if self._upcoming is not None else next(self._offsets)
        self._upcoming = None
        if offset > elapsed:
            return offset - elapsed
        while (offset := next(self._offsets)) <= elapsed:
            continue
        self._upcoming = offset
        return 0.0

    def still_running(self) -> None:
        self._last_running = time.monotonic() - self._origin

    def done(self) -> None:
        """The check that found the job finished: it ended since the previous check."""
        if self._timing is None:
            return
        finished = time.monotonic() - self._origin
        # The middle of the window it finished in: unbiased, whatever the window's width.
        self._clock.speed.record(self._timing.media_s, (self._last_running + finished) / 2)
