"""Audit-log benchmark (issue 4): a million cases across 100 guilds, then every /audit query.

    .venv/bin/python bench/audit_bench.py                  # the full run (~15 minutes)
    .venv/bin/python bench/audit_bench.py --rows 20000     # a quick look
    .venv/bin/python bench/audit_bench.py --database-url postgresql://postgres@127.0.0.1/test
        # the same on PostgreSQL, in a schema `audit_bench` (dropped and re-created)

1. Fill: every case goes through the real `SQLiteAuditLog` write path, 16 scans in flight,
   as the scan service drives it: create_scan → set_media → (find_verdict) → mark_submitted
   → mark_done / mark_failed → mark_replied, plus a moderator review for some flagged cases.
   A simulated clock spreads the cases over 120 days. Guild sizes follow Zipf's law (the
   biggest guild holds ~19% of all cases), members and channels within a guild too.
2. Size: WAL checkpointed, then file size / cases, and per table and index (dbstat). On
   PostgreSQL: every relation of the schema (heap, TOAST, indexes) / cases, as the fill
   left them (autovacuum running as it would: the server's, or a stand-in where the server has
   it off, see `AutovacuumStandIn`), and again after a plain VACUUM.
3. Queries: each /audit query 200 times against guilds picked in proportion to their
   activity (busy servers are queried more, and the biggest is picked ~1 time in 5, so p99 is
   the worst guild); median and p99 of the awaited call, pydantic rows included.
4. Insert rate on top of the full database: create_scan + mark_done for 20,000 scans with
   1, 8 and 64 scans in flight (concurrent steps share a group commit), three times over.
   With each run, the CPU time per scan of this process and, on PostgreSQL, of the server
   processes serving its database (read from /proc, so the server must run on this machine
   and the database should be the benchmark's own: `createdb` one, as BENCHMARKS.md does).

Results go to stdout and to `bench/out/audit_bench.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.storage import AuditLog, NewScan, Review, Trigger
from bot.storage.postgres import PostgresAuditLog
from bot.storage.sqlite import SQLiteAuditLog
from bot.verdict import Label, ProviderName, Segment, Verdict

DISCORD_EPOCH_MS = 1_420_070_400_000
DAY = 86_400
OUT = Path(__file__).resolve().parent / "out"


class SimClock:
    """The audit log's clock, moved by the fill so cases spread over 120 days."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def snowflake(rng: random.Random, at: float) -> int:
    return (int(at * 1000) - DISCORD_EPOCH_MS) << 22 | rng.getrandbits(22)


def zipf_weights(n: int, s: float) -> list[float]:
    return [1 / (rank**s) for rank in range(1, n + 1)]


@dataclass
class Guild:
    id: int
    weight: float
    provider: ProviderName
    authors: list[int]
    author_cum: list[float]
    channels: list[int]
    channel_cum: list[float]
    moderators: list[int]
    store_transcripts: bool
    cases: int = 0
    recent_media: list[tuple[str, int]] = field(default_factory=list)


def make_guilds(rng: random.Random, count: int, rows: int) -> list[Guild]:
    guilds = []
    weights = zipf_weights(count, 1.0)
    total = sum(weights)
    past = time.time() - 5 * 365 * DAY
    for weight in weights:
        expected = rows * weight / total
        # A server's active posters grow sublinearly with its traffic.
        n_authors = max(10, int(expected**0.75))
        n_channels = rng.randint(3, 40)
        guilds.append(
            Guild(
                id=snowflake(rng, past + rng.random() * 3 * 365 * DAY),
                weight=weight,
                provider=(
                    ProviderName.RESEMBLE if rng.random() < 0.7 else ProviderName.BEHAVIORAL_SIGNALS
                ),
                authors=[
                    snowflake(rng, past + rng.random() * 4 * 365 * DAY) for _ in "x" * n_authors
                ],
                author_cum=_cumulative(zipf_weights(n_authors, 1.1)),
                channels=[
                    snowflake(rng, past + rng.random() * 365 * DAY) for _ in "x" * n_channels
                ],
                channel_cum=_cumulative(zipf_weights(n_channels, 1.3)),
                moderators=[snowflake(rng, past) for _ in range(5)],
                store_transcripts=rng.random() < 0.8,
            )
        )
    return guilds


