"""Real, small media files for tests, generated with ffmpeg (and espeak-ng for speech).

`build_media(directory)` writes every file once; the session-scoped `media` fixture shares
them between tests (treat them as read-only: copy one before changing it). Files that are
deliberately wrong (empty, truncated, random bytes, text and HTML posing as MP4) are made
here too, so that each bad input in the test matrix is a real file on disk.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

SPEECH_TEXT = "This is a test voice message for Spoofwatch. Nothing here is synthetic."
LONG_DURATION_S = 3 * 3600
LONG_NAME_LENGTH = 200
NON_LATIN_NAME = "голосовое сообщение 語音メッセージ صوت.ogg"


@dataclass(frozen=True, slots=True)
class MediaFiles:
    """Paths of the generated files (the `media` fixture)."""

    #: Discord-like voice message: espeak speech, 48 kHz mono Opus at 32 kb/s in OGG.
    voice_ogg: Path
    #: espeak-ng's own output: 22.05 kHz mono 16-bit WAV.
    speech_wav: Path
    #: 1.5 s 440 Hz sine, 16 kHz mono WAV.
    tone_wav: Path
    #: 1.5 s sine as MP3.
    tone_mp3: Path
    #: The MP3 with a PNG cover (a video stream with the attached_pic disposition).
    cover_mp3: Path
    #: 2 s of 64x64 H.264 test pattern with speech as AAC.
    video_mp4: Path
    #: 2 s of 64x64 H.264, no audio stream.
    silent_mp4: Path
    #: 2 s of 64x64 VP8 with Opus audio in WebM.
    video_webm: Path
    #: A 64x64 PNG.
    image_png: Path
    #: 0 bytes, named .ogg.
    empty_ogg: Path
    #: The first 40 % of voice_ogg.
    truncated_ogg: Path
    #: 32 KiB of (seeded) random bytes named .ogg.
    random_ogg: Path
    #: Plain text named .mp4.
    text_mp4: Path
    #: An HTML error page named .mp4 (what a CDN returns instead of a deleted file).
    html_mp4: Path
    #: About 3 hours of silence, 48 kHz mono Opus at 6 kb/s in OGG (under 3 MB).
    long_ogg: Path
    #: voice_ogg under a 200-character name.
    long_name_ogg: Path
    #: voice_ogg under a Cyrillic/Japanese/Arabic name with spaces.
    non_latin_ogg: Path
    #: Wall-clock seconds `build_media` took.
    generation_s: float

    def paths(self) -> dict[str, Path]:
        """Every file by attribute name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "generation_s"}


