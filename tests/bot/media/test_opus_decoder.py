"""The Opus decoder processes: same audio as ffmpeg, and ffmpeg whenever they cannot decode.

Real libopus in real worker processes; the files are real Ogg Opus made by ffmpeg.
"""

from __future__ import annotations

import array
import asyncio
import logging
import math
import os
import signal
import struct
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.errors import MediaTimeout
from bot.media import (
    MediaProbe,
    OpusDecoders,
    Transcoder,
    _opus_pool,
    _opus_worker,
    probe,
    transcode_to_wav,
)
from testkit.media_factory import MediaFiles, ffmpeg, make_truncated, stalled_pipe

TIMEOUT_S = 30.0
OGG_OPUS = MediaProbe(
    format_name="ogg",
    duration_s=None,
    has_audio=True,
    has_video=False,
    audio_codec="opus",
    video_codec=None,
)


@pytest.fixture
async def decoders() -> AsyncIterator[OpusDecoders]:
    pool = OpusDecoders(1)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


def _samples(path: Path) -> tuple[tuple[int, int, int], array.array[int]]:
    with wave.open(str(path), "rb") as wav:
        shape = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
        return shape, array.array("h", wav.readframes(wav.getnframes()))


def _correlation(a: array.array[int], b: array.array[int]) -> float:
    n = min(len(a), len(b))
    aa = sum(x * x for x in a[:n])
    bb = sum(y * y for y in b[:n])
    ab = sum(x * y for x, y in zip(a[:n], b[:n], strict=True))
    return ab / math.sqrt(aa * bb)


def _crc_table() -> list[int]:
    table = []
    for index in range(256):
        crc = index << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def _ogg_crc(data: bytes) -> int:
    """Ogg's page checksum (CRC-32, polynomial 0x04C11DB7, not reflected, no final xor)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    return crc


def _ogg_packets(data: bytes) -> tuple[int, list[tuple[bytes, int]]]:
    """A single-stream Ogg file's serial number and packets, each with the granule position
    of the page it ends on (a plain reading of the format, independent of the worker's)."""
    offset, serial, partial = 0, 0, b""
    packets: list[tuple[bytes, int]] = []
    while offset < len(data):
        _, _, _, granule, serial, _, _, count = struct.unpack_from("<4sBBqIIIB", data, offset)
        body = offset + 27 + count
        for size in data[offset + 27 : body]:
            partial += data[body : body + size]
            body += size
            if size < 255:
                packets.append((partial, granule))
                partial = b""
        offset = body
    return serial, packets


def _ogg_page(
    flags: int, granule: int, serial: int, seq: int, sizes: list[int], body: bytes
) -> bytes:
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, seq, 0, len(sizes))
    page = bytearray(header + bytes(sizes) + body)
    struct.pack_into("<I", page, 22, _ogg_crc(bytes(page)))
    return bytes(page)