def _cumulative(weights: list[float]) -> list[float]:
    return list(itertools.accumulate(weights))


def make_verdict(
    rng: random.Random, provider: ProviderName, duration: float, *, with_transcript: bool
) -> Verdict:
    roll = rng.random()
    if roll < 0.05:
        label, probability = Label.SPOOFED, 0.5 + 0.5 * rng.random() ** 0.5
    elif roll < 0.07:
        label, probability = Label.INCONCLUSIVE, None
    else:
        label, probability = Label.BONAFIDE, 0.5 * rng.random() ** 4
    segments: list[Segment] = []
    if probability is not None:
        # Resemble scores every 2 s chunk (as strings like "0.12"); Behavioral Signals scores
        # each utterance (posteriors like "0.9990234375").
        step = 2.0 if provider is ProviderName.RESEMBLE else 8.0
        digits = 2 if provider is ProviderName.RESEMBLE else 10
        start = 0.0
        while start < duration:
            end = min(duration, start + step)
            p = min(1.0, max(0.0, probability + rng.uniform(-0.1, 0.1)))
            segments.append(
                Segment(
                    start=round(start, 3),
                    end=round(end, 3),
                    label=Label.SPOOFED if p >= 0.5 else Label.BONAFIDE,
                    spoofed_probability=round(p, digits),
                )
            )
            start = end
    if provider is ProviderName.RESEMBLE:
        job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        provider_label: str | None = {Label.SPOOFED: "fake", Label.BONAFIDE: "real"}.get(
            label, "unknown"
        )
    else:
        job_id = str(rng.randint(10_000, 9_999_999))
        provider_label = {Label.SPOOFED: "spoofed", Label.BONAFIDE: "bonafide"}.get(label)
    transcript = None
    if with_transcript:
        words = rng.choices(_WORDS, k=rng.randint(12, 24))
        transcript = " ".join(words)[:120]
    return Verdict(
        label=label,
        spoofed_probability=probability,
        transcript=transcript,
        language=rng.choice(("en", "en", "en", "es", "de", "fr", "pt")),
        speakers=1 if rng.random() < 0.9 else 2,
        segments=tuple(segments),
        provider=provider,
        provider_job_id=job_id,
        duration_s=round(duration, 3),
        provider_label=provider_label,
    )


_SPEECH = (
    "hey guys so I was thinking we could meet tonight at the usual place and play "
    "a few rounds before the raid starts honestly this patch is wild did you see it"
)
_WORDS = _SPEECH.split(" ")
_ERRORS_BEFORE = ("too_large", "not_media", "no_audio", "too_long", "quota")
_ERRORS_AFTER = ("provider_timeout", "provider_unavailable", "provider_job_failed")


def pick(rng: random.Random, items: list[int], cum: list[float]) -> int:
    return rng.choices(items, cum_weights=cum, k=1)[0]


