"""Discord's rate limits, enforced: per-route buckets, the global limit, the edge's ban.

Off unless asked for (``DiscordEmulator(rate_limits=True)`` or ``emu.ratelimits.enabled``):
most tests make a handful of requests and would only be slowed down.

Sources, named again at each rule below:

- [docs] discord-api-docs ``developers/topics/rate-limits.mdx``: per-route buckets keyed by the
  top-level resource (``channel_id``, ``guild_id``, ``webhook_id`` + token); the
  ``X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket`` headers on responses,
  ``X-RateLimit-Scope`` (and ``X-RateLimit-Global``) on 429s; the 429 body
  ``{message, retry_after, global, code?}`` with ``Retry-After``; 50 requests/s per bot in all,
  interaction endpoints exempt; 10,000 invalid requests (401, 403, 429 except scope ``shared``)
  in 10 minutes get the IP banned at the edge.
- [spec] discord-api-spec ``openapi.json``: ``components.headers`` (the five ``X-RateLimit-*``
  response headers and their types), ``RatelimitedResponse`` (``retry_after`` number,
  ``global`` boolean).
- [observed] discord-platform.md, "Checked 2026-12": Discord publishes no per-route figures;
  client libraries (JDA, Discord.Net) observe ``POST /channels/{id}/messages`` 5 per 5 s per
  channel, reaction add and remove sharing one bucket of 1 per 0.25 s per channel, message
  edit and delete 5 per 5 s per channel.
- [dpy] discord.py ``http.py``: a 429 without a ``Via`` header, or with a text body, is
  treated as a Cloudflare (edge) ban, not as a rate limit: Discord's application responses
  come through Google's load balancer (``Via: 1.1 google``), the edge's own refusals do not.

Windows are fixed: a bucket's window opens with the first request after the previous one
closed and lasts its period; ``X-RateLimit-Reset-After`` counts down to its end [docs].
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from .rest_app import API_PREFIX, ApiError, Handler, json_response

#: [dpy] the header a 429 from Discord's application (not its edge) carries.
VIA = "1.1 google"


@dataclass(frozen=True)
class BucketRule:
    """``limit`` requests per ``per_s`` seconds, per major parameter."""

    name: str
    limit: int
    per_s: float

    @property
    def hash(self) -> str:
        # [docs] "A unique string denoting the rate limit being encountered (non-inclusive of
        # top-level resources in the path)": one opaque value per bucket, whatever the channel.
        return hashlib.sha1(self.name.encode()).hexdigest()[:32]


# [observed] discord-platform.md "Checked 2026-12" (JDA, Discord.Net measurements).
MESSAGE_CREATE = BucketRule("channel-message-create", 5, 5.0)
REACTIONS = BucketRule("channel-message-reactions", 1, 0.25)
MESSAGE_EDIT = BucketRule("channel-message-edit", 5, 5.0)
MESSAGE_DELETE = BucketRule("channel-message-delete", 5, 5.0)

_CHANNEL = "/api/v10/channels/{channel}"
_MESSAGE = _CHANNEL + "/messages/{message}"
_REACTION = _MESSAGE + "/reactions/{emoji}"

#: (method, the emulator's route as aiohttp names it) → bucket. Routes not listed have no
#: per-route limit here (Discord publishes none [docs]); they still count globally.
ROUTE_RULES: dict[tuple[str, str], BucketRule] = {
    ("POST", _CHANNEL + "/messages"): MESSAGE_CREATE,
    # [observed] add and remove share one bucket.
    ("PUT", _REACTION + "/@me"): REACTIONS,
    ("DELETE", _REACTION + "/@me"): REACTIONS,
    ("DELETE", _REACTION + "/{user}"): REACTIONS,
    ("PATCH", _MESSAGE): MESSAGE_EDIT,
    ("DELETE", _MESSAGE): MESSAGE_DELETE,
}

#: [docs] "All bots can make up to 50 requests per second to our API."
GLOBAL_LIMIT = 50
GLOBAL_PER_S = 1.0
#: [docs] "Interaction endpoints are not bound to the bot's Global Rate Limit"; the interaction
#: endpoints are the callback and the ``/webhooks/{application.id}/{interaction.token}`` family.
_GLOBAL_EXEMPT = ("/interactions/", "/webhooks/")
#: [docs] "Invalid Request Limit": 10,000 per 10 minutes, counting 401, 403 and 429 (not 429s
#: with scope ``shared``).
INVALID_LIMIT = 10_000
INVALID_WINDOW_S = 600.0
#: How long the edge keeps refusing once the limit is reached. [docs] says "temporarily";
#: discord-platform.md §4.1 "about an hour".
EDGE_BAN_S = 3600.0


@dataclass
class _Window:
    opened: float
    used: int = 0


@dataclass
class RateLimitEvent:
    """One 429 the emulator sent."""

    method: str
    path: str
    scope: str  # "user" (a route's bucket), "global", or "edge" (the ban, no Via)
    retry_after: float


@dataclass
class RateLimits:
    """The state of every bucket, and the aiohttp middleware that enforces them."""

    enabled: bool = False
    rules: Mapping[tuple[str, str], BucketRule] = field(default_factory=lambda: dict(ROUTE_RULES))
    global_limit: int = GLOBAL_LIMIT
    invalid_limit: int = INVALID_LIMIT
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    #: Every 429 sent, in order (tests and benchmarks read ``len(events)``).
    events: list[RateLimitEvent] = field(default_factory=list)
    _windows: dict[tuple[str, str], _Window] = field(default_factory=dict)
    _global: _Window | None = None
    _invalid: deque[float] = field(default_factory=deque)
    _banned_until: float = 0.0

    @property
    def sent_429s(self) -> int:
        """How many 429s the emulator has answered with (any scope)."""
        return len(self.events)

    def count(self, scope: str) -> int:
        return sum(1 for e in self.events if e.scope == scope)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        match = API_PREFIX.match(request.path)
        if not self.enabled or match is None:
            return await handler(request)
        path = request.path[match.end() :] or "/"
        now = self.clock()
        if now < self._banned_until:
            return self._edge_ban(request.method, path, now)
        refused = self._admit_global(request.method, path, now)
        if refused is not None:
            self._note_status(429, now)
            return refused
        resource = request.match_info.route.resource
        rule = self.rules.get((request.method, resource.canonical if resource else ""))
        window = None
        if rule is not None:
            window = self._window((rule.name, _major(request.match_info)), rule, now)
            if window.used >= rule.limit:
                self._note_status(429, now)
                return self._route_429(request.method, path, rule, window, now)
            window.used += 1
        response = await self._handle(request, handler)
        if rule is not None and window is not None:
            response.headers.update(self._headers(rule, window, self.clock()))
        response.headers["Via"] = VIA
        self._note_status(response.status, now)
        return response

    async def _handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Errors become responses here, so that they carry the bucket's headers as Discord's
        # do; the recorder's own handling of ApiError is then never reached for these.
        try:
            return await handler(request)
        except ApiError as error:
            return json_response(error.body, error.status)

    def _window(self, key: tuple[str, str], rule: BucketRule, now: float) -> _Window:
        window = self._windows.get(key)
        if window is None or now >= window.opened + rule.per_s:
            window = self._windows[key] = _Window(now)
        return window

    def _headers(self, rule: BucketRule, window: _Window, now: float) -> dict[str, str]:
        """[docs] "Header Format"; [spec] components.headers."""
        reset_after = max(0.0, window.opened + rule.per_s - now)
        return {
            "X-RateLimit-Limit": str(rule.limit),
            "X-RateLimit-Remaining": str(max(0, rule.limit - window.used)),
            "X-RateLimit-Reset": f"{self.wall_clock() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": rule.hash,
        }

    def _route_429(
        self, method: str, path: str, rule: BucketRule, window: _Window, now: float
    ) -> web.Response:
        """[docs] "Example Exceeded User Rate Limit Response": the route's headers, scope
        ``user``, ``Retry-After`` in whole seconds, and the body's exact ``retry_after``."""
        headers = self._headers(rule, window, now)
        retry_after = float(headers["X-RateLimit-Reset-After"])
        self.events.append(RateLimitEvent(method, path, "user", retry_after))
        body = {"message": "You are being rate limited.", "retry_after": retry_after}
        return json_response(
            body | {"global": False},
            429,
            headers
            | {
                "X-RateLimit-Scope": "user",
                "Retry-After": str(math.ceil(retry_after)),
                "Via": VIA,
            },
        )

    def _admit_global(self, method: str, path: str, now: float) -> web.Response | None:
        if path.startswith(_GLOBAL_EXEMPT):
            return None  # [docs] interaction endpoints are exempt
        window = self._global
        if window is None or now >= window.opened + GLOBAL_PER_S:
            window = self._global = _Window(now)
        if window.used < self.global_limit:
            window.used += 1
            return None
        retry_after = round(window.opened + GLOBAL_PER_S - now, 3)
        self.events.append(RateLimitEvent(method, path, "global", retry_after))
        # [docs] "Example Exceeded Global Rate Limit Response": no bucket headers.
        return json_response(
            {"message": "You are being rate limited.", "retry_after": retry_after, "global": True},
            429,
            {
                "Retry-After": str(math.ceil(retry_after)),
                "X-RateLimit-Global": "true",
                "X-RateLimit-Scope": "global",
                "Via": VIA,
            },
        )

    def _note_status(self, status: int, now: float) -> None:
        """[docs] "Invalid Request Limit": 401, 403 and 429 count (no 429 here is ``shared``)."""
        if status not in (401, 403, 429):
            return
        invalid = self._invalid
        invalid.append(now)
        while invalid and invalid[0] <= now - INVALID_WINDOW_S:
            invalid.popleft()
        if len(invalid) >= self.invalid_limit:
            self._banned_until = now + EDGE_BAN_S

    def _edge_ban(self, method: str, path: str, now: float) -> web.Response:
        """The edge's refusal: a text body and no ``Via`` [dpy]; Cloudflare's error 1015
        ("You are being rate limited") is what such a ban shows."""
        retry_after = self._banned_until - now
        self.events.append(RateLimitEvent(method, path, "edge", retry_after))
        return web.Response(
            status=429,
            text="error code: 1015",
            headers={"Retry-After": str(math.ceil(retry_after))},
        )


def _major(match_info: Mapping[str, str]) -> str:
    """[docs] top-level resources: channel, guild, or webhook id + token."""
    for keys in (("channel",), ("guild",), ("app", "token"), ("webhook", "token")):
        if all(k in match_info for k in keys):
            return "+".join(match_info[k] for k in keys)
    return ""


def describe(events: list[RateLimitEvent]) -> str:
    """The 429s as one line per event, for assertion messages."""
    return json.dumps([e.__dict__ for e in events], indent=1)