def _repage(source: Path, target: Path, segments_per_page: int) -> int:
    """`source` with the same packets on pages of at most `segments_per_page` lacing values,
    so that packets continue from page to page; the number of pages that continue one."""
    lib = _opus_worker.load_libopus()
    serial, packets = _ogg_packets(source.read_bytes())
    (head, _), *rest = packets
    # Every page's granule position, from the packets' durations, but the last: the end trim.
    granules, total = [], 0
    for index, (packet, _) in enumerate(rest):
        if index > 0:  # OpusTags, then audio
            total += lib.opus_packet_get_nb_samples(packet, len(packet), 48_000)
        granules.append(total)
    granules[-1] = rest[-1][1]
    pages = [_ogg_page(0x02, 0, serial, 0, [len(head)], head)]
    segments: list[tuple[int, bytes, int]] = []  # (lacing value, bytes, granule if packet ends)
    for (packet, _), granule in zip(rest, granules, strict=True):
        for start in range(0, len(packet) // 255 * 255, 255):
            segments.append((255, packet[start : start + 255], -1))
        segments.append((len(packet) % 255, packet[len(packet) // 255 * 255 :], granule))
    continued = False
    for start in range(0, len(segments), segments_per_page):
        on_page = segments[start : start + segments_per_page]
        flags = (0x01 if continued else 0) | (
            0x04 if start + segments_per_page >= len(segments) else 0
        )
        granule = max(granule for _, _, granule in on_page)
        sizes = [size for size, _, _ in on_page]
        pages.append(
            _ogg_page(flags, granule, serial, len(pages), sizes, b"".join(b for _, b, _ in on_page))
        )
        continued = on_page[-1][0] == 255
    target.write_bytes(b"".join(pages))
    return sum(page[5] & 0x01 for page in pages)


def _ffmpeg_samples(source: Path, target: Path) -> array.array[int]:
    """ffmpeg's own decode of `source` to 16 kHz mono 16-bit samples."""
    ffmpeg("-i", source, "-ac", "1", "-ar", "16000", "-f", "wav", target)
    return _samples(target)[1]


def _break_first_audio_packet(source: Path, target: Path) -> None:
    """A copy of `source` whose first audio packet says "0 frames" (invalid for libopus).

    The page's checksum is recomputed, so the container stays valid: only the codec data
    is wrong, as in a file damaged before it was muxed.
    """
    data = bytearray(source.read_bytes())
    offset = 0
    page = 0
    while True:
        count = data[offset + 26]
        lacing = data[offset + 27 : offset + 27 + count]
        body = offset + 27 + count
        if page == 2:  # OpusHead, OpusTags, then audio
            data[body : body + 2] = b"\x03\x00"  # code 3 (arbitrary frames), M = 0
            data[offset + 22 : offset + 26] = b"\0\0\0\0"
            end = body + sum(lacing)
            struct.pack_into("<I", data, offset + 22, _ogg_crc(bytes(data[offset:end])))
            break
        offset = body + sum(lacing)
        page += 1
    target.write_bytes(bytes(data))


async def test_decoded_voice_message_matches_ffmpeg(
    media: MediaFiles, decoders: OpusDecoders, tmp_path: Path
) -> None:
    """Fails if libopus's WAV differs from ffmpeg's in format, length or sound."""
    ours, theirs = tmp_path / "ours.wav", tmp_path / "ffmpeg.wav"
    assert await decoders.decode(media.voice_ogg, ours, timeout_s=TIMEOUT_S, max_duration_s=None)
    await transcode_to_wav(media.voice_ogg, theirs, timeout_s=TIMEOUT_S)
    (shape, a), (ff_shape, b) = _samples(ours), _samples(theirs)
    assert shape == ff_shape == (1, 2, 16000)
    # Pre-skip dropped and the end trimmed by the granule position, as ffmpeg does.
    assert len(a) == len(b)
    assert _correlation(a, b) > 0.999


async def test_stereo_voice_message_is_mixed_to_mono(
    media: MediaFiles, decoders: OpusDecoders, tmp_path: Path
) -> None:
    """Fails if a stereo Ogg Opus file is refused or written with two channels."""
    stereo = tmp_path / "stereo.ogg"
    ffmpeg("-i", media.speech_wav, "-ac", "2", "-ar", "48000", "-c:a", "libopus", stereo)
    out = tmp_path / "out.wav"
    assert await decoders.decode(stereo, out, timeout_s=TIMEOUT_S, max_duration_s=None)
    shape, samples = _samples(out)
    assert shape == (1, 2, 16000)
    expected = (await probe(stereo, timeout_s=TIMEOUT_S)).duration_s
    assert expected is not None
    assert len(samples) / 16000 == pytest.approx(expected, abs=0.05)


async def test_output_stops_at_max_duration(
    media: MediaFiles, decoders: OpusDecoders, tmp_path: Path
) -> None:
    """Fails if max_duration_s does not cut the output of a 3-hour file at exactly 2 s."""
    out = tmp_path / "out.wav"
    assert await decoders.decode(media.long_ogg, out, timeout_s=TIMEOUT_S, max_duration_s=2)
    _, samples = _samples(out)
    assert len(samples) == 2 * 16000


@pytest.mark.parametrize("extra", [0, 1, 2])
def test_end_trim_rounds_like_ffmpeg(tmp_path: Path, extra: int) -> None:
    """Fails if a stream of 48,000 + `extra` samples at 48 kHz (not a whole number of 16 kHz
    samples unless extra is 0) does not give exactly as many samples as ffmpeg's decode."""
    ogg = tmp_path / "tone.ogg"
    ffmpeg(
        "-f", "lavfi", "-i", f"sine=frequency=300:sample_rate=48000:duration={1 + extra / 48000}",
        "-c:a", "libopus", "-b:a", "32k", ogg,
    )  # fmt: skip
    lib = _opus_worker.load_libopus()
    ours = tmp_path / "ours.wav"
    samples = _opus_worker.decode_file(lib, str(ogg), str(ours), None)
    theirs = _ffmpeg_samples(ogg, tmp_path / "ffmpeg.wav")
    assert samples == len(theirs) == round((48_000 + extra) / 3)
    assert _correlation(_samples(ours)[1], theirs) > 0.999


def test_long_message_read_and_written_in_pieces_matches_ffmpeg(
    media: MediaFiles, tmp_path: Path
) -> None:
    """Fails if a file larger than one read, decoding to more than the output buffer holds,
    is not decoded whole as ffmpeg decodes it, or is not cut exactly at max_samples."""
    ogg = tmp_path / "long-speech.ogg"
    ffmpeg(
        "-stream_loop", "-1", "-i", media.speech_wav, "-t", "45", "-ac", "1", "-ar", "48000",
        "-c:a", "libopus", "-b:a", "64k", "-application", "voip", ogg,
    )  # fmt: skip
    assert ogg.stat().st_size > _opus_worker._READ
    lib = _opus_worker.load_libopus()
    whole, cut = tmp_path / "whole.wav", tmp_path / "cut.wav"
    samples = _opus_worker.decode_file(lib, str(ogg), str(whole), None)
    assert samples > _opus_worker._OUT_SAMPLES
    theirs = _ffmpeg_samples(ogg, tmp_path / "ffmpeg.wav")
    shape, ours = _samples(whole)
    assert shape == (1, 2, 16000)
    assert len(ours) == samples == len(theirs)
    assert _correlation(ours, theirs) > 0.999
    limit = _opus_worker._OUT_SAMPLES + 12_345
    assert _opus_worker.decode_file(lib, str(ogg), str(cut), limit) == limit
    assert _samples(cut)[1] == ours[:limit]


def test_packets_continued_across_pages_decode_the_same(media: MediaFiles, tmp_path: Path) -> None:
    """Fails if packets split over two or more pages (allowed by Ogg, rare in voice messages)
    are not joined back exactly, or their pages' granule positions are misread."""
    ogg = tmp_path / "dense.ogg"
    ffmpeg(
        "-i", media.speech_wav, "-ac", "1", "-ar", "48000", "-c:a", "libopus", "-b:a", "256k", ogg,
    )  # fmt: skip
    repaged = tmp_path / "repaged.ogg"
    assert _repage(ogg, repaged, segments_per_page=1) > 100
    lib = _opus_worker.load_libopus()
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    assert _opus_worker.decode_file(lib, str(ogg), str(a), None) == _opus_worker.decode_file(
        lib, str(repaged), str(b), None
    )
    assert a.read_bytes() == b.read_bytes()
    assert len(_samples(b)[1]) == len(_ffmpeg_samples(repaged, tmp_path / "ffmpeg.wav"))


@pytest.mark.parametrize("name", ["truncated_ogg", "random_ogg", "tone_mp3"])
async def test_what_the_decoder_cannot_read_is_passed_back(
    media: MediaFiles, decoders: OpusDecoders, tmp_path: Path, name: str
) -> None:
    """Fails if a cut, random or non-Ogg file is decoded anyway or leaves a WAV behind."""
    out = tmp_path / "out.wav"
    assert not await decoders.decode(
        getattr(media, name), out, timeout_s=TIMEOUT_S, max_duration_s=None
    )
    assert not out.exists()


def test_surround_opus_is_unsupported(tmp_path: Path) -> None:
    """Fails if a multichannel (mapping family 1) stream is not left to ffmpeg."""
    surround = tmp_path / "surround.ogg"
    ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-ac", "6", "-ar", "48000",
        "-c:a", "libopus", "-mapping_family", "1", surround,
    )  # fmt: skip
    lib = _opus_worker.load_libopus()
    with pytest.raises(_opus_worker.Unsupported):
        _opus_worker.decode_file(lib, str(surround), str(tmp_path / "out.wav"), None)


async def test_packet_libopus_refuses_goes_to_ffmpeg(
    media: MediaFiles, decoders: OpusDecoders, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Fails if a file whose packet libopus refuses is not transcoded by ffmpeg instead."""
    broken = tmp_path / "broken.ogg"
    _break_first_audio_packet(media.voice_ogg, broken)
    out = tmp_path / "out.wav"
    assert not await decoders.decode(broken, out, timeout_s=TIMEOUT_S, max_duration_s=None)
    caplog.set_level(logging.INFO, logger="bot.media")
    await Transcoder(decoders).to_wav(broken, out, probe=OGG_OPUS, timeout_s=TIMEOUT_S)
    shape, samples = _samples(out)
    assert shape == (1, 2, 16000)
    assert len(samples) > 16000
    assert "passed broken.ogg to ffmpeg (corrupt" in caplog.text


async def test_overrunning_decode_is_killed_and_the_worker_replaced(
    media: MediaFiles, decoders: OpusDecoders, tmp_path: Path
) -> None:
    """Fails if a decode that never ends is not stopped at its deadline, or the pool dies."""
    (worker,) = decoders._idle
    head = media.voice_ogg.read_bytes()[:4096]
    with stalled_pipe(tmp_path / "stalled.ogg", head) as stalled, pytest.raises(MediaTimeout):
        await decoders.decode(stalled, tmp_path / "out.wav", timeout_s=0.5, max_duration_s=None)
    assert worker.proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "out.wav").exists()
    out = tmp_path / "after.wav"
    assert await decoders.decode(media.voice_ogg, out, timeout_s=TIMEOUT_S, max_duration_s=None)


async def test_dead_worker_falls_back_to_ffmpeg_then_is_replaced(
    media: MediaFiles, decoders: OpusDecoders, tmp_path: Path
) -> None:
    """Fails if a worker that died between scans loses the scan or stops the pool for good."""
    (worker,) = decoders._idle
    os.kill(worker.proc.pid, signal.SIGKILL)
    await worker.proc.wait()
    out = tmp_path / "out.wav"
    await Transcoder(decoders).to_wav(media.voice_ogg, out, probe=OGG_OPUS, timeout_s=TIMEOUT_S)
    assert _samples(out)[0] == (1, 2, 16000)
    assert worker not in decoders._all
    again = tmp_path / "again.wav"
    assert await decoders.decode(media.voice_ogg, again, timeout_s=TIMEOUT_S, max_duration_s=None)


async def test_cancelled_decode_kills_its_worker(
    media: MediaFiles, decoders: OpusDecoders, tmp_path: Path
) -> None:
    """Fails if cancelling a scan mid-decode leaves the worker running on the file."""
    (worker,) = decoders._idle
    with stalled_pipe(tmp_path / "stalled.ogg", media.voice_ogg.read_bytes()[:4096]) as stalled:
        task = asyncio.create_task(
            decoders.decode(stalled, tmp_path / "out.wav", timeout_s=60, max_duration_s=None)
        )
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert worker.proc.returncode == -signal.SIGKILL


async def test_without_libopus_every_transcode_uses_ffmpeg(
    media: MediaFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if a host without libopus cannot scan voice messages, or keeps retrying."""
    script = tmp_path / "no_opus.py"
    script.write_text('print(\'{"ready": false, "detail": "libopus not found"}\', flush=True)\n')
    monkeypatch.setattr(_opus_pool, "_WORKER", script)
    pool = OpusDecoders(2)
    await pool.start()
    try:
        assert not pool.enabled
        out = tmp_path / "out.wav"
        await Transcoder(pool).to_wav(media.voice_ogg, out, probe=OGG_OPUS, timeout_s=TIMEOUT_S)
        assert _samples(out)[0] == (1, 2, 16000)
    finally:
        await pool.close()


async def test_zero_processes_means_ffmpeg_only(media: MediaFiles, tmp_path: Path) -> None:
    """Fails if SPOOFWATCH_DECODER_PROCESSES=0 still starts a decoder process."""
    pool = OpusDecoders(0)
    await pool.start()
    assert not pool._all
    assert not await pool.decode(
        media.voice_ogg, tmp_path / "x.wav", timeout_s=TIMEOUT_S, max_duration_s=None
    )


def test_worker_decodes_with_the_standard_library_alone() -> None:
    """Fails if the worker imports anything beyond the standard library (it runs with -S)."""
    source = Path(_opus_worker.__file__).read_text()
    imports = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from ")) and "__future__" not in line
    }
    stdlib = {"collections", "contextlib", "ctypes", "dataclasses", "json", "os", "signal"}
    assert imports <= stdlib | {"struct", "sys", "typing"}


def test_cut_file_is_corrupt_for_the_worker(media: MediaFiles, tmp_path: Path) -> None:
    """Fails if a voice message cut inside a page is decoded as if it were whole."""
    cut = make_truncated(tmp_path / "cut.ogg", media.voice_ogg, 0.5)
    lib = _opus_worker.load_libopus()
    with pytest.raises(_opus_worker.Corrupt):
        _opus_worker.decode_file(lib, str(cut), str(tmp_path / "out.wav"), None)


async def test_workers_die_with_the_bot(media: MediaFiles, tmp_path: Path) -> None:
    """Fails if a decoder busy on a file outlives a bot killed with SIGKILL (no clean-up)."""
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from bot.media import OpusDecoders\n"
        "async def main():\n"
        "    pool = OpusDecoders(1)\n"
        "    await pool.start()\n"
        "    print([w.proc.pid for w in pool._all][0], flush=True)\n"
        "    src, dst = Path(sys.argv[1]), Path(sys.argv[2])\n"
        "    await pool.decode(src, dst, timeout_s=3600, max_duration_s=None)\n"
        "asyncio.run(main())\n"
    )
    head = media.voice_ogg.read_bytes()[:4096]
    with stalled_pipe(tmp_path / "stalled.ogg", head) as stalled:
        bot = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, str(stalled), str(tmp_path / "out.wav"),
            stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parents[3],
        )  # fmt: skip
        assert bot.stdout is not None
        worker_pid = int(await asyncio.wait_for(bot.stdout.readline(), TIMEOUT_S))
        await asyncio.sleep(0.2)  # the request reaches the worker, which blocks on the pipe
        assert _alive(worker_pid)
        bot.kill()
        await bot.wait()
        async with asyncio.timeout(TIMEOUT_S):
            while _alive(worker_pid):
                await asyncio.sleep(0.02)


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
