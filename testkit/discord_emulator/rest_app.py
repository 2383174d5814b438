"""The HTTP plumbing: request recording, fault injection, auth, JSON errors, unknown routes.

discord.py only parses a body as JSON when Content-Type is exactly ``application/json``, so every
JSON response here sets that header by hand (aiohttp's helpers would append a charset).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from .models import UploadedFile

if TYPE_CHECKING:
    from .cdn import Cdn
    from .gateway import Gateway
    from .interactions import InteractionHandle
    from .state import World

log = logging.getLogger(__name__)
JSON = dict[str, Any]
API_PREFIX = re.compile(r"^/api/v(9|10)")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BODY_KEY = web.RequestKey("discord_emulator_body", object)
FILES_KEY = web.RequestKey("discord_emulator_files", list)

DEFAULT_ERRORS: dict[int, JSON] = {
    400: {"code": 50035, "message": "Invalid Form Body", "errors": {}},
    401: {"code": 0, "message": "401: Unauthorized"},
    403: {"code": 50013, "message": "Missing Permissions"},
    404: {"code": 10008, "message": "Unknown Message"},
    405: {"code": 0, "message": "405: Method Not Allowed"},
    500: {"code": 0, "message": "500: Internal Server Error"},
    502: {"code": 0, "message": "502: Bad Gateway"},
    503: {"code": 0, "message": "503: Service Unavailable"},
}


class ApiError(Exception):
    """Raised by a route to answer with Discord's error JSON."""

    def __init__(self, status: int, code: int, message: str, errors: JSON | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body: JSON = {"code": code, "message": message}
        if errors is not None:
            self.body["errors"] = errors

    @classmethod
    def body_error(cls, status: int, body: JSON) -> ApiError:
        error = cls(status, body.get("code", 0), body.get("message", ""))
        error.body = body
        return error


def missing_permissions() -> ApiError:
    return ApiError(403, 50013, "Missing Permissions")


def missing_access() -> ApiError:
    return ApiError(403, 50001, "Missing Access")


def unknown(kind: str) -> ApiError:
    codes = {"Channel": 10003, "Guild": 10004, "Member": 10007, "Message": 10008, "User": 10013,
             "Webhook": 10015, "interaction": 10062, "Application": 10002}  # fmt: skip
    return ApiError(404, codes[kind], f"Unknown {kind}")


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response whose Content-Type is exactly ``application/json``."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def no_content() -> web.Response:
    return web.Response(status=204)


@dataclass
class RecordedRequest:
    """One REST request the bot made (``path`` is relative to /api/v10)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[UploadedFile]
    headers: dict[str, str]
    route: str = ""
    status: int = 0
    response: Any = None
    faulted: bool = False

    @property
    def audit_log_reason(self) -> str | None:
        reason = self.headers.get("X-Audit-Log-Reason")
        return None if reason is None else unquote(reason)


@dataclass
class FaultRule:
    """Answer the next ``times`` matching requests with an error instead of handling them."""

    method: str
    pattern: str | re.Pattern[str]
    status: int
    times: int
    body: JSON
    headers: dict[str, str] = field(default_factory=dict)
    hits: int = 0

    @property
    def exhausted(self) -> bool:
        return self.hits >= self.times

    def matches(self, method: str, path: str) -> bool:
        if self.exhausted or self.method.upper() not in (method, "*"):
            return False
        if isinstance(self.pattern, re.Pattern):
            return self.pattern.search(path) is not None
        return fnmatch.fnmatchcase(path, self.pattern)


def make_fault(
    method: str,
    pattern: str | re.Pattern[str],
    status: int,
    *,
    times: int = 1,
    json: JSON | None = None,
    retry_after: float | None = None,
    global_: bool = False,
    scope: str = "user",
) -> FaultRule:
    """Build a rule with Discord's body and headers for the status (429s get rate-limit headers)."""
    headers: dict[str, str] = {}
    if status == 429:
        retry_after = 0.05 if retry_after is None else retry_after
        body = json or {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": global_,
        }
        bucket = hashlib.sha1(f"{method}{pattern}".encode()).hexdigest()[:16]
        headers = {
            "Retry-After": str(math.ceil(retry_after)),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Scope": "global" if global_ else scope,
            # discord.py treats a 429 without Via as a Cloudflare ban, not a rate limit.
            "Via": "1.1 google",
        }
        if global_:
            headers["X-RateLimit-Global"] = "true"
    else:
        body = json or DEFAULT_ERRORS.get(status, {"code": 0, "message": f"{status}: Error"})
    return FaultRule(method.upper(), pattern, status, times, body, headers)


async def read_body(request: web.Request) -> tuple[Any, list[UploadedFile]]:
    """JSON body, or multipart ``payload_json`` plus ``files[n]`` parts."""
    if request.content_type.startswith("multipart/"):
        payload: Any = None
        files: list[UploadedFile] = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            data = bytes(await part.read(decode=False))
            if part.name == "payload_json":
                payload = json.loads(data)
            elif part.filename is not None:
                ctype = part.headers.get("Content-Type", "application/octet-stream")
                files.append(UploadedFile(part.name or "", part.filename, ctype, data))
        return payload, files
    raw = await request.read()
    if not raw:
        return None, []
    try:
        return json.loads(raw), []
    except ValueError:
        return raw.decode(errors="replace"), []


class RestRecorder:
    """Middleware state: every request, the fault rules, and routes nobody implemented."""

    def __init__(self, token: str, notify: Callable[[], None]) -> None:
        self.token = token
        self.notify = notify
        self.requests: list[RecordedRequest] = []
        self.faults: list[FaultRule] = []
        self.unhandled: list[RecordedRequest] = []

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        match = API_PREFIX.match(request.path)
        if match is None:  # CDN and gateway: not recorded here, but faults apply
            return await self._faulted(request.method, request.path) or await handler(request)
        path = request.path[match.end() :] or "/"
        body, files = await read_body(request)
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("x-")}
        if "Authorization" in request.headers:
            headers["Authorization"] = "<redacted>"
        record = RecordedRequest(request.method, path, dict(request.query), body, files, headers)
        resource = request.match_info.route.resource
        record.route = resource.canonical if resource is not None else ""
        request[BODY_KEY] = body
        request[FILES_KEY] = files
        self.requests.append(record)
        response = await self._respond(request, handler, record, path)
        record.status = response.status
        if (
            isinstance(response, web.Response)
            and response.body
            and response.content_type == "application/json"
        ):
            record.response = json.loads(response.body)  # type: ignore[arg-type]
        self.notify()
        return response

    async def _respond(
        self, request: web.Request, handler: Handler, record: RecordedRequest, path: str
    ) -> web.StreamResponse:
        faulted = await self._faulted(request.method, path)
        if faulted is not None:
            record.faulted = True
            return faulted
        public = path.startswith(("/webhooks/", "/interactions/")) or path in ("/gateway",)
        if not public and request.headers.get("Authorization") != f"Bot {self.token}":
            return json_response(DEFAULT_ERRORS[401], 401)
        try:
            return await handler(request)
        except ApiError as error:
            return json_response(error.body, error.status)
        except web.HTTPNotFound:
            log.warning("discord emulator: no route for %s %s", request.method, path)
            self.unhandled.append(record)
            return json_response({"code": 0, "message": "404: Not Found"}, 404)
        except web.HTTPMethodNotAllowed:
            log.warning("discord emulator: method not allowed %s %s", request.method, path)
            self.unhandled.append(record)
            return json_response(DEFAULT_ERRORS[405], 405)

    async def _faulted(self, method: str, path: str) -> web.Response | None:
        for rule in self.faults:
            if rule.matches(method, path):
                rule.hits += 1
                self.notify()
                return json_response(rule.body, rule.status, rule.headers)
        return None


