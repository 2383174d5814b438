"""Getting the bytes: stream an attachment to disk under a byte cap, hashing on the way."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
from yarl import URL

from bot.errors import DisallowedHost, DownloadFailed, EmptyMedia, MediaTooLarge
from bot.media import _probe
from bot.settings import is_loopback_host

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
# Chunks are gathered to about this much before one write+hash in a worker thread: small
# enough to bound memory, large enough that the thread hop costs nothing.
_FLUSH = 1024 * 1024
_MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_GONE = frozenset({403, 404, 410})


@dataclass(frozen=True, slots=True)
class Downloaded:
    """A file fetched to disk: where it is, how many bytes, and their SHA-256 (hex)."""

    path: Path
    size: int
    sha256: str
    #: The probe's first look at the file, known from the download (so the probe needs no
    #: thread hop to look; not part of what was downloaded: two downloads of the same
    #: bytes are equal).
    look: _probe.FirstLook | None = field(default=None, compare=False)


async def download(
    http_session: aiohttp.ClientSession,
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    allowed_hosts: Collection[str],
    timeout_s: float = 120.0,
) -> Downloaded:
    """Stream `url` into `dest`, never holding the body in memory.

    The URL (and every redirect hop) must be https on one of `allowed_hosts`, or http on
    a loopback host, else `DisallowedHost` is raised before any connection is made. A body
    over `max_bytes`, by its Content-Length or while streaming, raises `MediaTooLarge`;
    403/404/410, other HTTP errors, connection errors and the `timeout_s` deadline raise
    `DownloadFailed`; an empty body raises `EmptyMedia`. On any failure `dest` is removed.
    """
    allowed = frozenset(h.strip().lower().rstrip(".") for h in allowed_hosts)
    target = _checked_url(url, allowed)
    try:
        async with asyncio.timeout(timeout_s):
            for _hop in range(_MAX_REDIRECTS + 1):
                async with http_session.get(
                    target,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=timeout_s),
                    # Sizes are only honest without transfer compression; it also keeps a
                    # small gzip bomb from unpacking past the cap before we count it.
                    headers={"Accept-Encoding": "identity"},
                ) as response:
                    if response.status in _REDIRECTS:
                        target = _next_hop(target, response, allowed)
                        continue
                    result = await _save(response, dest, max_bytes=max_bytes)
                    log.info(
                        "downloaded %d bytes from %s (sha256 %s)",
                        result.size,
                        _loggable(target),
                        result.sha256[:12],
                    )
                    return result
            raise DownloadFailed("The file host redirected too many times.")
    except TimeoutError as exc:
        _remove(dest)
        raise DownloadFailed(
            f"Downloading the file took longer than {timeout_s:g} s and was stopped."
        ) from exc
    except aiohttp.ClientError as exc:
        _remove(dest)
        log.info("download from %s failed: %r", _loggable(target), exc)
        raise DownloadFailed("The file could not be downloaded (connection failed).") from exc
    except BaseException:
        _remove(dest)
        raise


async def hash_file(path: Path, *, max_bytes: int | None = None) -> tuple[int, str]:
    """Return `(size, sha256 hex)` of a local file, read in chunks in a worker thread.

    Raises `MediaTooLarge` when the file is over `max_bytes` (checked before reading, and
    again while reading in case it grows) and `EmptyMedia` when it is 0 bytes.
    """
    return await asyncio.to_thread(_hash_file, path, max_bytes)


def _hash_file(path: Path, max_bytes: int | None) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        if max_bytes is not None and (stated := os.fstat(fh.fileno()).st_size) > max_bytes:
            raise MediaTooLarge(stated, max_bytes)
        while chunk := fh.read(_FLUSH):
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise MediaTooLarge(size, max_bytes)
            digest.update(chunk)
    if size == 0:
        raise EmptyMedia("The file is empty (0 bytes).")
    return size, digest.hexdigest()


async def _save(response: aiohttp.ClientResponse, dest: Path, *, max_bytes: int) -> Downloaded:
    if response.status in _GONE:
        raise DownloadFailed(
            f"The attachment is gone (HTTP {response.status}); it may have been deleted."
        )
    if response.status != 200:
        raise DownloadFailed(f"The file host answered HTTP {response.status}.")
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        # Refused on the header alone: not one byte of the body is read.
        raise MediaTooLarge(declared, max_bytes)

    sink = _Sink(dest)
    size = 0
    try:
        pending = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                # No or a lying Content-Length: stop now and drop the connection rather
                # than drain the rest of the body.
                response.close()
                raise MediaTooLarge(size, max_bytes)
            pending += chunk
            if len(pending) >= _FLUSH:
                await asyncio.to_thread(sink.write, bytes(pending))
                pending.clear()
        # A voice message arrives whole before the first flush: opened, written and closed
        # in this one hop to the thread pool.
        await asyncio.to_thread(sink.finish, bytes(pending))
    finally:
        if not sink.closed:
            await asyncio.to_thread(sink.close)
    if size == 0:
        raise EmptyMedia("The file is empty (0 bytes).")
    # A regular file of `size` bytes, written just now: what the probe would look at first.
    return Downloaded(path=dest, size=size, sha256=sink.digest.hexdigest(), look=(True, size))


class _Sink:
    """The file a download is written to, opened by its first write (in a worker thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digest = hashlib.sha256()
        self._fh: IO[bytes] | None = None
        self.closed = False

    def write(self, data: bytes) -> None:
        if self._fh is None:
            self._fh = self.path.open("wb")
        self._fh.write(data)
        self.digest.update(data)

    def finish(self, data: bytes) -> None:
        """The last write, then close."""
        self.write(data)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self._fh is not None:
            self._fh.close()


def _checked_url(raw: str, allowed: frozenset[str]) -> URL:
    """The URL if it may be fetched; `DisallowedHost` otherwise (nothing is connected)."""
    try:
        url = URL(raw)
    except (TypeError, ValueError) as exc:
        raise DisallowedHost("That is not a valid link to a file.") from exc
    host = (url.host or "").lower().rstrip(".")
    scheme = url.scheme.lower()
    if not host:
        raise DisallowedHost("That is not a valid link to a file.")
    # Plain http only ever to this machine (tests); anything else could be read or
    # rewritten on the way.
    if scheme != "https" and not (scheme == "http" and is_loopback_host(host)):
        raise DisallowedHost("Files are only downloaded over https.")
    if host not in allowed:
        raise DisallowedHost(f"Files are not downloaded from {host[:100]}.")
    return url


def _next_hop(current: URL, response: aiohttp.ClientResponse, allowed: frozenset[str]) -> URL:
    location = response.headers.get("Location")
    if not location:
        raise DownloadFailed("The file host sent a redirect without a target.")
    try:
        target = current.join(URL(location))
    except ValueError as exc:
        raise DownloadFailed("The file host sent an invalid redirect.") from exc
    log.debug("redirect %s → %s", _loggable(current), _loggable(target))
    # Each hop is held to the same rules as the first URL.
    return _checked_url(str(target), allowed)


def _loggable(url: URL) -> str:
    # Discord CDN URLs are signed in their query (ex/is/hm): whoever holds the full URL can
    # fetch the file until it expires, so the query never reaches the logs.
    return str(url.with_query(None).with_fragment(None))


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
