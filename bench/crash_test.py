"""Crash test (issue 6): SIGKILL the bot again and again; nothing is lost or done twice.

    .venv/bin/python bench/crash_test.py                          # 50 messages, 6 kills
    .venv/bin/python bench/crash_test.py --kills 6 --seed 7       # reproduce one run
    .venv/bin/python bench/crash_test.py --provider resemble
    .venv/bin/python bench/crash_test.py --shards 2 \
        --database-url postgresql://postgres@127.0.0.1/test     # two processes, one killed
    .venv/bin/python bench/crash_test.py --flag-every 3           # and mod-log alerts

With `--shards 2` two bot processes (shard 0 and shard 1 of 2, SPOOFWATCH_SHARD_COUNT/IDS)
share one PostgreSQL database (a fresh schema, dropped afterwards) and the emulator has a
guild on each shard; messages go to both guilds, and each kill picks one of the two
processes at random while the other goes on serving its guild.

The bot runs as a real subprocess, `python -m bot`, pointed at the Discord emulator
(SPOOFWATCH_DISCORD_API_URL / _GATEWAY_URL) and at a provider stand-in whose jobs take about
a second; emulator and stand-in run in this process. A member posts voice messages (each a
different tone and length, so every attachment's bytes, and its transcoded WAV, are distinct)
at random intervals, whether or not the bot is up. Meanwhile the bot is killed with SIGKILL
several times and restarted after a random downtime. Kill moments are random and of three
kinds, to hit the windows that matter:

- `time`:   a random moment 1–5 s after the bot identified to the gateway;
- `upload`: the moment the stand-in created a job for an upload (its answer may still be on
            the way, so the job id may not be stored yet);
- `reply`:  just after a verdict reply appeared in the channel (it may not be recorded yet).

After the last restart the bot runs until every message has a reply, plus a grace period to
let late duplicates show, then stops with SIGTERM. The run passes when every message has
exactly one reply from the bot (a verdict, or a failure embed recorded in its case), the
stand-in received at most one submission per attachment, no case is left unfinished, and
the temp dir is empty. Figures go to stdout (and `--json`); BENCHMARKS.md has a run.

With `--flag-every N` (Behavioral Signals only) every N-th upload is judged spoofed and each
guild has a mod-log channel: the run then also waits for the alerts, and passes only when
every flagged case has an alert in its mod-log and none is left due (`alert_due` with no
`alert_posted` or `alert_not_posted` after it). An alert posted twice (a kill between posting
it and recording it) is counted, not failed: alerts are delivered at least once.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.alert_ledger import ALERT_DUE, ALERT_SETTLED  # noqa: E402
from bot.guild_config import GuildConfig  # noqa: E402
from bot.storage import ScanRecord, open_audit_log  # noqa: E402
from bot.verdict import DEFAULT_THRESHOLD, Finding, decide  # noqa: E402
from testkit.discord_emulator.emulator import DiscordEmulator  # noqa: E402
from testkit.discord_emulator.fixtures import build_default_scene  # noqa: E402
from testkit.discord_emulator.models import Channel, Guild, Member, Message  # noqa: E402
from testkit.moderation import embed_kind  # noqa: E402
from testkit.postgres_server import drop_schema, fresh_schema  # noqa: E402
from testkit.standins import BehavioralSignalsStandIn, ResembleStandIn  # noqa: E402
from testkit.standins import behavioral_signals as bs_module  # noqa: E402
from testkit.standins import resemble as resemble_module  # noqa: E402

KILL_KINDS = ("time", "upload", "reply")
#: Lines of the bot's own log counted for the report (what recovery had to do).
LOG_COUNTERS = {
    "resumed_jobs": re.compile(r"resuming case #\d+: polling"),
    "rerun_from_start": re.compile(r"resuming case #\d+ from the start"),
    "lost_jobs_found": re.compile(r"found \S+ job \S+ submitted before the restart"),
    "lost_jobs_absent": re.compile(r"has no job for attachment"),
    "replies_found_after_restart": re.compile(r"was answered before the restart"),
    "caught_up_messages": re.compile(r"catch-up: (\d+) unanswered message"),
}


@dataclass
class Kill:
    kind: str
    #: Which process was killed (its shard; 0 with one process).
    shard: int
    #: Seconds between the process's gateway IDENTIFY and its SIGKILL.
    uptime_s: float
    #: Seconds the bot then stayed down.
    downtime_s: float
    messages_sent_before: int


@dataclass
class CrashReport:
    seed: int
    provider: str
    processes: int
    messages: int
    kills: list[Kill]
    starts: int
    replies: int
    verdict_replies: int
    failure_replies: int
    failure_kinds: dict[str, int]
    messages_without_reply: int
    messages_with_duplicate_replies: int
    submissions: int
    max_submissions_per_attachment: int
    attachments_submitted_twice: int
    cases: int
    unfinished_cases: int
    temp_files_left: int
    final_exit_code: int | None
    wall_time_s: float
    recovery: dict[str, int] = field(default_factory=dict)
    machine: dict[str, str] = field(default_factory=dict)
    #: 429s the emulator answered the bot with (Discord's rate limits are on).
    received_429s: int = 0
    #: Each of them: method, path and scope ("user" for a route's bucket, "global", "edge").
    rate_limited: list[str] = field(default_factory=list)
    #: With `--flag-every`: flagged cases, and those with no alert, more than one, or one
    #: still due at the end.
    flagged_cases: int = 0
    alerts_missing: int = 0
    alerts_posted_twice: int = 0
    alerts_left_due: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


# --- media -------------------------------------------------------------------------------


def make_voice_messages(directory: Path, count: int) -> list[tuple[Path, float]]:
    """`count` voice-message-like OGG/Opus files, each a different tone and length."""

    def make(i: int) -> tuple[Path, float]:
        path = directory / f"voice-{i:03d}.ogg"
        seconds = round(1.0 + (i % 7) * 0.15, 2)
        subprocess.run(
            [
                "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                "-f", "lavfi", "-i", f"sine=frequency={300 + 11 * i}:duration={seconds}",
                "-ac", "1", "-ar", "48000", "-c:a", "libopus", "-b:a", "32k", str(path),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        return path, seconds

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(make, range(count)))


# --- the bot as a subprocess -------------------------------------------------------------


class BotProcess:
    """`python -m bot`, started, killed and restarted; each run logs to its own file."""

    def __init__(self, env: dict[str, str], cwd: Path, log_dir: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.log_dir = log_dir
        self.starts = 0
        self.proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        self.starts += 1
        self._log = (self.log_dir / f"bot-{self.starts}.log").open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=self.cwd, env=self.env,
            stdin=asyncio.subprocess.DEVNULL, stdout=self._log, stderr=self._log,
        )  # fmt: skip

    async def kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        self._close_log()

    async def stop(self, patience_s: float = 60.0) -> int | None:
        """SIGTERM, as an operator stops it; SIGKILL if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), patience_s)
            except TimeoutError:
                await self.kill()
        self._close_log()
        return self.proc.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob("bot-*.log"))
        )


