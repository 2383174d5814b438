"""A long-lived media worker process: describes and decodes untrusted media with PyAV.

Every byte a user uploads is read here, never in the bot: the container is opened, its
streams described, its first audio track decoded, mixed to mono, resampled to 16 kHz and
written as WAV, all with PyAV (FFmpeg's libraries, shipped in its wheel). The bot
(`bot.media._workers`) sends one request at a time, kills this process when a request
overruns its deadline, and starts a fresh one; the process also lives under an address-space
limit and dies with the bot.

Run as `python -I _worker.py ADDRESS_SPACE BOT_PID`: no environment variables, no user site,
no current directory on the path, nothing of the bot imported, only the standard library and
PyAV.

Protocol, one JSON object per line. Requests: `{"op": "describe", "src": path, "formats":
whitelist}` and `{"op": "wav", "src": path, "dst": path, "max_samples": n | null, "formats":
whitelist}`, where the whitelist names the demuxers FFmpeg may use, comma-separated: anything
else (images, text, playlists that would make FFmpeg open other files or URLs) is refused by
FFmpeg itself. Answers:
`{"ok": true, "format": {...}, "streams": [...], "cut_short": bool}` (the facts ffprobe's JSON
gives, same names), `{"ok": true, "samples": n}`, or `{"ok": false, "error": "refused" |
"unreadable" | "no_audio", "detail": text}`. The first line is `{"ready": true}`, or
`{"ready": false, "detail": text}` when PyAV cannot be imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import struct
import sys
from typing import Any

RATE = 16_000
_PR_SET_PDEATHSIG = 1
#: Resampled audio goes to the WAV one second at a time (a voice message: 5-30 writes).
_FRAME_SAMPLES = RATE
#: The largest Ogg page: 27-byte header, 255 lacing values, 255 x 255 bytes of data.
_OGG_MAX_PAGE = 27 + 255 + 255 * 255
_OGG_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, seq, crc, n


class Refused(Exception):
    """Not a container on the whitelist: not media."""


class Unreadable(Exception):
    """A whitelisted container that FFmpeg cannot read or decode."""


class NoAudio(Exception):
    """The container holds no audio stream."""


def _reason(exc: Exception) -> str:
    """What FFmpeg said went wrong: its last error log line if it logged one."""
    log = getattr(exc, "log", None)
    if log and len(log) == 3 and log[2]:
        _, context, message = log
        return f"{context}: {str(message).strip()}" if context else str(message).strip()
    return str(getattr(exc, "strerror", None) or exc)


def _open(av: Any, src: str, formats: str) -> Any:
    try:
        return av.open(
            # "file:" so that a name with a colon is never read as a protocol.
            f"file:{src}",
            options={"format_whitelist": formats, "protocol_whitelist": "file"},
        )
    except av.FFmpegError as exc:
        reason = _reason(exc)
        if "not on whitelist" in reason:
            raise Refused(reason) from exc
        raise Unreadable(reason) from exc


def _seconds(value: Any, time_base: Any) -> float | None:
    if not value or time_base is None:
        return None
    return float(value * time_base)


def describe(av: Any, src: str, formats: str) -> dict[str, Any]:
    """The container and its streams, in the names ffprobe's JSON uses."""
    with _open(av, src, formats) as container:
        streams = []
        for stream in container.streams:
            context = stream.codec_context
            codec = getattr(context, "codec", None)
            entry: dict[str, Any] = {
                "codec_type": stream.type,
                "codec_name": codec.canonical_name if codec is not None else None,
                "disposition": {
                    name: bool(stream.disposition & getattr(av.stream.Disposition, name))
                    for name in ("attached_pic", "still_image", "timed_thumbnails")
                },
                "nb_frames": stream.frames or None,
                "duration": _seconds(stream.duration, stream.time_base),
            }
            if stream.type == "audio":
                entry["sample_rate"] = context.sample_rate
                entry["channels"] = context.channels
            streams.append(entry)
        duration = container.duration
        fmt = {
            "format_name": container.format.name,
            "duration": duration / 1_000_000 if duration and duration > 0 else None,
        }
    cut_short = fmt["format_name"] == "ogg" and ogg_cut_short(src)
    return {"ok": True, "format": fmt, "streams": streams, "cut_short": cut_short}


