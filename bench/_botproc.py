"""The bot as the benchmarks run it: `python -m bot`'s run path, plus an event-loop lag probe.

Started by `bench._common.BotProcess` as `python -m bench._botproc`, configured entirely by
the environment like `python -m bot`. It calls the bot's own start-up
(`bot.discord_glue.lifecycle.run_bot`);
the only addition is a task on the bot's event loop that sleeps `SPOOFWATCH_BENCH_LAG_TICK_S`
(default 0.02 s) again and again and records by how much each wake-up was late. At exit it
writes `{"lag": [[monotonic_time, lag_s], ...], "rusage_self": ..., "rusage_children": ...}`
to `SPOOFWATCH_BENCH_STATS`, so the benchmark can take the lag of its own time window only
(`time.monotonic()` is the same clock in both processes on Linux).

`SPOOFWATCH_BENCH_POLL=backoff` restores the status checks as they were before issue 7
(check at once, then 1 s ×1.5 up to 5 s with the default settings, nothing learned):
bench/time_to_verdict uses it for the "before" figures.

`SPOOFWATCH_BENCH_GLOBAL_RATE=N` sets the bot's global request pacer to N per second (40 by
default), to see what it costs.
`SPOOFWATCH_BENCH_HAND_OFF=off` makes a scan keep its worker while it waits for the
provider, as before workers were handed on (bench/load.py --hand-off off).

Benchmark-only: these variables are not bot settings.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from array import array
from pathlib import Path
from typing import Any


class LagProbe:
    """Sleeps `tick_s` in a loop; how late each wake-up comes is the loop's lag."""

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self.times = array("d")
        self.lags = array("d")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="bench-lag-probe")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        tick = self.tick_s
        while True:
            before = time.monotonic()
            await asyncio.sleep(tick)
            after = time.monotonic()
            self.times.append(after)
            self.lags.append(max(0.0, after - before - tick))


def _rusage(who: int) -> dict[str, float]:
    usage = resource.getrusage(who)
    return {"utime": usage.ru_utime, "stime": usage.ru_stime, "maxrss_kib": usage.ru_maxrss}


def _plain_backoff() -> None:
    """Status checks exactly as before issue 7: at once, then initial_s ×factor up to the cap."""
    from collections.abc import Iterator

    from bot.detectors import _polling
    from bot.detectors._base import PollPolicy

    def old_offsets(policy: PollPolicy, expected_s: float | None) -> Iterator[float]:
        offset, interval = 0.0, policy.initial_s
        yield offset
        while True:
            offset += interval
            yield offset
            interval = min(interval * policy.factor, policy.max_interval_s)

    def checks(self: _polling.JobClock, job_id: str) -> _polling.JobChecks:
        self._jobs.pop(job_id, None)
        return _polling.JobChecks(self, None)  # nothing known, nothing learned

    _polling.poll_offsets = old_offsets  # type: ignore[assignment]
    _polling.JobClock.checks = checks  # type: ignore[method-assign]


def main() -> int:
    from bot.discord_glue import lifecycle as runner
    from bot.settings import load_settings

    stats_path = Path(os.environ["SPOOFWATCH_BENCH_STATS"])
    probe = LagProbe(float(os.environ.get("SPOOFWATCH_BENCH_LAG_TICK_S", "0.02")))
    original = runner._main

    async def instrumented(settings: Any, token: str, *, sync_only: bool) -> int:
        probe.start()
        try:
            return await original(settings, token, sync_only=sync_only)
        finally:
            probe.stop()

    runner._main = instrumented
    if os.environ.get("SPOOFWATCH_BENCH_POLL") == "backoff":
        _plain_backoff()
    if rate := os.environ.get("SPOOFWATCH_BENCH_GLOBAL_RATE"):
        from bot.discord_glue import pacing as discord_pacing

        kwdefaults = discord_pacing.DiscordPacing.__init__.__kwdefaults__ or {}
        kwdefaults["global_rate"] = int(rate)
    if os.environ.get("SPOOFWATCH_BENCH_HAND_OFF") == "off":
        from bot import worker_pool

        worker_pool.WAITING_PER_WORKER = 0
    try:
        return runner.run_bot(load_settings(env_file=None))
    finally:
        stats = {
            "lag": list(zip(probe.times, probe.lags, strict=True)),
            "rusage_self": _rusage(resource.RUSAGE_SELF),
            "rusage_children": _rusage(resource.RUSAGE_CHILDREN),
        }
        stats_path.write_text(json.dumps(stats))


if __name__ == "__main__":
    sys.exit(main())