def bot_env(
    emu: DiscordEmulator,
    provider: str,
    standin_url: str,
    db: Path,
    temp: Path,
    *,
    database_url: str | None = None,
    shard: tuple[int, int] | None = None,
) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SPOOFWATCH", "DISCORD", "RESEMBLE", "BEHAVIORALSIGNALS"))
    }
    env = {
        **base,
        "PYTHONPATH": str(REPO),
        "DISCORD_TOKEN": emu.token,
        "SPOOFWATCH_DISCORD_API_URL": f"{emu.url}/api/v10",
        "SPOOFWATCH_DISCORD_GATEWAY_URL": emu.gateway_url,
        "SPOOFWATCH_PROVIDER": provider,
        "SPOOFWATCH_DB": str(db),
        "SPOOFWATCH_TEMP_DIR": str(temp),
        "SPOOFWATCH_ALLOWED_MEDIA_HOSTS": "127.0.0.1",
        "SPOOFWATCH_POLL_INITIAL_S": "0.2",
        "SPOOFWATCH_POLL_MAX_INTERVAL_S": "0.5",
        "SPOOFWATCH_POLL_DEADLINE_S": "60",
        "SPOOFWATCH_REQUEST_TIMEOUT_S": "20",
        "SPOOFWATCH_WORKERS": "4",
        "SPOOFWATCH_LOG_LEVEL": "INFO",
    }
    if provider == "behavioral_signals":
        env |= {
            "BEHAVIORALSIGNALS_CID": bs_module.CID,
            "BEHAVIORALSIGNALS_API_KEY": bs_module.API_KEY,
            "BEHAVIORALSIGNALS_API_URL": standin_url,
        }
    else:
        env |= {"RESEMBLE_API_KEY": resemble_module.API_KEY, "RESEMBLE_API_URL": standin_url}
    if database_url is not None:
        env["SPOOFWATCH_DATABASE_URL"] = database_url
    if shard is not None:
        env["SPOOFWATCH_SHARD_IDS"], env["SPOOFWATCH_SHARD_COUNT"] = map(str, shard)
    return env


