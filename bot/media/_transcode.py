"""Turning any accepted media into the 16 kHz mono WAV that speech services want."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import stat
from pathlib import Path

from bot.errors import CorruptMedia, EmptyMedia, NoAudioTrack, NotMedia
from bot.media._opus_pool import OpusDecoders
from bot.media._probe import FORMAT_WHITELIST, PROTOCOL_WHITELIST, MediaProbe
from bot.media._tools import run_tool, short_reason

log = logging.getLogger(__name__)


class Transcoder:
    """Makes the WAV a provider needs: voice messages through the Opus decoder processes
    when there are any (no ffmpeg start-up to pay per scan), everything else through ffmpeg.

    A voice message the decoders pass back (anything but plain Ogg Opus, a packet libopus
    refuses, a decoder that died) goes to ffmpeg, so the result never depends on which path
    took it beyond the resampler's rounding.
    """

    def __init__(self, opus: OpusDecoders | None = None) -> None:
        self._opus = opus

    async def to_wav(
        self,
        src: Path,
        dst: Path,
        *,
        probe: MediaProbe,
        timeout_s: float,
        max_duration_s: float | None = None,
    ) -> None:
        """Write `src`'s first audio track to `dst` as 16 kHz mono WAV (see `transcode_to_wav`)."""
        if (
            self._opus is not None
            and probe.format_name == "ogg"
            and probe.audio_codec == "opus"
            and not probe.has_video
            and await self._opus.decode(
                src, dst, timeout_s=timeout_s, max_duration_s=max_duration_s
            )
        ):
            log.debug("decoded %s to %s with libopus", src.name, dst.name)
            return
        await transcode_to_wav(src, dst, timeout_s=timeout_s, max_duration_s=max_duration_s)


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
