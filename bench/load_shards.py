"""Load across shards: two processes × one shard each vs one process with both shards, on one
PostgreSQL database.

    .venv/bin/python -m bench.load_shards --database-url postgresql://postgres@127.0.0.1/test
                     [--messages 400] [--users 40] [--channels 20] [--mode burst|paced|both]
                     [--rate 20]
                     [--layout one|two|both] [--provider resemble|behavioral_signals]
                     [--json load_shards.json]

The emulator runs two shards, with one guild on each (half the users and channels each);
messages go to both guilds in turn. Layouts, each on a fresh PostgreSQL schema:

- one: one `python -m bench._botproc` with no shard settings: it shards itself, taking the
  two shards GET /gateway/bot recommends (the default deployment, here on PostgreSQL);
- two: two processes, SPOOFWATCH_SHARD_COUNT=2 and SPOOFWATCH_SHARD_IDS=0 / 1.

Sending as in bench/load.py (burst: every user at once; paced: a steady `--rate`), after a
warm-up. Reported per run: throughput (messages / (last verdict - first dispatch)), latency
(dispatch → reply stored) median/p99, and the CPU per scan of all bot processes together
(their own plus their children's: ffmpeg runs and Opus decoder processes), the PostgreSQL
backends' CPU per scan (/proc counters of the backends serving the bots), and the CPU other
programs used meanwhile: the machine is shared, so compare CPU per scan, not wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

import asyncpg

from bench._common import (
    BotProcess,
    ReplyTracker,
    VoiceFile,
    cpu_seconds,
    finish,
    fmt_ms,
    machine,
    post_voice,
    self_cpu,
    summary,
    system_busy_cpu,
    voice_pool,
)
from testkit.discord_emulator.emulator import DiscordEmulator
from testkit.postgres_server import drop_schema, fresh_schema
from testkit.standins import BehavioralSignalsStandIn, ResembleStandIn

SHARDS = 2
WARMUP = 20


class ShardScene:
    """One guild per shard, each with its channels and its share of the users."""

    def __init__(self, emu: DiscordEmulator, users: int, channels: int) -> None:
        emu.gateway.shard_count = SHARDS
        emu.gateway.max_concurrency = SHARDS
        self.places: list[tuple[Any, Any]] = []  # (channel, member), guilds in turn
        per_guild: list[list[tuple[Any, Any]]] = []
        for shard in range(SHARDS):
            guild = emu.create_guild(f"Shard {shard}", shard=(shard, SHARDS))
            chans = [emu.create_text_channel(guild, f"chat-{i}") for i in range(channels)]
            members = [emu.add_member(guild, f"s{shard}-user{i:03d}") for i in range(users // 2)]
            per_guild.append([(chans[i % channels], m) for i, m in enumerate(members)])
        for pair in zip(*per_guild, strict=True):
            self.places.extend(pair)


APP_NAME = "spoofwatch-load-shards"


async def _backend_cpu(url: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving the bots (by their application_name)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1", APP_NAME
        )
    finally:
        await conn.close()
    cpu = {}
    for row in rows:
        with contextlib.suppress(OSError, ValueError):
            own, reaped = cpu_seconds(row["pid"])
            cpu[row["pid"]] = own + reaped
    return cpu


async def _connected(emu: DiscordEmulator, bots: list[BotProcess]) -> None:
    deadline = time.monotonic() + 60
    while not all(
        any(s.live and s.connected and s.sent >= s.seq for s in emu.gateway.sessions_of(shard))
        for shard in range(SHARDS)
    ):
        for bot in bots:
            if bot.proc is not None and bot.proc.returncode is not None:
                raise RuntimeError(f"a bot exited early:\n{bot.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError("the bots did not connect both shards")
        await asyncio.sleep(0.05)


async def run_layout(
    layout: str, mode: str, files: list[VoiceFile], warmup: list[VoiceFile], args: Any
) -> dict[str, Any]:
    url = await fresh_schema(args.database_url)
    try:
        async with contextlib.AsyncExitStack() as stack:
            if args.provider == "resemble":
                standin: ResembleStandIn | BehavioralSignalsStandIn = ResembleStandIn()
                kwargs: dict[str, Any] = {"resemble": standin}
            else:
                standin = BehavioralSignalsStandIn(processing_polls=0)
                kwargs = {"bs": standin}
            await stack.enter_async_context(standin)
            emu = await stack.enter_async_context(DiscordEmulator())
            scene = ShardScene(emu, args.users, args.channels)
            tracker = ReplyTracker()
            tracker.install()
            stack.callback(tracker.uninstall)
            # The bots' backends are told apart from other work on the server by this name.
            base = {"SPOOFWATCH_DATABASE_URL": f"{url}&application_name={APP_NAME}"}
            if args.workers:
                base["SPOOFWATCH_WORKERS"] = str(args.workers)
            envs = (
                [base]
                if layout == "one"
                else [
                    base | {"SPOOFWATCH_SHARD_COUNT": str(SHARDS), "SPOOFWATCH_SHARD_IDS": str(i)}
                    for i in range(SHARDS)
                ]
            )
            bots = [
                BotProcess(emu=emu, provider=args.provider, settings=env, **kwargs) for env in envs
            ]
            for bot in bots:
                await bot.start()

                async def stop(bot: BotProcess = bot) -> None:
                    await bot.stop()
                    bot.cleanup()

                stack.push_async_callback(stop)
            await _connected(emu, bots)

            warm_ids = []
            for i, item in enumerate(warmup):
                channel, member = scene.places[i % len(scene.places)]
                warm_ids.append(await post_voice(emu, tracker, channel, member, item))
                await asyncio.sleep(0.1)
            tracker.expect(len(warm_ids))
            if not await tracker.wait(120):
                raise RuntimeError("warm-up did not finish:\n" + "\n".join(b.tail() for b in bots))
            for bot in bots:
                await bot.wait_log("catch-up: ")

            tracker.expect(len(warm_ids) + len(files))
            rest_before = len(emu.requests)
            cpu_before = [bot.cpu() for bot in bots]
            pg_before = await _backend_cpu(url)
            bench_before = self_cpu()
            system_before = system_busy_cpu()
            started = time.monotonic()
            ids: list[int] = []
            if mode == "burst":
                for n, item in enumerate(files):
                    channel, member = scene.places[n % len(scene.places)]
                    ids.append(await post_voice(emu, tracker, channel, member, item))
            else:
                loop = asyncio.get_running_loop()
                start = loop.time()
                for n, item in enumerate(files):
                    delay = start + n / args.rate - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    channel, member = scene.places[n % len(scene.places)]
                    ids.append(await post_voice(emu, tracker, channel, member, item))
            finished = await tracker.wait(max(120.0, len(files) / 2))
            ended = time.monotonic()
            rest_calls = len(emu.requests) - rest_before
            cpu_after = [bot.cpu() for bot in bots]
            pg_after = await _backend_cpu(url)
            pg_cpu = sum(cpu - pg_before.get(pid, 0.0) for pid, cpu in pg_after.items())
            bench_cpu = self_cpu() - bench_before
            system_cpu = system_busy_cpu() - system_before
    finally:
        await drop_schema(url)

    replied = [i for i in ids if i in tracker.replied]
    scans = len(replied)
    first = min(tracker.posted[i] for i in ids)
    last = max((tracker.replied[i] for i in replied), default=ended)
    bots_cpu = sum(a[0] + a[1] - b[0] - b[1] for a, b in zip(cpu_after, cpu_before, strict=True))
    return {
        "layout": layout,
        "processes": len(bots),
        "mode": mode,
        "rate": args.rate if mode == "paced" else None,
        "provider": args.provider,
        "messages": len(files),
        "complete": finished,
        "replied": scans,
        "failed_replies": len(tracker.failed & set(ids)),
        "throughput_per_s": scans / (last - first) if last > first else None,
        "latency_s": summary(tracker.latencies(ids)),
        # Discord's global limit is 50 requests/s per bot, whichever process sends them.
        "discord_rest_per_scan": rest_calls / max(scans, 1),
        "discord_rest_per_s": rest_calls / (last - first) if last > first else None,
        "bots_cpu_per_scan_ms": bots_cpu / max(scans, 1) * 1000,
        "postgres_cpu_per_scan_ms": pg_cpu / max(scans, 1) * 1000,
        "other_processes_cores": (system_cpu - bench_cpu - bots_cpu - pg_cpu) / (ended - started),
    }


def _print(r: dict[str, Any]) -> None:
    lat = r["latency_s"]
    rate = f" at {r['rate']:g}/s" if r["rate"] else ""
    print(f"\n== {r['layout']} ({r['processes']} process(es)) / {r['mode']}{rate}, {r['provider']}")
    print(
        f"  replied {r['replied']}/{r['messages']} ({r['failed_replies']} failures)"
        + (f" -> {r['throughput_per_s']:.1f} scans/s" if r["throughput_per_s"] else "")
    )
    if lat.get("n"):
        print(f"  dispatch->reply: median {fmt_ms(lat['median'])}, p99 {fmt_ms(lat['p99'])}")
    print(
        f"  Discord REST: {r['discord_rest_per_scan']:.2f} per scan, "
        f"{r['discord_rest_per_s'] or 0:.1f}/s over the run (Discord allows 50/s per bot)"
    )
    print(
        f"  CPU per scan: bots {r['bots_cpu_per_scan_ms']:.1f} ms, PostgreSQL "
        f"{r['postgres_cpu_per_scan_ms']:.1f} ms; other programs "
        f"{r['other_processes_cores']:.2f} cores meanwhile"
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    pool = voice_pool(args.messages + WARMUP)
    files, warmup = pool[: args.messages], pool[args.messages :]
    layouts = ("one", "two") if args.layout == "both" else (args.layout,)
    modes = ("burst", "paced") if args.mode == "both" else (args.mode,)
    results = []
    for mode in modes:
        for layout in layouts:
            result = await run_layout(layout, mode, files, warmup, args)
            _print(result)
            results.append(result)
    return {"machine": machine(), "args": vars(args), "results": results}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load_shards", description=__doc__)
    parser.add_argument("--database-url", required=True, help="postgresql://... (a server)")
    parser.add_argument("--layout", choices=("one", "two", "both"), default="both")
    parser.add_argument("--mode", choices=("burst", "paced", "both"), default="both")
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--rate", type=float, default=20.0, help="paced mode: messages/s")
    parser.add_argument(
        "--channels",
        type=int,
        default=20,
        help="channels per guild: Discord lets a bot post 5 messages per 5 s in each, so "
        "replies/s can never exceed the number of channels",
    )
    parser.add_argument("--workers", type=int, default=0, help="SPOOFWATCH_WORKERS per process")
    parser.add_argument(
        "--provider", choices=("resemble", "behavioral_signals"), default="resemble"
    )
    parser.add_argument("--json", default="load_shards.json", help="file in bench/out ('' = none)")
    args = parser.parse_args(argv)
    finish(asyncio.run(main_async(args)), args.json)


if __name__ == "__main__":
    main()
