"""What a file really is: describe it in a media worker, then decide voice / audio / video."""

from __future__ import annotations

import asyncio
import logging
import math
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from bot.errors import CorruptMedia, EmptyMedia, MediaTooLong, NoAudioTrack, NotMedia
from bot.media._workers import MediaWorkers, one_off_or, short_reason
from bot.verdict import MediaKind

log = logging.getLogger(__name__)

# The demuxers FFmpeg may use on a user's file, each with the extension an upload gets.
# Everything else is refused by FFmpeg itself (its format_whitelist): that keeps images and
# text out, and above all the playlist/concat demuxers (hls, concat, ...) with which a
# crafted file makes FFmpeg open other files or URLs.
_DEMUXER_SUFFIX: dict[str, str] = {
    "aac": ".aac",
    "ac3": ".ac3",
    "aiff": ".aiff",
    "amr": ".amr",
    "ape": ".ape",
    "asf": ".wma",
    "au": ".au",
    "avi": ".avi",
    "caf": ".caf",
    "eac3": ".eac3",
    "flac": ".flac",
    "flv": ".flv",
    "loas": ".latm",
    # Matroska and WebM share one demuxer; Discord's are WebM, and both names are on the
    # providers' lists.
    "matroska": ".webm",
    # "mov,mp4,m4a,3gp,3g2,mj2": one demuxer for the whole ISO family.
    "mov": ".mp4",
    "mp3": ".mp3",
    "mpeg": ".mpg",
    "mpegts": ".ts",
    "ogg": ".ogg",
    "tta": ".tta",
    "w64": ".w64",
    "wav": ".wav",
    "wv": ".wv",
    "xwma": ".xwma",
}
_AUDIO_ONLY_SUFFIX = {"mov": ".m4a", "asf": ".wma"}
_VIDEO_SUFFIX = {"asf": ".wmv"}
FORMAT_WHITELIST = ",".join(_DEMUXER_SUFFIX)

# Video streams that are pictures, not moving images (cover art without the attached_pic
# disposition, a single JPEG in a container).
_STILL_IMAGE_CODECS = frozenset(
    {"png", "apng", "bmp", "gif", "webp", "tiff", "jpeg2000", "jpegls", "mjpeg", "ljpeg"}
)
_SNIFF_BYTES = 512


@dataclass(frozen=True, slots=True)
class MediaProbe:
    """The facts about a file that decide how it is scanned (in ffprobe's terms)."""

    format_name: str
    duration_s: float | None
    has_audio: bool
    #: A real video stream; cover art and still images do not count.
    has_video: bool
    audio_codec: str | None
    video_codec: str | None


async def probe(
    path: Path,
    *,
    timeout_s: float,
    look: FirstLook | None = None,
    workers: MediaWorkers | None = None,
) -> MediaProbe:
    """Describe `path` in a media worker process, refusing what is not audio or video.

    `workers` is the pool to ask (`Transcoder.probe` passes its own); without one, a worker
    process is started for this file alone. Raises `EmptyMedia` for a 0-byte file,
    `NotMedia` when the bytes are not a media container on the whitelist (random data, HTML,
    text, images), `CorruptMedia` when they start like one but cannot be read (an MP4
    without its index, an OGG cut inside its headers) or an OGG's last page is cut short
    (FFmpeg would silently read only the part that is there), and `MediaTimeout` when the
    worker does not answer within `timeout_s`.
    """
    regular, size = look if look is not None else await asyncio.to_thread(_look_at, path)
    if regular and size == 0:
        raise EmptyMedia("The file is empty (0 bytes).")

    request = {"op": "describe", "src": str(path), "formats": FORMAT_WHITELIST}
    async with one_off_or(workers) as pool:
        reply = await pool.ask(request, timeout_s=timeout_s)
    if reply.get("ok") is not True:
        reason = short_reason(reply.get("detail"), path)
        if reply.get("error") == "refused":
            log.info("%s is not a media container: %s", path.name, reason)
            raise NotMedia("This file is not audio or video.")
        await _refuse_unreadable(path, reason)

    try:
        fmt: dict[str, Any] = reply.get("format") or {}
        streams: list[dict[str, Any]] = list(reply.get("streams") or [])
        audio = [s for s in streams if s.get("codec_type") == "audio"]
        usable_audio = [s for s in audio if _decodable_audio(s)]
        video = [s for s in streams if s.get("codec_type") == "video" and _moving_picture(s)]
    except (TypeError, AttributeError) as exc:
        raise CorruptMedia("The file's streams could not be described.") from exc
    if not usable_audio and not video and (audio or not streams):
        # FFmpeg guessed a container (often only from its extension) but found nothing it
        # could decode in it.
        await _refuse_unreadable(path, "no decodable audio or video stream")

    format_name = str(fmt.get("format_name") or "")
    if reply.get("cut_short") is True:
        log.info("%s: the last OGG page is incomplete", path.name)
        raise CorruptMedia("The recording is cut short: its end is missing. Upload it again.")

    result = MediaProbe(
        format_name=format_name,
        duration_s=_duration(fmt, [*usable_audio, *video]),
        has_audio=bool(usable_audio),
        has_video=bool(video),
        audio_codec=_codec(usable_audio),
        video_codec=_codec(video),
    )
    log.debug("probed %s: %s", path.name, result)
    return result


