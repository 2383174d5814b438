"""What the benchmarks share: the machine, the bot as a subprocess, /proc readings, media, output.

Everything talks to 127.0.0.1 only: the Discord emulator and the provider stand-ins run in the
benchmark's process, the bot runs as its own process (`python -m bench._botproc`, which is the
bot's own runner plus a loop-lag probe) so that its CPU time and memory are its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.discord_emulator import messaging
from testkit.discord_emulator.emulator import DiscordEmulator
from testkit.discord_emulator.models import Message
from testkit.standins import BehavioralSignalsStandIn, ResembleStandIn
from testkit.standins import behavioral_signals as bs_module
from testkit.standins import resemble as resemble_module

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
CACHE = OUT / "cache"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
MIB = 1024 * 1024


# --- the machine ----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Cores, memory and CPU model, as BENCHMARKS.md states them."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
    free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout
    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=False)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_total_gib": round(mem_kib / MIB, 1),
        "free_h": free.strip(),
        "python": platform.python_version(),
        "ffmpeg": ffmpeg.stdout.split("\n", 1)[0],
        "kernel": platform.release(),
    }


def machine_line(info: Mapping[str, Any]) -> str:
    return f"{info['nproc']} cores ({info['cpu_model']}), {info['mem_total_gib']} GiB RAM"


# --- numbers --------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def finish(report: Mapping[str, Any], json_name: str) -> None:
    """Print the machine line under a benchmark's results and save them (unless `json_name`
    is empty) as bench/out/<json_name>."""
    print(f"\nmachine: {machine_line(report['machine'])}")
    if json_name:
        print(f"written: {write_json(json_name, report)}")


def write_json(name: str, data: Any) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


# --- /proc ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(process CPU s, reaped children's CPU s) from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces; fields after the closing parenthesis are fixed.
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime) / CLK_TCK, (cutime + cstime) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


@contextlib.asynccontextmanager
async def py_spy(pid: int, name: str | None, *, idle: bool = False) -> AsyncIterator[None]:
    """Sample `pid` with py-spy while the block runs (no-op when `name` is None).

    Writes collapsed stacks to bench/out/<name>.txt (flamegraph.pl / speedscope read them).
    """
    if name is None:
        yield
        return
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    OUT.mkdir(parents=True, exist_ok=True)
    args = [str(exe), "record", "--pid", str(pid), "--rate", "250", "--format", "raw"]
    args += ["--output", str(OUT / f"{name}.txt"), "--nonblocking", "--gil"]
    if idle:
        args.append("--idle")
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    await asyncio.sleep(0.5)  # let it attach
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def system_busy_cpu() -> float:
    """CPU seconds all processes on the machine have used since boot (from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def load_average() -> float:
    return os.getloadavg()[0]


def self_cpu() -> float:
    times = os.times()
    return times.user + times.system


class RssSampler:
    """Samples a process's RSS every `interval_s` while running; keeps the window's peak."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        #: (time, RSS of all its child processes together: ffmpeg/ffprobe runs and the Opus
        #: decoder processes) in KiB.
        self.child_samples: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def peak_kib(self, since: float = 0.0, until: float = float("inf")) -> int:
        return max((kib for t, kib in self.samples if since <= t <= until), default=0)

    def child_peak_kib(self, since: float = 0.0, until: float = float("inf")) -> int:
        return max((kib for t, kib in self.child_samples if since <= t <= until), default=0)

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            with contextlib.suppress(OSError, KeyError):
                self.samples.append((now, memory_kib(self.pid)["VmRSS"]))
            children = 0
            for child in _children(self.pid):
                with contextlib.suppress(OSError, KeyError):
                    children += memory_kib(child)["VmRSS"]
            if children:
                self.child_samples.append((now, children))
            await asyncio.sleep(self.interval_s)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found.extend(int(c) for c in (task / "children").read_text().split())
    return found


# --- the bot as a subprocess -----------------------------------------------------------------

_INHERITED_PREFIXES = ("SPOOFWATCH_", "DISCORD_", "BEHAVIORALSIGNALS_", "RESEMBLE_")


@dataclass
class BotProcess:
    """`python -m bench._botproc` against the emulator and the stand-ins, in a temp directory."""

    emu: DiscordEmulator
    provider: str
    resemble: ResembleStandIn | None = None
    bs: BehavioralSignalsStandIn | None = None
    settings: Mapping[str, str] = field(default_factory=dict)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sw-bench-")))
    proc: asyncio.subprocess.Process | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    rss: RssSampler | None = None
    rss_interval_s: float = 0.05
    final_memory_kib: dict[str, int] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "bot.log"

    @property
    def db_path(self) -> Path:
        return self.workdir / "spoofwatch.db"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
        env.update(
            {
                "DISCORD_TOKEN": self.emu.token,
                "SPOOFWATCH_DISCORD_API_URL": f"{self.emu.url}/api/v10",
                "SPOOFWATCH_DISCORD_GATEWAY_URL": self.emu.gateway_url,
                "SPOOFWATCH_PROVIDER": self.provider,
                "SPOOFWATCH_DB": str(self.db_path),
                "SPOOFWATCH_ALLOWED_MEDIA_HOSTS": "127.0.0.1",
                "SPOOFWATCH_TEMP_DIR": str(self.workdir / "tmp"),
                "SPOOFWATCH_BENCH_STATS": str(self.workdir / "stats.json"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.resemble is not None:
            env["RESEMBLE_API_KEY"] = resemble_module.API_KEY
            env["RESEMBLE_API_URL"] = self.resemble.url
        if self.bs is not None:
            env["BEHAVIORALSIGNALS_CID"] = self.bs.cid
            env["BEHAVIORALSIGNALS_API_KEY"] = bs_module.API_KEY
            env["BEHAVIORALSIGNALS_API_URL"] = self.bs.url
        env.update(self.settings)
        return env

    async def start(self) -> None:
        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench._botproc",
                cwd=REPO,
                env=self.env(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        self.rss = RssSampler(self.pid, self.rss_interval_s)
        self.rss.start()

    async def wait_connected(self, timeout_s: float = 60.0) -> None:
        """The bot identified on the gateway and got its guilds (GUILD_CREATEs sent)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while not any(s.connected and s.sent >= s.seq for s in self.emu.gateway.live_sessions()):
            if self.proc.returncode is not None:
                raise RuntimeError(f"the bot exited early; see {self.log_path}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the bot did not connect; see {self.log_path}")
            await asyncio.sleep(0.05)

    async def wait_log(self, text: str, timeout_s: float = 60.0) -> None:
        """Until the bot's log has a line containing `text`."""
        deadline = time.monotonic() + timeout_s
        while text.encode() not in self.log_path.read_bytes():
            if self.proc is not None and self.proc.returncode is not None:
                raise RuntimeError(f"the bot exited early; see {self.log_path}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {text!r} in the bot's log; see {self.log_path}")
            await asyncio.sleep(0.05)

    def cpu(self) -> tuple[float, float]:
        """(bot process CPU s, its children's CPU s): ffmpeg/ffprobe runs that ended and
        the long-lived Opus decoder processes, which are never reaped during a run."""
        own, reaped = cpu_seconds(self.pid)
        live = 0.0
        for child in _children(self.pid):
            with contextlib.suppress(OSError, ValueError):
                child_own, child_reaped = cpu_seconds(child)
                live += child_own + child_reaped
        return own, reaped + live

    async def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (the bot closes cleanly and writes its stats), SIGKILL if it hangs."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError, KeyError):
            self.final_memory_kib = memory_kib(self.pid)
        if self.rss is not None:
            await self.rss.stop()
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_s)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.exit_code = self.proc.returncode
        stats_file = self.workdir / "stats.json"
        if stats_file.exists():
            self.stats = json.loads(stats_file.read_text())

    def lag_in(self, since: float, until: float) -> list[float]:
        return [lag for t, lag in self.stats.get("lag", []) if since <= t <= until]

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def log_count(self, needle: str) -> int:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace").count(needle)
        return 0

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.asynccontextmanager
async def bot_process(**kwargs: Any) -> AsyncIterator[BotProcess]:
    bot = BotProcess(**kwargs)
    await bot.start()
    try:
        await bot.wait_connected()
        yield bot
    finally:
        await bot.stop()
        if os.environ.get("SPOOFWATCH_BENCH_KEEP") != "1":
            bot.cleanup()