async def one_scan(
    log: AuditLog, clock: SimClock, rng: random.Random, guild: Guild, at: float
) -> None:
    """One scan's whole lifecycle through the real write path, at simulated time `at`."""
    clock.now = datetime.fromtimestamp(at, UTC)
    channel = pick(rng, guild.channels, guild.channel_cum)
    author = pick(rng, guild.authors, guild.author_cum)
    message = snowflake(rng, at)
    roll = rng.random()
    trigger = Trigger.AUTO if roll < 0.9 else Trigger.CHECK if roll < 0.97 else Trigger.CONTEXT_MENU
    voice = rng.random() < 0.7
    filename = "voice-message.ogg" if voice else f"clip_{rng.randint(1, 99999)}.mp4"
    attachment = message + 1
    record, _ = await log.scans.create_scan(
        NewScan(
            guild_id=guild.id,
            channel_id=channel,
            message_id=message,
            author_id=author,
            jump_url=f"https://discord.com/channels/{guild.id}/{channel}/{message}",
            attachment_id=attachment,
            filename=filename,
            content_type="audio/ogg" if voice else "video/mp4",
            size=rng.randint(20_000, 3_000_000),
            trigger=trigger,
            requested_by=(
                None if trigger is Trigger.AUTO else pick(rng, guild.authors, guild.author_cum)
            ),
            provider=guild.provider,
            source_url=(
                f"https://cdn.discordapp.com/attachments/{channel}/{attachment}/{filename}"
                f"?ex={int(at) + DAY:x}&is={int(at):x}&hm={rng.getrandbits(256):064x}&"
            ),
        )
    )
    guild.cases += 1
    if guild.recent_media and rng.random() < 0.03:  # a repost of a file seen before
        sha256, _ = rng.choice(guild.recent_media)
    else:
        sha256 = f"{rng.getrandbits(256):064x}"
    duration = min(300.0, max(1.0, rng.lognormvariate(math.log(12), 0.8)))
    await log.scans.set_media(
        record.id,
        sha256=sha256,
        size=record.size or 0,
        content_type=record.content_type,
        duration_s=round(duration, 3),
    )
    stored = await log.scans.find_verdict(sha256, guild.provider)
    if stored is not None:
        clock.now += timedelta(seconds=1)
        await log.scans.mark_done(
            record.id,
            stored.verdict,
            reused_from=stored.scan_id,
            store_transcript=guild.store_transcripts,
        )
        await log.scans.mark_replied(record.id, snowflake(rng, at + 1))
        return
    fate = rng.random()
    if fate < 0.015:
        clock.now += timedelta(seconds=1)
        await log.scans.mark_failed(record.id, rng.choice(_ERRORS_BEFORE), "refused before upload")
        await log.scans.mark_replied(record.id, snowflake(rng, at + 1))
        return
    transcript = guild.store_transcripts and rng.random() < 0.4
    verdict = make_verdict(rng, guild.provider, duration, with_transcript=transcript)
    clock.now += timedelta(seconds=2)
    await log.scans.mark_submitted(record.id, verdict.provider_job_id)
    clock.now += timedelta(seconds=rng.randint(3, 40))
    if fate < 0.03:
        await log.scans.mark_failed(
            record.id, rng.choice(_ERRORS_AFTER), "The detection service did not finish in time."
        )
    else:
        done = await log.scans.mark_done(
            record.id, verdict, store_transcript=guild.store_transcripts
        )
        guild.recent_media.append((sha256, done.id))
        del guild.recent_media[:-200]
        if verdict.label is Label.SPOOFED and rng.random() < 0.3:
            clock.now += timedelta(minutes=rng.randint(1, 600))
            decision = Review.CONFIRMED if rng.random() < 0.7 else Review.FALSE_POSITIVE
            await log.admin.review(
                guild.id,
                done.case_number,
                decision,
                moderator_id=rng.choice(guild.moderators),
                note="checked with the member" if rng.random() < 0.3 else None,
            )
    await log.scans.mark_replied(record.id, snowflake(rng, at + 45))


async def fill(
    log: AuditLog,
    clock: SimClock,
    rng: random.Random,
    guilds: list[Guild],
    *,
    rows: int,
    workers: int,
) -> dict[str, Any]:
    """`workers` scans in flight, taken in time order, as a busy bot would run them."""
    end = time.time() - 3600
    start = end - 120 * DAY
    chosen = iter(enumerate(rng.choices(guilds, weights=[g.weight for g in guilds], k=rows)))
    report_every = max(1, rows // 20)
    server = await _server_processes(log)
    server_cpu = server()
    cpu = time.process_time()
    began = time.perf_counter()

    async def worker() -> None:
        for i, guild in chosen:
            at = start + (end - start) * i / rows + rng.random()
            await one_scan(log, clock, rng, guild, at)
            if (i + 1) % report_every == 0:
                elapsed = time.perf_counter() - began
                print(f"  filled {i + 1:>9,} cases  {(i + 1) / elapsed:8,.0f} scans/s", flush=True)

    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - began
    filled: dict[str, Any] = {
        "rows": rows,
        "workers": workers,
        "seconds": round(elapsed, 1),
        "scans_per_s": round(rows / elapsed),
        **_cpu_per_scan(rows, cpu, server_cpu, server),
    }
    return filled


async def timed(runs: int, call: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 2),
        "p99_ms": round(samples[min(len(samples) - 1, math.ceil(0.99 * len(samples)) - 1)], 2),
        "max_ms": round(samples[-1], 2),
    }