@dataclass
class Place:
    """Where a member posts: one guild, owned by one shard (one process)."""

    guild: Guild
    channel: Channel
    member: Member
    #: The guild's mod-log channel, with `--flag-every`.
    modlog: Channel | None = None


#: A mod-log alert's case number: the embed's footer, or the plain and late alerts' text.
_ALERT_CASE = re.compile(r"[Cc]ase #(\d+)")


def _alerts(emu: DiscordEmulator, place: Place) -> collections.Counter[int]:
    """How many alerts each case has in the place's mod-log."""
    counts: collections.Counter[int] = collections.Counter()
    if place.modlog is None:
        return counts
    for message in emu.bot_messages(place.modlog):
        if message.embeds:
            embed = message.embeds[0]
            if not str(embed.get("title", "")).startswith(("Possible deepfake", "Disputed")):
                continue
            text = str(embed.get("footer", {}).get("text", ""))
        elif message.content.lstrip().startswith("⚠️ Possible deepfake"):
            text = message.content
        else:
            continue
        if found := _ALERT_CASE.search(text):
            counts[int(found[1])] += 1
    return counts


def _flagged(record: ScanRecord) -> bool:
    """Flagged at the default threshold (the guilds keep it), decided as the bot decides."""
    return (
        record.label is not None
        and decide(record.label, record.spoofed_probability, DEFAULT_THRESHOLD) is Finding.FLAGGED
    )


async def _flagged_cases(db: Path | str, places: Sequence[Place]) -> dict[int, set[int]]:
    """Guild → the case numbers judged spoofed (read while the bots run: WAL or PostgreSQL)."""
    audit = await open_audit_log(db)
    try:
        flagged: dict[int, set[int]] = {}
        for place in places:
            count = await audit.cases.count_cases(place.guild.id)
            records = await audit.cases.recent(place.guild.id, limit=max(count, 1))
            flagged[place.guild.id] = {r.case_number for r in records if _flagged(r)}
        return flagged
    finally:
        await audit.close()


def build_places(emu: DiscordEmulator, shards: int) -> list[Place]:
    """The default scene, plus with several shards one more guild on each other shard."""
    build_default_scene(emu)
    emu.gateway.shard_count = shards
    places = [Place(emu.guild, emu.text_channel, emu.member)]
    first = (emu.guild.id >> 22) % shards
    for shard in range(shards):
        if shard == first:
            continue
        guild = emu.create_guild(f"Shard {shard}", shard=(shard, shards))
        places.append(
            Place(
                guild,
                emu.create_text_channel(guild, "general"),
                emu.add_member(guild, f"member-{shard}"),
            )
        )
    return places


