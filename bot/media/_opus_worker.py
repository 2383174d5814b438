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
#: The file is read this many bytes at a time: a voice message (~4 KB a second) in one read,
#: a longer file in pieces, never all of it. Larger than the largest page (65,307 bytes).
_READ = 256 * 1024
#: Decoded samples held before they are written: 32 s, so a voice message (5-30 s) goes to
#: the WAV in one write; a longer file is written in pieces of this size.
_OUT_SAMPLES = 1 << 19


class Unsupported(Exception):
    """Valid perhaps, but not the plain mono/stereo Ogg Opus this decoder handles."""


class Corrupt(Exception):
    """The bytes contradict the format: libopus refused a packet, a page is broken."""


@dataclass(frozen=True, slots=True)
class _Page:
    flags: int
    granule: int
    serial: int
    #: The pieces of packets that end on this page, then what is left after them: the start
    #: of a packet continued on the next page, or b"".
    packets: list[bytes]
    #: The last packet continues on the next page.
    open_ended: bool


def _pages(fh: BinaryIO) -> Iterator[_Page]:
    """The file's Ogg pages, read `_READ` bytes at a time (never the whole file at once)."""
    data = b""
    pos = 0
    while True:
        if len(data) - pos < _PAGE.size:
            data, pos = data[pos:] + fh.read(_READ), 0
            if not data:
                return
            if len(data) < _PAGE.size:
                raise Corrupt("the file ends inside a page header")
        capture, version, flags, granule, serial, _, _, count = _PAGE.unpack_from(data, pos)
        if capture != b"OggS" or version != 0:
            raise Corrupt("a page does not start where the previous one ended")
        start = pos + _PAGE.size
        if start + count > len(data):  # (one more read always holds a whole page)
            data, pos, start = data[pos:] + fh.read(_READ), 0, start - pos
        lacing = data[start : start + count]
        start += count
        end = start + sum(lacing)
        if end > len(data):
            data, pos, start, end = data[pos:] + fh.read(_READ), 0, start - pos, end - pos
        if len(lacing) < count or end > len(data):
            raise Corrupt("the file ends inside a page")
        pos = end
        packets: list[bytes] = []
        end = start
        for size in lacing:
            end += size
            if size < 255:
                packets.append(data[start:end])
                start = end
        packets.append(data[start:end])
        yield _Page(flags, granule, serial, packets, open_ended=start < end)


def _packets(fh: BinaryIO) -> Iterator[tuple[bytes, int]]:
    """Whole packets, joined across pages, each with the granule position of the page on
    which it ends."""
    serial: int | None = None
    partial: list[bytes] = []
    for page in _pages(fh):
        if serial is None:
            if not page.flags & _BOS:
                raise Unsupported("the stream does not start with a first page")
            serial = page.serial
        elif page.serial != serial or page.flags & _BOS:
            raise Unsupported("more than one logical stream")
        packets = page.packets
        tail = packets.pop()
        granule = page.granule
        if partial and packets:
            packets[0] = b"".join([*partial, packets[0]])
            partial = []
            if len(packets[0]) > _MAX_PACKET:
                raise Corrupt("a packet is larger than any voice frame")
        for packet in packets:
            yield packet, granule
        if page.open_ended:
            partial.append(tail)
            if sum(map(len, partial)) > _MAX_PACKET:
                raise Corrupt("a packet is larger than any voice frame")
    if partial:
        raise Corrupt("the last packet is cut short")