async def queries(
    log: AuditLog, rng: random.Random, guilds: list[Guild], runs: int
) -> dict[str, dict[str, float]]:
    now = datetime.now(UTC)
    weights = [g.cases for g in guilds]

    def guild() -> Guild:
        return rng.choices(guilds, weights=weights, k=1)[0]

    async def export_first_page(since: datetime) -> None:
        count = 0
        async for _ in log.cases.export(guild().id, since=since):
            count += 1
            if count == 500:
                break

    async def export_full(since: datetime) -> None:
        async for _ in log.cases.export(guild().id, since=since):
            pass

    async def review() -> None:
        g = guild()
        await log.admin.review(
            g.id, rng.randint(1, g.cases), Review.CONFIRMED, moderator_id=g.moderators[0]
        )

    async def find_verdict() -> None:
        g = guild()
        sha256 = rng.choice(g.recent_media)[0] if g.recent_media else "0" * 64
        await log.scans.find_verdict(sha256, g.provider)

    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "recent (25)": lambda: log.cases.recent(guild().id, limit=25),
        "recent page 10 (offset 225)": lambda: log.cases.recent(guild().id, limit=25, offset=225),
        "count_cases": lambda: log.cases.count_cases(guild().id),
        "by_author (25)": lambda: _by_author(log, rng, guild()),
        "case": lambda: _case(log, rng, guild()),
        "flagged 7 days (25)": lambda: log.cases.flagged(
            guild().id, since=now - timedelta(days=7), threshold=0.5, limit=25
        ),
        "flagged 30 days (25)": lambda: log.cases.flagged(
            guild().id, since=now - timedelta(days=30), threshold=0.5, limit=25
        ),
        "count_flagged 30 days": lambda: log.cases.count_flagged(
            guild().id, since=now - timedelta(days=30), threshold=0.5
        ),
        "stats 7 days": lambda: log.cases.stats(guild().id, since=now - timedelta(days=7)),
        "stats 30 days": lambda: log.cases.stats(guild().id, since=now - timedelta(days=30)),
        "export 7 days, first 500": lambda: export_first_page(now - timedelta(days=7)),
        "export 7 days, full": lambda: export_full(now - timedelta(days=7)),
        "review": review,
        "count_scans (today, quota)": lambda: log.scans.count_scans(guild().id, since=today),
        "find_verdict": find_verdict,
        "unfinished_scans": log.scans.unfinished_scans,
    }
    results = {}
    for name, call in cases.items():
        results[name] = await timed(runs, call)
        print(f"  {name:<30} {results[name]}", flush=True)
    return results


async def _by_author(log: AuditLog, rng: random.Random, g: Guild) -> None:
    await log.cases.by_author(g.id, pick(rng, g.authors, g.author_cum), limit=25)


async def _case(log: AuditLog, rng: random.Random, g: Guild) -> None:
    await log.cases.case(g.id, rng.randint(1, g.cases))


