"""Pacing every request the bot sends to Discord: never into a full bucket, never past 50/s.

Discord limits a bot per route and top-level resource (a channel, a guild, a webhook) and in
all (50 requests/s), and tells it where it stands in `X-RateLimit-*` headers. discord.py
reads them, but it learns a bucket only from a response, so the first requests of two
routes that share one (adding and removing a reaction) go out on two queues; and when many
sends wait on a full bucket, more than its limit go out when the window resets. Each 429 costs
a retry, and 10,000 invalid requests in 10 minutes get the bot's IP banned at Discord's edge.

This layer sits in front of `HTTPClient.request` (installed by the `Spoofwatch` client) and
keeps its own account, per bucket and per top-level resource, in generations:

- a generation sends at most the bucket's limit; the limits the bot's busy routes are known
  to have (5 messages per 5 s per channel; one reaction call per 0.25 s per channel, add and
  remove sharing it) are seeded, other routes start at one request until a response says;
  even a seeded bucket sends one request alone first, since its current window may have been
  used by another process or by this bot before a restart (its headers say how much is left);
- a channel whose newest message, when this process first saw its guild, was posted less than a
  window ago may have had its message window filled by this bot's previous life (a restart
  within seconds): its first post waits until any such window has ended, else even the lone
  first request could meet a full bucket. The newest message bounds what that life posted
  there, so a channel quiet for a window is not held at all;
- the next generation starts only when every request of this one has been answered and the
  latest window they reported (`X-RateLimit-Reset-After`, counted from receipt, so never
  early) has ended: whatever discord.py's own accounting does in between, no request can
  land in a window that is already full;
- waiting requests leave oldest first by a priority the caller may give (the id of the
  message being answered), so a flooded channel is answered in order.

discord.py's own bucket objects stay in place, minus one habit: it makes the call that used a
bucket up sleep until the window ends before returning (see `_UnheldRatelimit`).

A global pacer under the per-route one spaces every request that reaches Discord's API (as
discord.py sends it, retries included) to at most `GLOBAL_RATE` per second, leaving headroom
under the 50/s limit for interaction responses, which are exempt from Discord's global limit
and are never held here (an interaction must be answered within 3 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from types import SimpleNamespace, TracebackType
from typing import Any

import aiohttp
import discord
import discord.http
import discord.utils

from bot import metrics

log = logging.getLogger(__name__)

#: Requests per second the pacer lets out, below Discord's 50 for the whole bot: the rest is
#: left to interaction responses (not held here) and to clock differences.
GLOBAL_RATE = 40
#: Added to a reported window end before the next generation starts (headers carry ms).
RESET_MARGIN_S = 0.02
#: A generation none of whose requests got an answer (connection errors) waits this long.
_UNANSWERED_WAIT_S = 1.0
#: Idle buckets are forgotten once there are more than this many.
_MAX_BUCKETS = 2048
#: How far Discord's clock (a snowflake's time) and this machine's may be apart.
CLOCK_SKEW_S = 1.0


@dataclass(frozen=True)
class KnownLimit:
    """A limit Discord is known to apply before any response says so."""

    group: str
    limit: int
    per_s: float


_MESSAGES = KnownLimit("channel-messages", 5, 5.0)
_REACTIONS = KnownLimit("channel-reactions", 1, 0.25)
_MESSAGE = "/channels/{channel_id}/messages/{message_id}"
_REACTION = _MESSAGE + "/reactions/{emoji}"
#: discord.py's routes (method, path template) → seeded limit. Figures observed by client
#: libraries (Discord publishes none): 5 messages / 5 s per channel; reaction add and remove
#: share one bucket of 1 per 0.25 s per channel; edit and delete 5 / 5 s per channel each.
KNOWN_LIMITS: dict[tuple[str, str], KnownLimit] = {
    ("POST", "/channels/{channel_id}/messages"): _MESSAGES,
    ("PUT", _REACTION + "/@me"): _REACTIONS,
    ("DELETE", _REACTION + "/@me"): _REACTIONS,
    ("DELETE", _REACTION + "/{member_id}"): _REACTIONS,
    ("PATCH", _MESSAGE): KnownLimit("channel-message-edit", 5, 5.0),
    ("DELETE", _MESSAGE): KnownLimit("channel-message-delete", 5, 5.0),
}
#: Interaction endpoints: exempt from Discord's global limit, and answered against a deadline.
_INTERACTION_PREFIXES = ("/interactions/", "/webhooks/")

Send = Callable[..., Awaitable[Any]]


class _Ticket:
    """One paced call (discord.py may send it more than once: a retry after a 429)."""

    __slots__ = ("answered", "bucket", "final", "route_key")

    def __init__(self, bucket: _Bucket, route_key: str | None) -> None:
        self.bucket = bucket
        #: discord.py's route key, for a route whose Discord bucket is learned from headers.
        self.route_key = route_key
        self.answered = False
        self.final = False


class _Bucket:
    """One rate-limit bucket for one top-level resource."""

    def __init__(self, pacer: DiscordPacing, major: str, known: KnownLimit | None) -> None:
        self.pacer = pacer
        self.major = major
        self.known = known
        self.seeded = known is not None
        self.limit = known.limit if known else 1
        self.per_s = known.per_s if known else _UNANSWERED_WAIT_S
        #: No rate-limit headers on this route's responses (and none known): not counted.
        self.unlimited = False
        self.used = 0
        self.in_flight = 0
        #: The latest end of a window this generation's requests were counted in.
        self.reset_at: float | None = None
        self.answered = False
        #: Whether Discord has answered a request of this bucket yet: until then the state
        #: of its current window is unknown (another process, or this bot before a restart,
        #: may have used it), so one request goes alone and its headers tell.
        self.heard = False
        self._queue: list[tuple[int, int]] = []
        self._changed = asyncio.Event()

    # -------------------------------------------------------------------- state

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def window_limit(self) -> int:
        """Requests this generation may send: the limit, or one until Discord has answered."""
        return self.limit if self.heard else 1

    def closed_until(self, now: float) -> float | None:
        """Until when a channel's message bucket stays shut for a window this bot may have
        filled before a restart (None: it is not). Only until Discord has answered for it."""
        if self.heard or self.known is not _MESSAGES:
            return None
        posted = self.pacer.posted_before_start(self.major)
        if posted is None:
            return None
        until = posted + self.per_s + CLOCK_SKEW_S + RESET_MARGIN_S
        return until if now < until else None

    def full(self, now: float) -> bool:
        """No request may go out now."""
        if self.unlimited:
            return False
        if self.closed_until(now) is not None:
            return True
        if self.used < self.window_limit:
            return False
        return not self._may_renew(now)

    def idle(self, now: float) -> bool:
        return not self._queue and self.in_flight == 0 and not self.full(now)

    def _may_renew(self, now: float) -> bool:
        return self.in_flight == 0 and self.reset_at is not None and now >= self.reset_at

    def _take(self, now: float) -> bool:
        if self.unlimited:
            self.in_flight += 1
            return True
        if self.closed_until(now) is not None:
            return False
        if self.used >= self.window_limit:
            if not self._may_renew(now):
                return False
            self.used, self.reset_at, self.answered = 0, None, False
        self.used += 1
        self.in_flight += 1
        return True

    def _wait_s(self, now: float) -> float | None:
        """Seconds until capacity may come back by itself (None: only a response brings it)."""
        closed = self.closed_until(now)
        if closed is not None:
            return closed - now
        if self.in_flight or self.reset_at is None:
            return None
        return max(0.0, self.reset_at - now)

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ acquire

    async def acquire(self, priority: int, route_key: str | None) -> _Ticket:
        entry = (priority, next(self.pacer.sequence))
        heapq.heappush(self._queue, entry)
        try:
            while True:
                changed = self._changed
                now = self.pacer.clock()
                if self._queue[0] == entry and self._take(now):
                    heapq.heappop(self._queue)
                    self.notify()  # the next in line may go too
                    return _Ticket(self, route_key)
                timeout = self._wait_s(now) if self._queue[0] == entry else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout)
        except BaseException:
            if entry in self._queue:
                self._queue.remove(entry)
                heapq.heapify(self._queue)
                self.notify()
            raise

    # ----------------------------------------------------------------- answers

    def observe(self, ticket: _Ticket, status: int, headers: Any, now: float) -> None:
        """A response to one of this bucket's requests: learn from its headers."""
        ticket.answered = self.answered = self.heard = True
        if status == 429:
            # discord.py retries after `retry_after`: the ticket stays in flight until then,
            # and this generation is over.
            retry_after = _float(headers.get("X-RateLimit-Reset-After")) or _float(
                headers.get("Retry-After")
            )
            if headers.get("X-RateLimit-Global") is None:
                self.used = max(self.used, self.limit)
                self._extend(now + (retry_after or self.per_s))
            self.pacer.received_429s += 1
            log.warning(
                "Discord answered 429 (bucket of %s, retry after %s s)", self.major, retry_after
            )
        elif not ticket.final:
            ticket.final = True
            self.in_flight -= 1
        remaining = headers.get("X-RateLimit-Remaining")
        if remaining is not None:
            self.unlimited = False
            self.limit = int(headers.get("X-RateLimit-Limit", self.limit))
            self.used = max(self.used, self.limit - int(remaining))
            reset_after = _float(headers.get("X-RateLimit-Reset-After"))
            if reset_after is not None:
                self._extend(now + reset_after + RESET_MARGIN_S)
        elif status < 400 and not self.seeded:
            self.unlimited = True  # a route Discord does not limit on its own
        else:
            # A known limit (or an error) with no headers to say when its window ends (a proxy
            # that strips them, an error page): the window is taken to run from this answer,
            # else the bucket would wait for a reset that nobody will ever report.
            self._extend(now + self.per_s)
        self.notify()

    def finish(self, ticket: _Ticket) -> None:
        """The call returned or failed: release what it still holds."""
        if not ticket.final:
            ticket.final = True
            self.in_flight -= 1
            if not self.answered:
                # Nothing came back (a connection error): nothing says when the window ends.
                self._extend(self.pacer.clock() + self.per_s)
        self.notify()

    def _extend(self, until: float) -> None:
        self.reset_at = until if self.reset_at is None else max(self.reset_at, until)