#: `_look_at`'s answer: (is a regular file, its size in bytes).
FirstLook = tuple[bool, int]


def _look_at(path: Path) -> FirstLook:
    info = path.stat()
    # Only a regular file's size means anything; a pipe reports 0 and is probed as a stream.
    return stat.S_ISREG(info.st_mode), info.st_size


def classify(probe: MediaProbe, *, content_type: str | None, voice_flag: bool = False) -> MediaKind:
    """Decide what to scan the file as, from the probe first and the content type second.

    The content type (and the file name) is what the uploader claims; the probe is what the
    bytes are, so the probe wins. `voice_flag` is Discord's IS_VOICE_MESSAGE flag.
    Raises `NoAudioTrack` for a silent video, `NotMedia` when there is neither sound nor
    picture.
    """
    claimed = (content_type or "").split("/", 1)[0].strip().lower()
    if probe.has_video:
        if not probe.has_audio:
            raise NoAudioTrack("This video has no sound, so there is no speech to check.")
        kind = MediaKind.VIDEO
    elif probe.has_audio:
        # A voice message is Opus audio; the flag never turns a real video into one.
        kind = MediaKind.VOICE if voice_flag else MediaKind.AUDIO
    elif claimed in {"audio", "video"}:
        raise NoAudioTrack(f"This {claimed} file has no sound track to check.")
    else:
        raise NotMedia("This file is not audio or video.")

    mismatch = (claimed == "audio" and probe.has_video) or claimed not in {"", "audio", "video"}
    if mismatch:
        log.info(
            "content type %r disagrees with the probe (%s); scanning as %s",
            content_type,
            probe.format_name,
            kind,
        )
    return kind


def check_duration(probe: MediaProbe, *, max_duration_s: float) -> None:
    """Raise `MediaTooLong` when the probed duration is over `max_duration_s`.

    An unknown duration passes: browser-recorded WebM often has none, and the media
    deadline still bounds the work.
    """
    if probe.duration_s is None:
        log.debug("duration unknown (%s); not checked", probe.format_name)
        return
    if probe.duration_s > max_duration_s:
        raise MediaTooLong(probe.duration_s, max_duration_s)


def suffix_for(format_name: str, kind: MediaKind) -> str:
    """The file extension an upload of this container should carry (".ogg", ".mp4", ...).

    Providers check the extension against the content, so it comes from the probed
    container, never from the name the user gave the file.
    """
    for demuxer in format_name.lower().split(","):
        name = "mov" if demuxer in {"mp4", "m4a", "3gp", "3g2", "mj2"} else demuxer
        name = "matroska" if name == "webm" else name
        if name in _DEMUXER_SUFFIX:
            if kind is MediaKind.VIDEO:
                return _VIDEO_SUFFIX.get(name, _DEMUXER_SUFFIX[name])
            return _AUDIO_ONLY_SUFFIX.get(name, _DEMUXER_SUFFIX[name])
    return ".bin"


