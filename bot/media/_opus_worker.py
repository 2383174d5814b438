"""A long-lived decoder process: Ogg Opus voice messages to 16 kHz mono WAV with libopus.

Behavioral Signals takes WAV or MP3, not Discord's Ogg Opus, so every voice message it
checks is decoded first. ffmpeg does that in ~25 ms, but starting Debian's ffmpeg (about
215 shared libraries to load and link) costs ~80 ms of CPU more, every scan
(BENCHMARKS.md, "Load"). This process is started once and decodes voice messages one after
the other, straight to 16 kHz with libopus, the reference decoder ffmpeg itself links.

It is deliberately a separate process, as ffmpeg is: untrusted bytes are decoded outside the
bot, under resource limits, and the bot kills it when a decode overruns its deadline
(`bot.media._opus_pool`). Anything unusual is not guessed at: the reply says `unsupported`
or `corrupt` and the bot hands the file to ffmpeg instead.

Standard library only, run as `python -I -S _opus_worker.py`: no site-packages, no current
directory on the path, nothing of the bot imported into the process that reads the media.

Protocol, one JSON object per line: the bot writes `{"src": path, "dst": path,
"max_samples": n | null}`; the worker answers `{"ok": true, "samples": n}` or
`{"ok": false, "reason": "unsupported" | "corrupt", "detail": text}`. Its first line is
`{"ready": true}`, or `{"ready": false, "detail": text}` when libopus cannot be loaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import signal
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

RATE = 16_000
#: Opus timestamps (granule positions, pre-skip) count 48 kHz samples whatever the output.
_OPUS_CLOCK = 48_000
_DOWN = _OPUS_CLOCK // RATE
#: The longest Opus packet is 120 ms.
_MAX_FRAME = RATE * 120 // 1000
_PAGE = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, seq, crc, n
_OPUS_HEAD = struct.Struct("<8sBBHIhB")  # magic, version, channels, pre-skip, rate, gain, map
_BOS, _EOS = 0x02, 0x04
_OPUS_SET_GAIN = 4034
_PR_SET_PDEATHSIG = 1
#: A packet larger than this is not a voice frame (the format allows ~61 KB; Discord's are
#: under 1 KB): refuse rather than buffer whatever a hostile file claims.
_MAX_PACKET = 64 * 1024


class Unsupported(Exception):
    """Valid perhaps, but not the plain mono/stereo Ogg Opus this decoder handles."""


class Corrupt(Exception):
    """The bytes contradict the format: libopus refused a packet, a page is broken."""


@dataclass(frozen=True, slots=True)
class _Page:
    flags: int
    granule: int
    serial: int
    packets: list[bytes]
    #: The last packet continues on the next page.
    open_ended: bool


def _pages(fh: BinaryIO) -> Iterator[_Page]:
    """The file's Ogg pages, read one at a time (never the whole file at once)."""
    while True:
        header = fh.read(_PAGE.size)
        if not header:
            return
        if len(header) < _PAGE.size:
            raise Corrupt("the file ends inside a page header")
        capture, version, flags, granule, serial, _, _, count = _PAGE.unpack(header)
        if capture != b"OggS" or version != 0:
            raise Corrupt("a page does not start where the previous one ended")
        lacing = fh.read(count)
        body = fh.read(sum(lacing))
        if len(lacing) < count or len(body) < sum(lacing):
            raise Corrupt("the file ends inside a page")
        packets: list[bytes] = []
        start = 0
        end = 0
        for size in lacing:
            end += size
            if size < 255:
                packets.append(body[start:end])
                start = end
        yield _Page(flags, granule, serial, [*packets, body[start:]], open_ended=start < end)


def _packets(fh: BinaryIO) -> Iterator[tuple[bytes, _Page]]:
    """Whole packets, joined across pages, each with the page on which it ends."""
    serial: int | None = None
    partial: list[bytes] = []
    for page in _pages(fh):
        if serial is None:
            if not page.flags & _BOS:
                raise Unsupported("the stream does not start with a first page")
            serial = page.serial
        elif page.serial != serial or page.flags & _BOS:
            raise Unsupported("more than one logical stream")
        last = len(page.packets) - 1
        for index, piece in enumerate(page.packets):
            if index == last and (page.open_ended or not piece):
                if page.open_ended:
                    partial.append(piece)
                continue
            partial.append(piece)
            packet = b"".join(partial)
            partial = []
            if len(packet) > _MAX_PACKET:
                raise Corrupt("a packet is larger than any voice frame")
            yield packet, page
        if sum(map(len, partial)) > _MAX_PACKET:
            raise Corrupt("a packet is larger than any voice frame")
    if partial:
        raise Corrupt("the last packet is cut short")


class _Decoder:
    """One libopus decoder, 16 kHz mono output (libopus downmixes a stereo stream itself)."""

    def __init__(self, lib: ctypes.CDLL, gain_q8: int) -> None:
        self._lib = lib
        error = ctypes.c_int()
        self._state = lib.opus_decoder_create(RATE, 1, ctypes.byref(error))
        if error.value != 0 or not self._state:
            raise RuntimeError(f"opus_decoder_create failed ({error.value})")
        if gain_q8 and lib.opus_decoder_ctl(self._state, _OPUS_SET_GAIN, ctypes.c_int(gain_q8)):
            lib.opus_decoder_destroy(self._state)
            raise Unsupported("an output gain libopus refuses")
        self._pcm = (ctypes.c_int16 * _MAX_FRAME)()

    def decode(self, packet: bytes) -> bytes:
        if not packet:
            raise Unsupported("an empty packet (lost audio to conceal)")
        count = self._lib.opus_decode(self._state, packet, len(packet), self._pcm, _MAX_FRAME, 0)
        if count < 0:
            raise Corrupt(f"libopus refused a packet (error {count})")
        return ctypes.string_at(self._pcm, count * 2)

    def close(self) -> None:
        self._lib.opus_decoder_destroy(self._state)


