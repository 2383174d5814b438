"""Prometheus metrics: what the bot is doing, for an operator's dashboard.

One `Metrics` per process, over a `CollectorRegistry` of its own (never prometheus_client's
global one, so two bots in one test process never share a counter). It is made active for
the bot's task tree with `activate` (a context variable, as `worker_pool` keeps its slot),
and the code that has something to count calls the module's hook functions: one line at each
call site, each a no-op when no `Metrics` is active (`SPOOFWATCH_METRICS_PORT` unset, the CLI,
most tests). `bot.health` serves them with `/healthz` on the bot's event loop.

Labels are bounded by construction: triggers, providers, outcomes and error kinds are enums or
class constants, provider requests are named by the client (`what`), and Discord routes are
templates (`route_template`), never raw ids, tokens or emoji.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bot.errors import ProviderError, SpoofwatchError
from bot.storage import ScanLifecycle, ScanRecord

T = TypeVar("T")

#: Seconds from a scan's acceptance to its verdict: tens of ms (a reused verdict) to minutes.
VERDICT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
#: One HTTP request to a provider: an upload of a large file may take a minute.
PROVIDER_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
#: One audit-log write as the scan waits for it (queue, group commit, round trip).
WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)

#: The `ScanLifecycle` methods that write, timed as `spoofwatch_audit_write_duration_seconds`.
WRITES = frozenset(
    {
        "create_scan",
        "set_media",
        "claim_submission",
        "mark_submitted",
        "mark_done",
        "mark_failed",
        "mark_replied",
    }
)


@dataclass(frozen=True, slots=True)
class ProviderCheck:
    """How the last request to a provider went: answered (any HTTP status) or not."""

    reachable: bool
    at: datetime
    detail: str


class _Pool(Protocol):
    @property
    def pending(self) -> int: ...

    @property
    def waiting(self) -> int: ...


class _Bot(Protocol):
    """What metrics read from the Discord client (`bot.discord_glue.client.Spoofwatch`)."""

    @property
    def scan_pool(self) -> _Pool: ...

    def is_closed(self) -> bool: ...

    def is_ready(self) -> bool: ...


def gateway_connected(client: Any) -> bool:
    """Whether a discord.py client is connected: ready, not closed, its socket(s) open."""
    if client.is_closed() or not client.is_ready():
        return False
    shards = getattr(client, "shards", None)
    if isinstance(shards, dict) and shards:
        return all(not shard.is_closed() for shard in shards.values())
    ws = getattr(client, "ws", None)
    return ws is not None and bool(ws.open)


class Metrics:
    """Every metric of one bot process, in its own registry."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.scans = Counter(
            "spoofwatch_scans",
            "Scans finished, by trigger, provider and outcome (done, reused, failed, refused).",
            ["trigger", "provider", "outcome"],
            registry=registry,
        )
        self.scan_failures = Counter(
            "spoofwatch_scan_failures",
            "Failed or refused scans by error kind (too_large, provider_timeout, ...).",
            ["provider", "kind"],
            registry=registry,
        )
        self.time_to_verdict = Histogram(
            "spoofwatch_time_to_verdict_seconds",
            "From a scan's acceptance to its verdict (fresh or reused).",
            ["provider"],
            buckets=VERDICT_BUCKETS,
            registry=registry,
        )
        self.reused_verdicts = Counter(
            "spoofwatch_reused_verdicts",
            "Scans answered with an earlier verdict on the same bytes (no provider request).",
            ["provider"],
            registry=registry,
        )
        self.provider_requests = Counter(
            "spoofwatch_provider_requests",
            "HTTP requests to a provider, retries included, by request and result "
            "(2xx, 4xx, 429, 5xx, no_answer).",
            ["provider", "request", "result"],
            registry=registry,
        )
        self.provider_latency = Histogram(
            "spoofwatch_provider_request_duration_seconds",
            "Time a provider took to answer one HTTP request (answered requests only).",
            ["provider", "request"],
            buckets=PROVIDER_BUCKETS,
            registry=registry,
        )
        self.provider_errors = Counter(
            "spoofwatch_provider_errors",
            "Scans failed by a provider error, by kind (after retries).",
            ["provider", "kind"],
            registry=registry,
        )
        self.provider_up = Gauge(
            "spoofwatch_provider_up",
            "1 if the provider answered the last request (any HTTP status), 0 if not.",
            ["provider"],
            registry=registry,
        )
        self.discord_requests = Counter(
            "spoofwatch_discord_requests",
            "Discord REST responses by method, route template and HTTP status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.discord_rate_limited = Counter(
            "spoofwatch_discord_rate_limited",
            "Discord 429 answers by method, route template and scope (user, global, shared).",
            ["method", "route", "scope"],
            registry=registry,
        )
        self.decoder_restarts = Counter(
            "spoofwatch_decoder_restarts",
            "Media worker processes killed and replaced (timeout, died).",
            ["reason"],
            registry=registry,
        )
        self.alerts = Counter(
            "spoofwatch_alerts",
            "Mod-log alerts settled: posted, posted_late (left due by a stop), "
            "found_after_restart (posted just before one), not_posted.",
            ["outcome"],
            registry=registry,
        )
        self.worker_crashes = Counter(
            "spoofwatch_worker_job_crashes",
            "Jobs of a worker pool that ended in an unexpected exception (a bug).",
            ["pool"],
            registry=registry,
        )
        self.audit_writes = Histogram(
            "spoofwatch_audit_write_duration_seconds",
            "Audit-log writes of the scan lifecycle, as long as the scan waited for them.",
            ["operation"],
            buckets=WRITE_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "spoofwatch_scan_queue_depth",
            "Scans accepted and waiting for a scan worker.",
            registry=registry,
        )
        self.waiting_scans = Gauge(
            "spoofwatch_scans_waiting_on_provider",
            "Scans whose file is with the provider, waiting for its verdict without a worker.",
            registry=registry,
        )
        self.gateway_connected = Gauge(
            "spoofwatch_gateway_connected",
            "1 while the Discord gateway connection is up (as of the last /healthz or scrape).",
            registry=registry,
        )
        #: Last request to each provider, for /healthz.
        self.provider_checks: dict[str, ProviderCheck] = {}
        #: Whether the gateway is connected; no client yet means not connected.
        self.gateway: Callable[[], bool] = lambda: False
        #: Scans accepted by this process: id → perf_counter at acceptance.
        self._accepted: dict[int, float] = {}

    # --- what the hooks record ---------------------------------------------------------------

    def scan_accepted(self, record: ScanRecord) -> None:
        self._accepted[record.id] = time.perf_counter()

    def scan_finished(
        self, record: ScanRecord, outcome: str, error: SpoofwatchError | None
    ) -> None:
        provider = record.provider.value
        self.scans.labels(record.trigger.value, provider, outcome).inc()
        started = self._accepted.pop(record.id, None)
        if error is not None:
            self.scan_failures.labels(provider, error.kind).inc()
            if isinstance(error, ProviderError):
                self.provider_errors.labels(provider, error.kind).inc()
            return
        if outcome == "reused":
            self.reused_verdicts.labels(provider).inc()
        if started is not None:
            elapsed = time.perf_counter() - started
        else:  # resumed after a restart: the recorded acceptance time (whole seconds)
            elapsed = max(0.0, (datetime.now(UTC) - record.created_at).total_seconds())
        self.time_to_verdict.labels(provider).observe(elapsed)

    def provider_attempt(
        self, provider: str, request: str, status: int | None, began: float
    ) -> None:
        now = datetime.now(UTC)
        if status is None:
            self.provider_requests.labels(provider, request, "no_answer").inc()
            self.provider_up.labels(provider).set(0)
            self.provider_checks[provider] = ProviderCheck(False, now, f"{request}: no answer")
            return
        result = "429" if status == 429 else f"{status // 100}xx"
        self.provider_requests.labels(provider, request, result).inc()
        self.provider_latency.labels(provider, request).observe(time.perf_counter() - began)
        self.provider_up.labels(provider).set(1)
        self.provider_checks[provider] = ProviderCheck(True, now, f"{request}: HTTP {status}")

    def discord_response(self, method: str, path: str, status: int, headers: Any) -> None:
        route = route_template(path)
        self.discord_requests.labels(method, route, str(status)).inc()
        if status == 429:
            scope = headers.get("X-RateLimit-Scope") or (
                "global" if headers.get("X-RateLimit-Global") else "user"
            )
            self.discord_rate_limited.labels(method, route, scope).inc()

    def watch_bot(self, bot: _Bot) -> None:
        pool = bot.scan_pool
        self.queue_depth.set_function(lambda: pool.pending)
        self.waiting_scans.set_function(lambda: pool.waiting)
        self.gateway = lambda: gateway_connected(bot)
        self.gateway_connected.set_function(lambda: 1 if self.gateway() else 0)

    def timed_writes(self, lifecycle: ScanLifecycle) -> ScanLifecycle:
        return _TimedWrites(lifecycle, self.audit_writes)