async def _add_modlogs(emu: DiscordEmulator, places: Sequence[Place], db: Path | str) -> None:
    """A mod-log channel in each guild, set in its settings before any bot starts."""
    audit = await open_audit_log(db)
    try:
        for place in places:
            place.modlog = emu.create_text_channel(place.guild, "mod-log")
            config = GuildConfig(modlog_channel_id=place.modlog.id)
            await audit.settings.save_guild_config(place.guild.id, config)
    finally:
        await audit.close()


# --- the run -----------------------------------------------------------------------------


async def run_crash_test(
    *,
    messages: int = 50,
    kills: int = 6,
    seed: int | None = None,
    provider: str = "behavioral_signals",
    workdir: Path | None = None,
    grace_s: float = 3.0,
    settle_timeout_s: float = 180.0,
    shards: int = 1,
    database_url: str | None = None,
    flag_every: int = 0,
) -> CrashReport:
    """Run the whole scenario once and report what happened (see the module docstring)."""
    if shards > 1 and database_url is None:
        raise ValueError("several processes share one PostgreSQL database: give --database-url")
    if flag_every and provider != "behavioral_signals":
        raise ValueError("--flag-every needs the Behavioral Signals stand-in")
    seed = random.randrange(1 << 32) if seed is None else seed
    rng = random.Random(seed)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crash-")))
        media_dir, temp_dir, log_dir = (workdir / n for n in ("media", "tmp", "logs"))
        for d in (media_dir, temp_dir, log_dir):
            d.mkdir(parents=True, exist_ok=True)
        voices = await asyncio.to_thread(make_voice_messages, media_dir, messages)

        # Discord's rate limits on: a restarted bot must not run into a window the killed
        # one used (testkit/discord_emulator/ratelimits.py).
        emu = await DiscordEmulator(rate_limits=True).start()
        standin: BehavioralSignalsStandIn | ResembleStandIn
        if provider == "behavioral_signals":
            # About a second of "processing" per job: kills land while jobs are pending.
            standin = BehavioralSignalsStandIn(processing_polls=1, processing_s=1.0)
            standin.spoofed_every = flag_every
        else:
            standin = ResembleStandIn(processing_polls=2, wait_hold_s=0.5)
        await standin.start()
        url = await fresh_schema(database_url) if database_url else None
        db: Path | str = url or workdir / "spoofwatch.db"
        bots = []
        for shard in range(shards):
            (log_dir / f"shard-{shard}").mkdir(exist_ok=True)
            env = bot_env(
                emu,
                provider,
                standin.url,
                workdir / "spoofwatch.db",
                temp_dir,
                database_url=url,
                shard=(shard, shards) if shards > 1 else None,
            )
            bots.append(BotProcess(env, cwd=workdir, log_dir=log_dir / f"shard-{shard}"))
        try:
            places = build_places(emu, shards)
            if flag_every:
                await _add_modlogs(emu, places, db)
            sent: list[Message] = []
            report_kills: list[Kill] = []
            for bot in bots:
                await bot.start()
            sender = asyncio.create_task(_send_all(emu, voices, sent, rng, places))
            await _chaos(
                emu=emu,
                standin=standin,
                bots=bots,
                kills=kills,
                rng=rng,
                sent=sent,
                report=report_kills,
            )
            await sender
            for bot in bots:
                if not bot.running:
                    await bot.start()
            with contextlib.suppress(TimeoutError):
                await emu.wait_for(
                    lambda: all(_bot_replies(emu, m) for m in sent),
                    timeout=settle_timeout_s,
                    describe="a reply to every message",
                )
            if flag_every:
                # The alerts follow the replies; a raid's wait behind the mod-log's limit.
                flagged = await _flagged_cases(db, places)
                with contextlib.suppress(TimeoutError):
                    await emu.wait_for(
                        lambda: all(flagged[p.guild.id] <= set(_alerts(emu, p)) for p in places),
                        timeout=settle_timeout_s,
                        describe="an alert for every flagged case",
                    )
            # Late duplicates (a resumed job answering twice) would show up now.
            await asyncio.sleep(grace_s)
            exit_codes = [await bot.stop() for bot in bots]
            report = await _report(
                emu=emu,
                standin=standin,
                bots=bots,
                places=places,
                sent=sent,
                kills=report_kills,
                seed=seed,
                provider=provider,
                db=db,
                temp_dir=temp_dir,
                exit_code=next((c for c in exit_codes if c != 0), 0),
                started=started,
            )
        finally:
            for bot in bots:
                if bot.running:
                    await bot.kill()
            await standin.close()
            await emu.close()
            if url is not None:
                await drop_schema(url)
    return report