@dataclass(frozen=True)
class VoiceFile:
    path: Path
    duration_s: float


# --- replies, as the emulator sees them ----------------------------------------------------


class ReplyTracker:
    """Timestamps the answer to each tracked message the moment the emulator stores it."""

    def __init__(self) -> None:
        self.posted: dict[int, float] = {}
        self.replied: dict[int, float] = {}
        self.failed: set[int] = set()
        #: The bot message that carries each tracked message's verdict (a reply, or a
        #: combined answer in a flooded channel).
        self.answer_of: dict[int, int] = {}
        self.answered_twice: set[int] = set()
        self._expected = 0
        self._done = asyncio.Event()
        self._original: Callable[..., Message] | None = None

    def install(self) -> None:
        self._original = messaging.post_message
        original = self._original

        def post_message(*args: Any, **kwargs: Any) -> Message:
            message = original(*args, **kwargs)
            for target, embed in _answered(message):
                if target not in self.posted:
                    continue
                if target in self.replied:
                    self.answered_twice.add(target)
                    continue
                self.replied[target] = time.monotonic()
                self.answer_of[target] = message.id
                if str(embed.get("title", "")).startswith("Could not check"):
                    self.failed.add(target)
                if len(self.replied) >= self._expected:
                    self._done.set()
            return message

        messaging.post_message = post_message

    def uninstall(self) -> None:
        if self._original is not None:
            messaging.post_message = self._original

    def expect(self, count: int) -> None:
        self._expected = count
        self._done.clear()
        if len(self.replied) >= count:
            self._done.set()

    async def wait(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._done.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def latencies(self, ids: Iterable[int]) -> list[float]:
        return [self.replied[i] - self.posted[i] for i in ids if i in self.replied]


def _answered(message: Message) -> list[tuple[int, dict[str, Any]]]:
    """(message answered, its card) for each message `message` answers: the one it replies
    to, and each message a combined answer's cards link to (their title URL)."""
    if message.reply_to_id is not None:
        return [(message.reply_to_id, (message.embeds or [{}])[0])]
    found = []
    for embed in message.embeds:
        prefix, _, tail = str(embed.get("url") or "").rpartition("/")
        if prefix.startswith("https://discord.com/channels/") and tail.isdigit():
            found.append((int(tail), embed))
    return found


async def post_voice(
    emu: DiscordEmulator, tracker: ReplyTracker, channel: Any, author: Any, voice: VoiceFile
) -> int:
    """A member posts one voice message; returns its id, with its dispatch time tracked."""
    attachment = emu.attachment(voice.path, voice=True, duration_secs=voice.duration_s)
    # The dispatch is queued synchronously inside send_message (before its flush), so the
    # clock starts here: time in the emulator's gateway writer counts against the bot.
    started = time.monotonic()
    message = messaging.post_message(
        emu.world,
        emu.world.channel(channel),
        emu.world.user(author),
        attachments=[attachment],
        flags=8192,
    )
    tracker.posted[message.id] = started
    return message.id


# --- media ----------------------------------------------------------------------------------

SPEECH = (
    "This is a voice message for the Spoofwatch benchmark. It talks about the weather, the "
    "football results and what we might cook tonight. Nothing in it is synthetic, and nothing "
    "in it matters. The quick brown fox jumps over the lazy dog while the committee discusses "
    "the budget for next year, the new bicycle lanes and the library's opening hours. "
    "Somebody asks whether the train will be late again; somebody else says it always is. "
    "We count from one to twenty: one, two, three, four, five, six, seven, eight, nine, ten, "
    "eleven, twelve, thirteen, fourteen, fifteen, sixteen, seventeen, eighteen, nineteen, "
    "twenty. That is the end of this message; thank you for listening, and goodbye."
)


def ffmpeg(*args: str | Path, timeout: float = 600) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
        check=True,
        capture_output=True,
        timeout=timeout,
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def probe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return float(out.stdout.strip())


def voice_pool(count: int, *, min_s: int = 5, max_s: int = 30, seed: int = 7) -> list[VoiceFile]:
    """`count` distinct real OGG/Opus voice messages of min_s..max_s seconds (cached on disk).

    Speech from espeak-ng is encoded once per whole-second duration like a Discord voice
    message (48 kHz mono Opus, 32 kb/s); each pool file is a stream copy of one of those with
    its own comment tag, so every file has distinct bytes (no verdict reuse) and is real media.
    """
    pool_dir = CACHE / f"voice-{count}-{min_s}-{max_s}-{seed}"
    done_marker = pool_dir / "complete.json"
    if done_marker.exists():
        entries = json.loads(done_marker.read_text())
        return [VoiceFile(pool_dir / name, duration) for name, duration in entries]
    pool_dir.mkdir(parents=True, exist_ok=True)
    speech = pool_dir / "speech.wav"
    if shutil.which("espeak-ng"):
        subprocess.run(["espeak-ng", "-w", str(speech), SPEECH], check=True, capture_output=True)
    else:
        ffmpeg("-f", "lavfi", "-i", f"sine=frequency=300:duration={max_s + 1}", speech)
    speech_s = probe_duration(speech)
    bases: dict[int, Path] = {}

    def encode(seconds: int) -> tuple[int, Path]:
        base = pool_dir / f"base-{seconds:02d}.ogg"
        # Loop the speech if it is shorter than the longest message.
        loops = ["-stream_loop", "-1"] if speech_s < seconds else []
        ffmpeg(
            *loops, "-i", speech, "-t", str(seconds), "-ac", "1", "-ar", "48000",
            "-c:a", "libopus", "-b:a", "32k", "-application", "voip", base,
        )  # fmt: skip
        return seconds, base

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        bases = dict(pool.map(encode, range(min_s, max_s + 1)))
    durations = {seconds: probe_duration(path) for seconds, path in bases.items()}
    rng = random.Random(seed)
    plan = [rng.randint(min_s, max_s) for _ in range(count)]

    def copy(index: int) -> tuple[str, float]:
        seconds = plan[index]
        name = f"voice-{index:05d}.ogg"
        ffmpeg(
            "-i", bases[seconds], "-c", "copy", "-metadata", f"comment=spoofwatch-bench-{index}",
            "-fflags", "+bitexact", pool_dir / name,
        )  # fmt: skip
        return name, durations[seconds]

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        entries = list(pool.map(copy, range(count)))
    done_marker.write_text(json.dumps(entries))
    return [VoiceFile(pool_dir / name, duration) for name, duration in entries]


# --- the Discord scene -----------------------------------------------------------------------


@dataclass
class Scene:
    guild: Any
    channels: list[Any]
    users: list[Any]


def build_scene(emu: DiscordEmulator, *, users: int, channels: int = 5) -> Scene:
    guild = emu.create_guild("Benchmark Guild")
    category = emu.create_category(guild, "Community")
    made_channels = [
        emu.create_text_channel(guild, f"chat-{i}", category=category) for i in range(channels)
    ]
    members = [emu.add_member(guild, f"user{i:03d}") for i in range(users)]
    return Scene(guild, made_channels, members)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
