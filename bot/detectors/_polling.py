"""When to ask a provider whether a job is done: around the moment it is expected to finish.

Neither service can call us back, so the verdict reaches Discord only at the first status
check after the job finished. Plain backoff (1 s, ×1.5, capped at 5 s) answers a 60 s job
up to 5 s late after 16 checks. Jobs of one provider take a fairly steady time for a given
length of media, so each client learns those times, and how much they vary, from the jobs it
has seen finish (`ProcessingTimes`), and checks a job only from just before its expected
finish, then densely, then backs off again if it overruns (`poll_offsets`). Until the first
job has finished, and for jobs resumed after a restart (whose start time is lost), it is the
plain backoff. Jobs sent before anything was learned (a burst after a start) each get that
backoff at a different phase, so that between them they check often, and the moment one is
found done the others check at the time it took; plans made before the spread of the times
was known are made again as more jobs finish (`JobChecks.wait`). bench/time_to_verdict.py
and bench/sdk_compare.py measure them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import statistics
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import aiohttp
from pydantic import SecretStr

from bot.detectors._base import PollPolicy, RetryPolicy
from bot.detectors._http import DISPLAY_NAMES, ProviderHTTP
from bot.errors import ProviderTimeout
from bot.verdict import ProviderName

log = logging.getLogger(__name__)

_Status = TypeVar("_Status")

#: Jobs on media closer in length than this say nothing about the cost per second.
_MIN_MEDIA_GAP_S = 0.5
#: Checks around the expected finish: about this many across the window, never closer than this
#: (closer than the jitter of timers and of a loaded loop would buy nothing)...
_CHECKS_PER_WINDOW = 4
_MIN_DENSE_S = 0.02
#: Windows narrower than this count as this wide when weighing jobs (timer and network
#: jitter make a narrower one no more precise).
_MIN_WINDOW_S = 0.05
#: ...in a window this fraction of the expected time either side of it, while too few jobs
#: were seen to know how much their times vary.
_LEAD_FRACTION = 0.1
#: Jobs needed before their spread is trusted instead of `_LEAD_FRACTION`.
_SPREAD_AFTER = 4
#: Checks a job planned blind adds when another job of its client is found done.
_CATCH_UP_CHECKS = 3
#: Jobs submitted but not yet waited for, kept per client; beyond this the oldest go.
_MAX_TRACKED = 4096
#: Blind jobs that get a phase of their own. Between them, 32 phases put a check every ~3 %
#: of the time a job has run, so the first finish is seen that soon; more would hardly see
#: it sooner, while a phased ladder's checks fall before a typical finish more often than
#: the plain one's (with 200 jobs at once: 951 requests against 823 with the rest plain).
_PROBES = 32
#: The golden ratio's fractional part: its multiples mod 1 spread evenly over [0, 1) however
#: many are taken, so any number of jobs started together get evenly spread phases.
_GOLDEN = (math.sqrt(5) - 1) / 2


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
        `window_s` (0: exactly, as when the upload's own answer said it was done)."""
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
            # Median absolute deviation from the line, scaled to a standard deviation: how
            # far each finish must have been from the line, i.e. the distance to its window
            # (0 when the line passes through it; a midpoint is only a guess within it)...
            residuals = [
                (max(0.0, abs(t - intercept - slope * m) - w / 2), _weight(w)) for m, t, w in known
            ]
            # ...but no smaller than the windows' own uncertainty (a finish anywhere in a
            # window of width w: a standard deviation of w/√12), or jobs all caught by the
            # same wide backoff steps would look perfectly punctual.
            windows = _weighted_median([(w, _weight(w)) for _, _, w in known])
            spread = max(1.4826 * _weighted_median(residuals), windows / math.sqrt(12))
        return intercept, slope, spread


def _weight(window_s: float) -> float:
    return 1.0 / max(window_s, _MIN_WINDOW_S)


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