async def _send_all(
    emu: DiscordEmulator,
    voices: Sequence[tuple[Path, float]],
    sent: list[Message],
    rng: random.Random,
    places: Sequence[Place],
) -> None:
    """Members post every voice message, up or down, at random intervals (guilds in turn)."""
    for i, (path, seconds) in enumerate(voices):
        place = places[i % len(places)]
        attachment = emu.attachment(path, voice=True, duration_secs=seconds)
        sent.append(await emu.send_message(place.channel, place.member, attachments=[attachment]))
        await asyncio.sleep(rng.uniform(0.05, 0.5))


async def _chaos(
    *,
    emu: DiscordEmulator,
    standin: BehavioralSignalsStandIn | ResembleStandIn,
    bots: Sequence[BotProcess],
    kills: int,
    rng: random.Random,
    sent: list[Message],
    report: list[Kill],
) -> None:
    kinds = [KILL_KINDS[i % len(KILL_KINDS)] for i in range(kills)]
    rng.shuffle(kinds)
    # Before the first kill: every process has identified its shard.
    await emu.wait_for(
        lambda: all(emu.gateway.sessions_of(i) for i in range(len(bots))),
        timeout=60,
        describe="every process to identify",
    )
    sessions = [len(emu.gateway.sessions_of(i)) for i in range(len(bots))]
    for kind in kinds:
        shard = rng.randrange(len(bots))
        bot = bots[shard]
        # The victim's shard has a session newer than its last kill (it is back).
        await emu.wait_for(
            lambda: len(emu.gateway.sessions_of(shard)) >= sessions[shard],  # noqa: B023
            timeout=60,
            describe="the bot to identify",
        )
        up_since = time.perf_counter()
        if kind == "time":
            await asyncio.sleep(rng.uniform(1.0, 5.0))
        elif kind == "upload":
            # The moment the stand-in has created the job: its answer may still be on the
            # way, and the job id not yet stored.
            jobs = len(standin.jobs)
            await _poll(lambda: len(standin.jobs) > jobs, within_s=20)  # noqa: B023
        else:
            replies = len(emu.bot_messages())
            with contextlib.suppress(TimeoutError):
                await emu.wait_for(
                    lambda: len(emu.bot_messages()) > replies,  # noqa: B023
                    timeout=20,
                )
        uptime = time.perf_counter() - up_since
        await bot.kill()
        downtime = rng.uniform(0.0, 1.5)
        report.append(Kill(kind, shard, round(uptime, 3), round(downtime, 3), len(sent)))
        sessions[shard] = len(emu.gateway.sessions_of(shard)) + 1
        await asyncio.sleep(downtime)
        await bot.start()


