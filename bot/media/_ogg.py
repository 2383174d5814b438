"""A structural check of OGG files, which ffmpeg reads without complaint when cut short."""

from __future__ import annotations

import struct
from pathlib import Path

_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, seq, crc, nsegs


def ogg_cut_short(path: Path) -> bool:
    """True when the file's last OGG page runs past the end of the file.

    That is what an interrupted upload or download leaves. ffmpeg silently drops the
    partial page and reports the shortened duration, so a voice message cut in half would
    otherwise be scanned as if it were whole. Only page headers are read (blocking: call it
    in a worker thread). Anything that is not a page where one should start ends the walk
    without a verdict: resynchronising on damaged data is ffmpeg's job.
    """
    size = path.stat().st_size
    offset = 0
    with path.open("rb") as fh:
        while offset < size:
            fh.seek(offset)
            header = fh.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return header == b"OggS"[: len(header)]
            capture, version, *_, segments = _HEADER.unpack(header)
            if capture != b"OggS" or version != 0:
                return False
            lacing = fh.read(segments)
            if len(lacing) < segments:
                return True
            offset += _HEADER.size + segments + sum(lacing)
    return offset > size
