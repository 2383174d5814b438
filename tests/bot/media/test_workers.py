"""The media worker processes: the same audio as the ffmpeg command line, clear errors for bad
input, and a worker that hangs or dies is killed and replaced.

Real PyAV in real worker processes; the files are real media made by the test kit.
"""

from __future__ import annotations

import array
import asyncio
import math
import os
import signal
import struct
import sys
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.errors import (
    CorruptMedia,
    EmptyMedia,
    MediaError,
    MediaTimeout,
    NoAudioTrack,
    NotMedia,
    SettingsError,
)
from bot.media import MediaProbe, MediaWorkers, Transcoder, _workers, probe, transcode_to_wav
from testkit.media_factory import MediaFiles, ffmpeg, stalled_pipe

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
async def workers() -> AsyncIterator[MediaWorkers]:
    pool = MediaWorkers(1)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


async def _to_wav(workers: MediaWorkers, src: Path, dst: Path, **kwargs: float) -> None:
    await transcode_to_wav(src, dst, timeout_s=TIMEOUT_S, workers=workers, **kwargs)


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


def _ffmpeg_samples(source: Path, target: Path) -> array.array[int]:
    """The ffmpeg command line's decode of `source` to 16 kHz mono 16-bit samples."""
    ffmpeg("-i", source, "-ac", "1", "-ar", "16000", "-f", "wav", target)
    return _samples(target)[1]


def _ogg_crc(data: bytes) -> int:
    """Ogg's page checksum (CRC-32, polynomial 0x04C11DB7, not reflected, no final xor)."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def _break_first_audio_packet(source: Path, target: Path) -> None:
    """A copy of `source` whose first audio packet says "0 frames" (invalid Opus).

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


# --- the audio -------------------------------------------------------------------------------


async def test_decoded_voice_message_matches_ffmpeg(
    media: MediaFiles, workers: MediaWorkers, tmp_path: Path
) -> None:
    """Fails if the worker's WAV differs from the ffmpeg command line's in format, length or
    sound (pre-skip dropped, end trimmed by the granule position)."""
    ours = tmp_path / "ours.wav"
    await _to_wav(workers, media.voice_ogg, ours)
    shape, a = _samples(ours)
    b = _ffmpeg_samples(media.voice_ogg, tmp_path / "ffmpeg.wav")
    assert shape == (1, 2, 16000)
    assert len(a) == len(b)
    assert _correlation(a, b) > 0.999


@pytest.mark.parametrize("channels", [2, 6])
async def test_stereo_and_surround_are_mixed_to_mono(
    media: MediaFiles, workers: MediaWorkers, tmp_path: Path, channels: int
) -> None:
    """Fails if a stereo or 5.1 (mapping family 1) Ogg Opus file is refused or written with
    more than one channel."""
    source = tmp_path / "many.ogg"
    family = ["-mapping_family", "1"] if channels > 2 else []
    ffmpeg(
        "-i", media.speech_wav, "-ac", str(channels), "-ar", "48000", "-c:a", "libopus",
        *family, source,
    )  # fmt: skip
    out = tmp_path / "out.wav"
    await _to_wav(workers, source, out)
    shape, samples = _samples(out)
    assert shape == (1, 2, 16000)
    expected = (await probe(source, timeout_s=TIMEOUT_S, workers=workers)).duration_s
    assert expected is not None
    assert len(samples) / 16000 == pytest.approx(expected, abs=0.05)


async def test_output_stops_at_max_duration(
    media: MediaFiles, workers: MediaWorkers, tmp_path: Path
) -> None:
    """Fails if max_duration_s does not cut the output of a 3-hour file at exactly 2 s."""
    out = tmp_path / "out.wav"
    await _to_wav(workers, media.long_ogg, out, max_duration_s=2)
    _, samples = _samples(out)
    assert len(samples) == 2 * 16000


@pytest.mark.parametrize("extra", [0, 1, 2])
async def test_end_trim_rounds_like_ffmpeg(
    workers: MediaWorkers, tmp_path: Path, extra: int
) -> None:
    """Fails if a stream of 48,000 + `extra` samples at 48 kHz (not a whole number of 16 kHz
    samples unless extra is 0) does not give exactly as many samples as ffmpeg's decode."""
    ogg = tmp_path / "tone.ogg"
    ffmpeg(
        "-f", "lavfi", "-i", f"sine=frequency=300:sample_rate=48000:duration={1 + extra / 48000}",
        "-c:a", "libopus", "-b:a", "32k", ogg,
    )  # fmt: skip
    ours = tmp_path / "ours.wav"
    await _to_wav(workers, ogg, ours)
    theirs = _ffmpeg_samples(ogg, tmp_path / "ffmpeg.wav")
    samples = _samples(ours)[1]
    assert len(samples) == len(theirs) == round((48_000 + extra) / 3)
    assert _correlation(samples, theirs) > 0.999


