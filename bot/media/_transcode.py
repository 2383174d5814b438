"""Turning any accepted media into the 16 kHz mono WAV that speech services want."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import stat
from pathlib import Path

from bot.errors import CorruptMedia, EmptyMedia, NoAudioTrack, NotMedia
from bot.media._probe import FORMAT_WHITELIST, PROTOCOL_WHITELIST
from bot.media._tools import run_tool, short_reason

log = logging.getLogger(__name__)


async def transcode_to_wav(
    src: Path, dst: Path, *, timeout_s: float, max_duration_s: float | None = None
) -> None:
    """Write the first audio track of `src` to `dst` as 16 kHz mono 16-bit PCM WAV.

    Video is dropped. `max_duration_s`, when given, cuts the output there: a file whose
    duration ffprobe could not tell must still not fill the disk. Raises `NoAudioTrack` when
    `src` has no audio stream, `NotMedia` when ffmpeg refuses the container, `CorruptMedia`
    (with a short reason) on any other ffmpeg failure, and `MediaTimeout` after
    `timeout_s`. On failure `dst` does not exist.
    """
    info = await asyncio.to_thread(src.stat)
    # Only a regular file's size means anything; a pipe reports 0 and is read as a stream.
    if stat.S_ISREG(info.st_mode) and info.st_size == 0:
        raise EmptyMedia("The file is empty (0 bytes).")
    args = [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        # One decoding thread: scans run side by side on small (2-core) hosts and must
        # leave room for the bot's own event loop.
        "-threads",
        "1",
        "-filter_threads",
        "1",
        # The same guard rails as the probe: local file, media demuxers only.
        "-protocol_whitelist",
        PROTOCOL_WHITELIST,
        "-format_whitelist",
        FORMAT_WHITELIST,
        "-i",
        f"file:{src}",
        "-vn",
        "-map",
        "0:a:0",
        "-ac",
        "1",
        "-ar",
        "16000",
        "-c:a",
        "pcm_s16le",
    ]
    if max_duration_s is not None:
        args += ["-t", f"{max_duration_s:.3f}"]
    args += ["-f", "wav", f"file:{dst}"]

    try:
        returncode, _, stderr = await run_tool(args, timeout_s=timeout_s)
    except BaseException:
        _remove(dst)
        raise
    if returncode == 0:
        log.debug("transcoded %s to %s", src.name, dst.name)
        return

    _remove(dst)
    reason = short_reason(stderr, src, dst)
    log.info("ffmpeg failed on %s (exit %s): %s", src.name, returncode, reason)
    if b"matches no streams" in stderr:
        raise NoAudioTrack("This file has no sound track to check.")
    if b"not on whitelist" in stderr:
        raise NotMedia("This file is not audio or video.")
    raise CorruptMedia(f"The file could not be decoded ({reason}).")


def _remove(path: Path) -> None:
    # A partial WAV must never be uploaded by a caller that ignores the exception.
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
