"""Against the official SDKs: the same 200 files, submitted and polled to completion.

    .venv/bin/python -m bench.sdk_compare [--provider behavioral_signals|resemble|both]
        [--files 200] [--threads 32] [--processing-s 2] [--json sdk_compare.json]

Needs the SDKs: `.venv/bin/pip install -e ".[bench]"` (behavioralsignals 0.7.1, resemble 1.9.0).

One provider stand-in on 127.0.0.1 in this process (jobs take `--processing-s`), and each
client in a process of its own (`python -m bench._sdk_worker`), one after the other, each
against a fresh stand-in:

- Behavioral Signals: Spoofwatch's `BehavioralSignalsClient` (all files as asyncio tasks over
  one aiohttp session with the bot's connection limits, default poll settings) against the
  official `behavioralsignals` SDK (`upload_audio` + `wait_for_result` per file in a thread
  pool of `--threads`; the SDK polls every second).
- Resemble: Spoofwatch's `ResembleClient` (multipart upload answered at once with the job's
  uuid, then polling `GET /detect/{uuid}`) against the
  official `resemble` SDK, both ways its API allows a local file: `detect_and_get(file=...)`
  (Secure Upload, create, then get every 3 s) and `detect(file=..., synchronous=True)`
  (Secure Upload, then create with Prefer: wait).

The files: 200 distinct WAVs (16 kHz mono, 5-30 s of speech; made from the load
benchmark's voice messages and cached). Reported per client: wall time, CPU time, requests
the stand-in received (by route) and TCP connections it accepted, RSS after set-up and peak
RSS, and the SDK / Spoofwatch ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from bench._common import CACHE, REPO, ffmpeg, finish, machine, voice_pool
from testkit.standins import BehavioralSignalsStandIn, ResembleStandIn
from testkit.standins import behavioral_signals as bs_module
from testkit.standins import resemble as resemble_module
from testkit.standins._common import Handler

#: (worker variant, Spoofwatch's files in flight: None = the SDK's thread pool, 0 = all).
CASES: dict[str, tuple[tuple[str, int | None], ...]] = {
    "behavioral_signals": (("spoofwatch-bs", 32), ("spoofwatch-bs", 0), ("sdk-bs", None)),
    "resemble": (
        ("spoofwatch-resemble", 32),
        ("spoofwatch-resemble", 0),
        ("sdk-resemble", None),
        ("sdk-resemble-sync", None),
    ),
}


class _Peers:
    """Counts the TCP connections a stand-in accepted (distinct client address and port)."""

    peers: set[Any]

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        self.peers.add(transport.get_extra_info("peername") if transport else None)
        return await super()._record(request, handler)  # type: ignore[misc]


class CountingBS(_Peers, BehavioralSignalsStandIn):
    def __init__(self, **kwargs: Any) -> None:
        self.peers = set()
        super().__init__(**kwargs)


class CountingResemble(_Peers, ResembleStandIn):
    def __init__(self, **kwargs: Any) -> None:
        self.peers = set()
        super().__init__(**kwargs)


def wav_files(count: int) -> list[tuple[str, float]]:
    """`count` distinct 16 kHz mono WAVs of speech (cached)."""
    folder = CACHE / f"wav-{count}"
    marker = folder / "complete.json"
    if marker.exists():
        return [(str(path), float(seconds)) for path, seconds in json.loads(marker.read_text())]
    folder.mkdir(parents=True, exist_ok=True)
    voices = voice_pool(count, seed=13)

    def convert(index: int) -> tuple[str, float]:
        target = folder / f"speech-{index:04d}.wav"
        ffmpeg("-i", voices[index].path, "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", target)
        return str(target), voices[index].duration_s

    with ThreadPoolExecutor(max_workers=2) as pool:
        entries = list(pool.map(convert, range(count)))
    marker.write_text(json.dumps(entries))
    return entries


async def run_variant(
    variant: str, in_flight: int | None, provider: str, job_file: Path, args: argparse.Namespace
) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as stack:
        if provider == "resemble":
            standin: CountingBS | CountingResemble = CountingResemble(
                processing_s=args.processing_s
            )
        else:
            standin = CountingBS(processing_polls=0, processing_s=args.processing_s)
        await stack.enter_async_context(standin)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench._sdk_worker",
            variant,
            standin.url,
            str(job_file),
            "--threads",
            str(args.threads),
            *(["--standalone"] if args.standalone else []),
            *(["--in-flight", str(in_flight)] if in_flight is not None else []),
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), args.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"{variant} did not finish within {args.timeout:g} s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"{variant} failed:\n{stderr.decode(errors='replace')[-3000:]}")
        result = json.loads(stdout.decode().strip().splitlines()[-1])
        requests = Counter(standin.received)
        connections = len(standin.peers)
    label = variant
    if in_flight is not None:
        label += f" ({in_flight or 'all'} in flight)"
    elif variant.startswith("sdk"):
        label += f" ({args.threads} threads)"
    return {
        "variant": label,
        "in_flight": in_flight,
        "provider": provider,
        **result,
        "requests": dict(requests),
        "requests_total": sum(requests.values()),
        "connections": connections,
        "rss_baseline_mib": result["rss_baseline_kib"] / 1024,
        "rss_set_up_mib": result["rss_set_up_kib"] / 1024,
        "peak_rss_mib": result["peak_rss_kib"] / 1024,
        # What the client costs on top of the process it lives in.
        "added_rss_mib": (result["peak_rss_kib"] - result["rss_baseline_kib"]) / 1024,
    }


def _print(result: dict[str, Any], files: int) -> None:
    print(
        f"  {result['variant']:<34} wall {result['wall_s']:6.2f} s, CPU {result['cpu_s']:5.2f} s, "
        f"requests {result['requests_total']:5d} ({result['requests_total'] / files:.2f}/file, "
        f"{result['connections']} connections), RSS {result['rss_baseline_mib']:.0f} -> "
        f"{result['rss_set_up_mib']:.0f} (set up) -> {result['peak_rss_mib']:.0f} MiB peak: "
        f"+{result['added_rss_mib']:.0f} MiB"
        + (f", {len(result['errors'])} errors: {result['errors'][:2]}" if result["errors"] else "")
    )


def ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float]:
    """theirs / ours for each figure (> 1: Spoofwatch is faster or lighter)."""
    return {
        key: theirs[key] / ours[key]
        for key in (
            "wall_s",
            "cpu_s",
            "requests_total",
            "connections",
            "peak_rss_mib",
            "added_rss_mib",
        )
        if ours[key]
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    files = wav_files(args.files)
    providers = tuple(CASES) if args.provider == "both" else (args.provider,)
    results: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sw-sdk-") as tmp:
        for provider in providers:
            credentials = (
                {"cid": bs_module.CID, "api_key": bs_module.API_KEY}
                if provider == "behavioral_signals"
                else {"cid": None, "api_key": resemble_module.API_KEY}
            )
            job_file = Path(tmp) / f"{provider}.json"
            job_file.write_text(json.dumps({"files": files, **credentials}))
            print(f"\n== {provider}: {len(files)} files, jobs take {args.processing_s:g} s")
            ours: list[dict[str, Any]] = []
            for variant, planned in CASES[provider]:
                # A positive number means "as many as the SDK's thread pool".
                in_flight = args.threads if planned else planned
                result = await run_variant(variant, in_flight, provider, job_file, args)
                _print(result, len(files))
                results.append(result)
                if variant.startswith("spoofwatch"):
                    ours.append(result)
                    continue
                for mine in ours:
                    compared = ratios(mine, result)
                    comparisons.append(
                        {"sdk": result["variant"], "spoofwatch": mine["variant"], **compared}
                    )
                    print(
                        f"    {result['variant']} / {mine['variant']}: "
                        + ", ".join(f"{k} ×{v:.2f}" for k, v in compared.items())
                    )
    return {
        "machine": machine(),
        "args": vars(args),
        "sdk_versions": _versions(),
        "results": results,
        "ratios": comparisons,
    }


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    found: dict[str, str | None] = {}
    for name in ("behavioralsignals", "resemble", "aiohttp", "requests"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sdk_compare", description=__doc__)
    parser.add_argument("--provider", choices=(*CASES, "both"), default="both")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--processing-s", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="per client run")
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="clients in bare processes (default: discord.py imported first, as in a bot)",
    )
    parser.add_argument("--json", default="sdk_compare.json")
    args = parser.parse_args(argv)
    if not 1 <= args.files <= 1000 or not 1 <= args.threads <= 128:
        parser.error("--files must be 1..1000 and --threads 1..128")
    missing = [n for n, v in _versions().items() if v is None and n != "aiohttp"]
    if missing:
        parser.error(f"missing {missing}: .venv/bin/pip install -e '.[bench]'")
    finish(asyncio.run(main_async(args)), args.json)


if __name__ == "__main__":
    main()