async def test_long_message_written_in_pieces_matches_ffmpeg(
    media: MediaFiles, workers: MediaWorkers, tmp_path: Path
) -> None:
    """Fails if a message written to the WAV in many pieces is not decoded whole as ffmpeg
    decodes it, or is not cut exactly at max_duration_s (mid-piece)."""
    ogg = tmp_path / "long-speech.ogg"
    ffmpeg(
        "-stream_loop", "-1", "-i", media.speech_wav, "-t", "45", "-ac", "1", "-ar", "48000",
        "-c:a", "libopus", "-b:a", "64k", "-application", "voip", ogg,
    )  # fmt: skip
    whole, cut = tmp_path / "whole.wav", tmp_path / "cut.wav"
    await _to_wav(workers, ogg, whole)
    theirs = _ffmpeg_samples(ogg, tmp_path / "ffmpeg.wav")
    shape, ours = _samples(whole)
    assert shape == (1, 2, 16000)
    assert len(ours) == len(theirs) == 45 * 16000
    assert _correlation(ours, theirs) > 0.999
    limit = 20 * 16000 + 12_345
    await _to_wav(workers, ogg, cut, max_duration_s=limit / 16000)
    assert _samples(cut)[1] == ours[:limit]


async def test_a_damaged_packet_is_skipped_and_the_rest_decoded(
    media: MediaFiles, workers: MediaWorkers, tmp_path: Path
) -> None:
    """Fails if one packet the Opus decoder refuses loses the whole scan (the ffmpeg command
    line skips it and decodes the rest; so must the worker)."""
    broken = tmp_path / "broken.ogg"
    _break_first_audio_packet(media.voice_ogg, broken)
    out = tmp_path / "out.wav"
    await Transcoder(workers).to_wav(broken, out, probe=OGG_OPUS, timeout_s=TIMEOUT_S)
    shape, samples = _samples(out)
    assert shape == (1, 2, 16000)
    assert len(samples) > 16000


# --- bad input -------------------------------------------------------------------------------


def _written(name: str, data: bytes) -> Callable[[MediaFiles, Path], Path]:
    def write(_files: MediaFiles, tmp: Path) -> Path:
        (tmp / name).write_bytes(data)
        return tmp / name

    return write


@pytest.mark.parametrize(
    ("make", "error"),
    [
        pytest.param(lambda m, _t: m.empty_ogg, EmptyMedia, id="zero-bytes"),
        pytest.param(lambda m, _t: m.random_ogg, CorruptMedia, id="random-bytes"),
        pytest.param(lambda m, _t: m.html_mp4, CorruptMedia, id="html-as-mp4"),
        pytest.param(lambda m, _t: m.image_png, NotMedia, id="png"),
        pytest.param(lambda m, _t: m.silent_mp4, NoAudioTrack, id="video-without-sound"),
        pytest.param(_written("notes.mp3", b"1 2 3\n" * 5000), CorruptMedia, id="text-as-mp3"),
    ],
)
async def test_what_cannot_be_decoded_is_refused_clearly(
    media: MediaFiles,
    workers: MediaWorkers,
    tmp_path: Path,
    make: Callable[[MediaFiles, Path], Path],
    error: type[MediaError],
) -> None:
    """Fails if a file that reaches the decode without a probe (a caller's mistake, or a file
    changed since) is decoded anyway, refused for the wrong reason, or leaves a WAV behind."""
    out = tmp_path / "out.wav"
    with pytest.raises(error) as caught:
        await _to_wav(workers, make(media, tmp_path), out)
    assert type(caught.value) is error
    assert str(tmp_path) not in caught.value.message
    assert not out.exists()


async def test_a_file_without_sound_is_refused_before_any_decode(
    media: MediaFiles, tmp_path: Path
) -> None:
    """Fails if `Transcoder.to_wav` sends a file its probe found silent to a worker."""
    silent = MediaProbe("mov,mp4,m4a,3gp,3g2,mj2", 2.0, False, True, None, "h264")
    pool = MediaWorkers(1)  # never started: any request would start a process
    with pytest.raises(NoAudioTrack):
        await Transcoder(pool).to_wav(
            media.silent_mp4, tmp_path / "x.wav", probe=silent, timeout_s=TIMEOUT_S
        )
    assert not pool._all


# --- hung and dead workers -------------------------------------------------------------------