async def _poll(predicate: Callable[[], bool], *, within_s: float) -> None:
    """Wait for a condition the emulator is not told about (the stand-in's job table)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within_s):
            # The stand-in has no event to wait on; 1 ms polls keep the kill close behind.
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.001)


def _bot_replies(emu: DiscordEmulator, message: Message) -> list[dict[str, Any]]:
    """The bot's answers to `message` (one voice message: one card each): the card of a reply
    to it, and each card of a combined answer that links to it (a flooded channel)."""
    jump = f"https://discord.com/channels/{message.guild_id}/{message.channel_id}/{message.id}"
    cards: list[dict[str, Any]] = []
    for posted in emu.bot_messages(message.channel_id):
        if posted.reply_to_id == message.id:
            cards.extend(posted.embeds[:1])
        else:
            cards.extend(e for e in posted.embeds if e.get("url") == jump)
    return cards


async def _report(
    *,
    emu: DiscordEmulator,
    standin: BehavioralSignalsStandIn | ResembleStandIn,
    bots: Sequence[BotProcess],
    places: Sequence[Place],
    sent: list[Message],
    kills: list[Kill],
    seed: int,
    provider: str,
    db: Path | str,
    temp_dir: Path,
    exit_code: int | None,
    started: float,
) -> CrashReport:
    replies = {m.id: _bot_replies(emu, m) for m in sent}
    kinds = [embed_kind(r[0]) for r in replies.values() if len(r) == 1]
    failure_kinds = collections.Counter(k for what, k in kinds if what == "failure" and k)

    per_attachment: collections.Counter[str] = collections.Counter()
    if isinstance(standin, BehavioralSignalsStandIn):
        for job in standin.jobs.values():
            per_attachment[json.loads(job.meta or "{}").get("attachment", "?")] += 1
    per_sha = collections.Counter(standin.uploaded_sha256s)
    most = max([*per_attachment.values(), *per_sha.values(), 0])

    audit = await open_audit_log(db)
    try:
        cases, records = 0, []
        for place in places:
            count = await audit.cases.count_cases(place.guild.id)
            cases += count
            records += await audit.cases.recent(place.guild.id, limit=max(count, 1))
        unfinished = len(await audit.scans.unfinished_scans())
        left_due = len(await audit.cases.unresolved_events(ALERT_DUE, ALERT_SETTLED))
    finally:
        await audit.close()
    flagged = {(r.guild_id, r.case_number) for r in records if _flagged(r)}
    alerts = {(p.guild.id, case): n for p in places for case, n in _alerts(emu, p).items()}
    # A kill between posting a reply and recording it leaves the case without its reply
    # id; the restarted bot must have seen the reply in the channel instead of posting again.
    unrecorded = sum(
        1 for rec in records if rec.reply_message_id is None and replies.get(rec.message_id or 0)
    )

    logs = "\n".join(bot.logs() for bot in bots)
    recovery = {}
    for name, pattern in LOG_COUNTERS.items():
        matches = pattern.findall(logs)
        recovery[name] = sum(int(m) for m in matches) if pattern.groups else len(matches)
    recovery["replies_posted_not_recorded"] = unrecorded
    report = CrashReport(
        seed=seed,
        provider=provider,
        processes=len(bots),
        messages=len(sent),
        kills=kills,
        starts=sum(bot.starts for bot in bots),
        replies=sum(len(r) for r in replies.values()),
        verdict_replies=sum(1 for what, _ in kinds if what == "verdict"),
        failure_replies=sum(1 for what, _ in kinds if what == "failure"),
        failure_kinds=dict(failure_kinds),
        messages_without_reply=sum(1 for r in replies.values() if not r),
        messages_with_duplicate_replies=sum(1 for r in replies.values() if len(r) > 1),
        submissions=standin.received["submit"],
        max_submissions_per_attachment=most,
        attachments_submitted_twice=sum(1 for n in per_sha.values() if n > 1),
        cases=cases,
        unfinished_cases=unfinished,
        temp_files_left=await asyncio.to_thread(lambda: sum(1 for _ in temp_dir.rglob("*"))),
        final_exit_code=exit_code,
        wall_time_s=round(time.perf_counter() - started, 1),
        recovery=recovery,
        machine=machine(),
        received_429s=emu.ratelimits.sent_429s,
        rate_limited=[f"{e.method} {e.path} ({e.scope})" for e in emu.ratelimits.events],
        flagged_cases=len(flagged),
        alerts_missing=sum(1 for key in flagged if key not in alerts),
        alerts_posted_twice=sum(1 for n in alerts.values() if n > 1),
        alerts_left_due=left_due,
    )
    report.failures = _check(report)
    if "Traceback" in logs:
        report.failures.append("a traceback in the bot's log")
    return report


def _check(r: CrashReport) -> list[str]:
    problems = []
    if r.messages_without_reply:
        problems.append(f"{r.messages_without_reply} message(s) never answered")
    if r.messages_with_duplicate_replies:
        problems.append(f"{r.messages_with_duplicate_replies} message(s) answered twice")
    if r.received_429s:
        problems.append(
            f"{r.received_429s} 429(s) from Discord's rate limits: {'; '.join(r.rate_limited)}"
        )
    if r.max_submissions_per_attachment > 1:
        problems.append(f"an attachment was submitted {r.max_submissions_per_attachment} times")
    if r.cases != r.messages:
        problems.append(f"{r.cases} cases for {r.messages} messages")
    if r.unfinished_cases:
        problems.append(f"{r.unfinished_cases} case(s) left unfinished")
    if r.temp_files_left:
        problems.append(f"{r.temp_files_left} file(s) left in the temp dir")
    if r.final_exit_code != 0:
        problems.append(f"the final SIGTERM ended the bot with exit code {r.final_exit_code}")
    if r.alerts_missing:
        problems.append(f"{r.alerts_missing} flagged case(s) without a mod-log alert")
    if r.alerts_left_due:
        problems.append(f"{r.alerts_left_due} alert(s) left due")
    return problems


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    return {
        "nproc": str(os.cpu_count()),
        "memory": memory,
        "cpu": cpu,
        "python": platform.python_version(),
    }


def summary(r: CrashReport) -> str:
    kills = ", ".join(
        f"{k.kind}@{k.uptime_s:.1f}s(down {k.downtime_s:.1f}s"
        + (f", shard {k.shard})" if r.processes > 1 else ")")
        for k in r.kills
    )
    lines = [
        f"crash test: {'PASS' if r.passed else 'FAIL'}  (seed {r.seed}, {r.provider}, "
        f"{r.processes} process{'es' if r.processes > 1 else ''})",
        f"  messages {r.messages}, SIGKILLs {len(r.kills)} [{kills}], starts {r.starts}",
        f"  replies {r.replies}: {r.verdict_replies} verdicts, {r.failure_replies} failures "
        f"{r.failure_kinds or ''}; unanswered {r.messages_without_reply}, "
        f"answered twice {r.messages_with_duplicate_replies}; 429s received {r.received_429s}",
        f"  provider submissions {r.submissions}, most per attachment "
        f"{r.max_submissions_per_attachment}; cases {r.cases}, unfinished {r.unfinished_cases}; "
        f"temp files left {r.temp_files_left}; final exit {r.final_exit_code}",
        f"  recovery: {r.recovery}",
        *(
            [
                f"  flagged cases {r.flagged_cases}: without an alert {r.alerts_missing}, "
                f"alerted twice {r.alerts_posted_twice}, left due {r.alerts_left_due}"
            ]
            if r.flagged_cases
            else []
        ),
        f"  wall time {r.wall_time_s:.1f} s on {r.machine}",
    ]
    lines += [f"  PROBLEM: {p}" for p in r.failures]
    return "\n".join(lines)


def as_dict(report: CrashReport) -> dict[str, Any]:
    return asdict(report) | {"passed": report.passed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--provider", choices=("behavioral_signals", "resemble"), default="behavioral_signals"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and DB here")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--shards", type=int, default=1, help="bot processes, one shard each (2+: PostgreSQL)"
    )
    parser.add_argument(
        "--database-url", default=None, help="postgresql://...: the audit log (a fresh schema)"
    )
    parser.add_argument(
        "--flag-every",
        type=int,
        default=0,
        help="judge every N-th upload spoofed and check the mod-log alerts (0: none)",
    )
    args = parser.parse_args(argv)
    report = asyncio.run(
        run_crash_test(
            messages=args.messages,
            kills=args.kills,
            seed=args.seed,
            provider=args.provider,
            workdir=args.workdir,
            shards=args.shards,
            database_url=args.database_url,
            flag_every=args.flag_every,
        )
    )
    if args.json:
        print(json.dumps(as_dict(report), indent=2))
    else:
        print(summary(report))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