class _Decoder:
    """One libopus decoder, 16 kHz mono output (libopus downmixes a stereo stream itself)."""

    def __init__(self, lib: ctypes.CDLL, gain_q8: int) -> None:
        self._lib = lib
        # opus_decode without argtypes, private to `decode_into` (`lib.opus_decode` is shared
        # and keeps its prototype): ctypes then passes each argument as it is, instead of
        # converting six of them through Python calls for every 20 ms of audio. So it must
        # only ever get c_void_p, bytes, int, byref(c_int16 array), int, int: it does.
        self._decode = lib["opus_decode"]
        self._decode.restype = ctypes.c_int
        error = ctypes.c_int()
        state = lib.opus_decoder_create(RATE, 1, ctypes.byref(error))
        if error.value != 0 or not state:
            raise RuntimeError(f"opus_decoder_create failed ({error.value})")
        self._state = ctypes.c_void_p(state)
        if gain_q8 and lib.opus_decoder_ctl(self._state, _OPUS_SET_GAIN, gain_q8):
            lib.opus_decoder_destroy(self._state)
            raise Unsupported("an output gain libopus refuses")

    def decode_into(
        self, packets: Iterator[tuple[bytes, int]], pcm: ctypes.Array[ctypes.c_int16], room: int
    ) -> tuple[int, int, bool]:
        """Decode `packets` into `pcm`, from its start, until `room` samples or more are in.

        Returns the number of samples decoded, the last granule position seen (-1 when none)
        and whether the packets ran out.
        """
        if not 0 <= room <= len(pcm) - _MAX_FRAME:
            raise ValueError("no room for the longest frame")
        decode = self._decode
        state = self._state
        filled = 0
        last_granule = -1
        for packet, granule in packets:
            if not packet:
                raise Unsupported("an empty packet (lost audio to conceal)")
            # libopus writes at most _MAX_FRAME samples at `filled`, and
            # filled < room <= len(pcm) - _MAX_FRAME: always inside `pcm`.
            count = decode(state, packet, len(packet), ctypes.byref(pcm, filled * 2), _MAX_FRAME, 0)
            if count < 0:
                raise Corrupt(f"libopus refused a packet (error {count})")
            filled += count
            if granule != -1:
                last_granule = granule
            if filled >= room:
                return filled, last_granule, False
        return filled, last_granule, True

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


#: The output buffer, allocated on first use and reused from file to file (the worker
#: decodes one file at a time).
_pcm: list[ctypes.Array[ctypes.c_int16]] = []


def decode_file(lib: ctypes.CDLL, src: str, dst: str, max_samples: int | None) -> int:
    """Decode the Ogg Opus file `src` into the WAV `dst`; the number of samples written.

    Follows RFC 7845: the header's pre-skip is dropped from the start, the last page's
    granule position trims the end, the output gain is applied. `max_samples` cuts the
    output there, as ffmpeg's `-t` does. Raises `Unsupported` or `Corrupt`.
    """
    with open(src, "rb") as fh:
        packets = _packets(fh)
        head, _ = next(packets, (b"", -1))
        if len(head) < _OPUS_HEAD.size:
            raise Unsupported("no OpusHead packet")
        magic, version, channels, pre_skip, _, gain, mapping = _OPUS_HEAD.unpack_from(head)
        if magic != b"OpusHead" or version >> 4 != 0:
            raise Unsupported("not an Opus stream this decoder knows")
        if mapping != 0 or channels not in (1, 2):
            raise Unsupported(f"channel mapping {mapping} with {channels} channels")
        tags, _ = next(packets, (b"", -1))
        if not tags.startswith(b"OpusTags"):
            raise Unsupported("no OpusTags packet")
        decoder = _Decoder(lib, gain)
        try:
            return _write_wav(decoder, packets, dst, pre_skip, max_samples)
        finally:
            decoder.close()


def _write_wav(
    decoder: _Decoder,
    packets: Iterator[tuple[bytes, int]],
    dst: str,
    pre_skip: int,
    max_samples: int | None,
) -> int:
    """Decode `packets` into the WAV `dst` (see `decode_file`); the number of samples."""
    if not _pcm:
        _pcm.append((ctypes.c_int16 * _OUT_SAMPLES)())
    pcm = _pcm[0]
    view = memoryview(pcm).cast("B")
    skip = pre_skip // _DOWN
    limit = max(0, max_samples) if max_samples is not None else sys.maxsize
    written = 0
    last_granule = -1
    with contextlib.ExitStack() as stack:
        out: BinaryIO | None = None
        while True:
            room = min(_OUT_SAMPLES - _MAX_FRAME, skip + limit - written)
            filled, granule, ended = decoder.decode_into(packets, pcm, room)
            if granule != -1:
                last_granule = granule
            dropped = min(skip, filled)
            skip -= dropped
            take = min(filled - dropped, limit - written)
            chunk = view[dropped * 2 : (dropped + take) * 2]
            written += take
            done = ended or written >= limit
            if ended and last_granule >= pre_skip:
                # The end trim: the final granule position says how many samples are real
                # (the encoder pads the last frame); not when the output was cut short. At
                # 16 kHz that is the nearest whole sample, as ffmpeg's resampler makes it.
                written = min(written, (last_granule - pre_skip + _DOWN // 2) // _DOWN)
            if done and out is None:
                # All of it is in `pcm` (a voice message always is): one write, no rewrite.
                if written == 0:
                    raise Corrupt("no audio decoded")
                with open(dst, "wb") as whole:
                    whole.write(wav_header(written))
                    whole.write(chunk[: written * 2])
                return written
            if out is None:
                out = stack.enter_context(open(dst, "wb"))
                out.write(wav_header(0))
            out.write(chunk)
            if done:
                break
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
