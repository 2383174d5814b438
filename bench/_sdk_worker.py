"""One side of bench/sdk_compare, in a process of its own so its CPU and memory are its own.

    python -m bench._sdk_worker VARIANT URL JOB_JSON [--threads 32]

JOB_JSON holds {"files": [[path, duration_s], ...], "cid": ..., "api_key": ...}. Nothing of the
other side is imported (not even the stand-ins' modules), so each side's memory is its own.

VARIANT is one of:

- spoofwatch-bs: `BehavioralSignalsClient` over one aiohttp session (the bot's connector
  limits), every file as a task: submit, then `wait` (the bot's default poll settings).
- sdk-bs: the official `behavioralsignals` SDK, one `Client`, its `deepfakes.upload_audio`
  then `wait_for_result` per file in a thread pool (how a bot wraps a synchronous SDK).
- spoofwatch-resemble: `ResembleClient` (multipart upload answered at once with the job's
  uuid, then polling).
- sdk-resemble: the official `resemble` SDK's `detect_and_get(file=...)` per file in a thread
  pool: Secure Upload, create, then its own polling (3 s sleeps).
- sdk-resemble-sync: the SDK's `detect(file=..., synchronous=True)` (adds Prefer: wait).

Prints one JSON line: wall time, CPU time, RSS before the client's imports (with discord.py
loaded first, as in a bot, unless --standalone), after set-up, and at peak (VmHWM), errors.
The SDKs are benchmark-only dependencies (`pip install -e .[bench]`); the bot never imports
them.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

VARIANTS = ("spoofwatch-bs", "sdk-bs", "spoofwatch-resemble", "sdk-resemble", "sdk-resemble-sync")


def memory_kib(pid: int) -> dict[str, int]:
    # bench._common.memory_kib's twin, on purpose: importing bench._common would load the
    # emulator and the stand-ins into the process whose memory this measures.
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


async def _spoofwatch(
    variant: str, url: str, job: dict[str, Any], in_flight: int
) -> dict[str, Any]:
    import aiohttp
    from pydantic import SecretStr

    from bot.detectors import PollPolicy, RetryPolicy, SubmitOptions, Upload
    from bot.detectors.behavioral_signals import BehavioralSignalsClient
    from bot.detectors.resemble import ResembleClient
    from bot.verdict import MediaKind

    # The same connection limits as bot.resources.open_runtime (not imported: it would load the
    # storage and media packages too, and their memory is not the client's).
    connector = aiohttp.TCPConnector(limit=100, limit_per_host=64, ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector) as s:
        client: BehavioralSignalsClient | ResembleClient
        if variant == "spoofwatch-bs":
            client = BehavioralSignalsClient(
                s,
                cid=job["cid"],
                api_key=SecretStr(job["api_key"]),
                base_url=url,
                retry=RetryPolicy(),
                poll=PollPolicy(),
                request_timeout_s=60.0,
            )
        else:
            client = ResembleClient(
                s,
                api_key=SecretStr(job["api_key"]),
                base_url=url,
                retry=RetryPolicy(),
                poll=PollPolicy(),
                request_timeout_s=60.0,
            )
        set_up = memory_kib(os.getpid())["VmRSS"]

        # At most `in_flight` files between upload and verdict (0: all of them at once).
        gate = asyncio.Semaphore(in_flight or len(job["files"]))

        async def one(path: str, duration: float) -> None:
            async with gate:
                await submit_and_wait(path, duration)

        async def submit_and_wait(path: str, duration: float) -> None:
            upload = Upload(
                path=Path(path),
                filename=Path(path).name,
                content_type="audio/wav",
                kind=MediaKind.AUDIO,
                format_name="wav",
                duration_s=duration,
            )
            submission = await client.submit(upload, SubmitOptions())
            if submission.verdict is None:
                await client.wait(submission.job_id)

        started, cpu = time.monotonic(), _cpu()
        outcomes = await asyncio.gather(
            *(one(p, d) for p, d in job["files"]), return_exceptions=True
        )
        wall, cpu = time.monotonic() - started, _cpu() - cpu
    errors = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    return {"wall_s": wall, "cpu_s": cpu, "rss_set_up_kib": set_up, "errors": errors}


def _sdk(variant: str, url: str, job: dict[str, Any], threads: int) -> dict[str, Any]:
    if variant == "sdk-bs":
        import behavioralsignals.base as bs_base
        from behavioralsignals import Client
        from behavioralsignals.configuration import Configuration

        # configuration.py fixes api_url to the real service; point it at the stand-in.
        bs_base.Configuration = functools.partial(  # type: ignore[assignment,misc]
            Configuration, api_url=url
        )
        client = Client(cid=job["cid"], api_key=job["api_key"])
        deepfakes = client.deepfakes

        def one(path: str) -> None:
            process = deepfakes.upload_audio(file_path=path)
            deepfakes.wait_for_result(process.pid, timeout=300)

    else:
        from resemble import Resemble  # type: ignore[import-untyped]

        Resemble.api_key(job["api_key"])
        Resemble.base_url(url.removesuffix("v2"))  # the SDK appends "v2/..."
        detection = Resemble.v2.deepfake_detection

        def one(path: str) -> None:
            with open(path, "rb") as fh:
                if variant == "sdk-resemble":
                    answer = detection.detect_and_get(file=fh)
                else:
                    answer = detection.detect(file=fh, synchronous=True)
            status = (answer.get("item") or {}).get("status")
            if not answer.get("success") or status != "completed":
                raise RuntimeError(f"not completed: {str(answer)[:200]}")

    set_up = memory_kib(os.getpid())["VmRSS"]
    errors: list[str] = []
    started, cpu = time.monotonic(), _cpu()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(one, path) for path, _ in job["files"]]
        for future in futures:
            if (exc := future.exception()) is not None:
                errors.append(repr(exc))
    wall, cpu = time.monotonic() - started, _cpu() - cpu
    return {"wall_s": wall, "cpu_s": cpu, "rss_set_up_kib": set_up, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._sdk_worker")
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("url")
    parser.add_argument("job", type=Path)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--in-flight", type=int, default=0, help="Spoofwatch: 0 = all at once")
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="do not import discord.py first (by default each side runs as inside a bot)",
    )
    args = parser.parse_args()
    if not args.standalone:
        import discord  # noqa: F401  (a bot has it loaded, and with it aiohttp)
    baseline = memory_kib(os.getpid())["VmRSS"]
    job = json.loads(args.job.read_text())
    if args.variant.startswith("spoofwatch"):
        result = asyncio.run(_spoofwatch(args.variant, args.url, job, args.in_flight))
    else:
        result = _sdk(args.variant, args.url, job, args.threads)
    result["peak_rss_kib"] = memory_kib(os.getpid())["VmHWM"]
    result["rss_baseline_kib"] = baseline
    result["errors"] = result["errors"][:5] + (
        [f"... {len(result['errors']) - 5} more"] if len(result["errors"]) > 5 else []
    )
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
