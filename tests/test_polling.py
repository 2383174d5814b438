"""When status checks happen: around a job's expected finish, learned from earlier jobs."""

from __future__ import annotations

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
    """Fails if a small known spread does not narrow the checks to ±2 spreads, 4 of them."""
    offsets = first(poll_offsets(DEFAULT, Expectation(60.0, spread_s=0.1)), 6)
    assert offsets[:5] == pytest.approx([59.8, 59.9, 60.0, 60.1, 60.2])
    assert offsets[5] > 60.3


def test_a_steady_short_job_is_caught_within_a_twentieth_of_a_second() -> None:
    """Fails if a 2 s job of a steady provider is not checked at 1.95, 2.0 and 2.05 s."""
    offsets = first(poll_offsets(DEFAULT, Expectation(2.0, spread_s=0.0)), 3)
    assert offsets == [1.95, 2.0, 2.05]


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
