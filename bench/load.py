"""Load: 1,000 voice messages from 50 users against a provider that answers at once.

    .venv/bin/python -m bench.load [--provider resemble|behavioral_signals|both]
                                   [--mode burst|paced|both] [--messages 1000] [--users 50]
                                   [--rate 50] [--workers N] [--decoders N]
                                   [--provider-seconds 0]
                                   [--hand-off on|off] [--rate-limits on|off]
                                   [--profile cpu] [--metrics] [--json load.json]

The bot runs as its own process (`python -m bench._botproc`: the bot's runner plus a loop-lag
probe) against the Discord emulator and a provider stand-in, both in this process on
127.0.0.1. Each message is a distinct real OGG/Opus voice message of 5-30 s (generated once
with ffmpeg/espeak-ng and cached in bench/out/cache; generation is not timed).

Two ways of sending, each on a fresh bot and database:

- burst: every user posts all of their messages at once (1,000 MESSAGE_CREATEs in about a
  second). Measures capacity: throughput = messages / (last verdict - first dispatch). Latency
  here is mostly time spent queued behind other scans.
- paced: the users post at a steady combined `--rate` (default 50 messages/s, the target
  throughput), user i at offsets i/rate + k*users/rate. Latency here is the time the bot adds
  to a scan when it keeps up: MESSAGE_CREATE dispatched by the emulator → the verdict reply
  stored by the emulator.

Reported per run: throughput, latency median/p90/p99/max, the bot's CPU time per scan (its
process plus its children: the live media worker processes (and any reaped ones),
from /proc/<pid>/stat over the measured window),
the emulator's and stand-in's CPU per scan (this process), the bot's maximum and p99 event-loop
lag (window only), its peak RSS, provider requests per scan and Discord REST calls per scan.

`--provider-seconds S` makes the stand-in take S seconds per job instead of answering at once
(Behavioral Signals: complete at the first status check S s after the upload; Resemble:
the upload answers at once with the job's uuid, then status checks). Latency then includes
those S seconds; the bot's part is the rest ("added"). With a slow provider, scans in flight
exceed the workers: `--hand-off off` keeps each scan on its worker until the verdict, as
before.

The emulator enforces Discord's rate limits (5 messages per 5 s per channel, 50 requests/s in
all; testkit/discord_emulator/ratelimits.py), as Discord would: the 429s it sent are reported,
and in a burst the channels' message buckets, not the CPU, set the pace. `--rate-limits off`
only stops the emulator enforcing them: the bot paces itself as on Discord either way (and,
with no rate-limit headers to read, more slowly). Raids, spread traffic and
the global limit have their own scenarios: `python -m bench.ratelimits`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from bench._common import (
    ReplyTracker,
    Scene,
    VoiceFile,
    bot_process,
    build_scene,
    finish,
    fmt_ms,
    load_average,
    machine,
    post_voice,
    py_spy,
    self_cpu,
    summary,
    system_busy_cpu,
    voice_pool,
)
from testkit.discord_emulator.emulator import DiscordEmulator
from testkit.standins import BehavioralSignalsStandIn, ResembleStandIn
from testkit.standins.resemble import metrics as resemble_metrics

PROVIDERS = ("resemble", "behavioral_signals")
MODES = ("burst", "paced")
WARMUP = 20


async def _send_burst(
    emu: DiscordEmulator, tracker: ReplyTracker, scene: Scene, files: list[VoiceFile]
) -> list[int]:
    users = len(scene.users)
    ids: list[int] = []

    async def user(index: int) -> None:
        for k, item in enumerate(files[index::users]):
            channel = scene.channels[(index + k) % len(scene.channels)]
            ids.append(await post_voice(emu, tracker, channel, scene.users[index], item))
            await asyncio.sleep(0)  # let the 50 users interleave

    await asyncio.gather(*(user(i) for i in range(users)))
    return ids


async def _send_paced(
    emu: DiscordEmulator,
    tracker: ReplyTracker,
    scene: Scene,
    files: list[VoiceFile],
    rate: float,
) -> list[int]:
    users = len(scene.users)
    loop = asyncio.get_running_loop()
    start = loop.time()
    ids: list[int] = []
    for n, item in enumerate(files):
        # Message n is user (n % users)'s (n // users)-th; n / rate is its slot.
        due = start + n / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        index = n % users
        channel = scene.channels[(index + n // users) % len(scene.channels)]
        ids.append(await post_voice(emu, tracker, channel, scene.users[index], item))
    return ids


async def run_case(
    provider: str, mode: str, files: list[VoiceFile], warmup: list[VoiceFile], args: Any
) -> dict[str, Any]:
    """One bot, one provider, one way of sending; returns every figure of the run."""
    async with contextlib.AsyncExitStack() as stack:
        if provider == "resemble":
            # The upload answers at once with the job's uuid; with --provider-seconds 0 the
            # first status check finds the detect finished.
            standin: ResembleStandIn | BehavioralSignalsStandIn = ResembleStandIn(
                processing_s=args.provider_seconds
            )
            if args.verdicts == "partly-flagged":
                # Every verdict flagged with ten stretches: each reply is a full embed with a
                # timeline picture (the worst case for the picture's cost).
                standin.default_item = {"metrics": resemble_metrics([0.9, 0.1] * 5)}
            kwargs: dict[str, Any] = {"resemble": standin}
        else:
            # Completed on the first status poll: upload, one status, results.
            standin = BehavioralSignalsStandIn(
                processing_polls=0, processing_s=args.provider_seconds
            )
            kwargs = {"bs": standin}
        await stack.enter_async_context(standin)
        emu = await stack.enter_async_context(DiscordEmulator(rate_limits=args.rate_limits == "on"))
        scene = build_scene(emu, users=args.users, channels=args.channels)
        tracker = ReplyTracker()
        tracker.install()
        stack.callback(tracker.uninstall)
        settings = {"SPOOFWATCH_WORKERS": str(args.workers)} if args.workers else {}
        if args.decoders is not None:
            settings["SPOOFWATCH_DECODER_PROCESSES"] = str(args.decoders)
        if args.hand_off == "off":
            settings["SPOOFWATCH_BENCH_HAND_OFF"] = "off"
        settings.update(await stack.enter_async_context(_metrics_scraped(args)))
        bot = await stack.enter_async_context(
            bot_process(emu=emu, provider=provider, settings=settings, **kwargs)
        )

        # Warm-up (not measured): imports, connection pools, SQLite pages, every channel,
        # and the provider client's timing of jobs. Posted at 10/s, so that after the first
        # (checked blind) each job is checked when the ones before it say it will be done,
        # as in a bot that has been running: sent all at once, every warm-up job would be
        # checked blind and the first scans measured would pay for the clock's learning.
        warm_ids = []
        for i, item in enumerate(warmup):
            channel = scene.channels[i % len(scene.channels)]
            warm_ids.append(
                await post_voice(emu, tracker, channel, scene.users[i % args.users], item)
            )
            await asyncio.sleep(0.1)
        tracker.expect(len(warm_ids))
        if not await tracker.wait(120):
            raise RuntimeError(f"warm-up did not finish; bot log:\n{bot.tail()}")
        # discord.py holds `on_ready` back ~2 s while guilds load; the start-up catch-up it
        # starts (reading back every channel) is not part of the load.
        await bot.wait_log("catch-up: ")

        provider_before = Counter(standin.received)
        rest_before = len(emu.requests)
        limits_before = len(emu.ratelimits.events)
        tracker.expect(len(warm_ids) + len(files))
        load_before = load_average()
        bot_cpu_before = bot.cpu()
        bench_cpu_before = self_cpu()
        system_before = system_busy_cpu()
        profile = f"profile-load-{provider}-{mode}" if args.profile else None
        async with py_spy(bot.pid, profile, idle=args.profile == "idle"):
            started = time.monotonic()
            if mode == "burst":
                ids = await _send_burst(emu, tracker, scene, files)
            else:
                ids = await _send_paced(emu, tracker, scene, files, args.rate)
            finished = await tracker.wait(max(120.0, len(files) / 2 + 4 * args.provider_seconds))
            ended = time.monotonic()
        bot_cpu_after = bot.cpu()
        bench_cpu = self_cpu() - bench_cpu_before
        system_cpu = system_busy_cpu() - system_before
        provider_calls = Counter(standin.received) - provider_before
        rest_calls = len(emu.requests) - rest_before
        discord_limits = _discord_limits(emu, limits_before, args)
        rss_peak = bot.rss.peak_kib(started, ended) if bot.rss else 0
        rss_start = bot.rss.peak_kib(started - 1.0, started) if bot.rss else 0
        children_rss = bot.rss.child_peak_kib(started, ended) if bot.rss else 0

    replied = [i for i in ids if i in tracker.replied]
    latencies = tracker.latencies(ids)
    first = min(tracker.posted[i] for i in ids)
    last = max((tracker.replied[i] for i in replied), default=ended)
    scans = len(replied)
    bot_self = bot_cpu_after[0] - bot_cpu_before[0]
    bot_children = bot_cpu_after[1] - bot_cpu_before[1]
    lags = bot.lag_in(started, ended)
    others = system_cpu - bench_cpu - bot_self - bot_children
    lag = summary(lags)
    return {
        "provider": provider,
        "mode": mode,
        "messages": len(files),
        "users": args.users,
        "rate": args.rate if mode == "paced" else None,
        "workers": args.workers or "default",
        "decoders": "default" if args.decoders is None else args.decoders,
        "provider_seconds": args.provider_seconds,
        "hand_off": args.hand_off,
        "verdicts": args.verdicts,
        "complete": finished,
        "replied": scans,
        "failed_replies": len(tracker.failed & set(ids)),
        "duration_s": last - first,
        "throughput_per_s": scans / (last - first) if last > first else None,
        "latency_s": summary(latencies),
        # The slowest scans: seconds after the first post, and dispatch -> reply.
        "slowest": sorted(
            ((tracker.posted[i] - first, tracker.replied[i] - tracker.posted[i]) for i in replied),
            key=lambda pair: -pair[1],
        )[:20],
        # What the bot added to the provider's own time.
        "added_latency_s": summary([x - args.provider_seconds for x in latencies]),
        "bot_cpu_s": {"process": bot_self, "children": bot_children},
        "bot_cpu_per_scan_ms": (bot_self + bot_children) / max(scans, 1) * 1000,
        "bot_process_cpu_per_scan_ms": bot_self / max(scans, 1) * 1000,
        "bot_children_cpu_per_scan_ms": bot_children / max(scans, 1) * 1000,
        "bench_cpu_per_scan_ms": bench_cpu / max(scans, 1) * 1000,
        "loop_lag_s": {"max": lag.get("max"), "p99": lag.get("p99"), "samples": lag.get("n")},
        "bot_rss_mib": {
            "at_start_of_window": rss_start / 1024,
            "peak_in_window": rss_peak / 1024,
            "peak_process_vmhwm": bot.final_memory_kib.get("VmHWM", 0) / 1024,
            # Its child processes together (decoder processes, ffmpeg runs), sampled.
            "children_peak_in_window": children_rss / 1024,
        },
        "provider_requests": dict(provider_calls),
        "provider_requests_per_scan": sum(provider_calls.values()) / max(scans, 1),
        "discord_rest_per_scan": rest_calls / max(scans, 1),
        **discord_limits,
        "bot_exit_code": bot.exit_code,
        # Other programs on the machine during the window: figures are only comparable
        # between runs where this is near zero.
        "other_processes_cpu_s": others,
        "other_processes_cores": others / (ended - started),
        "load_average_before": load_before,
    }


# --- --metrics: what serving and scraping Prometheus metrics costs -----------------------------


def _add_metrics_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="the bot serves /metrics (SPOOFWATCH_METRICS_PORT), scraped every "
        f"{METRICS_SCRAPE_S:g} s during the run, as Prometheus would (more often)",
    )


#: Prometheus scrapes every 15-60 s; once a second makes the scrape's own cost visible.
METRICS_SCRAPE_S = 1.0


@contextlib.asynccontextmanager
async def _metrics_scraped(args: argparse.Namespace) -> AsyncIterator[dict[str, str]]:
    """With --metrics: the bot's settings that turn metrics on, and a task scraping them for
    as long as the bot runs (counted in the bench's own CPU, not the bot's); else nothing."""
    if not getattr(args, "metrics", False):
        yield {}
        return
    with socket.socket() as probe:  # a free port for the bot to listen on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    scrapes = Counter[str]()

    async def scrape() -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                await asyncio.sleep(METRICS_SCRAPE_S)
                try:
                    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                        await response.read()
                        scrapes[str(response.status)] += 1
                except aiohttp.ClientError:
                    scrapes["refused"] += 1  # the bot is not listening yet

    task = asyncio.create_task(scrape())
    try:
        yield {"SPOOFWATCH_METRICS_PORT": str(port)}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        print(f"metrics scrapes: {dict(scrapes)}")


def _print(result: dict[str, Any]) -> None:
    lat = result["latency_s"]
    lag = result["loop_lag_s"]
    rss = result["bot_rss_mib"]
    throughput = result["throughput_per_s"]
    print(
        f"\n== {result['provider']} / {result['mode']}"
        + (f" at {result['rate']:g}/s" if result["rate"] else "")
        + f" (workers: {result['workers']}, media workers: {result['decoders']}, "
        + f"provider: {result['provider_seconds']:g} s, "
        + f"hand-off: {result['hand_off']})"
    )
    print(
        f"  replied {result['replied']}/{result['messages']} "
        f"({result['failed_replies']} failure replies) in {result['duration_s']:.2f} s"
        f" -> {throughput:.1f} scans/s"
        if throughput
        else "  no replies"
    )
    if lat.get("n"):
        print(
            f"  dispatch->reply: median {fmt_ms(lat['median'])}, p90 {fmt_ms(lat['p90'])}, "
            f"p99 {fmt_ms(lat['p99'])}, max {fmt_ms(lat['max'])}"
        )
    added = result["added_latency_s"]
    if result["provider_seconds"] and added.get("n"):
        print(
            f"  added to the provider's {result['provider_seconds']:g} s: median "
            f"{fmt_ms(added['median'])}, p90 {fmt_ms(added['p90'])}, p99 {fmt_ms(added['p99'])}, "
            f"max {fmt_ms(added['max'])}"
        )
    print(
        f"  bot CPU per scan: {result['bot_cpu_per_scan_ms']:.1f} ms "
        f"(python {result['bot_process_cpu_per_scan_ms']:.1f} + child processes "
        f"{result['bot_children_cpu_per_scan_ms']:.1f}); emulator+stand-in "
        f"{result['bench_cpu_per_scan_ms']:.1f} ms"
    )
    if lag.get("max") is not None:
        print(f"  bot loop lag: max {fmt_ms(lag['max'])}, p99 {fmt_ms(lag['p99'])}")
    print(
        f"  bot RSS: {rss['at_start_of_window']:.0f} MiB at start, peak "
        f"{rss['peak_in_window']:.0f} MiB (VmHWM {rss['peak_process_vmhwm']:.0f} MiB); "
        f"child processes together: peak {rss['children_peak_in_window']:.0f} MiB"
    )
    print(
        f"  other processes used {result['other_processes_cores']:.2f} cores meanwhile "
        f"(load average before: {result['load_average_before']:.2f})"
    )
    print(
        f"  provider requests per scan: {result['provider_requests_per_scan']:.2f} "
        f"{result['provider_requests']}; Discord REST per scan: "
        f"{result['discord_rest_per_scan']:.2f}"
    )
    _print_discord_limits(result)


def _discord_limits(
    emu: DiscordEmulator, events_before: int, args: argparse.Namespace
) -> dict[str, Any]:
    """The 429s the emulator sent during the window (none are expected from the bot)."""
    events = emu.ratelimits.events[events_before:]
    return {
        "rate_limits": args.rate_limits,
        "received_429s": len(events),
        "received_429s_by_scope": dict(Counter(e.scope for e in events)),
    }


def _print_discord_limits(result: dict[str, Any]) -> None:
    print(
        f"  Discord rate limits {result['rate_limits']}: {result['received_429s']} 429s "
        f"received {result['received_429s_by_scope']}"
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    generated = time.monotonic()
    pool = voice_pool(args.messages + WARMUP)
    print(f"voice pool ready: {len(pool)} files ({time.monotonic() - generated:.1f} s, untimed)")
    files, warmup = pool[: args.messages], pool[args.messages :]
    providers = PROVIDERS if args.provider == "both" else (args.provider,)
    modes = MODES if args.mode == "both" else (args.mode,)
    results = []
    for provider in providers:
        for mode in modes:
            result = await run_case(provider, mode, files, warmup, args)
            _print(result)
            results.append(result)
    return {"machine": machine(), "args": vars(args), "results": results}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--provider", choices=(*PROVIDERS, "both"), default="both")
    parser.add_argument("--mode", choices=(*MODES, "both"), default="both")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument(
        "--channels",
        type=int,
        default=5,
        help="text channels the users post in (more channels: Discord's per-channel "
        "message limit binds later, and the CPU sets the pace sooner)",
    )
    parser.add_argument("--rate", type=float, default=50.0, help="paced mode: messages/s")
    parser.add_argument(
        "--workers", type=int, default=0, help="SPOOFWATCH_WORKERS (0: the bot's default)"
    )
    parser.add_argument(
        "--decoders",
        type=int,
        help="SPOOFWATCH_DECODER_PROCESSES, the media worker processes (default: the bot's; "
        "0: a new process per probe and per decode)",
    )
    parser.add_argument(
        "--provider-seconds",
        type=float,
        default=0.0,
        help="seconds the stand-in takes per job (0: answers at once)",
    )
    parser.add_argument(
        "--verdicts",
        choices=("genuine", "partly-flagged"),
        default="genuine",
        help="Resemble only: partly-flagged = every reply full, with a timeline picture",
    )
    parser.add_argument(
        "--hand-off",
        choices=("on", "off"),
        default="on",
        help="off: a scan keeps its worker until its verdict, as before (for before/after)",
    )
    parser.add_argument(
        "--profile",
        choices=("cpu", "idle"),
        help="record the bot with py-spy during the measured window (bench/out/profile-*.txt)",
    )
    parser.add_argument(
        "--rate-limits",
        choices=("on", "off"),
        default="on",
        help="off: the emulator enforces none of Discord's rate limits (the bot still paces)",
    )
    _add_metrics_argument(parser)
    parser.add_argument("--json", default="load.json", help="file name in bench/out ('' = none)")
    args = parser.parse_args(argv)
    if not 1 <= args.messages <= 5000 or not 1 <= args.users <= 200:
        parser.error("--messages must be 1..5000 and --users 1..200")
    if not 1 <= args.channels <= 500:
        parser.error("--channels must be 1..500")
    finish(asyncio.run(main_async(args)), args.json)


if __name__ == "__main__":
    main()