class _TimedWrites:
    """A `ScanLifecycle` that times its writes; reads pass through untouched."""

    def __init__(self, inner: ScanLifecycle, histogram: Histogram) -> None:
        self._inner = inner
        for name in WRITES:
            setattr(self, name, _timed(getattr(inner, name), histogram.labels(name)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _timed(method: Callable[..., Awaitable[T]], child: Any) -> Callable[..., Awaitable[T]]:
    @wraps(method)
    async def timed(*args: Any, **kwargs: Any) -> T:
        began = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            child.observe(time.perf_counter() - began)

    return timed


# --- route templates -----------------------------------------------------------------------

#: A path segment that is a word of Discord's API (channels, messages, @me, @original...),
#: kept as it is; anything else (ids, tokens, emoji) becomes a placeholder.
_WORD = re.compile(r"^@?[a-z][a-z-]{0,31}[0-9]?$")  # "oauth2" too
_TOKEN_AFTER = frozenset({"interactions", "webhooks"})


def route_template(path: str) -> str:
    """A Discord API path with its ids, tokens and emoji replaced by placeholders.

    `/channels/1/messages/2/reactions/%F0%9F%94%8D/@me` → `/channels/{id}/messages/{id}/
    reactions/{emoji}/@me`; `/interactions/1/aW50…/callback` → `/interactions/{id}/{token}/
    callback`. The template space is bounded by the API's words, whatever the ids.
    """
    segments = path.strip("/").split("/")
    out: list[str] = []
    for index, segment in enumerate(segments):
        before = segments[index - 1] if index else ""
        before2 = segments[index - 2] if index > 1 else ""
        if segment.isdigit():
            out.append("{id}")
        elif before == "reactions":
            out.append("{emoji}")
        elif before2 in _TOKEN_AFTER and before.isdigit():
            out.append("{token}")
        elif _WORD.match(segment):
            out.append(segment)
        else:
            out.append("{param}")
    return "/" + "/".join(out)


# --- the active Metrics and the hooks -----------------------------------------------------

_active: ContextVar[Metrics | None] = ContextVar("spoofwatch_metrics", default=None)


def start(*, enabled: bool) -> Metrics | None:
    """A new `Metrics` (when `enabled`), active for the rest of this task and those it starts;
    for the bot's main task, which ends with the process."""
    metrics = Metrics() if enabled else None
    _active.set(metrics)
    return metrics


def active() -> Metrics | None:
    """The `Metrics` of this task tree, or None when metrics are off."""
    return _active.get()


@contextmanager
def activate(metrics: Metrics | None) -> Iterator[Metrics | None]:
    """Make `metrics` the one the hooks record into, for this task and those it starts."""
    token = _active.set(metrics)
    try:
        yield metrics
    finally:
        _active.reset(token)


def scan_accepted(record: ScanRecord) -> None:
    """A new scan was accepted (its time to verdict starts now)."""
    metrics = _active.get()
    if metrics is not None:
        metrics.scan_accepted(record)


def scan_finished(record: ScanRecord, outcome: str, error: SpoofwatchError | None = None) -> None:
    """A scan ended: outcome `done`, `reused`, `failed` or `refused` (with its error)."""
    metrics = _active.get()
    if metrics is not None:
        metrics.scan_finished(record, outcome, error)


def provider_attempt(provider: str, request: str, status: int | None, began: float) -> None:
    """One HTTP attempt to a provider: its status, or None when no answer came;
    `began` is its `time.perf_counter()` at the start."""
    metrics = _active.get()
    if metrics is not None:
        metrics.provider_attempt(provider, request, status, began)


def discord_response(method: str, path: str, status: int, headers: Any) -> None:
    """Discord answered one REST request (`path` below the API base, with its ids)."""
    metrics = _active.get()
    if metrics is not None:
        metrics.discord_response(method, path, status, headers)


def decoder_restarted(reason: str) -> None:
    """A media worker process was killed or died; the next request starts a fresh one."""
    metrics = _active.get()
    if metrics is not None:
        metrics.decoder_restarts.labels(reason).inc()


def alert_settled(outcome: str) -> None:
    """A mod-log alert was posted (now or late), found posted, or could not be posted."""
    metrics = _active.get()
    if metrics is not None:
        metrics.alerts.labels(outcome).inc()


def worker_job_crashed(pool: str) -> None:
    metrics = _active.get()
    if metrics is not None:
        metrics.worker_crashes.labels(pool).inc()


def watch_bot(bot: _Bot) -> None:
    """Report the bot's scan queue and gateway connection (read at each scrape)."""
    metrics = _active.get()
    if metrics is not None:
        metrics.watch_bot(bot)


def timed_writes(lifecycle: ScanLifecycle) -> ScanLifecycle:
    """`lifecycle`, with its writes timed when metrics are on (else `lifecycle` itself)."""
    metrics = _active.get()
    return lifecycle if metrics is None else metrics.timed_writes(lifecycle)
