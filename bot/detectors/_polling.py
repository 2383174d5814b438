"""When to ask a provider whether a job is done: around the moment it is expected to finish.

Neither service can call us back, so the verdict reaches Discord only at the first status
check after the job finished. Plain backoff (1 s, ×1.5, capped at 5 s) answers a 60 s job
up to 5 s late after 16 checks. Jobs of one provider take a fairly steady time for a given
length of media, so each client learns those times, and how much they vary, from the jobs it
has seen finish (`ProcessingTimes`), and checks a job only from just before its expected
finish, then densely, then backs off again if it overruns (`poll_offsets`). Until the first job has
finished, and for jobs resumed after a restart (whose start time is lost), it is the plain
backoff. bench/time_to_verdict.py measures both.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass

from bot.detectors._base import PollPolicy

#: Jobs on media closer in length than this say nothing about the cost per second.
_MIN_MEDIA_GAP_S = 0.5
#: Checks around the expected finish: about this many, never closer than this...
_CHECKS_PER_WINDOW = 4
_MIN_DENSE_S = 0.05
#: ...from this fraction of the expected time early, while too few jobs were seen to know
#: how much their times vary.
_LEAD_FRACTION = 0.1
#: Jobs needed before their spread is trusted instead of `_LEAD_FRACTION`.
_SPREAD_AFTER = 4
#: Jobs submitted but not yet waited for, kept per client; beyond this the oldest go.
_MAX_TRACKED = 4096


@dataclass(frozen=True, slots=True)
class Expectation:
    """When a job should finish, in seconds after submission, and how sure that is."""

    finish_s: float
    #: How far either side of `finish_s` the finish may plausibly fall; None = unknown.
    spread_s: float | None = None


class ProcessingTimes:
    """How long a provider's jobs take: a line in the media's duration, fitted to recent jobs.

    Services have a fixed cost per job and a cost per second of media, in proportions
    nobody documents, so both are fitted: the slope is the median of the slopes between
    pairs of jobs (Theil-Sen), the intercept the median of what is left. Medians, because a
    job that sat in the provider's queue must not move the line. A job is known to have
    finished somewhere between two checks; the middle of that window is its time, and the
    intercept weighs each job by how narrow its window was, so that the wide windows of the
    first jobs (checked by plain backoff) give way to the narrow ones that follow.
    """

    def __init__(self, window: int = 32) -> None:
        #: (media seconds or None, processing seconds, width of the window it fell in).
        self._jobs: deque[tuple[float | None, float, float]] = deque(maxlen=window)
        self._fit: tuple[float, float, float | None] | None = None

    def record(self, media_s: float | None, processing_s: float, window_s: float = 0.0) -> None:
        """One finished job: done `processing_s` after submission, give or take half of
        `window_s` (0: exactly, as when Prefer: wait answered at the finish)."""
        if processing_s < 0 or (media_s is not None and media_s < 0):
            return
        self._jobs.append((media_s, processing_s, max(window_s, 0.0)))
        self._fit = None

    def expect(self, media_s: float | None) -> Expectation | None:
        """When a job on `media_s` of media (None: unknown) should finish; None until a job
        was seen."""
        if not self._jobs:
            return None
        if self._fit is None:
            self._fit = self._line()
        intercept, slope, spread = self._fit
        if media_s is None:
            # A file of unknown length: expect the typical job.
            return Expectation(_weighted_median([(t, _weight(w)) for _, t, w in self._jobs]))
        return Expectation(max(0.0, intercept + slope * media_s), spread)

    def _line(self) -> tuple[float, float, float | None]:
        known = [(m, t, w) for m, t, w in self._jobs if m is not None]
        if not known:
            return _weighted_median([(t, _weight(w)) for _, t, w in self._jobs]), 0.0, None
        slopes = [
            (t2 - t1) / (m2 - m1)
            for i, (m1, t1, _) in enumerate(known)
            for m2, t2, _ in known[i + 1 :]
            if abs(m2 - m1) >= _MIN_MEDIA_GAP_S
        ]
        slope = max(0.0, statistics.median(slopes)) if slopes else 0.0
        intercept = _weighted_median([(t - slope * m, _weight(w)) for m, t, w in known])
        spread = None
        if len(known) >= _SPREAD_AFTER:
            # Median absolute deviation from the line, scaled to a standard deviation...
            residuals = [(abs(t - intercept - slope * m), _weight(w)) for m, t, w in known]
            # ...but no smaller than the windows' own uncertainty (a finish anywhere in a
            # window of width w: a standard deviation of w/√12), or jobs all caught by the
            # same wide backoff steps would look perfectly punctual.
            windows = _weighted_median([(w, _weight(w)) for _, _, w in known])
            spread = max(1.4826 * _weighted_median(residuals), windows / math.sqrt(12))
        return intercept, slope, spread


def _weight(window_s: float) -> float:
    return 1.0 / max(window_s, _MIN_DENSE_S)


def _weighted_median(values: list[tuple[float, float]]) -> float:
    """The value at which half the total weight lies on either side."""
    ordered = sorted(values)
    half = sum(weight for _, weight in ordered) / 2
    running = 0.0
    for value, weight in ordered:
        running += weight
        if running >= half:
            return value
    return ordered[-1][0]


def poll_offsets(policy: PollPolicy, expected: Expectation | None) -> Iterator[float]:
    """Seconds after submission at which to check a job, forever (the caller's deadline ends it).

    Without an expectation: capped exponential backoff from `policy.initial_s` (a check the
    moment the upload returns would find a job done only if the service answers at once;
    that is learned from the first job, after which the expectation is about 0).

    With one: checks across a window around the expected finish, as wide as the finish is
    uncertain (twice the observed spread either side, or a tenth of the expected time until
    the spread is known; at most the backoff cap), about four of them (never further apart
    than `policy.initial_s`), then backoff. A steady provider's job is caught within a
    twentieth of a second in two or three checks.
    """
    if expected is None:
        offset, interval = 0.0, policy.initial_s
        while True:
            offset += interval
            yield offset
            interval = min(interval * policy.factor, policy.max_interval_s)
    finish = expected.finish_s
    margin = _LEAD_FRACTION * finish if expected.spread_s is None else 2 * expected.spread_s
    lead = min(max(_MIN_DENSE_S, margin), policy.max_interval_s)
    # Never sparser than the first backoff step (tests poll every few milliseconds).
    dense = min(max(_MIN_DENSE_S, 2 * lead / _CHECKS_PER_WINDOW), policy.initial_s)
    offset = max(0.0, finish - lead)
    yield offset
    while offset < finish + lead:
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

    #: time.monotonic() when the service accepted the job (for a `Prefer: wait` upload,
    #: when the upload began: that answer comes only when the job is done or held long).
    submitted_at: float
    media_s: float | None
    #: Seconds after submission when the job was last seen still running.
    running_at: float = 0.0


class JobClock:
    """A client's timing of its jobs: schedules their checks, learns from their finish."""

    def __init__(self, policy: PollPolicy) -> None:
        self.policy = policy
        self.times = ProcessingTimes()
        self._jobs: OrderedDict[str, JobTiming] = OrderedDict()

    def started(self, job_id: str, timing: JobTiming) -> None:
        """A job was accepted and is still running (its checks come later)."""
        self._jobs[job_id] = timing
        while len(self._jobs) > _MAX_TRACKED:
            self._jobs.popitem(last=False)

    def finished_at_once(self, timing: JobTiming) -> None:
        """A job that came back finished with its upload (Prefer: wait): an exact sample."""
        self.times.record(timing.media_s, time.monotonic() - timing.submitted_at)

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
        expected = clock.times.expect(timing.media_s) if timing else None
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
        self._clock.times.record(
            self._timing.media_s,
            (self._last_running + finished) / 2,
            window_s=finished - self._last_running,
        )
