"""Discord's rate limits as the ceiling: raids, spread traffic and the global limit.

    .venv/bin/python -m bench.ratelimits [--scenario raid|spread|sustained|all]
                                         [--combine on|off|both] [--rate 40 ...]
                                         [--channels 64] [--messages 400] [--json ratelimits.json]

The bot runs as its own process (`python -m bench._botproc`) against the Discord emulator with
Discord's limits on (5 messages per 5 s and one reaction call per 0.25 s per channel, 50
requests/s in all; testkit/discord_emulator/ratelimits.py) and a Resemble stand-in that answers
at once, both in this process. Every voice message is a distinct real OGG/Opus file
(bench/_common.voice_pool). An answer is a reply to the message or, in a flooded channel, a
combined answer whose card links to it (SPOOFWATCH_COMBINE_REPLIES); latency runs from the
emulator dispatching MESSAGE_CREATE to it storing the answer.

Scenarios, each on a fresh bot and database, after a warm-up in other channels and a pause
that lets every bucket's window end:

- raid: 30 voice messages within 3 s in one channel (one every 0.1 s). Time from the first
  post to the last answer, against the floor the channel's message bucket sets: one reply per
  message, 30 replies need six windows, so the last can go no sooner than 25 s after the
  first; combined (5 verdicts per message), the 25 waiting at the first reset go in one
  window: 5 s.
- spread: 120 voice messages over 8 channels at 8 per second (round robin: one per channel
  per second, the reply bucket's own rate). Latency p50/p99.
- sustained: `--messages` voice messages over `--channels` channels at each `--rate` (well
  under one per channel per second, so no channel's bucket is the limit): the answers/s the
  bot keeps up, REST calls per scan, and where the bot's global pacer (40 requests/s, under
  Discord's 50) becomes the ceiling.

Reported for every run: answered / posted, answered twice, failure answers, the bot's REST
calls by route and per scan, the 429s the emulator sent (by scope), and the bot messages
posted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

from bench._common import (
    ReplyTracker,
    VoiceFile,
    bot_process,
    build_scene,
    finish,
    fmt_ms,
    load_average,
    machine,
    post_voice,
    self_cpu,
    summary,
    system_busy_cpu,
    voice_pool,
)
from testkit.discord_emulator.emulator import DiscordEmulator
from testkit.standins import ResembleStandIn

SCENARIOS = ("raid", "spread", "sustained")
WARMUP = 20
#: The channel's message bucket: 5 per 5 s (testkit/discord_emulator/ratelimits.py).
WINDOW_S = 5.0
PER_WINDOW = 5
#: Verdicts per combined answer (cogs/autoscan/_reply_queue.py: one row of buttons each).
COMBINED_MAX = 5


async def run_scenario(
    scenario: str,
    combine: bool,
    files: list[VoiceFile],
    warmup: list[VoiceFile],
    args: argparse.Namespace,
    *,
    rate: float,
) -> dict[str, Any]:
    """One bot, one scenario; every figure of the run."""
    if scenario == "raid":
        channels, count, per_s = 1, 30, 10.0
    elif scenario == "spread":
        channels, count, per_s = 8, 120, 8.0
    else:
        channels, count, per_s = args.channels, args.messages, rate
    async with contextlib.AsyncExitStack() as stack:
        standin = await stack.enter_async_context(ResembleStandIn())
        emu = await stack.enter_async_context(DiscordEmulator(rate_limits=True))
        # Warm-up channels apart from the measured ones: their buckets stay untouched.
        scene = build_scene(emu, users=50, channels=channels + 4)
        measured, warm_channels = scene.channels[:channels], scene.channels[channels:]
        tracker = ReplyTracker()
        tracker.install()
        stack.callback(tracker.uninstall)
        settings = {"SPOOFWATCH_COMBINE_REPLIES": "true" if combine else "false"}
        if args.global_rate:
            settings["SPOOFWATCH_BENCH_GLOBAL_RATE"] = str(args.global_rate)
        bot = await stack.enter_async_context(
            bot_process(emu=emu, provider="resemble", settings=settings, resemble=standin)
        )
        warm_ids = []
        for i, item in enumerate(warmup):
            channel = warm_channels[i % len(warm_channels)]
            warm_ids.append(await post_voice(emu, tracker, channel, scene.users[i % 50], item))
            await asyncio.sleep(0.1)
        tracker.expect(len(warm_ids))
        if not await tracker.wait(120):
            raise RuntimeError(f"warm-up did not finish; bot log:\n{bot.tail()}")
        await bot.wait_log("catch-up: ")
        await asyncio.sleep(WINDOW_S + 0.5)  # every window the warm-up opened has ended

        requests_before = len(emu.requests)
        events_before = len(emu.ratelimits.events)
        bot_cpu_before = bot.cpu()
        bench_cpu_before = self_cpu()
        system_before = system_busy_cpu()
        load_before = load_average()
        tracker.expect(len(warm_ids) + count)
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        start = loop.time()
        ids: list[int] = []
        for n, item in enumerate(files[:count]):
            delay = start + n / per_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            channel = measured[n % channels]
            ids.append(await post_voice(emu, tracker, channel, scene.users[n % 50], item))
        finished = await tracker.wait(max(120.0, count / 2))
        ended = time.monotonic()
        await asyncio.sleep(1.0)  # late duplicates and 🔍 removals
        bot_cpu_after = bot.cpu()
        bench_cpu = self_cpu() - bench_cpu_before
        system_cpu = system_busy_cpu() - system_before
        requests = emu.requests[requests_before:]
        events = emu.ratelimits.events[events_before:]
        answers = {tracker.answer_of[i] for i in ids if i in tracker.answer_of}

    answered = [i for i in ids if i in tracker.replied]
    latencies = tracker.latencies(ids)
    first_post = min(tracker.posted[i] for i in ids)
    answer_times = sorted(tracker.replied[i] for i in answered)
    last = answer_times[-1] if answer_times else ended
    routes = Counter(f"{r.method} {r.route or r.path}" for r in requests)
    bot_cpu = (bot_cpu_after[0] - bot_cpu_before[0]) + (bot_cpu_after[1] - bot_cpu_before[1])
    others = system_cpu - bench_cpu - bot_cpu
    result: dict[str, Any] = {
        "scenario": scenario,
        "combine": combine,
        "channels": channels,
        "messages": count,
        "posted_per_s": per_s,
        "complete": finished,
        "answered": len(answered),
        "answered_twice": len(tracker.answered_twice & set(ids)),
        "failed_answers": len(tracker.failed & set(ids)),
        "bot_messages_posted": len(answers),
        "first_post_to_last_answer_s": last - first_post,
        # How long posting took (this process may fall behind the schedule when busy).
        "posting_s": max(tracker.posted[i] for i in ids) - first_post,
        "first_post_to_first_answer_s": answer_times[0] - first_post if answer_times else None,
        "answers_per_s": len(answered) / (last - first_post) if last > first_post else None,
        "latency_s": summary(latencies),
        "rest_calls": len(requests),
        "rest_calls_per_scan": len(requests) / max(len(answered), 1),
        "rest_calls_by_route": dict(routes),
        "rest_calls_per_s": len(requests) / max(ended - started, 1e-9),
        "peak_answers_in_1s": _peak_per_second(answer_times),
        "received_429s": len(events),
        "received_429s_by_scope": dict(Counter(e.scope for e in events)),
        "bot_cpu_per_scan_ms": bot_cpu / max(len(answered), 1) * 1000,
        "other_processes_cores": others / max(ended - started, 1e-9),
        "load_average_before": load_before,
        "bot_exit_code": bot.exit_code,
    }
    if scenario == "raid" and answer_times:
        # The floor: no reply before the first, and PER_WINDOW per WINDOW_S after it.
        windows = -(-count // PER_WINDOW)
        if combine and count > PER_WINDOW:
            # After the first window's replies, each window takes 5 messages × 5 verdicts.
            windows = 1 + -(-(count - PER_WINDOW) // (PER_WINDOW * COMBINED_MAX))
        floor = (answer_times[0] - first_post) + (windows - 1) * WINDOW_S
        result["floor_s"] = floor
        result["over_floor_s"] = (last - first_post) - floor
    return result


def _peak_per_second(times: list[float]) -> int:
    """The most of `times` (sorted) that fall within any one second."""
    peak, first = 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= 1.0:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


def _print(result: dict[str, Any]) -> None:
    lat = result["latency_s"]
    print(
        f"\n== {result['scenario']} ({result['messages']} over {result['channels']} channel(s) "
        f"at {result['posted_per_s']:g}/s; combined answers "
        f"{'on' if result['combine'] else 'off'})"
    )
    print(
        f"  answered {result['answered']}/{result['messages']} "
        f"(twice: {result['answered_twice']}, failures: {result['failed_answers']}) "
        f"in {result['bot_messages_posted']} bot message(s), posted over "
        f"{result['posting_s']:.2f} s; first post -> last answer "
        f"{result['first_post_to_last_answer_s']:.2f} s"
        + (
            f" (floor {result['floor_s']:.2f} s, {result['over_floor_s']:+.2f} s)"
            if "floor_s" in result
            else ""
        )
    )
    if lat.get("n"):
        print(
            f"  post -> answer: p50 {fmt_ms(lat['median'])}, p90 {fmt_ms(lat['p90'])}, "
            f"p99 {fmt_ms(lat['p99'])}, max {fmt_ms(lat['max'])}; "
            f"{result['answers_per_s'] or 0:.1f} answers/s (peak {result['peak_answers_in_1s']} "
            "in one second)"
        )
    print(
        f"  REST calls: {result['rest_calls']} ({result['rest_calls_per_scan']:.3f} per scan, "
        f"{result['rest_calls_per_s']:.1f}/s) {result['rest_calls_by_route']}"
    )
    print(
        f"  429s received: {result['received_429s']} {result['received_429s_by_scope']}; "
        f"bot CPU per scan {result['bot_cpu_per_scan_ms']:.1f} ms; other processes used "
        f"{result['other_processes_cores']:.2f} cores (load average before: "
        f"{result['load_average_before']:.2f})"
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    needed = max(args.messages, 120)
    pool = voice_pool(needed + WARMUP)
    files, warmup = pool[:needed], pool[needed:]
    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    combines = (True, False) if args.combine == "both" else (args.combine == "on",)
    results = []
    for scenario in scenarios:
        for combine in combines:
            for rate in args.rate if scenario == "sustained" else [0.0]:
                result = await run_scenario(scenario, combine, files, warmup, args, rate=rate)
                _print(result)
                results.append(result)
    return {"machine": machine(), "args": vars(args), "results": results}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ratelimits", description=__doc__)
    parser.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="all")
    parser.add_argument("--combine", choices=("on", "off", "both"), default="both")
    parser.add_argument(
        "--rate", type=float, nargs="+", default=[30.0, 40.0, 50.0], help="sustained: posts/s"
    )
    parser.add_argument("--channels", type=int, default=64, help="sustained: channels")
    parser.add_argument("--messages", type=int, default=400, help="sustained: messages per rate")
    parser.add_argument(
        "--global-rate",
        type=int,
        default=0,
        help="the bot's global pacer, requests/s (0: its default, 40); for comparison only",
    )
    parser.add_argument("--json", default="ratelimits.json", help="file name in bench/out")
    args = parser.parse_args(argv)
    if not 120 <= args.messages <= 2000 or not 1 <= args.channels <= 200:
        parser.error("--messages must be 120..2000 and --channels 1..200")
    finish(asyncio.run(main_async(args)), args.json)


if __name__ == "__main__":
    main()
