"""What both provider stand-ins share: a loopback server, fault injection, counters, media."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import io
import json
import math
import struct
import wave
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from aiohttp import BodyPartReader, hdrs, web
from aiohttp.multipart import content_disposition_filename, parse_content_disposition

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: A body that claims to be JSON and is not: the cut-off answer of a crashing proxy.
MALFORMED_JSON = b'{"success": true, "item": {"uuid": "'


@dataclass
class Fault:
    """One scripted misbehaviour of a route, for the next `times` requests (None: forever)."""

    kind: str  # "status", "hang" or "malformed"
    times: int | None = 1
    status: int = 500
    body: Any = None
    headers: Mapping[str, str] | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class Call:
    """One request the stand-in answered."""

    route: str
    method: str
    path: str
    status: int


@dataclass(frozen=True)
class ReceivedFile:
    """An uploaded file part: hashed and measured as it streamed in; only its head is kept."""

    filename: str | None
    content_type: str | None
    size: int
    sha256: str
    #: The first bytes (enough to sniff the format and read a WAV header).
    head: bytes


class StandIn:
    """A loopback aiohttp server with scripted faults; subclasses add the provider's routes."""

    routes: frozenset[str] = frozenset()
    #: The path prefix of the provider's base URL ("/v5", "/api/v2").
    prefix = ""

    def __init__(self) -> None:
        self.app = web.Application(middlewares=[self._record])
        self.url = ""
        #: Requests that reached each route, counted on arrival (a hung one counts too).
        self.received: collections.Counter[str] = collections.Counter()
        #: Requests answered, in order.
        self.calls: list[Call] = []
        self.uploaded_sha256s: list[str] = []
        self._faults: dict[str, list[Fault]] = {}
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def submissions(self) -> int:
        """Uploads received (counted on arrival, so hung ones count too)."""
        return self.received["submit"]

    @property
    def status_polls(self) -> int:
        """Status requests received."""
        return self.received["status"]

    async def start(self) -> Self:
        """Listen on 127.0.0.1 on a free port; `.url` is then the provider's base URL."""
        self._closing = asyncio.Event()
        # Handlers are cancelled when the client goes away, so hangs end with the test.
        self._runner = web.AppRunner(
            self.app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}{self.prefix}"
        return self

    async def close(self) -> None:
        """Release hanging handlers and stop listening."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- fault injection ---------------------------------------------------------------

    def fail_next(
        self,
        route: str,
        status: int,
        times: int | None = 1,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next `times` requests to `route` with `status` (None: every one).

        `body` (JSON-serialisable, or bytes sent as-is) defaults to the provider's own error
        shape for that status.
        """
        self._add(route, Fault("status", times, status=status, body=body, headers=headers))

    def hang(self, route: str, times: int | None = 1, seconds: float | None = None) -> None:
        """Hold the next requests to `route` for `seconds` (default: until the client leaves)."""
        self._add(route, Fault("hang", times, seconds=seconds))

    def malformed(self, route: str, times: int | None = 1, body: bytes = MALFORMED_JSON) -> None:
        """Answer the next requests to `route` with 200 and a body that is not valid JSON."""
        self._add(route, Fault("malformed", times, body=body))

    def clear_faults(self) -> None:
        self._faults.clear()

    def _add(self, route: str, fault: Fault) -> None:
        if route not in self.routes:
            raise ValueError(f"unknown route {route!r}; this stand-in has {sorted(self.routes)}")
        self._faults.setdefault(route, []).append(fault)

    async def injected(self, route: str) -> web.StreamResponse | None:
        """The scripted answer for this request to `route`, if a fault is armed."""
        queue = self._faults.get(route)
        if not queue:
            return None
        fault = queue[0]
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
        if fault.kind == "hang":
            await self.pause(fault.seconds if fault.seconds is not None else 3600.0)
            return None
        if fault.kind == "malformed":
            return web.Response(body=fault.body, content_type="application/json")
        body = fault.body if fault.body is not None else self.error_body(fault.status)
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return web.Response(
            status=fault.status,
            body=raw,
            content_type="application/json",
            headers=dict(fault.headers or {}),
        )

    def error_body(self, status: int) -> Any:
        """The provider's error body for `status` (overridden per provider)."""
        return {"message": f"HTTP {status}"}

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake when the stand-in closes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    # -- recording ---------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.name or "unknown"
        self.received[route] += 1
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.calls.append(Call(route, request.method, request.path, exc.status))
            raise
        self.calls.append(Call(route, request.method, request.path, response.status))
        return response

    async def read_upload(self, request: web.Request) -> tuple[dict[str, str], ReceivedFile | None]:
        """The multipart form: text fields and the `file` part (None if absent)."""
        fields: dict[str, str] = {}
        upload: ReceivedFile | None = None
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            # What `part.name` and `part.filename` say, parsed once per distinct header.
            name, filename = _disposition(part.headers.get(hdrs.CONTENT_DISPOSITION))
            if name is None:
                continue
            if name == "file":
                upload = await _receive(part, filename)
                self.uploaded_sha256s.append(upload.sha256)
            else:
                fields[name] = await part.text()
        return fields, upload


