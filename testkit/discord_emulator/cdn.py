"""The CDN: attachment files streamed from disk behind signed-looking URLs.

URLs look like Discord's (``/attachments/{channel}/{id}/{filename}?ex=..&is=..&hm=..``) and the
signature is checked, so a bot that rewrites or truncates an attachment URL gets a 404 as it
would from Discord. Deleting the message makes its attachments 404 too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import secrets
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from aiohttp import hdrs, web

from .models import Attachment, Channel
from .state import World

URL_LIFETIME_SECS = 24 * 3600
#: Files up to this size are answered from one read when nothing asks for more than plain
#: bytes (see `Cdn._small_file`); everything else goes through aiohttp's FileResponse.
SMALL_FILE_BYTES = 1024 * 1024
#: Request headers that only FileResponse answers: ranges, conditions, and encodings for
#: which it would look for a pre-compressed copy next to the file.
_FILE_RESPONSE_HEADERS = (
    hdrs.RANGE,
    hdrs.IF_RANGE,
    hdrs.IF_MATCH,
    hdrs.IF_NONE_MATCH,
    hdrs.IF_MODIFIED_SINCE,
    hdrs.IF_UNMODIFIED_SINCE,
)


@dataclass(frozen=True)
class CdnRequest:
    """One request to the CDN (the bot should never send its token here)."""

    method: str
    path: str
    attachment_id: int | None
    status: int
    had_authorization: bool


class Cdn:
    """Creates attachments and serves their bytes."""

    def __init__(self, world: World, notify: Callable[[], None]) -> None:
        self.world = world
        self.notify = notify
        self.base_url = ""
        self.requests: list[CdnRequest] = []
        self._secret = secrets.token_bytes(16)
        self._tmp = tempfile.TemporaryDirectory(prefix="discord-emulator-cdn-")

    def close(self) -> None:
        self._tmp.cleanup()

    def create(
        self,
        source: bytes | str | Path,
        filename: str | None = None,
        content_type: str | None = None,
        *,
        voice: bool = False,
        duration_secs: float | None = None,
        waveform: bytes | str | None = None,
        size: int | None = None,
        width: int | None = None,
        height: int | None = None,
        description: str | None = None,
        title: str | None = None,
        spoiler: bool = False,
    ) -> Attachment:
        """Register a file; bytes are written to a temp file, paths are served in place."""
        attachment_id = self.world.snowflakes.next()
        if isinstance(source, bytes):
            path = Path(self._tmp.name) / str(attachment_id)
            path.write_bytes(source)
        else:
            path = Path(source)
        if filename is None:
            filename = "voice-message.ogg" if voice else path.name
        if voice:
            content_type = content_type or "audio/ogg"
            duration_secs = 1.0 if duration_secs is None else duration_secs
            waveform = waveform if waveform is not None else bytes(range(0, 256, 4))
        if isinstance(waveform, bytes):
            waveform = base64.b64encode(waveform).decode()
        if spoiler and not filename.startswith("SPOILER_"):
            filename = f"SPOILER_{filename}"
        attachment = Attachment(
            id=attachment_id,
            filename=filename,
            content_type=content_type,
            path=path,
            size=path.stat().st_size if size is None else size,
            duration_secs=duration_secs,
            waveform=waveform,
            width=width,
            height=height,
            description=description,
            title=title,
            flags=8 if spoiler else 0,
        )
        self.world.attachments[attachment.id] = attachment
        return attachment

    def bind(self, attachment: Attachment, channel: Channel) -> None:
        """Give an attachment its channel URL (done when it is first posted)."""
        self._sign(
            attachment, f"/attachments/{channel.id}/{attachment.id}/{quote(attachment.filename)}"
        )

    def bind_ephemeral(self, attachment: Attachment) -> None:
        """URL for a slash-command attachment option (not posted in any channel)."""
        attachment.ephemeral = True
        app_id, name = self.world.application_id, quote(attachment.filename)
        path = f"/ephemeral-attachments/{app_id}/{attachment.id}/{name}"
        self._sign(attachment, path)

    def downloads(self, attachment: Attachment) -> int:
        """How many GETs of this attachment's bytes were served."""
        return attachment.downloads

    def routes(self) -> list[web.RouteDef]:
        handler = self.serve
        return [
            web.route("GET", "/attachments/{channel}/{id}/{filename}", handler),
            web.route("GET", "/ephemeral-attachments/{app}/{id}/{filename}", handler),
            web.route("GET", "/media/attachments/{channel}/{id}/{filename}", handler),
            web.route("GET", "/media/ephemeral-attachments/{app}/{id}/{filename}", handler),
        ]  # aiohttp answers HEAD on GET routes

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """Stream the file (Range and HEAD handled by aiohttp's FileResponse)."""
        attachment = (
            self.world.attachments.get(int(request.match_info["id"]))
            if request.match_info["id"].isdigit()
            else None
        )
        status = 200 if attachment is not None and self._valid(request, attachment) else 404
        if attachment is not None and status == 200:
            message = self.world.messages.get(attachment.message_id or 0)
            if message is not None and message.deleted:
                status = 404
        self.requests.append(
            CdnRequest(
                request.method,
                request.path,
                attachment.id if attachment else None,
                status,
                "Authorization" in request.headers,
            )
        )
        if status != 200 or attachment is None:
            self.notify()
            return web.Response(status=404, text="This content is no longer available.")
        if request.method == "HEAD":
            attachment.head_requests += 1
        else:
            attachment.downloads += 1
        self.notify()
        headers = {"Content-Type": attachment.content_type or "application/octet-stream"}
        return _small_file(request, attachment.path, headers) or web.FileResponse(
            attachment.path, headers=headers
        )

    def _sign(self, attachment: Attachment, path: str) -> None:
        issued = int(time.time())
        expires = issued + URL_LIFETIME_SECS
        query = f"ex={expires:x}&is={issued:x}&hm={self._digest(attachment.id, expires, issued)}&"
        attachment.url = f"{self.base_url}{path}?{query}"
        attachment.proxy_url = f"{self.base_url}/media{path}?{query}"

    def _valid(self, request: web.Request, attachment: Attachment) -> bool:
        try:
            expires = int(request.query["ex"], 16)
            issued = int(request.query["is"], 16)
        except (KeyError, ValueError):
            return False
        if expires < math.floor(time.time()):
            return False
        expected = self._digest(attachment.id, expires, issued)
        filename_ok = request.match_info["filename"] == attachment.filename
        return filename_ok and hmac.compare_digest(request.query.get("hm", ""), expected)

    def _digest(self, attachment_id: int, expires: int, issued: int) -> str:
        msg = f"{attachment_id}:{expires}:{issued}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()