def load_libopus() -> ctypes.CDLL:
    """libopus with the prototypes used here; OSError when it is not installed."""
    name = ctypes.util.find_library("opus") or "libopus.so.0"
    lib = ctypes.CDLL(name)
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_decoder_destroy.restype = None
    lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_decoder_ctl.restype = ctypes.c_int
    lib.opus_decoder_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.opus_decode.restype = ctypes.c_int
    lib.opus_decode.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int32,
        ctypes.POINTER(ctypes.c_int16),
        ctypes.c_int,
        ctypes.c_int,
    ]
    return lib


def wav_header(samples: int) -> bytes:
    """The 44-byte header of a 16 kHz mono 16-bit PCM WAV holding `samples` samples."""
    data = samples * 2
    return b"RIFF" + struct.pack(
        "<I4s4sIHHIIHH4sI", 36 + data, b"WAVE", b"fmt ", 16, 1, 1, RATE, RATE * 2, 2, 16,
        b"data", data,
    )  # fmt: skip


def decode_file(lib: ctypes.CDLL, src: str, dst: str, max_samples: int | None) -> int:
    """Decode the Ogg Opus file `src` into the WAV `dst`; the number of samples written.

    Follows RFC 7845: the header's pre-skip is dropped from the start, the last page's
    granule position trims the end, the output gain is applied. `max_samples` cuts the
    output there, as ffmpeg's `-t` does. Raises `Unsupported` or `Corrupt`.
    """
    with open(src, "rb") as fh, open(dst, "wb") as out:
        packets = _packets(fh)
        head, _ = next(packets, (b"", None))
        if len(head) < _OPUS_HEAD.size:
            raise Unsupported("no OpusHead packet")
        magic, version, channels, pre_skip, _, gain, mapping = _OPUS_HEAD.unpack_from(head)
        if magic != b"OpusHead" or version >> 4 != 0:
            raise Unsupported("not an Opus stream this decoder knows")
        if mapping != 0 or channels not in (1, 2):
            raise Unsupported(f"channel mapping {mapping} with {channels} channels")
        tags, _ = next(packets, (b"", None))
        if not tags.startswith(b"OpusTags"):
            raise Unsupported("no OpusTags packet")
        decoder = _Decoder(lib, gain)
        try:
            out.write(wav_header(0))
            skip = pre_skip // _DOWN
            written = 0
            last_granule = -1
            limit = max_samples if max_samples is not None else sys.maxsize
            for packet, page in packets:
                pcm = decoder.decode(packet)
                if skip:
                    dropped = min(skip, len(pcm) // 2)
                    pcm = pcm[dropped * 2 :]
                    skip -= dropped
                take = min(len(pcm) // 2, limit - written)
                out.write(pcm[: take * 2])
                written += take
                if page.granule != -1:
                    last_granule = page.granule
                if written >= limit:
                    break
            else:
                # The end trim: the final granule position says how many samples are real
                # (the encoder pads the last frame).
                if last_granule >= pre_skip:
                    written = min(written, (last_granule - pre_skip) // _DOWN)
        finally:
            decoder.close()
        if written == 0:
            raise Corrupt("no audio decoded")
        out.truncate(44 + written * 2)
        out.seek(0)
        out.write(wav_header(written))
    return written


def _serve(lib: ctypes.CDLL) -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    for line in stdin:
        try:
            request = json.loads(line)
            samples = decode_file(lib, request["src"], request["dst"], request.get("max_samples"))
            reply: dict[str, object] = {"ok": True, "samples": samples}
        except Unsupported as exc:
            reply = {"ok": False, "reason": "unsupported", "detail": str(exc)}
        except (Corrupt, OSError, ValueError, KeyError, TypeError) as exc:
            reply = {"ok": False, "reason": "corrupt", "detail": str(exc)[:200]}
        stdout.write(json.dumps(reply).encode() + b"\n")
        stdout.flush()


def _limit_resources(address_space: int) -> None:
    import resource  # noqa: PLC0415  (POSIX only, and only the worker needs it)

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when the bot dies, even in the middle of a decode.

    (Without it, a worker whose bot was killed finishes its current file, then exits when
    it finds its input closed.)
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the bot died before the request took effect
        os._exit(1)


def main() -> None:
    """Entry point: `python -I -S _opus_worker.py [address-space-bytes [bot-pid]]`."""
    if len(sys.argv) > 2:
        _die_with_parent(int(sys.argv[2]))
    if len(sys.argv) > 1:
        _limit_resources(int(sys.argv[1]))
    try:
        lib = load_libopus()
    except OSError as exc:
        sys.stdout.write(json.dumps({"ready": False, "detail": str(exc)}) + "\n")
        sys.stdout.flush()
        return
    sys.stdout.write('{"ready": true}\n')
    sys.stdout.flush()
    _serve(lib)


if __name__ == "__main__":
    main()