async def insert_rate(
    log: AuditLog,
    clock: SimClock,
    rng: random.Random,
    guilds: list[Guild],
    *,
    scans: int,
    repeats: int,
) -> dict[str, Any]:
    """create_scan + mark_done, as the issue's "inserts per second" counts them.

    Inputs are generated before the clock starts, so only the audit log is timed.
    """
    clock.now = datetime.now(UTC)
    weights = [g.weight for g in guilds]

    def inputs(n: int) -> list[tuple[NewScan, Verdict]]:
        made = []
        for g in rng.choices(guilds, weights=weights, k=n):
            channel = pick(rng, g.channels, g.channel_cum)
            message = snowflake(rng, time.time())
            new = NewScan(
                guild_id=g.id,
                channel_id=channel,
                message_id=message,
                author_id=pick(rng, g.authors, g.author_cum),
                jump_url=f"https://discord.com/channels/{g.id}/{channel}/{message}",
                attachment_id=message + 1,
                filename="voice-message.ogg",
                content_type="audio/ogg",
                size=rng.randint(20_000, 3_000_000),
                trigger=Trigger.AUTO,
                provider=g.provider,
            )
            made.append((new, make_verdict(rng, g.provider, 12.0, with_transcript=False)))
        return made

    async def one(new: NewScan, verdict: Verdict) -> None:
        record, _ = await log.scans.create_scan(new)
        await log.scans.mark_done(record.id, verdict)

    async def worker(mine: list[tuple[NewScan, Verdict]]) -> None:
        for new, verdict in mine:
            await one(new, verdict)

    server = await _server_processes(log)

    # Each concurrency is measured `repeats` times, interleaved, with the machine's load
    # average: on a small shared machine one run alone says little.
    results: dict[str, Any] = {"scans_per_run": scans, "runs": []}
    for repeat in range(repeats):
        for in_flight in (1, 8, 64):
            todo = inputs(scans)
            server_cpu = server()
            cpu = time.process_time()
            began = time.perf_counter()
            await asyncio.gather(*(worker(todo[k::in_flight]) for k in range(in_flight)))
            rate = scans / (time.perf_counter() - began)
            run: dict[str, Any] = {
                "in_flight": in_flight,
                "per_s": round(rate),
                "load": os.getloadavg()[0],
                **_cpu_per_scan(scans, cpu, server_cpu, server),
            }
            results["runs"].append(run)
            print(
                f"  run {repeat + 1}, {in_flight:>2} in flight: {rate:,.0f} scans/s "
                f"(load {run['load']:.2f}; CPU per scan: {run['cpu_us_per_scan']} µs here, "
                f"{run.get('server_cpu_us_per_scan', '-')} µs in the database server)",
                flush=True,
            )
    for in_flight in (1, 8, 64):
        mine = [r for r in results["runs"] if r["in_flight"] == in_flight]
        for key in ("per_s", "cpu_us_per_scan", "server_cpu_us_per_scan"):
            # A partial server figure (a backend ended mid-run) is left out of its median.
            partial = key == "server_cpu_us_per_scan"
            values = sorted(
                r[key] for r in mine if key in r and not (partial and r.get("server_cpu_partial"))
            )
            if values:
                results[f"in_flight_{in_flight}_median_{key}"] = values[len(values) // 2]
    return results


async def _server_processes(log: AuditLog) -> Callable[[], dict[int, float] | None]:
    """A reader of the CPU seconds used so far by each server process serving the
    benchmark's PostgreSQL database, or of None on SQLite (its CPU is this process's)."""
    if not isinstance(log, PostgresAuditLog):
        return lambda: None
    async with log.db.pool.acquire() as conn:
        database = await conn.fetchval("SELECT current_database()")
    # A backend's title reads "postgres: <cluster>: <user> <database> <client> <state>".
    marker = f" {database} ".encode()
    tick = os.sysconf("SC_CLK_TCK")

    def used() -> dict[int, float]:
        found = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    title = f.read()
                if not title.startswith(b"postgres: ") or marker not in title:
                    continue
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return found

    return used


def _cpu_per_scan(
    scans: int,
    cpu: float,
    server_cpu: dict[int, float] | None,
    server: Callable[[], dict[int, float] | None],
) -> dict[str, Any]:
    """CPU per scan since the readings `cpu` (this process) and `server_cpu` (the server's
    processes, None on SQLite), in µs; a server figure missing a process that ended meanwhile
    is flagged partial."""
    figures: dict[str, Any] = {
        "cpu_us_per_scan": round((time.process_time() - cpu) / scans * 1e6, 1)
    }
    if server_cpu is not None:
        used, whole = _server_cpu_since(server_cpu, server())
        figures["server_cpu_us_per_scan"] = round(used / scans * 1e6, 1)
        if not whole:
            figures["server_cpu_partial"] = True
    return figures


def _server_cpu_since(
    before: dict[int, float] | None, now: dict[int, float] | None
) -> tuple[float, bool]:
    """CPU seconds the server processes used between two readings, and whether that is all
    of it: a process that ended in between (the pool closes connections idle for minutes)
    took its CPU time with it."""
    if before is None or now is None:
        return 0.0, True
    used = sum(cpu - before.get(pid, 0.0) for pid, cpu in now.items())
    return used, before.keys() <= now.keys()


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as f:
        mem_kib = int(f.readline().split()[1])
    import sqlite3

    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


def sizes(path: Path, rows: int) -> dict[str, Any]:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        per_object = conn.execute(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
        ).fetchall()
        counted = conn.execute("SELECT count(*) FROM scans").fetchone()[0]
    finally:
        conn.close()
    file_bytes = path.stat().st_size
    return {
        "file_bytes": file_bytes,
        "cases": counted,
        "bytes_per_case": round(file_bytes / counted, 1),
        "per_object_bytes_per_case": {name: round(size / counted, 1) for name, size in per_object},
        "requested_rows": rows,
    }


async def fresh_schema(url: str, schema: str) -> str:
    """`url` with its connections in `schema`, dropped and re-created empty."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    return f"{url}{'&' if '?' in url else '?'}search_path={schema}"


async def postgres_sizes(url: str, schema: str, rows: int) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        cases = await conn.fetchval("SELECT count(*) FROM scans")
        query = (
            # Tables with their TOAST and free-space/visibility maps; indexes by themselves.
            "SELECT c.relname, CASE c.relkind WHEN 'r' THEN pg_table_size(c.oid)"
            " ELSE pg_relation_size(c.oid) END"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relkind IN ('r', 'i') ORDER BY 2 DESC"
        )
        as_filled = await conn.fetch(query, schema)
        await conn.execute("VACUUM (ANALYZE)")
        vacuumed = await conn.fetch(query, schema)
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()

    def per_case(found: list[Any]) -> dict[str, float]:
        return {name: round(size / cases, 1) for name, size in found}

    total = sum(size for _, size in as_filled)
    return {
        "server_version": version,
        "cases": cases,
        "total_bytes": total,
        "bytes_per_case": round(total / cases, 1),
        "per_object_bytes_per_case": per_case(as_filled),
        "after_vacuum_bytes_per_case": round(sum(size for _, size in vacuumed) / cases, 1),
        "after_vacuum_per_object": per_case(vacuumed),
        "requested_rows": rows,
    }


class AutovacuumStandIn:
    """Autovacuum's work, done by the benchmark when the server has `autovacuum = off`.

    A production PostgreSQL vacuums and analyzes tables as they change; without it dead rows
    pile up and the planner keeps the row counts of an empty table, and plans made then
    (e.g. a hash join over a whole table where an index lookup was meant) are never revised.
    So, with the server's own thresholds and pacing, once per `autovacuum_naptime`: VACUUM
    a table once its dead rows (or rows inserted since the last vacuum) pass
    threshold + scale factor × rows, ANALYZE it once its changes pass the analyze ones, at
    autovacuum's cost delay and limit. Its CPU is the server's, counted with the rest.
    """

    def __init__(self, url: str, schema: str) -> None:
        self._url = url
        self._schema = schema
        self.passes: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> bool:
        """Start, if the server does not vacuum by itself; say whether it started."""
        import asyncpg

        conn = await asyncpg.connect(self._url)
        try:
            if await conn.fetchval("SHOW autovacuum") == "on":
                await conn.close()
                return False
            settings = dict(
                await conn.fetch(
                    "SELECT name, setting FROM pg_settings WHERE name LIKE 'autovacuum%'"
                    " OR name = 'vacuum_cost_limit'"
                )
            )
            # At autovacuum's pace, on this one connection (a backend that came and went
            # during a run would take its CPU time out of the benchmark's count).
            cost_limit = int(settings["autovacuum_vacuum_cost_limit"])
            if cost_limit < 0:
                cost_limit = int(settings["vacuum_cost_limit"])
            await conn.execute(f"SET vacuum_cost_limit = {cost_limit}")
            delay = float(settings["autovacuum_vacuum_cost_delay"])
            await conn.execute(f"SET vacuum_cost_delay = {delay}")
        except BaseException:
            await conn.close()
            raise
        self._task = asyncio.create_task(self._run(conn, settings))
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, conn: Any, settings: dict[str, str]) -> None:
        due = (
            "SELECT s.relname,"
            " s.n_dead_tup > $2::float8 + $3::float8 * greatest(c.reltuples, 0)"
            " OR s.n_ins_since_vacuum > $4::float8 + $5::float8 * greatest(c.reltuples, 0),"
            " s.n_mod_since_analyze > $6::float8 + $7::float8 * greatest(c.reltuples, 0)"
            " FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
            " WHERE s.schemaname = $1"
        )
        limits = [
            float(settings[f"autovacuum_{name}"])
            for name in (
                "vacuum_threshold",
                "vacuum_scale_factor",
                "vacuum_insert_threshold",
                "vacuum_insert_scale_factor",
                "analyze_threshold",
                "analyze_scale_factor",
            )
        ]
        try:
            while True:
                await asyncio.sleep(float(settings["autovacuum_naptime"]))
                for table, vacuum, analyze in await conn.fetch(due, self._schema, *limits):
                    if not (vacuum or analyze):
                        continue
                    what = (
                        "VACUUM (ANALYZE)"
                        if vacuum and analyze
                        else ("VACUUM" if vacuum else "ANALYZE")
                    )
                    began = time.perf_counter()
                    await conn.execute(f'{what} "{self._schema}"."{table}"')
                    self.passes.append(
                        {
                            "table": table,
                            "what": what,
                            "seconds": round(time.perf_counter() - began, 2),
                        }
                    )
        finally:
            await conn.close()


def fresh_database(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--guilds", type=int, default=100)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--insert-scans", type=int, default=20_000)
    parser.add_argument("--insert-repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--workers", type=int, default=16, help="scans in flight while filling")
    parser.add_argument("--db", type=Path, default=OUT / "audit_bench.db")
    parser.add_argument(
        "--database-url", default=None, help="postgresql://...: run on PostgreSQL instead"
    )
    parser.add_argument("--schema", default="audit_bench", help="PostgreSQL schema to use")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    clock = SimClock()
    guilds = make_guilds(rng, args.guilds, args.rows)
    log: AuditLog
    autovacuum: AutovacuumStandIn | None = None
    if args.database_url:
        url = await fresh_schema(args.database_url, args.schema)
        log = await PostgresAuditLog.open(url, clock=clock)
        autovacuum = AutovacuumStandIn(url, args.schema)
    else:
        fresh_database(args.db)
        log = await SQLiteAuditLog.open(args.db, clock=clock)
    report: dict[str, Any] = {
        "command": "bench/audit_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    try:
        if autovacuum is not None:
            report["autovacuum"] = (
                "the benchmark's stand-in (the server has autovacuum off)"
                if await autovacuum.start()
                else "the server's"
            )
        # Other work on the machine shows up in every figure; say how busy it was.
        report["load_average"] = {"start": os.getloadavg()}
        print(f"filling {args.rows:,} cases across {args.guilds} guilds …", flush=True)
        report["fill"] = await fill(log, clock, rng, guilds, rows=args.rows, workers=args.workers)
        sizes_by_guild = sorted((g.cases for g in guilds), reverse=True)
        report["guild_cases"] = {
            "largest": sizes_by_guild[0],
            "median": sizes_by_guild[len(sizes_by_guild) // 2],
            "smallest": sizes_by_guild[-1],
        }
        if isinstance(log, SQLiteAuditLog):
            await log.checkpoint()
            report["size"] = sizes(args.db, args.rows)
        else:
            report["size"] = await postgres_sizes(url, args.schema, args.rows)
        print(json.dumps(report["size"], indent=2), flush=True)
        print(f"queries ({args.runs} runs each) …", flush=True)
        report["load_average"]["before_queries"] = os.getloadavg()
        report["queries"] = await queries(log, rng, guilds, args.runs)
        print(f"insert rate ({args.insert_scans:,} scans) …", flush=True)
        report["load_average"]["before_inserts"] = os.getloadavg()
        report["insert"] = await insert_rate(
            log, clock, rng, guilds, scans=args.insert_scans, repeats=args.insert_repeats
        )
        report["load_average"]["end"] = os.getloadavg()
        print(json.dumps(report["insert"]), flush=True)
    finally:
        if autovacuum is not None:
            await autovacuum.stop()
            report["autovacuum_passes"] = autovacuum.passes
        await log.close()
    OUT.mkdir(exist_ok=True)
    name = "audit_bench_postgres.json" if args.database_url else "audit_bench.json"
    (OUT / name).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
