"""Media handling on real files: probe, classify, limits, transcode, download, hashing."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.errors import (
    CorruptMedia,
    DisallowedHost,
    DownloadFailed,
    EmptyMedia,
    MediaError,
    MediaTimeout,
    MediaTooLarge,
    MediaTooLong,
    NoAudioTrack,
    NotMedia,
)
from bot.media import (
    Downloaded,
    MediaProbe,
    check_duration,
    classify,
    download,
    hash_file,
    probe,
    suffix_for,
    transcode_to_wav,
)
from bot.media._workers import short_reason
from bot.verdict import MediaKind
from testkit.media_factory import MediaFiles, make_truncated, stalled_pipe

PROBE_TIMEOUT_S = 30.0  # generous: only a hung media worker would reach it
GUARD_S = 30.0


def _from_media(name: str) -> Callable[[MediaFiles, Path], Path]:
    return lambda files, _tmp: getattr(files, name)


def _written(name: str, data: bytes) -> Callable[[MediaFiles, Path], Path]:
    def write(_files: MediaFiles, tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(data)
        return path

    return write


def _cut(name: str, source: str, fraction: float) -> Callable[[MediaFiles, Path], Path]:
    return lambda files, tmp: make_truncated(tmp / name, getattr(files, source), fraction)


# --- probe and classify ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type", "voice_flag", "expected"),
    [
        ("voice_ogg", "audio/ogg", True, MediaKind.VOICE),
        ("voice_ogg", "audio/ogg", False, MediaKind.AUDIO),
        ("long_name_ogg", "audio/ogg", True, MediaKind.VOICE),
        ("non_latin_ogg", "audio/ogg", True, MediaKind.VOICE),
        ("speech_wav", "audio/wav", False, MediaKind.AUDIO),
        ("tone_wav", "audio/x-wav", False, MediaKind.AUDIO),
        ("tone_mp3", "audio/mpeg", False, MediaKind.AUDIO),
        ("cover_mp3", "audio/mpeg", False, MediaKind.AUDIO),
        ("video_mp4", "video/mp4", False, MediaKind.VIDEO),
        ("video_mp4", None, False, MediaKind.VIDEO),
        ("video_mp4", "audio/ogg", True, MediaKind.VIDEO),
        ("video_webm", "video/webm", False, MediaKind.VIDEO),
        ("voice_ogg", "image/png", False, MediaKind.AUDIO),
    ],
    ids=lambda v: str(v) if v is not None else "no-type",
)
async def test_real_media_is_classified(
    media: MediaFiles,
    name: str,
    content_type: str | None,
    voice_flag: bool,
    expected: MediaKind,
) -> None:
    """Fails if a real file of this container is probed or classified as the wrong kind."""
    probed = await media_probe(getattr(media, name))
    assert classify(probed, content_type=content_type, voice_flag=voice_flag) is expected


async def media_probe(path: Path) -> MediaProbe:
    return await probe(path, timeout_s=PROBE_TIMEOUT_S)


MP4 = "mov,mp4,m4a,3gp,3g2,mj2"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("voice_ogg", MediaProbe("ogg", 4.1, True, False, "opus", None)),
        ("tone_wav", MediaProbe("wav", 1.5, True, False, "pcm_s16le", None)),
        # The PNG cover is a video stream to FFmpeg, but not a video.
        ("cover_mp3", MediaProbe("mp3", 1.5, True, False, "mp3", None)),
        ("video_mp4", MediaProbe(MP4, 2.0, True, True, "aac", "h264")),
        ("silent_mp4", MediaProbe(MP4, 2.0, False, True, None, "h264")),
        ("video_webm", MediaProbe("matroska,webm", 2.0, True, True, "opus", "vp8")),
    ],
)
async def test_probe_reports_container_codecs_and_duration(
    media: MediaFiles, name: str, expected: MediaProbe
) -> None:
    """Fails if the worker's description is mapped wrongly (container, codecs, cover art,
    duration)."""
    probed = await media_probe(getattr(media, name))
    assert replace(probed, duration_s=None) == replace(expected, duration_s=None)
    assert probed.duration_s == pytest.approx(expected.duration_s, abs=0.2)


@pytest.mark.parametrize(
    ("make", "content_type", "error"),
    [
        pytest.param(_from_media("empty_ogg"), "audio/ogg", EmptyMedia, id="zero-bytes"),
        pytest.param(_from_media("truncated_ogg"), "audio/ogg", CorruptMedia, id="ogg-cut-at-40%"),
        pytest.param(
            _cut("head.ogg", "voice_ogg", 0.05), "audio/ogg", CorruptMedia, id="ogg-headers-only"
        ),
        pytest.param(
            _cut("cut.mp4", "video_mp4", 0.4), "video/mp4", CorruptMedia, id="mp4-without-index"
        ),
        pytest.param(_from_media("random_ogg"), "audio/ogg", NotMedia, id="random-bytes-ogg"),
        pytest.param(_from_media("text_mp4"), "video/mp4", NotMedia, id="text-mp4"),
        pytest.param(_from_media("html_mp4"), "video/mp4", NotMedia, id="html-claiming-video"),
        pytest.param(_from_media("image_png"), "image/png", NotMedia, id="png"),
        pytest.param(_from_media("image_png"), "video/mp4", NotMedia, id="png-claiming-video"),
        pytest.param(
            _written("notes.mp3", b"1 2 3\n" * 5000), "audio/mpeg", NotMedia, id="text-mp3"
        ),
        pytest.param(_written("blob.bin", bytes(range(256)) * 64), None, NotMedia, id="bytes-bin"),
        pytest.param(
            _from_media("silent_mp4"), "video/mp4", NoAudioTrack, id="video-without-sound"
        ),
    ],
)
async def test_bad_input_is_refused(
    media: MediaFiles,
    tmp_path: Path,
    make: Callable[[MediaFiles, Path], Path],
    content_type: str | None,
    error: type[MediaError],
) -> None:
    """Fails if this bad input gets through probe + classify, or is refused for the wrong reason."""
    path = make(media, tmp_path)
    with pytest.raises(error) as caught:
        classify(await media_probe(path), content_type=content_type)
    # The exact subclass: a truncated file must not be reported as "not media", and so on.
    assert type(caught.value) is error


async def test_playlist_cannot_make_the_probe_fetch(tmp_path: Path, file_host: FileHost) -> None:
    """Fails if FFmpeg follows an HLS playlist inside a "media" file to a URL."""
    playlist = tmp_path / "attachment"
    playlist.write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n"
        f"{file_host.url('/file')}\n#EXT-X-ENDLIST\n",
        encoding="utf-8",
    )
    with pytest.raises(NotMedia):
        await media_probe(playlist)
    assert file_host.requests == []


@pytest.mark.parametrize(
    ("probed", "content_type", "voice_flag", "outcome"),
    [
        (MediaProbe("ogg", 3.0, True, False, "opus", None), "audio/ogg", True, MediaKind.VOICE),
        (MediaProbe("mp3", 3.0, True, False, "mp3", None), None, False, MediaKind.AUDIO),
        (MediaProbe("mov", 3.0, True, True, "aac", "h264"), "video/mp4", True, MediaKind.VIDEO),
        (MediaProbe("mov", 3.0, False, True, None, "h264"), "video/mp4", False, NoAudioTrack),
        (MediaProbe("mov", 3.0, False, False, None, None), "video/mp4", False, NoAudioTrack),
        (MediaProbe("ogg", 3.0, False, False, None, None), "audio/ogg", True, NoAudioTrack),
        (MediaProbe("mov", 3.0, False, False, None, None), None, False, NotMedia),
        (MediaProbe("mov", 3.0, False, False, None, None), "text/html", False, NotMedia),
    ],
)
def test_classify_decides_from_the_probe(
    probed: MediaProbe,
    content_type: str | None,
    voice_flag: bool,
    outcome: MediaKind | type[MediaError],
) -> None:
    """Fails if classify lets the content type or voice flag override what the probe found."""
    if isinstance(outcome, MediaKind):
        assert classify(probed, content_type=content_type, voice_flag=voice_flag) is outcome
    else:
        with pytest.raises(outcome):
            classify(probed, content_type=content_type, voice_flag=voice_flag)


def test_silent_video_message_says_there_is_no_sound() -> None:
    """Fails if the user is not told that their video has no sound."""
    silent = MediaProbe("mov,mp4,m4a,3gp,3g2,mj2", 2.0, False, True, None, "h264")
    with pytest.raises(NoAudioTrack, match="no sound"):
        classify(silent, content_type="video/mp4")


# --- duration -----------------------------------------------------------------------------


async def test_three_hour_recording_is_too_long(media: MediaFiles) -> None:
    """Fails if a 3 h recording passes a 10 minute limit, or the error misstates it."""
    probed = await media_probe(media.long_ogg)
    with pytest.raises(MediaTooLong) as caught:
        check_duration(probed, max_duration_s=600)
    assert caught.value.duration_s > 2.9 * 3600
    assert caught.value.limit_s == 600


@pytest.mark.parametrize("duration_s", [4.1, 600.0, None])
def test_duration_within_limit_or_unknown_passes(duration_s: float | None) -> None:
    """Fails if a recording at or under the limit, or of unknown length, is refused."""
    probed = MediaProbe("ogg", duration_s, True, False, "opus", None)
    check_duration(probed, max_duration_s=600)


# --- suffix ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("format_name", "kind", "suffix"),
    [
        ("ogg", MediaKind.VOICE, ".ogg"),
        ("wav", MediaKind.AUDIO, ".wav"),
        ("mp3", MediaKind.AUDIO, ".mp3"),
        ("flac", MediaKind.AUDIO, ".flac"),
        ("mov,mp4,m4a,3gp,3g2,mj2", MediaKind.VIDEO, ".mp4"),
        ("mov,mp4,m4a,3gp,3g2,mj2", MediaKind.AUDIO, ".m4a"),
        ("matroska,webm", MediaKind.VIDEO, ".webm"),
        ("aac", MediaKind.AUDIO, ".aac"),
        ("something-new", MediaKind.AUDIO, ".bin"),
    ],
)
def test_suffix_follows_the_container(format_name: str, kind: MediaKind, suffix: str) -> None:
    """Fails if an upload would carry an extension that does not match its container."""
    assert suffix_for(format_name, kind) == suffix


# --- transcode -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["voice_ogg", "video_mp4", "video_webm", "tone_mp3", "non_latin_ogg", "long_name_ogg"]
)
async def test_transcode_makes_16khz_mono_pcm_wav(
    media: MediaFiles, tmp_path: Path, name: str
) -> None:
    """Fails if the WAV for the speech services is not 16 kHz mono s16, or loses audio."""
    source = getattr(media, name)
    dst = tmp_path / "audio.wav"
    await transcode_to_wav(source, dst, timeout_s=PROBE_TIMEOUT_S)
    with wave.open(str(dst), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        seconds = wav.getnframes() / wav.getframerate()
    expected = (await media_probe(source)).duration_s
    assert seconds == pytest.approx(expected, abs=0.25)


async def test_transcode_stops_at_max_duration(media: MediaFiles, tmp_path: Path) -> None:
    """Fails if max_duration_s does not cut the output, letting a long file fill the disk."""
    dst = tmp_path / "audio.wav"
    await transcode_to_wav(media.long_ogg, dst, timeout_s=PROBE_TIMEOUT_S, max_duration_s=2)
    with wave.open(str(dst), "rb") as wav:
        assert wav.getnframes() == pytest.approx(2 * 16000, abs=160)


async def test_transcode_of_silent_video_is_no_audio_track(
    media: MediaFiles, tmp_path: Path
) -> None:
    """Fails if a file without an audio stream is not reported as NoAudioTrack, or a WAV is
    left."""
    dst = tmp_path / "audio.wav"
    with pytest.raises(NoAudioTrack):
        await transcode_to_wav(media.silent_mp4, dst, timeout_s=PROBE_TIMEOUT_S)
    assert not dst.exists()


async def test_transcode_failure_is_corrupt_with_a_clean_reason(
    media: MediaFiles, tmp_path: Path
) -> None:
    """Fails if a decoding failure is not CorruptMedia, or its message leaks the temp path."""
    broken = make_truncated(tmp_path / "cut.mp4", media.video_mp4, 0.4)
    dst = tmp_path / "audio.wav"
    with pytest.raises(CorruptMedia) as caught:
        await transcode_to_wav(broken, dst, timeout_s=PROBE_TIMEOUT_S)
    assert str(tmp_path) not in caught.value.message
    assert len(caught.value.message) < 250
    assert not dst.exists()


# --- the media worker's deadline ---------------------------------------------------------


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> SpawnSpy:
    """Records every media worker process started (the real ones; nothing is faked)."""
    spy = SpawnSpy()
    real = asyncio.create_subprocess_exec

    async def spawn(*args: str, **kwargs: object) -> asyncio.subprocess.Process:
        proc = await real(*args, **kwargs)  # type: ignore[arg-type]
        spy.processes.append(proc)
        spy.started.set()
        return proc

    monkeypatch.setattr(asyncio, "create_subprocess_exec", spawn)
    return spy


@dataclass
class SpawnSpy:
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    def assert_all_killed_and_reaped(self) -> None:
        assert self.processes
        for proc in self.processes:
            assert proc.returncode == -signal.SIGKILL
            # Reaped: no zombie left in the process table.
            assert not Path(f"/proc/{proc.pid}").exists()


async def test_transcode_timeout_kills_the_worker(tmp_path: Path, spawned: SpawnSpy) -> None:
    """Fails if a stuck decode outlives its deadline, is not reaped, or leaves a partial WAV."""
    dst = tmp_path / "audio.wav"
    # GUARD_S only turns a hang (the kill is broken) into a failure; it is never reached.
    async with asyncio.timeout(GUARD_S):
        with stalled_pipe(tmp_path / "stalled") as source, pytest.raises(MediaTimeout):
            await transcode_to_wav(source, dst, timeout_s=2.0)
    spawned.assert_all_killed_and_reaped()
    assert not dst.exists()


async def test_probe_timeout_kills_the_worker(tmp_path: Path, spawned: SpawnSpy) -> None:
    """Fails if a stuck probe outlives its deadline or is not reaped."""
    async with asyncio.timeout(GUARD_S):
        with stalled_pipe(tmp_path / "stalled", data=b"") as source, pytest.raises(MediaTimeout):
            await probe(source, timeout_s=2.0)
    spawned.assert_all_killed_and_reaped()


async def test_cancelled_probe_kills_its_worker(tmp_path: Path, spawned: SpawnSpy) -> None:
    """Fails if cancelling a scan leaves its media worker running."""
    with stalled_pipe(tmp_path / "stalled", data=b"") as source:
        task = asyncio.create_task(probe(source, timeout_s=60))
        await spawned.started.wait()
        await asyncio.sleep(0.2)  # the worker is reading the pipe
        task.cancel()
        async with asyncio.timeout(GUARD_S):
            with pytest.raises(asyncio.CancelledError):
                await task
    spawned.assert_all_killed_and_reaped()


def test_short_reason_hides_paths_and_addresses(tmp_path: Path) -> None:
    """Fails if a decoder's error shown to users carries host paths, addresses or control
    bytes."""
    src = tmp_path / "secret-dir" / "media"
    detail = f"ogg @ 0x55d9c2fe41c0: Page at 123 is broken in \x1b[31m{src}\x07"
    reason = short_reason(detail, src)
    assert reason == "ogg: Page at 123 is broken in media"
    assert short_reason("x" * 1000, limit=40).endswith("…")


# --- hashing -------------------------------------------------------------------------------


async def test_hash_file_matches_hashlib(media: MediaFiles) -> None:
    """Fails if the chunked hash differs from hashing the whole file at once."""
    data = media.long_ogg.read_bytes()
    assert await hash_file(media.long_ogg) == (len(data), hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize(
    ("name", "max_bytes", "error"),
    [("voice_ogg", 1000, MediaTooLarge), ("empty_ogg", None, EmptyMedia)],
)
async def test_hash_file_refuses(
    media: MediaFiles, name: str, max_bytes: int | None, error: type[MediaError]
) -> None:
    """Fails if an oversized or empty local file is accepted."""
    with pytest.raises(error):
        await hash_file(getattr(media, name), max_bytes=max_bytes)


# --- download -------------------------------------------------------------------------------

BODY = bytes(range(256)) * (10 * 1024)  # 2.5 MiB: several write/hash flushes
CAP = 256 * 1024


@dataclass
class FileHost:
    """A file host on 127.0.0.1 (and a second one on 127.0.0.2 to redirect to)."""

    server: TestServer
    other: TestServer
    requests: list[str] = field(default_factory=list)
    other_requests: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def file_host() -> AsyncIterator[FileHost]:
    host: FileHost

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        host.requests.append(request.path)
        return await handler(request)

    async def file(_request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="audio/ogg")

    async def empty(_request: web.Request) -> web.Response:
        return web.Response(body=b"", content_type="audio/ogg")

    async def huge_declared(request: web.Request) -> web.StreamResponse:
        # Headers only: a client that tried to read the body would wait until the deadline.
        response = web.StreamResponse()
        response.content_length = 50 * CAP
        await response.prepare(request)
        await host.release.wait()
        return response

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(50):
            await response.write(b"\0" * (64 * 1024))
        return response

    async def stall(_request: web.Request) -> web.Response:
        await host.release.wait()
        return web.Response(body=b"late")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="<html>nope</html>")

    async def redirect_away(_request: web.Request) -> web.Response:
        raise web.HTTPFound(str(host.other.make_url("/file")))

    async def redirect_here(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/file")

    app = web.Application(middlewares=[record])
    app.router.add_get("/file", file)
    app.router.add_get("/empty", empty)
    app.router.add_get("/huge-declared", huge_declared)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/stall", stall)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/redirect-away", redirect_away)
    app.router.add_get("/redirect-here", redirect_here)

    other_app = web.Application()

    async def other_file(request: web.Request) -> web.Response:
        host.other_requests.append(request.path)
        return web.Response(body=BODY)

    other_app.router.add_get("/file", other_file)

    host = FileHost(
        server=TestServer(app, host="127.0.0.1"), other=TestServer(other_app, host="127.0.0.2")
    )
    await host.server.start_server()
    await host.other.start_server()
    yield host
    host.release.set()
    await host.server.close()
    await host.other.close()


@pytest.fixture
async def traced_session() -> AsyncIterator[SimpleNamespace]:
    """A client session that records every connection and request it starts."""
    events: list[str] = []
    trace = aiohttp.TraceConfig()

    async def on_request(*_args: object) -> None:
        events.append("request")

    async def on_connect(*_args: object) -> None:
        events.append("connect")

    trace.on_request_start.append(on_request)
    trace.on_connection_create_start.append(on_connect)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        yield SimpleNamespace(session=session, events=events)


LOOPBACK = ("127.0.0.1",)


async def test_download_streams_and_hashes(
    http_session: aiohttp.ClientSession, file_host: FileHost, tmp_path: Path
) -> None:
    """Fails if the saved bytes, their size or their sha256 differ from what was served."""
    dest = tmp_path / "media"
    got = await download(
        http_session, file_host.url("/file"), dest, max_bytes=len(BODY), allowed_hosts=LOOPBACK
    )
    assert got == Downloaded(path=dest, size=len(BODY), sha256=hashlib.sha256(BODY).hexdigest())
    assert dest.read_bytes() == BODY


async def test_download_follows_redirect_on_the_same_host(
    http_session: aiohttp.ClientSession, file_host: FileHost, tmp_path: Path
) -> None:
    """Fails if an allowed redirect (same host) is not followed."""
    got = await download(
        http_session,
        file_host.url("/redirect-here"),
        tmp_path / "media",
        max_bytes=len(BODY),
        allowed_hosts=LOOPBACK,
    )
    assert got.size == len(BODY)
    assert file_host.requests == ["/redirect-here", "/file"]


async def test_download_refuses_redirect_to_another_host(
    http_session: aiohttp.ClientSession, file_host: FileHost, tmp_path: Path
) -> None:
    """Fails if a redirect takes the download to a host that is not allowed."""
    dest = tmp_path / "media"
    with pytest.raises(DisallowedHost):
        await download(
            http_session,
            file_host.url("/redirect-away"),
            dest,
            max_bytes=len(BODY),
            allowed_hosts=LOOPBACK,
        )
    assert file_host.other_requests == []
    assert not dest.exists()


async def test_declared_oversize_is_refused_before_the_body(
    http_session: aiohttp.ClientSession, file_host: FileHost, tmp_path: Path
) -> None:
    """Fails if a Content-Length over the cap is not refused from the headers alone."""
    dest = tmp_path / "media"
    with pytest.raises(MediaTooLarge) as caught:
        # The body never comes: reading it would end in DownloadFailed at the deadline.
        await download(
            http_session,
            file_host.url("/huge-declared"),
            dest,
            max_bytes=CAP,
            allowed_hosts=LOOPBACK,
            timeout_s=10,
        )
    assert (caught.value.size, caught.value.limit) == (50 * CAP, CAP)
    assert not dest.exists()


async def test_streamed_oversize_is_cut_and_cleaned_up(
    http_session: aiohttp.ClientSession, file_host: FileHost, tmp_path: Path
) -> None:
    """Fails if a chunked body past the cap is not stopped, or its partial file is left."""
    dest = tmp_path / "media"
    with pytest.raises(MediaTooLarge) as caught:
        await download(
            http_session, file_host.url("/chunked"), dest, max_bytes=CAP, allowed_hosts=LOOPBACK
        )
    assert CAP < caught.value.size <= CAP + 64 * 1024
    assert not dest.exists()


@pytest.mark.parametrize(
    ("path", "refusal"),
    [
        ("/status/404", (DownloadFailed, "gone")),
        ("/status/403", (DownloadFailed, "gone")),
        ("/status/410", (DownloadFailed, "gone")),
        ("/status/500", (DownloadFailed, "HTTP 500")),
        ("/empty", (EmptyMedia, "empty")),
    ],
)
async def test_download_failures(
    http_session: aiohttp.ClientSession,
    file_host: FileHost,
    tmp_path: Path,
    path: str,
    refusal: tuple[type[MediaError], str],
) -> None:
    """Fails if an HTTP error or empty body is reported as the wrong error, or a file is left."""
    error, message = refusal
    dest = tmp_path / "media"
    with pytest.raises(error, match=message):
        await download(
            http_session, file_host.url(path), dest, max_bytes=CAP, allowed_hosts=LOOPBACK
        )
    assert not dest.exists()


async def test_download_deadline(
    http_session: aiohttp.ClientSession, file_host: FileHost, tmp_path: Path
) -> None:
    """Fails if a host that never answers is waited on past the deadline."""
    with pytest.raises(DownloadFailed, match="longer than"):
        await download(
            http_session,
            file_host.url("/stall"),
            tmp_path / "media",
            max_bytes=CAP,
            allowed_hosts=LOOPBACK,
            timeout_s=0.3,
        )


async def test_connection_refused_is_download_failed(
    http_session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Fails if a connection error escapes as an aiohttp exception."""
    with pytest.raises(DownloadFailed):
        await download(
            http_session,
            "http://127.0.0.1:9/nothing-listens-here",
            tmp_path / "media",
            max_bytes=CAP,
            allowed_hosts=LOOPBACK,
        )


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/voice-message.ogg",
        "https://cdn.discordapp.com.evil.example/a.ogg",
        "https://cdn.discordapp.com@evil.example/a.ogg",
        "http://cdn.discordapp.com/attachments/1/2/voice-message.ogg",
        "ftp://cdn.discordapp.com/a.ogg",
        "file:///etc/passwd",
        "http://127.0.0.1:9/not-on-the-list",
        "not a url",
    ],
)
async def test_disallowed_urls_are_refused_without_connecting(
    traced_session: SimpleNamespace, tmp_path: Path, url: str
) -> None:
    """Fails if a URL off the allow-list, or plain http to a real host, is even connected to."""
    with pytest.raises(DisallowedHost):
        await download(
            traced_session.session,
            url,
            tmp_path / "media",
            max_bytes=CAP,
            allowed_hosts=("cdn.discordapp.com", "media.discordapp.net"),
        )
    assert traced_session.events == []