class DiscordPacing:
    """Per-bucket and global pacing of the bot's Discord requests (see the module docstring)."""

    _ticket: ContextVar[_Ticket | None] = ContextVar("discord_pacing_ticket", default=None)
    _priority: ContextVar[int | None] = ContextVar("discord_pacing_priority", default=None)

    def __init__(
        self,
        *,
        global_rate: int = GLOBAL_RATE,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.global_rate = global_rate
        self.clock = clock
        self.wall_clock = wall_clock
        #: Channel → when (on `clock`) its newest message was posted, for channels whose newest
        #: message was under a window old when this process first saw their guild.
        self._posted_before: dict[str, float] = {}
        self._guilds_noted: set[int] = set()
        self.sequence = itertools.count()
        #: 429s Discord answered despite the pacing (each one also logged).
        self.received_429s = 0
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._hashes: dict[str, str] = {}
        self._sent: deque[float] = deque()
        self._global_lock: asyncio.Lock | None = None
        self._global_block_until = 0.0

    # ----------------------------------------------------------------- wiring

    def install(self, http: discord.http.HTTPClient) -> None:
        """Route `http`'s requests through the pacer (the client must also be built with
        `http_trace=pacing.trace_config()`, which is how responses are seen)."""
        send: Send = http.request

        async def request(route: discord.http.Route, **kwargs: Any) -> Any:
            return await self.request(route, send, **kwargs)

        http.request = request  # type: ignore[method-assign]

        def get_ratelimit(key: str) -> discord.http.Ratelimit:
            # discord.py's own per-bucket object, minus its hold (see `_UnheldRatelimit`).
            buckets: dict[str, discord.http.Ratelimit] = http._buckets
            value = buckets.get(key)
            if value is None:
                value = buckets[key] = _UnheldRatelimit(http.max_ratelimit_timeout)
            return value

        http.get_ratelimit = get_ratelimit  # type: ignore[method-assign]

    def trace_config(self) -> aiohttp.TraceConfig:
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(self._on_request_start)
        trace.on_request_end.append(self._on_request_end)
        return trace

    @contextlib.contextmanager
    def priority(self, snowflake: int) -> Iterator[None]:
        """Requests made inside go out before later-queued ones with a higher value (older
        first, when the value is the id of the message being answered)."""
        token = self._priority.set(snowflake)
        try:
            yield
        finally:
            self._priority.reset(token)

    def note_guild(self, guild_id: int, last_messages: Iterable[tuple[int, int]]) -> None:
        """The newest message of each channel of a guild as this process first sees it
        (channel id, message id): a channel posted in less than a window ago may hold posts of
        this bot's previous life, so its message bucket stays shut until that window has
        surely ended (`_Bucket.closed_until`). Later calls for the same guild (it became
        available again) change nothing: by then this process's own account holds."""
        if guild_id in self._guilds_noted:
            return
        self._guilds_noted.add(guild_id)
        now, wall = self.clock(), self.wall_clock()
        for channel_id, message_id in last_messages:
            posted_at = ((message_id >> 22) + discord.utils.DISCORD_EPOCH) / 1000
            age = wall - posted_at
            if age < _MESSAGES.per_s + CLOCK_SKEW_S:
                self._posted_before[str(channel_id)] = now - max(0.0, age)

    def posted_before_start(self, major: str) -> float | None:
        """When (on `clock`) the channel's newest message at start was posted, if recent."""
        posted = self._posted_before.get(major)
        if posted is not None and self.clock() > posted + _MESSAGES.per_s + 2 * CLOCK_SKEW_S:
            del self._posted_before[major]  # long past: nothing to hold any more
            return None
        return posted

    def message_room(self, channel_id: int) -> int:
        """How many messages the bot may post in this channel now without waiting (its
        message bucket's room in this window, less the sends already queued on it)."""
        bucket = self._channel_messages(channel_id)
        now = self.clock()
        if bucket.closed_until(now) is not None:
            room = 0
        elif bucket.unlimited:
            room = bucket.limit
        elif bucket.used < bucket.window_limit:
            room = bucket.window_limit - bucket.used
        else:
            room = bucket.window_limit if bucket._may_renew(now) else 0
        return max(0, room - bucket.waiting)

    def message_window_known(self, channel_id: int) -> bool:
        """Whether Discord has told how much of this channel's message window is left: until
        then `message_room` is the one request a bucket sends alone first, not the room."""
        bucket = self._channel_messages(channel_id)
        return bucket.heard or bucket.unlimited

    async def wait_for_message_room(self, channel_id: int) -> None:
        """Return once `message_room(channel_id)` is at least one."""
        bucket = self._channel_messages(channel_id)
        while self.message_room(channel_id) == 0:
            changed = bucket._changed
            timeout = None if bucket.waiting else bucket._wait_s(self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout)

    def _channel_messages(self, channel_id: int) -> _Bucket:
        key = (_MESSAGES.group, str(channel_id))
        bucket = self._buckets.get(key)
        if bucket is None:
            self._forget_idle()  # before: a bucket just made is idle too
            bucket = self._buckets[key] = _Bucket(self, key[1], _MESSAGES)
        return bucket

    def channel_busy(self, channel_id: int) -> bool:
        """Whether anything the bot sends to this channel would have to wait now."""
        now = self.clock()
        major = str(channel_id)
        return any(
            bucket.waiting or bucket.full(now)
            for (_, key_major), bucket in self._buckets.items()
            if key_major == major
        )

    # ----------------------------------------------------------------- pacing

    async def request(self, route: discord.http.Route, send: Send, **kwargs: Any) -> Any:
        bucket = self._bucket(route)
        priority = self._priority.get()
        if priority is None:
            priority = discord.utils.time_snowflake(discord.utils.utcnow())
        seeded = (route.method, route.path) in KNOWN_LIMITS
        ticket = await bucket.acquire(priority, None if seeded else route.key)
        token = self._ticket.set(ticket)
        try:
            return await send(route, **kwargs)
        finally:
            self._ticket.reset(token)
            bucket.finish(ticket)

    def _bucket(self, route: discord.http.Route) -> _Bucket:
        known = KNOWN_LIMITS.get((route.method, route.path))
        major = route.major_parameters
        identity = known.group if known is not None else self._hashes.get(route.key, route.key)
        key = (identity, major)
        bucket = self._buckets.get(key)
        if bucket is None:
            # A route that just learned its Discord bucket keeps its account so far.
            bucket = self._buckets.pop((route.key, major), None) or _Bucket(self, major, known)
            self._forget_idle()  # before: the bucket about to be used is idle too
            self._buckets[key] = bucket
        return bucket

    def _forget_idle(self) -> None:
        if len(self._buckets) <= _MAX_BUCKETS:
            return
        now = self.clock()
        for key in [k for k, b in self._buckets.items() if b.idle(now)]:
            del self._buckets[key]

    async def _on_request_start(
        self, session: aiohttp.ClientSession, context: SimpleNamespace, params: Any
    ) -> None:
        path = _api_path(str(params.url))
        if path is None:
            return  # the gateway, or a CDN download
        if path.startswith(_INTERACTION_PREFIXES):
            self._sent.append(self.clock())  # counted, never held
            return
        if self._global_lock is None:
            self._global_lock = asyncio.Lock()
        async with self._global_lock:
            while True:
                now = self.clock()
                while self._sent and self._sent[0] <= now - 1.0:
                    self._sent.popleft()
                wait = self._global_block_until - now
                if len(self._sent) >= self.global_rate:
                    wait = max(wait, self._sent[0] + 1.0 - now)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            self._sent.append(now)

    async def _on_request_end(
        self, session: aiohttp.ClientSession, context: SimpleNamespace, params: Any
    ) -> None:
        path = _api_path(str(params.url))
        if path is None:
            return
        response = params.response
        headers = response.headers
        metrics.discord_response(params.method, path, response.status, headers)
        now = self.clock()
        if response.status == 429 and headers.get("X-RateLimit-Global") is not None:
            retry_after = _float(headers.get("Retry-After")) or 1.0
            self._global_block_until = max(self._global_block_until, now + retry_after)
        ticket = self._ticket.get()
        if ticket is None:
            return
        bucket_hash = headers.get("X-RateLimit-Bucket")
        if bucket_hash is not None and ticket.route_key is not None:
            # Routes reporting the same hash share one bucket from now on.
            self._hashes.setdefault(ticket.route_key, bucket_hash)
        ticket.bucket.observe(ticket, response.status, headers, now)


class _UnheldRatelimit(discord.http.Ratelimit):
    """discord.py's bucket without its hold on the call that used a bucket up.

    When a response leaves a bucket empty, discord.py 2.x makes that call's caller sleep
    until the window ends before returning: the reply that fills a channel's five would come
    back (and be recorded in the audit log) 5 s after it was posted, its scan's task held
    all the while. The pacer already keeps every later request out until the window has
    ended, so the caller returns at once here, and the bucket renews itself at the window's
    end (`expires`, from the same headers) when the next request comes. Requests that do
    wait inside discord.py's bucket (the pacer let them through on a stale account) wait
    until that end, not a whole `reset_after` more as discord.py's `_refresh` would make
    them. Written against discord.py 2.7 (pinned in the lock files).
    """

    __slots__ = ("_waker",)

    def __init__(self, max_ratelimit_timeout: float | None) -> None:
        super().__init__(max_ratelimit_timeout)
        self._waker: asyncio.Task[None] | None = None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.outgoing -= 1
        tokens = self.remaining - self.outgoing
        if tokens > 0:
            if self._pending_requests:
                self._wake(tokens)
        elif self.expires is None or self.is_expired():
            # No window reported (a route without headers), or it is over already.
            self.reset()
            self._wake(self.remaining)
        elif self._pending_requests and not self._sleeping.locked():
            # Someone waits in this bucket: wake them when the window ends, without
            # holding this caller.
            self._waker = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        async with self._sleeping:
            if self.expires is not None:
                await asyncio.sleep(max(0.0, self.expires - self._loop.time()))
        self.reset()
        self._wake(self.remaining)


def _api_path(url: str) -> str | None:
    base = discord.http.Route.BASE
    if not url.startswith(base):
        return None
    return url[len(base) :].split("?", 1)[0]


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