async def test_overrunning_decode_is_killed_and_the_worker_replaced(
    media: MediaFiles, workers: MediaWorkers, tmp_path: Path
) -> None:
    """Fails if a decode that never ends is not stopped at its deadline, or the pool dies."""
    (worker,) = workers._idle
    head = media.voice_ogg.read_bytes()[:4096]
    with stalled_pipe(tmp_path / "stalled.ogg", head) as stalled, pytest.raises(MediaTimeout):
        await transcode_to_wav(stalled, tmp_path / "out.wav", timeout_s=1.0, workers=workers)
    assert worker.proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "out.wav").exists()
    out = tmp_path / "after.wav"
    await _to_wav(workers, media.voice_ogg, out)
    assert _samples(out)[0] == (1, 2, 16000)


async def test_dead_worker_is_replaced_and_the_scan_goes_on(
    media: MediaFiles, workers: MediaWorkers, tmp_path: Path
) -> None:
    """Fails if a worker that died between scans loses the next scan or stops the pool."""
    (worker,) = workers._idle
    os.kill(worker.proc.pid, signal.SIGKILL)
    await worker.proc.wait()
    out = tmp_path / "out.wav"
    await Transcoder(workers).to_wav(media.voice_ogg, out, probe=OGG_OPUS, timeout_s=TIMEOUT_S)
    assert _samples(out)[0] == (1, 2, 16000)
    assert worker not in workers._all
    assert len(workers._idle) == 1


async def test_a_file_that_kills_its_worker_twice_is_corrupt(
    media: MediaFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if a file on which the worker dies is retried without end, or is not refused."""
    script = tmp_path / "dies.py"
    script.write_text(
        "import sys\nprint('{\"ready\": true}', flush=True)\nsys.stdin.readline()\n"
        "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    monkeypatch.setattr(_workers, "_WORKER", script)
    pool = MediaWorkers(1)
    try:
        with pytest.raises(CorruptMedia, match="could not be decoded"):
            await transcode_to_wav(
                media.voice_ogg, tmp_path / "x.wav", timeout_s=TIMEOUT_S, workers=pool
            )
    finally:
        await pool.close()
    assert not (tmp_path / "x.wav").exists()


async def test_cancelled_decode_kills_its_worker(
    media: MediaFiles, workers: MediaWorkers, tmp_path: Path
) -> None:
    """Fails if cancelling a scan mid-decode leaves the worker running on the file."""
    (worker,) = workers._idle
    with stalled_pipe(tmp_path / "stalled.ogg", media.voice_ogg.read_bytes()[:4096]) as stalled:
        task = asyncio.create_task(
            transcode_to_wav(stalled, tmp_path / "out.wav", timeout_s=60, workers=workers)
        )
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert worker.proc.returncode == -signal.SIGKILL


async def test_a_worker_that_cannot_start_is_a_settings_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if a host where the worker cannot import PyAV starts without saying so."""
    script = tmp_path / "no_av.py"
    script.write_text('print(\'{"ready": false, "detail": "No module named av"}\', flush=True)\n')
    monkeypatch.setattr(_workers, "_WORKER", script)
    pool = MediaWorkers(2)
    try:
        with pytest.raises(SettingsError, match="No module named av"):
            await pool.start()
    finally:
        await pool.close()
    assert not pool._all


async def test_zero_processes_means_one_process_per_file(media: MediaFiles, tmp_path: Path) -> None:
    """Fails if SPOOFWATCH_DECODER_PROCESSES=0 keeps a process alive between files, or
    cannot decode at all."""
    pool = MediaWorkers(0)
    await pool.start()
    assert not pool._all
    out = tmp_path / "x.wav"
    await transcode_to_wav(media.voice_ogg, out, timeout_s=TIMEOUT_S, workers=pool)
    assert _samples(out)[0] == (1, 2, 16000)
    assert not pool._all


def test_worker_imports_only_the_standard_library_and_pyav() -> None:
    """Fails if the worker imports the bot (or anything else) into the process that reads
    untrusted media."""
    source = Path(_workers._WORKER).read_text()
    imports = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.strip().startswith(("import ", "from ")) and "__future__" not in line
    }
    stdlib = {"contextlib", "ctypes", "json", "os", "resource", "signal", "stat", "struct"}
    assert imports <= stdlib | {"sys", "typing", "av"}


async def test_workers_die_with_the_bot(media: MediaFiles, tmp_path: Path) -> None:
    """Fails if a worker busy on a file outlives a bot killed with SIGKILL (no clean-up)."""
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from bot.media import MediaWorkers, transcode_to_wav\n"
        "async def main():\n"
        "    pool = MediaWorkers(1)\n"
        "    await pool.start()\n"
        "    print([w.proc.pid for w in pool._all][0], flush=True)\n"
        "    src, dst = Path(sys.argv[1]), Path(sys.argv[2])\n"
        "    await transcode_to_wav(src, dst, timeout_s=3600, workers=pool)\n"
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
        await asyncio.sleep(0.3)  # the request reaches the worker, which blocks on the pipe
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
