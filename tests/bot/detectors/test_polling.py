"""When status checks happen: around a job's expected finish, learned from earlier jobs."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from bot.detectors import PollPolicy
from bot.detectors import _polling as polling
from bot.detectors._polling import (
    Expectation,
    JobClock,
    JobTiming,
    ProcessingTimes,
    poll_offsets,
)

DEFAULT = PollPolicy()


def first(offsets, n: int) -> list[float]:
    return [round(o, 3) for o in itertools.islice(offsets, n)]


def test_without_an_expectation_it_is_capped_backoff() -> None:
    """Fails if a job of unknown length is not checked at 1 s, then ×1.5 up to 5 s apart."""
    offsets = first(poll_offsets(DEFAULT, None), 7)
    assert offsets == [1.0, 2.5, 4.75, 8.125, 13.125, 18.125, 23.125]


def test_a_long_job_of_unknown_spread_is_checked_from_a_tenth_early() -> None:
    """Fails if a 60 s job is not first checked 5 s early (the cap), then every second."""
    offsets = first(poll_offsets(DEFAULT, Expectation(60.0)), 12)
    assert offsets[:11] == [55.0 + k for k in range(11)]
    assert offsets[11] == pytest.approx(66.5)  # overran: backoff again from the dense interval


def test_a_steady_provider_gets_a_narrow_window_of_checks() -> None:
    """Fails if a small known spread does not narrow the checks to one spread early, two
    late, a spread apart (a check two spreads early would find only one job in 40)."""
    offsets = first(poll_offsets(DEFAULT, Expectation(60.0, spread_s=0.1)), 5)
    assert offsets[:4] == pytest.approx([59.9, 60.0, 60.1, 60.2])
    assert offsets[4] > 60.3


def test_a_steady_short_job_is_caught_within_a_fiftieth_of_a_second() -> None:
    """Fails if a 2 s job of a steady provider is not checked at 1.99, 2.01 and 2.03 s."""
    offsets = first(poll_offsets(DEFAULT, Expectation(2.0, spread_s=0.0)), 3)
    assert offsets == [1.99, 2.01, 2.03]


def test_a_phase_moves_each_blind_check_back_towards_the_one_before() -> None:
    """Fails if a phased ladder leaves the plain one's steps (same number of checks, each
    between the plain check before it and its own) or phase 0 is not the plain ladder."""
    plain = first(poll_offsets(DEFAULT, None), 12)
    assert first(poll_offsets(DEFAULT, None, 0.0), 12) == plain
    bounds = [DEFAULT.initial_s / DEFAULT.factor, *plain]
    for phase in (0.1, 0.5, 0.9, 0.999):
        moved = first(poll_offsets(DEFAULT, None, phase), 12)
        assert moved == sorted(moved)
        for k, offset in enumerate(moved):
            assert bounds[k] < offset <= bounds[k + 1]
    halfway = first(poll_offsets(DEFAULT, None, 0.5), 3)
    assert halfway == pytest.approx([(1 / 1.5) ** 0.5, 2.5**0.5, (2.5 * 4.75) ** 0.5], abs=1e-3)


def test_blind_jobs_started_together_check_at_moments_spread_over_time() -> None:
    """Fails if 32 jobs planned before anything was learned check at shared moments (so a
    burst learns its first finish only at a backoff step) instead of evenly spread ones."""
    clock = JobClock(DEFAULT)
    phases = [clock.next_phase() for _ in range(32)]
    assert phases[0] == 0.0  # a lone first job keeps the plain schedule
    assert len(set(phases)) == 32
    assert all(0.0 <= phase < 1.0 for phase in phases)
    assert [clock.next_phase() for _ in range(3)] == [0.0] * 3  # later ones wait for those
    # Every moment from 1 s to 13 s is within a few percent of some job's check, while each
    # job alone checks only at its own 5 backoff steps.
    checks = sorted(
        offset
        for phase in phases
        for offset in itertools.takewhile(lambda o: o < 14.0, poll_offsets(DEFAULT, None, phase))
    )
    gaps = [
        (later - earlier) / earlier
        for earlier, later in itertools.pairwise(checks)
        if 1.0 <= earlier < 13.0
    ]
    assert max(gaps) < 0.06


def test_dense_checks_are_never_slower_than_the_first_backoff_step() -> None:
    """Fails if a policy of millisecond polls (tests) gets slower checks near the finish."""
    fast = PollPolicy(initial_s=0.01, max_interval_s=0.05)
    offsets = first(poll_offsets(fast, Expectation(1.0)), 3)
    assert offsets[1] - offsets[0] == pytest.approx(0.01)


def test_times_proportional_to_the_media_are_learned() -> None:
    """Fails if jobs taking 0.5 s per second of media do not predict 15 s for 30 s."""
    times = ProcessingTimes()
    assert times.expect(10.0) is None
    for media_s in (4.0, 10.0, 20.0, 8.0):
        times.record(media_s, 0.5 * media_s)
    expected = times.expect(30.0)
    assert expected is not None
    assert expected.finish_s == pytest.approx(15.0)
    assert expected.spread_s == pytest.approx(0.0)


def test_a_fixed_time_per_job_is_learned() -> None:
    """Fails if jobs that take 2 s whatever their length do not predict 2 s."""
    times = ProcessingTimes()
    for media_s in (5.0, 29.0, 13.0, 22.0, 7.0):
        times.record(media_s, 2.0)
    expected = times.expect(18.0)
    assert expected is not None
    assert expected.finish_s == pytest.approx(2.0)


def test_a_fixed_cost_plus_a_cost_per_second_is_learned() -> None:
    """Fails if 1 s + 0.1 s per second of media is not fitted as such."""
    times = ProcessingTimes()
    for media_s in (5.0, 10.0, 20.0, 30.0):
        times.record(media_s, 1.0 + 0.1 * media_s)
    times.record(None, 7.0)  # an unknown length teaches nothing about the line
    expected = times.expect(15.0)
    assert expected is not None
    assert expected.finish_s == pytest.approx(2.5)
    typical = times.expect(None)
    assert typical is not None
    assert typical.finish_s == pytest.approx(3.0)


def test_narrow_windows_outweigh_the_wide_ones_of_the_first_jobs() -> None:
    """Fails if jobs timed to ±0.1 s do not override many timed to ±1 s by plain backoff."""
    times = ProcessingTimes()
    for _ in range(10):
        times.record(10.0, 1.75, window_s=1.5)  # found done between 1 s and 2.5 s
    for _ in range(3):
        times.record(10.0, 2.05, window_s=0.2)
    expected = times.expect(10.0)
    assert expected is not None
    assert expected.finish_s == pytest.approx(2.05)


def test_spread_is_robust_to_one_slow_job() -> None:
    """Fails if one job stuck in a queue widens the checks of every later job."""
    times = ProcessingTimes()
    for took in (10.0, 10.2, 9.8, 10.1, 9.9, 60.0):
        times.record(10.0, took)
    expected = times.expect(10.0)
    assert expected is not None
    assert expected.finish_s == pytest.approx(10.0, abs=0.1)
    assert expected.spread_s is not None
    assert expected.spread_s < 0.5


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(polling, "time", fake)
    return fake


def test_overdue_checks_become_one_check_now(clock_time: FakeTime) -> None:
    """Fails if checks whose time passed during a long upload are sent in a burst."""
    clock = JobClock(DEFAULT)
    clock.started("job", JobTiming(submitted_at=clock_time.now, media_s=None))
    clock_time.now += 3.0  # the upload (or a Prefer: wait hold) took 3 s
    checks = clock.checks("job")
    assert checks.delay() == 0.0  # the checks due at 1 s and 2.5 s: one, now
    assert checks.delay() == pytest.approx(4.75 - 3.0)


def test_the_finish_is_learned_from_the_window_it_fell_in(clock_time: FakeTime) -> None:
    """Fails if a finished job does not teach the clock when the next one will finish."""
    clock = JobClock(DEFAULT)
    clock.started("a", JobTiming(submitted_at=clock_time.now, media_s=10.0))
    checks = clock.checks("a")
    clock_time.now += 8.125
    checks.still_running()
    clock_time.now += 5.0
    checks.done()  # finished between 8.125 s and 13.125 s: about 10.6 s
    expected = clock.times.expect(10.0)
    assert expected is not None
    assert expected.finish_s == pytest.approx(10.625)

    clock.started("b", JobTiming(submitted_at=clock_time.now, media_s=10.0))
    assert clock.checks("b").delay() == pytest.approx(10.625 - 1.0625)


def test_a_resumed_job_gets_plain_backoff_and_teaches_nothing(clock_time: FakeTime) -> None:
    """Fails if a job whose start time is unknown (a restart) skews the learned speed."""
    clock = JobClock(DEFAULT)
    checks = clock.checks("unknown")
    assert checks.delay() == 1.0
    clock_time.now += 30
    checks.done()
    assert clock.times.expect(10.0) is None


def blind_pair(clock_time: FakeTime) -> tuple[polling.JobChecks, polling.JobChecks]:
    """Two jobs submitted together before anything was learned, each about to be waited for:
    `a` at phase 0 (1, 2.5, 4.75 s...), `b` at the next phase (0.778, 1.419, 3.19 s...)."""
    clock = JobClock(DEFAULT)
    for job in ("a", "b"):
        clock.started(job, JobTiming(submitted_at=clock_time.now, media_s=10.0))
    a, b = clock.checks("a"), clock.checks("b")
    assert a.delay() == 1.0
    assert b.delay() == pytest.approx(B_LADDER[0])
    return a, b


_G = polling._GOLDEN
B_LADDER = [1.5**-_G, 2.5 ** (1 - _G), 2.5**_G * 4.75 ** (1 - _G)]


def check(clock_time: FakeTime, at: float, job: polling.JobChecks) -> None:
    """`job` is checked `at` seconds after the submission, and is still running."""
    clock_time.now = 1000.0 + at
    job.still_running()


async def test_a_sleeping_blind_job_checks_when_its_sibling_is_found_done(
    clock_time: FakeTime,
) -> None:
    """Fails if a job of a burst, sleeping towards its next backoff step, is not woken by
    the first finish of its client to check at the moment that one was seen done (then
    twice more, a fiftieth of a second apart), before going on with its own steps."""
    a, b = blind_pair(clock_time)
    check(clock_time, B_LADDER[0], b)
    assert b.delay() == pytest.approx(B_LADDER[1] - B_LADDER[0])
    check(clock_time, 1.0, a)
    assert a.delay() == pytest.approx(1.5)
    check(clock_time, B_LADDER[1], b)
    waiting = asyncio.create_task(b.wait())  # towards its step at 3.19 s
    await asyncio.sleep(0)
    assert not waiting.done()

    clock_time.now = 1002.5
    a.done()  # seen done 2.5 s in
    await asyncio.wait_for(waiting, timeout=5)  # woken: the catch-up at 2.51 s is next
    for at, then in ((2.51, 2.53), (2.53, 2.55), (2.55, B_LADDER[2])):
        check(clock_time, at, b)
        assert b.delay() == pytest.approx(then - at)


async def test_a_blind_job_being_checked_takes_the_finish_at_its_next_wait(
    clock_time: FakeTime,
) -> None:
    """Fails if a finish recorded while a blind job's status request was under way is lost
    to it: it would wait out its backoff step although its sibling is known done."""
    a, b = blind_pair(clock_time)
    check(clock_time, B_LADDER[0], b)
    assert b.delay() == pytest.approx(B_LADDER[1] - B_LADDER[0])
    check(clock_time, 1.0, a)
    a.delay()
    clock_time.now = 1002.5
    a.done()  # seen done 2.5 s in, while b's check of 1.419 s is slow to answer
    check(clock_time, 2.6, b)
    await asyncio.wait_for(b.wait(), timeout=5)  # to the catch-up, just after 2.6 s...
    check(clock_time, 2.62, b)
    assert b.delay() == pytest.approx(0.02)  # ...and on, not to b's own step at 3.19 s


def test_a_job_resumed_after_a_restart_does_not_catch_up(clock_time: FakeTime) -> None:
    """Fails if a job whose start is unknown (resumed after a restart) takes a sibling's
    finish: the time another job took says nothing about how long this one has run."""
    clock = JobClock(DEFAULT)
    resumed = clock.checks("unknown")
    assert resumed.delay() == 1.0
    clock.record(10.0, 0.5)
    check(clock_time, 1.0, resumed)
    assert resumed.delay() == pytest.approx(1.5)


async def test_a_plan_made_from_one_wide_window_is_redone_as_more_jobs_finish(
    clock_time: FakeTime,
) -> None:
    """Fails if a job planned from the first finish alone (a wide window: a rough guess of
    1.4 s) keeps that plan while jobs sent with it finish at 2.0 s, instead of re-planning
    to the narrow window they show once their spread is known."""
    clock = JobClock(DEFAULT)
    clock.record(10.0, 1.4, window_s=1.2)
    clock.started("c", JobTiming(submitted_at=clock_time.now, media_s=10.0))
    c = clock.checks("c")
    check(clock_time, 1.0, c)  # its first check would be at 1.26 s: a tenth early
    waiting = asyncio.create_task(c.wait())
    await asyncio.sleep(0)
    clock.record(10.0, 2.0, window_s=0.05)
    await asyncio.sleep(0)
    clock.record(10.0, 2.0, window_s=0.05)
    await asyncio.sleep(0)
    assert not waiting.done()  # re-planned around 2.0 s, spread still unknown: 1.8 s next
    clock_time.now = 1002.0
    clock.record(10.0, 2.0, window_s=0.05)  # the fourth: now the spread is known
    await asyncio.wait_for(waiting, timeout=5)
    expected = clock.times.expect(10.0)
    assert expected is not None
    assert expected.finish_s == pytest.approx(2.0)
    spread = 0.05 / 12**0.5  # the narrow windows' own uncertainty
    assert expected.spread_s == pytest.approx(spread)
    # Checks from one spread early, a fiftieth apart: the one at 1.986 s was due, so the job
    # was checked at once; the next is at 2.006 s.
    check(clock_time, 2.0, c)
    assert c.delay() == pytest.approx(0.02 - spread)