@dataclass
class Backend:
    """What the route modules share: the world, the CDN, the gateway and open interactions."""

    world: World
    cdn: Cdn
    gateway: Gateway
    interactions: dict[int, InteractionHandle] = field(default_factory=dict)
    base_url: str = ""
    gateway_url: str = ""
    #: The first response is due within 3 s, the token then lives 15 minutes (docs:
    #: interactions/receiving-and-responding.mdx, "Responding to an Interaction").
    interaction_ack_deadline: float | None = 3.0
    interaction_token_lifetime: float = 15 * 60
    #: Bodies refused by validation.py (each Discord's 400 body plus the route).
    refusals: list[JSON] = field(default_factory=list)
    closed_dms: set[int] = field(default_factory=set)

    def body(self, request: web.Request) -> JSON:
        body = request.get(BODY_KEY)
        return body if isinstance(body, dict) else {}

    def raw_body(self, request: web.Request) -> Any:
        return request.get(BODY_KEY)

    def files(self, request: web.Request) -> list[UploadedFile]:
        return list(request.get(FILES_KEY) or [])

    def snowflake(self, request: web.Request, key: str) -> int:
        """A snowflake path parameter; 400 "is not snowflake" like Discord otherwise."""
        raw = request.match_info[key]
        if not raw.isdigit():
            error = {"code": "NUMBER_TYPE_COERCE", "message": f'Value "{raw}" is not snowflake.'}
            raise ApiError(400, 50035, "Invalid Form Body", {key: {"_errors": [error]}})
        return int(raw)
