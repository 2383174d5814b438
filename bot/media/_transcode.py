"""Turning any accepted media into the 16 kHz mono WAV that speech services want."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import stat
from pathlib import Path

from bot.errors import CorruptMedia, EmptyMedia, NoAudioTrack, NotMedia
from bot.media._probe import FORMAT_WHITELIST, FirstLook, MediaProbe, probe
from bot.media._workers import MediaWorkers, one_off_or, short_reason

log = logging.getLogger(__name__)


class Transcoder:
    """The media steps that read a file's contents, `probe` and `to_wav`, both done by the
    media worker processes `workers` (without a pool, each file gets a process of its own).
    """

    def __init__(self, workers: MediaWorkers | None = None) -> None:
        self._workers = workers

    async def probe(
        self, path: Path, *, timeout_s: float, look: FirstLook | None = None
    ) -> MediaProbe:
        """Describe `path` (see `bot.media.probe`)."""
        return await probe(path, timeout_s=timeout_s, look=look, workers=self._workers)

    async def to_wav(
        self,
        src: Path,
        dst: Path,
        *,
        probe: MediaProbe,
        timeout_s: float,
        max_duration_s: float | None = None,
    ) -> None:
        """Write `src`'s first audio track to `dst` as 16 kHz mono WAV (see `transcode_to_wav`).

        `probe` is `src`'s probe: a file it found no sound in is refused without a decode.
        """
        if not probe.has_audio:
            raise NoAudioTrack("This file has no sound track to check.")
        await transcode_to_wav(
            src, dst, timeout_s=timeout_s, max_duration_s=max_duration_s, workers=self._workers
        )


async def transcode_to_wav(
    src: Path,
    dst: Path,
    *,
    timeout_s: float,
    max_duration_s: float | None = None,
    workers: MediaWorkers | None = None,
) -> None:
    """Write the first audio track of `src` to `dst` as 16 kHz mono 16-bit PCM WAV.

    The decode runs in a media worker process (`workers`, or one started for this file).
    Video is dropped. `max_duration_s`, when given, cuts the output there: a file whose
    duration the probe could not tell must still not fill the disk. Raises `NoAudioTrack`
    when `src` has no audio stream, `NotMedia` when the container is not on the whitelist,
    `CorruptMedia` (with a short reason) when it cannot be decoded, and `MediaTimeout` after
    `timeout_s`. On failure `dst` does not exist.
    """
    info = await asyncio.to_thread(src.stat)
    # Only a regular file's size means anything; a pipe reports 0 and is read as a stream.
    if stat.S_ISREG(info.st_mode) and info.st_size == 0:
        raise EmptyMedia("The file is empty (0 bytes).")
    request = {
        "op": "wav",
        "src": str(src),
        "dst": str(dst),
        "max_samples": None if max_duration_s is None else round(max_duration_s * 16_000),
        "formats": FORMAT_WHITELIST,
    }
    try:
        async with one_off_or(workers) as pool:
            reply = await pool.ask(request, timeout_s=timeout_s)
    except BaseException:
        _remove(dst)
        raise
    if reply.get("ok") is True:
        log.debug("transcoded %s to %s", src.name, dst.name)
        return

    _remove(dst)
    reason = short_reason(reply.get("detail"), src, dst)
    log.info("media worker could not decode %s: %s", src.name, reason)
    if reply.get("error") == "no_audio":
        raise NoAudioTrack("This file has no sound track to check.")
    if reply.get("error") == "refused":
        raise NotMedia("This file is not audio or video.")
    raise CorruptMedia(f"The file could not be decoded ({reason}).")


def _remove(path: Path) -> None:
    # A partial WAV must never be uploaded by a caller that ignores the exception.
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
