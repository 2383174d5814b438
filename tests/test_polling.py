"""When status checks happen: around a job's expected finish, learned from earlier jobs."""

from __future__ import annotations

import itertools

import pytest

from bot.detectors import PollPolicy
from bot.detectors import _polling as polling
from bot.detectors._polling import JobClock, JobTiming, ProcessingSpeed, poll_offsets

DEFAULT = PollPolicy()


def first(offsets, n: int) -> list[float]:
    return [round(o, 3) for o in itertools.islice(offsets, n)]


def test_without_an_expectation_it_is_capped_backoff_from_zero() -> None:
    """Fails if a job of unknown length is not checked at once, then at 1 s ×1.5 up to 5 s."""
    assert first(poll_offsets(DEFAULT, None), 8) == [0.0, 1.0, 2.5, 4.75, 8.125, 13.125, 18.125, 23.125]


def test_a_long_job_is_checked_densely_just_before_its_expected_finish() -> None:
    """Fails if a 60 s job is not first checked 5 s early, then every 0.5 s past 60 s."""
    offsets = first(poll_offsets(DEFAULT, 60.0), 22)
    assert offsets[0] == 55.0
    assert offsets[1:21] == [55.0 + 0.5 * k for k in range(1, 21)]
    assert offsets[21] == pytest.approx(65.75)  # overran: backoff again from the dense interval


def test_a_short_job_is_checked_half_a_second_early() -> None:
    """Fails if a 2 s job's checks do not start at 1.5 s and go every 0.5 s."""
    assert first(poll_offsets(DEFAULT, 2.0), 4) == [1.5, 2.0, 2.5, 3.25]


def test_dense_checks_are_never_slower_than_the_first_backoff_step() -> None:
    """Fails if a policy of millisecond polls (tests) gets half-second dense checks."""
    fast = PollPolicy(initial_s=0.01, max_interval_s=0.05)
    offsets = first(poll_offsets(fast, 1.0), 3)
    assert offsets[1] - offsets[0] == pytest.approx(0.01)


def test_speed_is_the_median_seconds_per_second_of_media() -> None:
    """Fails if the expectation is not the median ratio scaled to the media's duration."""
    speed = ProcessingSpeed()
    assert speed.expected_s(10.0) is None
    for media_s, took in ((10.0, 5.0), (10.0, 6.0), (20.0, 100.0)):
        speed.record(media_s, took)
    assert speed.expected_s(30.0) == pytest.approx(0.6 * 30.0)
    assert speed.expected_s(None) is None


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
    assert checks.delay() == 0.0
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
    assert clock.speed.expected_s(10.0) == pytest.approx(10.625)

    clock.started("b", JobTiming(submitted_at=clock_time.now, media_s=10.0))
    assert clock.checks("b").delay() == pytest.approx(10.625 - 1.0625)


def test_a_resumed_job_gets_plain_backoff_and_teaches_nothing(clock_time: FakeTime) -> None:
    """Fails if a job whose start time is unknown (a restart) skews the learned speed."""
    clock = JobClock(DEFAULT)
    checks = clock.checks("unknown")
    assert checks.delay() == 0.0
    clock_time.now += 30
    checks.done()
    assert clock.speed.expected_s(10.0) is None