async def _refuse_unreadable(path: Path, reason: str) -> NoReturn:
    """Raise `CorruptMedia` if the file starts like a media container, else `NotMedia`."""
    head = await asyncio.to_thread(_read_start, path)
    if looks_like_media(head):
        log.info("%s looks like media but cannot be read: %s", path.name, reason)
        raise CorruptMedia(f"The file looks like audio or video but is damaged ({reason}).")
    log.info("%s is not media: %s", path.name, reason)
    raise NotMedia("This file is not audio or video.")


def _read_start(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(_SNIFF_BYTES)


def looks_like_media(head: bytes) -> bool:
    """True when `head` (a file's first bytes) carries the signature of an audio or video
    container FFmpeg would accept, whatever state the rest of the file is in."""
    if head.startswith(
        (
            b"OggS",
            b"fLaC",
            b"ID3",  # MP3 (or AAC) with an ID3v2 tag
            b"\x1a\x45\xdf\xa3",  # EBML: Matroska / WebM
            b"caff",
            b"#!AMR",
            b"FLV\x01",
            b".snd",
            b"MAC ",
            b"wvpk",
            b"TTA1",
            b"riff\x2e\x91\xcf\x11",  # Sony Wave64
            b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",  # ASF (WMA / WMV)
            b"\x00\x00\x01\xba",  # MPEG program stream
            b"\x0b\x77",  # AC-3 / E-AC-3 sync word
        )
    ):
        return True
    if head[:4] in {b"RIFF", b"RF64", b"BW64"} and head[8:12] in {b"WAVE", b"AVI ", b"XWMA"}:
        return True
    if head[:4] == b"FORM" and head[8:12] in {b"AIFF", b"AIFC"}:
        return True
    # ISO base media (MP4, MOV, M4A, 3GP): a box type at offset 4.
    if head[4:8] in {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"}:
        return True
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:  # MPEG-TS packets
        return True
    return _mpeg_audio_frame(head)


def _mpeg_audio_frame(head: bytes) -> bool:
    """An MP3/MP2 frame header or an ADTS (AAC) header at the very start."""
    if len(head) < 4 or head[0] != 0xFF:
        return False
    b1, b2 = head[1], head[2]
    if b1 & 0xF6 == 0xF0:  # ADTS: 12 sync bits, layer 0
        return (b2 >> 2) & 0x0F < 13
    return (
        b1 & 0xE0 == 0xE0  # 11 sync bits
        and (b1 >> 3) & 0x03 != 0x01  # reserved MPEG version
        and (b1 >> 1) & 0x03 != 0x00  # reserved layer
        and b2 >> 4 != 0x0F  # bad bitrate index
        and (b2 >> 2) & 0x03 != 0x03  # reserved sample rate
    )


def _decodable_audio(stream: dict[str, Any]) -> bool:
    # FFmpeg lists a stream even when it found no valid header for it (text named .mp3
    # gives an "mp3" stream at 0 Hz); such a stream cannot be decoded.
    if _number(stream.get("sample_rate")) in (None, 0.0):
        return False
    return _number(stream.get("channels")) != 0.0


def _moving_picture(stream: dict[str, Any]) -> bool:
    disposition = stream.get("disposition") or {}
    if any(disposition.get(k) for k in ("attached_pic", "still_image", "timed_thumbnails")):
        return False
    if stream.get("codec_name") in _STILL_IMAGE_CODECS:
        frames = _number(stream.get("nb_frames"))
        # MJPEG can be a real video (old cameras); it says so by having many frames.
        return frames is not None and frames > 1
    return True


def _duration(fmt: dict[str, Any], streams: list[dict[str, Any]]) -> float | None:
    duration = _number(fmt.get("duration"))
    if duration is not None and duration > 0:
        return duration
    per_stream = [d for s in streams if (d := _number(s.get("duration"))) is not None and d > 0]
    return max(per_stream, default=None)


def _codec(streams: list[dict[str, Any]]) -> str | None:
    if not streams:
        return None
    name = streams[0].get("codec_name")
    return str(name) if name else None


def _number(value: object) -> float | None:
    """A number from the worker's description, None for anything else (or infinite)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