def ogg_cut_short(src: str) -> bool:
    """True when the file's last Ogg page runs past the end of the file.

    That is what an interrupted upload or download leaves, and FFmpeg's Ogg demuxer drops
    the partial page without a word, so a voice message cut in half would be scanned as if
    it were whole. Only the file's tail is read: the last page starts within `_OGG_MAX_PAGE`
    bytes of the end. The file is whole when some page there ends exactly at the end of the
    file; it is cut short when none does and a page (or the start of a page's header) runs
    past it. Anything else (a pipe, bytes after the last page) gets no verdict here.
    """
    with open(src, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            return False
        size = info.st_size
        start = max(0, size - _OGG_MAX_PAGE - _OGG_HEADER.size)
        fh.seek(start)
        tail = fh.read()
    overruns = False
    at = tail.rfind(b"OggS")
    while at != -1:
        header = tail[at : at + _OGG_HEADER.size]
        if len(header) < _OGG_HEADER.size:
            overruns = True
        elif header[4] == 0:  # stream structure version 0
            segments = header[26]
            lacing = tail[at + _OGG_HEADER.size : at + _OGG_HEADER.size + segments]
            end = at + _OGG_HEADER.size + segments + sum(lacing)
            if len(lacing) < segments or end > len(tail):
                overruns = True
            elif end == len(tail):
                return False
        at = tail.rfind(b"OggS", 0, at)
    # The file may also stop inside the capture pattern of a page that never came.
    return overruns or any(tail.endswith(b"OggS"[:n]) for n in (1, 2, 3))


def to_wav(av: Any, src: str, dst: str, max_samples: int | None, formats: str) -> int:
    """Write the first audio track of `src` to `dst` as 16 kHz mono 16-bit PCM WAV.

    Packets the decoder refuses are skipped, as the ffmpeg command line does; `max_samples`
    cuts the output there. The number of samples written.

    The decoded frames (20 ms each for a voice message) are gathered in FFmpeg's audio FIFO
    and handed to the resampler one second at a time: each hand-off costs a round through
    the resampler's filter graph, and one per frame was a fifth of the CPU a voice message
    took here (BENCHMARKS.md, "Media on PyAV").
    """
    limit = max(0, max_samples) if max_samples is not None else sys.maxsize
    written = 0
    with _open(av, src, formats) as container:
        if not container.streams.audio:
            raise NoAudio("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(
            format="s16", layout="mono", rate=RATE, frame_size=_FRAME_SAMPLES
        )
        fifo = av.AudioFifo()
        with av.open(dst, "w", format="wav") as out:
            wav = out.add_stream("pcm_s16le", rate=RATE, layout="mono")

            def write(frame: Any) -> None:
                nonlocal written
                take = min(frame.samples, limit - written)
                if take < frame.samples:
                    part = av.AudioFrame(format="s16", layout="mono", samples=take)
                    part.sample_rate = RATE
                    part.planes[0].update(bytes(frame.planes[0])[: take * 2])
                    frame = part
                if take > 0:
                    out.mux(wav.encode(frame))
                    written += take

            def resample(frame: Any) -> None:
                for piece in resampler.resample(frame):
                    write(piece)

            try:
                for packet in container.demux(stream):
                    try:
                        frames = packet.decode()
                    except av.error.InvalidDataError:
                        continue  # a damaged packet: skipped, as ffmpeg does
                    for frame in frames:
                        # The FIFO refuses a frame whose timestamp does not follow on from
                        # the last; a skipped packet leaves such a gap, and the WAV has no
                        # timestamps to keep.
                        frame.pts = None
                        fifo.write(frame)
                        while (second := fifo.read(frame.sample_rate)) is not None:
                            resample(second)
                    if written >= limit:
                        break
                else:
                    if (rest := fifo.read()) is not None:
                        resample(rest)
                    resample(None)
            except av.FFmpegError as exc:
                raise Unreadable(_reason(exc)) from exc
            out.mux(wav.encode(None))
    if written == 0:
        raise Unreadable("no audio could be decoded")
    return written


def _handle(av: Any, request: dict[str, Any]) -> dict[str, Any]:
    try:
        formats = str(request["formats"])
        if request["op"] == "describe":
            return describe(av, request["src"], formats)
        samples = to_wav(av, request["src"], request["dst"], request.get("max_samples"), formats)
        return {"ok": True, "samples": samples}
    except Refused as exc:
        return {"ok": False, "error": "refused", "detail": str(exc)[:300]}
    except NoAudio as exc:
        return {"ok": False, "error": "no_audio", "detail": str(exc)[:300]}
    except (Unreadable, av.FFmpegError, OSError, ValueError, KeyError, TypeError) as exc:
        detail = _reason(exc) if isinstance(exc, av.FFmpegError) else str(exc)
        return {"ok": False, "error": "unreadable", "detail": detail[:300]}


def _serve(av: Any) -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    for line in stdin:
        reply = _handle(av, json.loads(line))
        stdout.write(json.dumps(reply).encode() + b"\n")
        stdout.flush()


def _limit_resources(address_space: int) -> None:
    import resource  # noqa: PLC0415  (POSIX only, and only the worker needs it)

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Linux enforces an address-space limit; macOS refuses to set one (ValueError), and there
    # the deadline alone bounds a worker.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when the bot dies, even in the middle of a decode.

    (Without it, a worker whose bot was killed finishes its current file, then exits when
    it finds its input closed.)
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # noqa: PLC0415  (Linux only: prctl from the C library)

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the bot died before the request took effect
        os._exit(1)


def main() -> None:
    """Entry point: `python -I _worker.py ADDRESS_SPACE BOT_PID`."""
    address_space, parent = int(sys.argv[1]), int(sys.argv[2])
    _die_with_parent(parent)
    _limit_resources(address_space)
    try:
        import av  # noqa: PLC0415  (imported under the limits, reported if missing)
        import av.logging  # noqa: PLC0415

        # FFmpeg's error lines become the exceptions' `log` (the reason a user is shown).
        av.logging.set_level(av.logging.ERROR)
    except Exception as exc:
        sys.stdout.write(json.dumps({"ready": False, "detail": str(exc)[:300]}) + "\n")
        sys.stdout.flush()
        return
    sys.stdout.write('{"ready": true}\n')
    sys.stdout.flush()
    _serve(av)


if __name__ == "__main__":
    main()