def poll_offsets(
    policy: PollPolicy, expected: Expectation | None, phase: float = 0.0
) -> Iterator[float]:
    """Seconds after submission at which to check a job, forever (the caller's deadline ends it).

    Without an expectation: capped exponential backoff, first after `policy.initial_s`
    (1, 2.5, 4.75, 8.125 s... by default; a check the moment the upload returns would find
    a job done only if the service answers at once, and that is learned from the first
    job, after which the expectation is about 0). `phase`, in [0, 1), moves each check back
    towards the one before it (on a log scale; the first towards `initial_s / factor`):
    jobs started together at phases spread over [0, 1) check, between them, at moments
    spread over all of time, each as often as plain backoff, so the first finish among them
    is seen soon after it happens rather than at one shared step (`JobChecks.wait`).

    With one: checks across a window around the expected finish, as wide as the finish is
    uncertain (twice the observed spread either side, or a tenth of the expected time until
    the spread is known; at most the backoff cap), a quarter of its width apart (never
    further apart than `policy.initial_s`), then backoff; with a known spread the window's
    first quarter is skipped. A steady provider's job is caught within a fiftieth of a
    second in two or three checks.
    """
    if expected is None:
        previous, offset = policy.initial_s / policy.factor, policy.initial_s
        interval = policy.initial_s
        while True:
            yield previous**phase * offset ** (1 - phase)
            interval = min(interval * policy.factor, policy.max_interval_s)
            previous, offset = offset, offset + interval
    finish = expected.finish_s
    margin = _LEAD_FRACTION * finish if expected.spread_s is None else 2 * expected.spread_s
    lead = min(max(_MIN_DENSE_S, margin), policy.max_interval_s)
    # Never sparser than the first backoff step (tests poll every few milliseconds).
    dense = min(max(_MIN_DENSE_S, 2 * lead / _CHECKS_PER_WINDOW), policy.initial_s)
    # Known spread: from one spread early. A check two spreads early would find only the
    # few jobs that finish that early (one in 40, if the times are normal); those are now
    # found one spread later. While the spread is unknown the expectation is rough (the
    # first jobs' wide windows), and a job found done at its first check says only that it
    # finished some time before, so the window opens a whole lead early.
    offset = max(0.0, finish - (lead if expected.spread_s is None else lead / 2))
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

    #: time.monotonic() when the service accepted the job (for an upload whose answer
    #: already held the verdict, when the upload began).
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
        self._phases = itertools.count()
        #: Finished jobs recorded so far, and how long after its submission the last one
        #: was seen done.
        self.finishes = 0
        self.seen_done_s: float | None = None
        #: Jobs on a rough plan, waiting for the next finish to be recorded (`JobChecks.wait`).
        self._learners: set[asyncio.Future[None]] = set()

    def started(self, job_id: str, timing: JobTiming) -> None:
        """A job was accepted and is still running (its checks come later)."""
        self._jobs[job_id] = timing
        while len(self._jobs) > _MAX_TRACKED:
            self._jobs.popitem(last=False)

    def finished_at_once(self, timing: JobTiming) -> None:
        """A job that came back finished with its upload: an exact sample."""
        self.record(timing.media_s, time.monotonic() - timing.submitted_at)

    def checks(self, job_id: str) -> JobChecks:
        """The checks of a job about to be waited for (resumed jobs get plain backoff)."""
        timing = self._jobs.pop(job_id, None)
        return JobChecks(self, timing)

    def record(self, media_s: float | None, processing_s: float, window_s: float = 0.0) -> None:
        """A job finished (see `ProcessingTimes.record`).

        It was seen done `processing_s + window_s / 2` seconds after its submission
        (`seen_done_s`); jobs waiting on a rough plan are woken to use what it taught.
        """
        self.times.record(media_s, processing_s, window_s)
        self.finishes += 1
        self.seen_done_s = processing_s + window_s / 2
        learners, self._learners = self._learners, set()
        for learner in learners:
            if not learner.done():
                learner.set_result(None)

    def next_phase(self) -> float:
        """The backoff phase of the next job planned blind, in [0, 1).

        The first is 0 (the plain ladder); the next ones step by the golden ratio, so jobs
        started together get phases, and so checks, evenly spread however many they are.
        Beyond `_PROBES` it is 0 again: those jobs wait for what the others find.
        """
        index = next(self._phases)
        return (index * _GOLDEN) % 1.0 if index < _PROBES else 0.0

    def lesson(self) -> asyncio.Future[None]:
        """Resolved when the next finished job is recorded; `forget` it once done waiting."""
        learner: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._learners.add(learner)
        return learner

    def forget(self, learner: asyncio.Future[None]) -> None:
        self._learners.discard(learner)
        learner.cancel()


