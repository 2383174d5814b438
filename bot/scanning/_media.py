"""The media stages, fetch → probe → prepare, as one object the scan service is given.

`MediaSteps` is all the service asks of media; `MediaTools` does it with `bot.media` (the
download under a byte cap, the probe and the WAV conversion in worker processes with a time
limit). A test that is about the lifecycle, not the media, can pass a fake instead.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Protocol

import aiohttp

from bot import media
from bot.errors import InternalError
from bot.scanning._request import MediaSource


class MediaSteps(Protocol):
    """What the scan service needs done to a file before a provider can have it."""

    async def fetch(
        self, source: MediaSource, workdir: Path, *, max_bytes: int
    ) -> media.Downloaded:
        """*fetch*: the bytes on disk (in `workdir` unless already local), sized and hashed."""
        ...

    async def probe(self, fetched: media.Downloaded) -> media.MediaProbe:
        """*probe*: what the bytes really are (container, streams, length)."""
        ...

    async def to_wav(
        self, src: Path, dst: Path, *, probe: media.MediaProbe, max_duration_s: float
    ) -> None:
        """*prepare*: `src`'s sound as 16 kHz mono WAV at `dst`, for a provider that needs it."""
        ...


class MediaTools:
    """The media stages done by `bot.media`: untrusted bytes are decoded only outside this
    process, each tool run under `timeout_s`."""

    def __init__(
        self,
        http_session: aiohttp.ClientSession,
        *,
        allowed_hosts: tuple[str, ...],
        timeout_s: float,
        download_timeout_s: float = 300.0,
        transcoder: media.Transcoder | None = None,
    ) -> None:
        self._http = http_session
        self._allowed_hosts = allowed_hosts
        self._timeout_s = timeout_s
        self._download_timeout_s = download_timeout_s
        self._transcoder = transcoder or media.Transcoder()
        #: Probes and conversions at once: many scans may wait on providers together, but
        #: no more media tools than two per CPU compete for the cores (and memory).
        self._slots = asyncio.Semaphore(2 * (os.cpu_count() or 1))

    async def fetch(
        self, source: MediaSource, workdir: Path, *, max_bytes: int
    ) -> media.Downloaded:
        if source.path is not None:
            size, sha256 = await media.hash_file(source.path, max_bytes=max_bytes)
            return media.Downloaded(path=source.path, size=size, sha256=sha256)
        if source.url is None:
            raise InternalError("a scan needs a URL or a file")
        return await media.download(
            self._http,
            source.url,
            workdir / "media",
            max_bytes=max_bytes,
            allowed_hosts=self._allowed_hosts,
            timeout_s=self._download_timeout_s,
        )

    async def probe(self, fetched: media.Downloaded) -> media.MediaProbe:
        async with self._slots:
            return await self._transcoder.probe(
                fetched.path, timeout_s=self._timeout_s, look=fetched.look
            )

    async def to_wav(
        self, src: Path, dst: Path, *, probe: media.MediaProbe, max_duration_s: float
    ) -> None:
        async with self._slots:
            await self._transcoder.to_wav(
                src, dst, probe=probe, timeout_s=self._timeout_s, max_duration_s=max_duration_s
            )
