"""A structural check of OGG files, which ffmpeg reads without complaint when cut short."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, seq, crc, nsegs
#: Bytes read at a time: all of a typical voice message (tens of KiB) in one read, rather
#: than a seek and a read per page (~2 system calls a second of Opus at 32 kb/s).
_BLOCK = 256 * 1024


class _Blocks:
    """Reads a file forward in `_BLOCK`-sized pieces; `at` answers from the piece in hand."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._start = 0
        self._data = b""

    def at(self, offset: int, size: int) -> bytes:
        """The `size` bytes at `offset`, or fewer where the file ends."""
        rel = offset - self._start
        if rel < 0 or rel + size > len(self._data):
            self._fh.seek(offset)
            self._data = _read(self._fh, max(size, _BLOCK))
            self._start, rel = offset, 0
        return self._data[rel : rel + size]


def _read(fh: BinaryIO, size: int) -> bytes:
    """`size` bytes, fewer only at the end of the file (an unbuffered read may return less)."""
    data = fh.read(size) or b""
    while 0 < len(data) < size and (more := fh.read(size - len(data))):
        data += more
    return data


def _open(path: Path) -> tuple[BinaryIO, int]:
    """The file unbuffered (`_Blocks` reads in large pieces anyway) and its size."""
    fh = path.open("rb", buffering=0)
    try:
        return fh, os.fstat(fh.fileno()).st_size
    except BaseException:
        fh.close()
        raise


def ogg_cut_short(path: Path) -> bool:
    """True when the file's last OGG page runs past the end of the file.

    That is what an interrupted upload or download leaves. ffmpeg silently drops the
    partial page and reports the shortened duration, so a voice message cut in half would
    otherwise be scanned as if it were whole. Only page headers are read (blocking: call it
    in a worker thread). Anything that is not a page where one should start ends the walk
    without a verdict: resynchronising on damaged data is ffmpeg's job.
    """
    fh, size = _open(path)
    offset = 0
    with fh:
        blocks = _Blocks(fh)
        while offset < size:
            header = blocks.at(offset, _HEADER.size)
            if len(header) < _HEADER.size:
                return header == b"OggS"[: len(header)]
            capture, version, *_, segments = _HEADER.unpack(header)
            if capture != b"OggS" or version != 0:
                return False
            lacing = blocks.at(offset + _HEADER.size, segments)
            if len(lacing) < segments:
                return True
            offset += _HEADER.size + segments + sum(lacing)
    return offset > size


@dataclass(frozen=True, slots=True)
class OggOpus:
    """What a single-stream Ogg Opus file's page headers say (a Discord voice message)."""

    channels: int
    #: The last page's granule position in seconds: what ffprobe reports as the duration.
    duration_s: float
    #: The last page runs past the end of the file (see `ogg_cut_short`).
    cut_short: bool


_OPUS_HEAD = struct.Struct("<8sBBHIhB")  # magic, version, channels, pre-skip, rate, gain, map
_BOS = 0x02
_OPUS_RATE = 48_000


def read_ogg_opus(path: Path) -> OggOpus | None:
    """The facts ffprobe would report for an Ogg file holding exactly one Opus stream.

    Spawning ffprobe costs more CPU than everything else a voice-message scan does, and a
    voice message's container says all that is needed in its page headers: the codec and
    channels in the first packet (OpusHead), the duration in the last page's granule
    position (48 kHz samples for Opus). Returns None, so that the caller asks ffprobe,
    for anything else or anything unusual: another codec, a second logical stream (video,
    a skeleton), an unknown OpusHead version, a page that is not where one should start,
    or granule positions that go backwards. Blocking: call it in a worker thread.
    """
    fh, size = _open(path)
    offset = 0
    serial: int | None = None
    channels = 0
    last_granule = -1
    with fh:
        blocks = _Blocks(fh)
        while offset < size:
            header = blocks.at(offset, _HEADER.size)
            if len(header) < _HEADER.size:
                if serial is None or header != b"OggS"[: len(header)]:
                    return None
                return OggOpus(channels, max(last_granule, 0) / _OPUS_RATE, cut_short=True)
            capture, version, flags, granule, page_serial, *_, segments = _HEADER.unpack(header)
            if capture != b"OggS" or version != 0:
                return None
            lacing = blocks.at(offset + _HEADER.size, segments)
            if serial is None:
                # The first page starts the stream and carries OpusHead alone.
                if not flags & _BOS or segments != 1 or not 19 <= lacing[0] < 255:
                    return None
                packet = blocks.at(offset + _HEADER.size + segments, lacing[0])
                if len(packet) < _OPUS_HEAD.size:
                    return None
                magic, head_version, channels, *_ = _OPUS_HEAD.unpack_from(packet)
                # Version 0.x is the only one defined; a new major version may change the
                # layout, and ffprobe should judge it.
                if magic != b"OpusHead" or head_version >> 4 != 0 or channels == 0:
                    return None
                serial = page_serial
            elif page_serial != serial or flags & _BOS:
                return None  # a second logical stream: let ffprobe describe them all
            if len(lacing) < segments:
                return OggOpus(channels, max(last_granule, 0) / _OPUS_RATE, cut_short=True)
            if granule != -1:
                if granule < last_granule:
                    return None
                last_granule = granule
            offset += _HEADER.size + segments + sum(lacing)
    if serial is None or last_granule <= 0:
        return None
    return OggOpus(channels, last_granule / _OPUS_RATE, cut_short=offset > size)