def ffmpeg(*args: str | Path) -> None:
    """Run ffmpeg quietly; fail the test set-up loudly if it fails."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def make_speech_wav(path: Path, text: str = SPEECH_TEXT) -> Path:
    """Speech from espeak-ng (a sine if espeak-ng is not installed)."""
    if shutil.which("espeak-ng"):
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    else:
        make_tone_wav(path, duration_s=2.5)
    return path


def make_tone_wav(path: Path, *, duration_s: float = 1.5, rate: int = 16000) -> Path:
    ffmpeg(
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={duration_s}",
        "-ac", "1", "-ar", str(rate), "-c:a", "pcm_s16le", path,
    )  # fmt: skip
    return path


def make_voice_ogg(path: Path, speech_wav: Path) -> Path:
    """Like a Discord voice message: mono 48 kHz Opus, about 32 kb/s, in OGG."""
    ffmpeg(
        "-i", speech_wav, "-ac", "1", "-ar", "48000",
        "-c:a", "libopus", "-b:a", "32k", "-application", "voip", path,
    )  # fmt: skip
    return path


def make_tone_mp3(path: Path) -> Path:
    ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=440:duration=1.5",
        "-c:a", "libmp3lame", "-b:a", "32k", path,
    )  # fmt: skip
    return path


def make_image_png(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", path)
    return path


def make_cover_mp3(path: Path, mp3: Path, png: Path) -> Path:
    ffmpeg(
        "-i", mp3, "-i", png, "-map", "0", "-map", "1", "-c", "copy",
        "-disposition:v", "attached_pic", "-id3v2_version", "3", path,
    )  # fmt: skip
    return path


def make_video_mp4(path: Path, speech_wav: Path | None) -> Path:
    """64x64 H.264 for 2 s, with `speech_wav` as AAC, or without audio when None."""
    video = ["-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=2"]
    encode = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if speech_wav is None:
        ffmpeg(*video, *encode, path)
    else:
        ffmpeg(
            *video, "-i", speech_wav, *encode,
            "-c:a", "aac", "-b:a", "32k", "-ac", "1", "-shortest", path,
        )  # fmt: skip
    return path


def make_video_webm(path: Path, speech_wav: Path) -> Path:
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=2", "-i", speech_wav,
        "-c:v", "libvpx", "-deadline", "realtime", "-b:v", "50k",
        "-c:a", "libopus", "-b:a", "32k", "-ac", "1", "-shortest", path,
    )  # fmt: skip
    return path


def make_long_ogg(path: Path, duration_s: int = LONG_DURATION_S) -> Path:
    """Hours of Opus silence, quickly: encode ten seconds, then loop them by stream copy.

    Encoding three hours directly takes about 50 s; this takes about 0.3 s. 120 ms frames
    keep the packet count (and so the copying) low. Each loop repeats the Opus pre-skip,
    so the result is a little short of `duration_s` (10757 s for 3 h).
    """
    piece = path.with_name(f".{path.stem}-piece.ogg")
    ffmpeg(
        "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "10",
        "-c:a", "libopus", "-b:a", "6k", "-frame_duration", "120", piece,
    )  # fmt: skip
    loops = max(duration_s // 10 - 1, 0)
    ffmpeg("-stream_loop", str(loops), "-i", piece, "-c", "copy", path)
    piece.unlink()
    return path


def make_truncated(path: Path, source: Path, fraction: float = 0.4) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def make_random_bytes(path: Path, size: int = 32 * 1024, seed: int = 1234) -> Path:
    # Seeded, so the bytes never happen to start like an MP3 frame on one run in 2000.
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def make_text(path: Path) -> Path:
    path.write_text("This is not a video.\n" * 50, encoding="utf-8")
    return path


def make_html(path: Path) -> Path:
    path.write_text(
        "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
        "<body><h1>Not Found</h1><p>The requested attachment does not exist.</p></body>"
        "</html>\n",
        encoding="utf-8",
    )
    return path


def wav_header(*, rate: int = 16000, channels: int = 1, data_bytes: int = 0) -> bytes:
    """A canonical 44-byte PCM s16le WAV header."""
    block = channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


@contextlib.contextmanager
def stalled_pipe(path: Path, data: bytes | None = None) -> Iterator[Path]:
    """A named pipe that delivers `data` and then nothing, without ever ending.

    By default `data` is a WAV header and a second of silence: ffmpeg reading it decodes,
    writes its output, then waits forever for more. With `data=b""` ffprobe waits for its
    first bytes. Either way a deterministic "too slow to decode" input for timeout tests,
    with no timing involved.
    """
    if data is None:
        data = wav_header(data_bytes=16000 * 2 * 3600) + b"\0" * 32000
    os.mkfifo(path)
    # O_RDWR opens a FIFO without waiting for a reader, and keeps a writer present so the
    # reader never sees end-of-file. The pipe buffer (64 KiB) holds `data` without blocking.
    fd = os.open(path, os.O_RDWR)
    try:
        os.write(fd, data)
        yield path
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def build_media(directory: Path) -> MediaFiles:
    """Generate every test file into `directory`."""
    started = time.perf_counter()
    d = directory
    speech = make_speech_wav(d / "speech.wav")
    independent: dict[str, Callable[[], Path]] = {
        "voice_ogg": lambda: make_voice_ogg(d / "voice-message.ogg", speech),
        "tone_wav": lambda: make_tone_wav(d / "tone.wav"),
        "tone_mp3": lambda: make_tone_mp3(d / "tone.mp3"),
        "image_png": lambda: make_image_png(d / "image.png"),
        "video_mp4": lambda: make_video_mp4(d / "video.mp4", speech),
        "silent_mp4": lambda: make_video_mp4(d / "silent.mp4", None),
        "video_webm": lambda: make_video_webm(d / "video.webm", speech),
        "long_ogg": lambda: make_long_ogg(d / "long.ogg"),
    }
    # ffmpeg start-up dominates these tiny encodes; running them side by side halves the
    # wall-clock time.
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(make) for name, make in independent.items()}
        made = {name: future.result() for name, future in futures.items()}

    voice = made["voice_ogg"]
    long_name = d / ("v" * (LONG_NAME_LENGTH - len(".ogg")) + ".ogg")
    shutil.copyfile(voice, long_name)
    non_latin = d / NON_LATIN_NAME
    shutil.copyfile(voice, non_latin)
    empty = d / "empty.ogg"
    empty.write_bytes(b"")
    return MediaFiles(
        speech_wav=speech,
        cover_mp3=make_cover_mp3(d / "cover.mp3", made["tone_mp3"], made["image_png"]),
        empty_ogg=empty,
        truncated_ogg=make_truncated(d / "truncated.ogg", voice),
        random_ogg=make_random_bytes(d / "random.ogg"),
        text_mp4=make_text(d / "text.mp4"),
        html_mp4=make_html(d / "page.mp4"),
        long_name_ogg=long_name,
        non_latin_ogg=non_latin,
        generation_s=time.perf_counter() - started,
        **made,
    )


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide directory holding the generated media."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def media(media_dir: Path) -> MediaFiles:
    """Every generated test file, built once per session (read-only: copy before editing)."""
    return build_media(media_dir)