def media_type(request: web.Request) -> str:
    """`request.content_type` (the media type, lower case, without parameters), computed as
    aiohttp computes it but without its e-mail header parser.

    aiohttp caches that parse by the header's value, and a multipart upload's Content-Type
    is new every time (its boundary is random): ~0.25 ms of the stand-in's CPU per upload,
    which the benchmarks count against the machine the bot runs on.
    """
    raw = request.headers.get(hdrs.CONTENT_TYPE)
    if raw is None:
        return "application/octet-stream"
    value, _, _ = raw.lower().partition(";")
    value = value.strip()
    return value if value.count("/") == 1 else "application/octet-stream"


@functools.lru_cache(maxsize=256)
def _disposition(header: str | None) -> tuple[str | None, str | None]:
    """(name, filename) of a part's Content-Disposition, as `BodyPartReader.name` and
    `.filename` give them. Cached: aiohttp's parser costs ~60 µs a call (it escapes its
    whole character table each time), and every upload repeats the same few headers."""
    _, params = parse_content_disposition(header)
    return content_disposition_filename(params, "name"), content_disposition_filename(
        params, "filename"
    )


#: Bytes of each upload kept in `ReceivedFile.head`: sniffing and a WAV header need far less.
HEAD_BYTES = 64 * 1024
#: Bytes per read of an upload part (aiohttp's default, 8 KiB, made a WAV upload cost ~70
#: boundary scans; fewer, larger reads cost the stand-in less Python per upload).
_UPLOAD_READ = 256 * 1024


async def _receive(part: BodyPartReader, filename: str | None) -> ReceivedFile:
    digest = hashlib.sha256()
    size = 0
    head = b""
    while chunk := await part.read_chunk(_UPLOAD_READ):
        digest.update(chunk)
        size += len(chunk)
        if len(head) < HEAD_BYTES:
            # Slicing a whole bytes object returns it as is: no copy in the usual case.
            head = head + chunk[: HEAD_BYTES - len(head)] if head else chunk[:HEAD_BYTES]
    return ReceivedFile(
        filename, part.headers.get(hdrs.CONTENT_TYPE), size, digest.hexdigest(), head
    )


# --- media helpers -----------------------------------------------------------------------


def sha256_of(value: bytes | str | Path) -> str:
    """sha256 of bytes or of a file; a 64-hex string is taken as a digest already."""
    if isinstance(value, Path):
        return hashlib.sha256(value.read_bytes()).hexdigest()
    if isinstance(value, str):
        return value.lower()
    return hashlib.sha256(value).hexdigest()


def sniff(data: bytes) -> str | None:
    """Which documented BS format the bytes look like: "wav", "mp3", or None."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:3] == b"ID3":
        return "mp3"
    # An MPEG audio frame header: 11 sync bits, then a valid layer.
    if len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0 and data[1] & 0x06:
        return "mp3"
    return None


def wav_duration(data: bytes) -> float | None:
    """Seconds of audio in a WAV file, or None when it is not one Python can read."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            return wav.getnframes() / float(wav.getframerate())
    except (wave.Error, EOFError, struct.error, ZeroDivisionError):
        return None


def write_wav(
    path: Path, seconds: float = 1.0, *, rate: int = 16_000, tone_hz: float = 440.0
) -> Path:
    """A mono 16-bit WAV of a quiet tone (the stand-ins only need real WAV bytes)."""
    frames = int(seconds * rate)
    samples = (int(3000 * math.sin(2 * math.pi * tone_hz * n / rate)) for n in range(frames))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return path