class JobChecks:
    """The status checks of one job: when the next is due, and learning from the last."""

    def __init__(self, clock: JobClock, timing: JobTiming | None) -> None:
        self._clock = clock
        self._timing = timing
        self._origin = timing.submitted_at if timing else time.monotonic()
        self._last_running = timing.running_at if timing else 0.0
        #: The next offset, when `delay` had to look past overdue ones to find it.
        self._upcoming: float | None = None
        #: The offset whose delay `delay` returned last.
        self._due = 0.0
        #: The finishes its client had recorded when this job's checks were last planned.
        self._taught = clock.finishes
        expected = clock.times.expect(timing.media_s) if timing else None
        #: Planned with nothing learned (`blind`) or before the spread of the provider's times
        #: was known: such a plan takes what each finish recorded later teaches (`wait`).
        #: A job resumed after a restart never does: its start is unknown.
        self._blind = timing is not None and expected is None
        self._rough = timing is not None and (expected is None or expected.spread_s is None)
        if self._blind:
            self._offsets = poll_offsets(clock.policy, None, clock.next_phase())
        else:
            self._offsets = poll_offsets(clock.policy, expected)

    def delay(self) -> float:
        """Seconds to sleep before the next check: 0 when one is overdue.

        Overdue checks (the upload itself took that long) become one
        check now, never a burst.
        """
        elapsed = time.monotonic() - self._origin
        offset = self._upcoming if self._upcoming is not None else next(self._offsets)
        self._upcoming = None
        if offset > elapsed:
            self._due = offset
            return offset - elapsed
        while (offset := next(self._offsets)) <= elapsed:
            continue
        self._upcoming = offset
        return 0.0

    async def wait(self) -> None:
        """Sleep until the next check is due.

        A job on a rough plan (see `_rough`) takes each finish its client records, whether
        it comes while this job sleeps (it wakes) or while it was being checked (`_learn`).
        """
        while True:
            self._learn()
            delay = self.delay()
            if delay <= 0.0 or not self._rough:
                await asyncio.sleep(delay)
                return
            learner = self._clock.lesson()
            try:
                await asyncio.wait((learner,), timeout=delay)
            finally:
                learned = learner.done() and not learner.cancelled()
                self._clock.forget(learner)
            if not learned:
                return
            self._upcoming = self._due  # woken early: that check is still ahead

    def _learn(self) -> None:
        """Re-plan around the finishes recorded since this job's checks were planned.

        A blind job adds a few checks from the moment, after its own submission, at which
        the job that finished was seen done: jobs sent together on similar media finish
        together, so it is caught there instead of at its next backoff step (up to half its
        running time late); if it is still running then, its own backoff goes on. A job
        planned from the first few finishes, whose spread was unknown, is planned again
        from all those recorded now: in a burst many finish together, and the plan of the
        first job sent after the first of them rests on that one job's wide window.
        """
        if not self._rough or self._clock.finishes == self._taught:
            return
        self._taught = self._clock.finishes
        upcoming, self._upcoming = self._upcoming, None
        if self._blind:
            # Its own backoff stays, the check it was sleeping towards included.
            ahead = (
                self._offsets if upcoming is None else itertools.chain((upcoming,), self._offsets)
            )
            self._blind = self._rough = False
            self._offsets = heapq.merge(self._catch_up(), ahead)
            return
        assert self._timing is not None  # rough plans are only made for known starts
        expected = self._clock.times.expect(self._timing.media_s)
        assert expected is not None  # it had one, and finishes are only ever added
        self._rough = expected.spread_s is None
        # Checks until just after the last one are answered by it; any later ones that are
        # overdue become one check now (`delay`).
        after = self._last_running + _MIN_DENSE_S
        self._offsets = itertools.dropwhile(
            lambda offset: offset < after, poll_offsets(self._clock.policy, expected)
        )

    def _catch_up(self) -> list[float]:
        seen_done_s = self._clock.seen_done_s or 0.0
        # Each job's clock starts when its upload answer arrives, which in a burst of
        # uploads lags the service's own start by a few to tens of milliseconds, differing
        # from job to job; and the first job found done tends to be one whose clock lags
        # most (it looks done soonest). So a sibling may be a little behind it: the checks
        # start half a dense step later and go on a dense step apart; and one seen running
        # since that moment is checked again just after.
        first = max(seen_done_s + _MIN_DENSE_S / 2, self._last_running + _MIN_DENSE_S)
        return [first + k * _MIN_DENSE_S for k in range(_CATCH_UP_CHECKS)]

    def still_running(self) -> None:
        self._last_running = time.monotonic() - self._origin

    def done(self) -> None:
        """The check that found the job finished: it ended since the previous check."""
        if self._timing is None:
            return
        finished = time.monotonic() - self._origin
        # The middle of the window it finished in: unbiased, whatever the window's width.
        self._clock.record(
            self._timing.media_s,
            (self._last_running + finished) / 2,
            window_s=finished - self._last_running,
        )


