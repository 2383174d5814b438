"""Time to verdict: how late after the provider finishes does the reply reach Discord?

    .venv/bin/python -m bench.time_to_verdict [--provider resemble|behavioral_signals|both]
        [--times 2,10,60] [--jobs 8] [--schedule learned|backoff|both] [--json]

The whole bot (`python -m bench._botproc`, default settings) against the Discord emulator and
a provider stand-in whose jobs take `--times` seconds: Behavioral Signals with
`processing_s` (completed on the first status check after that time), Resemble with the same
processing time (the upload answers at once with the job's uuid, as Spoofwatch sends no
`Prefer: wait`; the verdict comes from polling `GET /detect/{uuid}`). Each series is one
bot: one warm-up voice message (reported apart: the first job after a start has nothing
learned yet), then `--jobs` voice messages posted a quarter of the processing time apart, all
10 s long (distinct bytes).

Delay = the verdict reply stored by the emulator - the moment the stand-in's job became
finished (created + processing time). Status requests = the stand-in's count of status
checks of that job.

`--schedule backoff` is the schedule before issue 7 (check at once, then 1 s ×1.5 up to
5 s), `learned` the current one (checks around the finish expected from earlier jobs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from typing import Any

from bench._common import (
    ReplyTracker,
    VoiceFile,
    bot_process,
    build_scene,
    finish,
    machine,
    post_voice,
    sha256_file,
    voice_pool,
)
from testkit.discord_emulator.emulator import DiscordEmulator
from testkit.standins import BehavioralSignalsStandIn, ResembleStandIn

PROVIDERS = ("behavioral_signals", "resemble")
SCHEDULES = ("backoff", "learned")
MEDIA_S = 10


async def run_series(
    provider: str,
    processing_s: float,
    schedule: str,
    *,
    files: list[VoiceFile],
    hashes: dict[str, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as stack:
        if provider == "resemble":
            standin: ResembleStandIn | BehavioralSignalsStandIn = ResembleStandIn(
                processing_s=processing_s
            )
            kwargs: dict[str, Any] = {"resemble": standin}
        else:
            standin = BehavioralSignalsStandIn(processing_polls=0, processing_s=processing_s)
            kwargs = {"bs": standin}
        await stack.enter_async_context(standin)
        emu = await stack.enter_async_context(DiscordEmulator())
        scene = build_scene(emu, users=4, channels=1)
        tracker = ReplyTracker()
        tracker.install()
        stack.callback(tracker.uninstall)
        settings = {"SPOOFWATCH_BENCH_POLL": "backoff"} if schedule == "backoff" else {}
        await stack.enter_async_context(
            bot_process(emu=emu, provider=provider, settings=settings, **kwargs)
        )
        channel = scene.channels[0]

        async def post(index: int) -> int:
            item = files[index]
            user = scene.users[index % len(scene.users)]
            return await post_voice(emu, tracker, channel, user, item)

        warm = await post(0)
        tracker.expect(1)
        if not await tracker.wait(processing_s + 120):
            raise RuntimeError("the warm-up scan got no reply")
        ids = []
        spacing = max(0.5, processing_s / 4)
        for n in range(1, args.jobs + 1):
            ids.append(await post(n))
            if n < args.jobs:
                await asyncio.sleep(spacing)
        tracker.expect(1 + args.jobs)
        complete = await tracker.wait(processing_s * 2 + 120)

    posted = [warm, *ids]
    jobs: dict[int, Any] = {}
    for job in standin.jobs.values():
        if isinstance(standin, BehavioralSignalsStandIn):
            # Behavioral Signals gets the transcoded WAV; the bot's meta names the message.
            jobs[int(json.loads(getattr(job, "meta", None) or "{}")["message"])] = job
        else:
            jobs[posted[hashes[job.upload.sha256]]] = job

    def figures(message_ids: list[int]) -> list[dict[str, float]]:
        out = []
        for message_id in message_ids:
            job = jobs.get(message_id)
            replied = tracker.replied.get(message_id)
            if job is None or replied is None:
                continue
            out.append({"delay_s": replied - (job.created + processing_s), "status": job.polls})
        return out

    measured = figures(ids)
    first = figures([warm])
    delays = [m["delay_s"] for m in measured]
    polls = [m["status"] for m in measured]
    return {
        "provider": provider,
        "processing_s": processing_s,
        "schedule": schedule,
        "jobs": len(ids),
        "complete": complete,
        "delay_s": {
            "median": statistics.median(delays) if delays else None,
            "max": max(delays, default=None),
            "min": min(delays, default=None),
        },
        "status_requests": {
            "median": statistics.median(polls) if polls else None,
            "max": max(polls, default=None),
        },
        "first_job": first[0] if first else None,
        "per_job": measured,
    }


def _print(result: dict[str, Any]) -> None:
    delay, polls, first = result["delay_s"], result["status_requests"], result["first_job"]
    print(
        f"{result['provider']:>18} {result['processing_s']:>4g} s job "
        f"{result['schedule']:>8}: delay median {delay['median']:.2f} s "
        f"(max {delay['max']:.2f}), status requests median {polls['median']:g} "
        f"(max {polls['max']}); first job after start: {first['delay_s']:.2f} s, "
        f"{first['status']} requests"
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    files = voice_pool(args.jobs + 1, min_s=MEDIA_S, max_s=MEDIA_S, seed=11)
    hashes = {sha256_file(item.path): index for index, item in enumerate(files)}
    providers = PROVIDERS if args.provider == "both" else (args.provider,)
    schedules = SCHEDULES if args.schedule == "both" else (args.schedule,)
    results = []
    for provider in providers:
        for processing_s in args.times:
            for schedule in schedules:
                started = time.monotonic()
                result = await run_series(
                    provider, processing_s, schedule, files=files, hashes=hashes, args=args
                )
                result["wall_s"] = time.monotonic() - started
                _print(result)
                results.append(result)
    return {"machine": machine(), "args": vars(args), "results": results}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.time_to_verdict", description=__doc__)
    parser.add_argument("--provider", choices=(*PROVIDERS, "both"), default="both")
    parser.add_argument(
        "--times",
        type=lambda text: [float(t) for t in text.split(",")],
        default=[2.0, 10.0, 60.0],
        help="processing times in seconds, comma-separated",
    )
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--schedule", choices=(*SCHEDULES, "both"), default="both")
    parser.add_argument("--json", default="time_to_verdict.json")
    args = parser.parse_args(argv)
    if not 1 <= args.jobs <= 50 or any(not 0 <= t <= 300 for t in args.times):
        parser.error("--jobs must be 1..50 and --times within 0..300 s")
    finish(asyncio.run(main_async(args)), args.json)


if __name__ == "__main__":
    main()
