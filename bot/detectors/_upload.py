"""Upload bodies: a file streamed from disk as one multipart field, in reads sized to memory."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import aiohttp
import aiohttp.payload
from aiohttp.abc import AbstractStreamWriter


@dataclass(frozen=True, slots=True)
class FilePart:
    """A file to stream from disk as one multipart field."""

    field: str
    path: Path
    filename: str
    content_type: str | None = None
    #: Called when the whole file has been written to the connection.
    on_sent: Callable[[], None] | None = None


#: Reads of an upload file: at most aiohttp's own read size (what uploads used before)...
UPLOAD_CHUNK_MAX = 256 * 1024
#: ...at least this: smaller reads cost more thread hops (and CPU) than they save memory...
UPLOAD_CHUNK_MIN = 64 * 1024
#: ...and about this much over all uploads streaming at once. Every read is a new bytes
#: object held until the socket has taken it, so read size × uploads in flight is memory:
#: with 64 uploads at once (the connection pool's cap per host) in 256 KiB reads, the
#: process peaked some 17 MiB higher than in 64 KiB reads (bench/sdk_compare, every file
#: in flight), for the same wall time. A few uploads at a time (the bot's usual case)
#: still get the large reads, and with them the fewest hops.
UPLOAD_READ_BUDGET = 4 * 1024 * 1024


def upload_chunk(streaming: int) -> int:
    """Bytes per read when `streaming` uploads are being sent: a power of two within the
    bounds, so that together they stay near `UPLOAD_READ_BUDGET`."""
    share = UPLOAD_READ_BUDGET // max(1, streaming)
    return max(UPLOAD_CHUNK_MIN, min(UPLOAD_CHUNK_MAX, 1 << (share.bit_length() - 1)))


class FilePayload(aiohttp.payload.Payload):
    """An open file streamed as a body part, read on worker threads in `upload_chunk` steps.

    Its size is known up front, so the request keeps its Content-Length (no chunked
    encoding). It reads from where the file is and never closes it: `multipart_body` owns it.
    """

    _autoclose = True  # nothing to close here: the caller closes the file
    #: Uploads of this process sending their file right now.
    streaming = 0

    def __init__(
        self,
        handle: BinaryIO,
        size: int,
        *,
        filename: str,
        content_type: str | None,
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(handle, content_type=content_type, filename=filename)
        self._size = self._length = size
        self._on_sent = on_sent

    async def write(self, writer: AbstractStreamWriter) -> None:
        loop = asyncio.get_running_loop()
        remaining = self._length
        FilePayload.streaming += 1
        try:
            while remaining > 0:
                step = min(upload_chunk(FilePayload.streaming), remaining)
                chunk = await loop.run_in_executor(None, self._value.read, step)
                if not chunk:
                    # The file shrank under us: the Content-Length sent is now a lie, so
                    # fail the request rather than let the service wait for the rest.
                    raise aiohttp.ClientPayloadError("the upload file shrank while being sent")
                remaining -= len(chunk)
                await writer.write(chunk)
        finally:
            FilePayload.streaming -= 1
        if self._on_sent is not None:
            self._on_sent()

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("an upload file is streamed, never decoded")


@contextlib.asynccontextmanager
async def multipart_body(
    fields: Mapping[str, str] | None, file: FilePart | None
) -> AsyncIterator[aiohttp.FormData | None]:
    """A fresh multipart body per attempt; the file is re-opened each time and streamed."""
    if fields is None and file is None:
        yield None
        return
    form = aiohttp.FormData()
    handle = None
    try:
        if file is not None:
            # Opened and read on worker threads, so the loop never blocks on the disk, and
            # in bounded reads (`FilePayload`), so the upload never sits in memory.
            handle, size = await asyncio.to_thread(_open_sized, file.path)
            form.add_field(
                file.field,
                FilePayload(
                    handle,
                    size,
                    filename=file.filename,
                    content_type=file.content_type,
                    on_sent=file.on_sent,
                ),
                filename=file.filename,
            )
        for key, value in (fields or {}).items():
            form.add_field(key, value)
        yield form
    finally:
        if handle is not None:
            handle.close()


def _open_sized(path: Path) -> tuple[BinaryIO, int]:
    handle = path.open("rb")
    try:
        return handle, os.fstat(handle.fileno()).st_size
    except BaseException:
        handle.close()
        raise