class JobState(StrEnum):
    """Where a provider's job stands, as its client reads a status answer."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class PollingClient:
    """What both provider clients share: their HTTP (the key in the headers, redacted from
    every message), the poll policy with its `JobClock`, and the wait for a job.

    A client says how it authenticates and, per job, how to read its status and what that
    status means; the deadline, the checks and what a timeout tells the member are here.
    """

    #: How the provider calls a job in messages ("process", "detect").
    job_noun = "job"

    def __init__(
        self,
        http_session: aiohttp.ClientSession,
        *,
        provider: ProviderName,
        api_key: SecretStr,
        headers: Mapping[str, str],
        retry: RetryPolicy,
        poll: PollPolicy,
        request_timeout_s: float,
    ) -> None:
        self._poll = poll
        self._clock = JobClock(poll)
        self._http = ProviderHTTP(
            http_session,
            provider=provider,
            headers=headers,
            retry=retry,
            request_timeout_s=request_timeout_s,
            secrets=[api_key.get_secret_value()],
        )

    async def _poll_until_done(
        self,
        job_id: str,
        read: Callable[[], Awaitable[_Status]],
        state: Callable[[_Status], JobState],
    ) -> _Status:
        """The job's status once it is no longer running, read as the clock plans the
        checks; `ProviderTimeout` past the policy's deadline."""
        try:
            async with asyncio.timeout(self._poll.deadline_s):
                checks = self._clock.checks(job_id)
                while True:
                    await checks.wait()
                    status = await read()
                    seen = state(status)
                    if seen is not JobState.RUNNING:
                        if seen is JobState.COMPLETED:
                            checks.done()  # failures end early: they say nothing about speed
                        return status
                    checks.still_running()
                    log.debug("%s %s %s: still running", self._http.name, self.job_noun, job_id)
        except TimeoutError as exc:
            raise ProviderTimeout(
                self._http.provider,
                f"{DISPLAY_NAMES[self._http.provider]} did not finish {self.job_noun} {job_id} "
                f"within {self._poll.deadline_s:g} s; it may still finish later.",
            ) from exc
