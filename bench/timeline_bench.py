"""CPU per timeline picture, and what rendering it in a thread does to the event loop.

    .venv/bin/python -m bench.timeline_bench

Renders the strip (`bot.timeline.render_strip`) for 2, 20 and 500 stretches, 200 times each,
and reports the process CPU time per image (load-independent) and the PNG size. Then renders
200 of the 20-stretch strips back to back through `render_strip_async` (a thread) while a task
on the loop sleeps 5 ms at a time and records how late it wakes: the GIL Pillow holds shows
up there.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bot.timeline import render_strip, render_strip_async
from bot.verdict import Label, Segment

RUNS = 200


def stretches(n: int, seconds: float = 60.0) -> tuple[Segment, ...]:
    step = seconds / n
    return tuple(
        Segment(
            start=i * step,
            end=(i + 1) * step,
            label=Label.SPOOFED if i % 3 == 0 else Label.BONAFIDE,
            spoofed_probability=0.9 if i % 3 == 0 else (0.4 if i % 5 == 0 else 0.05),
        )
        for i in range(n)
    )


async def loop_lag_while_rendering(
    segments: tuple[Segment, ...], *, render: bool = True, idle_s: float = 0.0
) -> list[float]:
    lags: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        loop = asyncio.get_running_loop()
        while not done.is_set():
            start = loop.time()
            await asyncio.sleep(0.005)
            lags.append((loop.time() - start - 0.005) * 1000)

    task = asyncio.create_task(probe())
    if render:
        for _ in range(RUNS):
            await render_strip_async(segments, 0.5, 60.0)
    else:  # the baseline: the same probe on an idle loop
        await asyncio.sleep(idle_s)
    done.set()
    await task
    return lags


def main() -> None:
    render_strip(stretches(2), 0.5, 60.0)  # font and codec loaded once, not timed
    for n in (2, 20, 500):
        segments = stretches(n)
        cpu = time.process_time()
        for _ in range(RUNS):
            data = render_strip(segments, 0.5, 60.0)
        per_image = (time.process_time() - cpu) / RUNS * 1000
        print(f"{n:4d} stretches: {per_image:.2f} ms CPU per image, {len(data)} bytes PNG")
    wall = time.perf_counter()
    rendering = sorted(asyncio.run(loop_lag_while_rendering(stretches(20))))
    wall = time.perf_counter() - wall
    idle = sorted(asyncio.run(loop_lag_while_rendering((), render=False, idle_s=wall)))
    for name, lags in (("rendering 200 strips in a thread", rendering), ("idle", idle)):
        p99 = lags[max(0, int(len(lags) * 0.99) - 1)]
        print(
            f"loop lag, {name}: median {statistics.median(lags):.2f} ms, p99 {p99:.2f} ms, "
            f"max {lags[-1]:.2f} ms ({len(lags)} probes over {wall:.2f} s)"
        )


if __name__ == "__main__":
    main()