def _small_file(request: web.Request, path: Path, headers: dict[str, str]) -> web.Response | None:
    """The answer FileResponse would give to a plain GET of a small regular file, from one
    read; None when FileResponse must answer (HEAD, ranges, conditional requests, a client
    accepting compressed encodings, a missing or large or special file).

    FileResponse opens and closes the file on worker threads (two thread hand-offs per
    download), which cost the benchmarks' shared CPU more than the read itself: a voice
    message is tens of KiB in the page cache, read here in tens of microseconds. The
    headers are FileResponse's: ETag, Last-Modified, Accept-Ranges, Content-Length.
    """
    if request.method != "GET" or any(name in request.headers for name in _FILE_RESPONSE_HEADERS):
        return None
    accept = request.headers.get(hdrs.ACCEPT_ENCODING, "").lower()
    if any(encoding in accept for encoding in ("gzip", "br", "zstd")):
        return None
    try:
        with path.open("rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > SMALL_FILE_BYTES:
                return None
            body = fh.read(SMALL_FILE_BYTES + 1)
    except OSError:
        return None  # FileResponse answers 403/404 as it always did
    if len(body) != info.st_size:
        return None  # changing under us: let FileResponse deal with it
    response = web.Response(body=body, headers=headers)
    response.etag = f"{info.st_mtime_ns:x}-{info.st_size:x}"
    response.last_modified = info.st_mtime
    response.headers[hdrs.ACCEPT_RANGES] = "bytes"
    return response
