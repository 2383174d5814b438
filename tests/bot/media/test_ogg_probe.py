"""Ogg files: described as ffprobe describes them, and refused when their last page is cut short."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.detectors import Submission, SubmitOptions, Upload
from bot.detectors.behavioral_signals import BehavioralSignalsClient
from bot.errors import CorruptMedia
from bot.media import _probe, download
from bot.media._worker import ogg_cut_short
from bot.scanning import MediaSource, MediaTools, ScanLimits, ScanRequest, ScanService
from bot.storage import NewScan, Trigger, open_audit_log
from bot.verdict import ProviderName
from testkit.media_factory import MediaFiles, ffmpeg, make_truncated


def ffprobe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-of", "json", f"file:{path}"],
        capture_output=True,
        check=True,
    ).stdout
    return float(json.loads(out)["format"]["duration"])


async def test_a_voice_message_is_described_as_ffprobe_describes_it(media: MediaFiles) -> None:
    """Fails if an Ogg Opus voice message's facts differ from ffprobe's."""
    probed = await _probe.probe(media.voice_ogg, timeout_s=10)
    assert probed.format_name == "ogg"
    assert probed.audio_codec == "opus"
    assert probed.has_audio
    assert not probed.has_video
    assert probed.duration_s == pytest.approx(ffprobe_duration(media.voice_ogg), abs=1e-6)


async def test_hours_of_opus_are_measured(media: MediaFiles) -> None:
    """Fails if a long recording's duration (for the length limit) is not read correctly."""
    probed = await _probe.probe(media.long_ogg, timeout_s=10)
    assert probed.duration_s == pytest.approx(ffprobe_duration(media.long_ogg), abs=1e-6)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.4, 0.5, 0.75, 0.9, 0.99])
def test_a_voice_message_cut_inside_a_page_is_cut_short(
    media: MediaFiles, tmp_path: Path, fraction: float
) -> None:
    """Fails if a voice message cut anywhere inside a page is taken for a whole file."""
    cut = make_truncated(tmp_path / "cut.ogg", media.voice_ogg, fraction)
    assert ogg_cut_short(str(cut))


def _page_ends(data: bytes) -> list[int]:
    ends, offset = [], 0
    while offset < len(data):
        segments = data[offset + 26]
        offset += 27 + segments + sum(data[offset + 27 : offset + 27 + segments])
        ends.append(offset)
    return ends


@pytest.mark.parametrize(
    ("make", "cut_short"),
    [
        pytest.param(lambda data: data, False, id="whole"),
        # Ends on a page boundary: nothing to tell it from a stream that simply stopped.
        pytest.param(lambda data: data[: _page_ends(data)[-2]], False, id="cut-between-pages"),
        pytest.param(lambda data: data[: _page_ends(data)[-2] + 2], True, id="cut-in-capture"),
        pytest.param(lambda data: data[: _page_ends(data)[-2] + 20], True, id="cut-in-header"),
        pytest.param(lambda data: data + b"trailing bytes", False, id="bytes-after-last-page"),
        # A page whose data happens to hold the capture pattern is still whole.
        pytest.param(lambda data: data[:-8] + b"OggS\0\0\0\0", False, id="OggS-in-data"),
    ],
)
def test_only_a_page_running_past_the_end_is_cut_short(
    media: MediaFiles, tmp_path: Path, make: Callable[[bytes], bytes], cut_short: bool
) -> None:
    """Fails if the tail check calls a whole file cut short, or misses a cut inside a page
    header (the judgement the previous page walker made, from the tail alone)."""
    path = tmp_path / "voice.ogg"
    path.write_bytes(make(media.voice_ogg.read_bytes()))
    assert ogg_cut_short(str(path)) is cut_short


async def test_a_cut_short_voice_message_is_refused(media: MediaFiles) -> None:
    """Fails if a truncated voice message is accepted (FFmpeg reads it without complaint)."""
    with pytest.raises(CorruptMedia, match="cut short"):
        await _probe.probe(media.truncated_ogg, timeout_s=10)


async def test_the_scan_tells_the_provider_client_how_long_the_media_is(
    tmp_path: Path,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    media: MediaFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails if the upload reaching the client lacks the media's duration (poll schedule)."""
    seen: list[Upload] = []
    original = bs_client.submit

    async def submit(upload: Upload, options: SubmitOptions) -> Submission:
        seen.append(upload)
        return await original(upload, options)

    monkeypatch.setattr(bs_client, "submit", submit)
    audit = await open_audit_log(tmp_path / "audit.db")
    try:
        scans = ScanService(
            audit=audit.scans,
            detectors={ProviderName.BEHAVIORAL_SIGNALS: bs_client},
            media=MediaTools(http_session, allowed_hosts=("127.0.0.1",), timeout_s=30),
            clock=lambda: datetime(2026, 11, 21, 12, tzinfo=UTC),
        )
        outcome = await scans.scan(
            ScanRequest(
                new=NewScan(
                    guild_id=1,
                    filename="voice-message.ogg",
                    content_type="audio/ogg",
                    trigger=Trigger.CLI,
                    provider=ProviderName.BEHAVIORAL_SIGNALS,
                ),
                source=MediaSource(path=media.voice_ogg),
                limits=ScanLimits(max_file_bytes=10 * 1024 * 1024, max_duration_s=600),
            )
        )
    finally:
        await audit.close()
    assert outcome.verdict is not None
    assert [u.format_name for u in seen] == ["wav"]
    assert seen[0].duration_s == pytest.approx(ffprobe_duration(media.voice_ogg), abs=1e-6)


async def test_a_cut_short_vorbis_ogg_is_refused(tmp_path: Path, media: MediaFiles) -> None:
    """Fails if an Ogg file of another codec (Vorbis) is accepted with its end missing."""
    vorbis = tmp_path / "vorbis.ogg"
    ffmpeg("-i", media.speech_wav, "-c:a", "libvorbis", vorbis)
    cut = make_truncated(tmp_path / "cut.ogg", vorbis, 0.6)
    with pytest.raises(CorruptMedia):
        await _probe.probe(cut, timeout_s=10)


async def test_a_downloaded_voice_message_is_not_looked_at_again(
    tmp_path: Path,
    http_session: aiohttp.ClientSession,
    media: MediaFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails if the probe of a file the download just wrote looks at it again in a thread hop
    of its own (the download knows it is a regular file of its size), or describes it
    differently from a fresh probe."""
    looks: list[Path] = []
    original = _probe._look_at

    def look_at(path: Path) -> tuple[bool, int]:
        looks.append(path)
        return original(path)

    monkeypatch.setattr(_probe, "_look_at", look_at)
    app = web.Application()
    body = media.voice_ogg.read_bytes()

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="audio/ogg")

    app.router.add_get("/voice.ogg", serve)
    async with TestServer(app, host="127.0.0.1") as server:
        dest = tmp_path / "media"
        got = await download(
            http_session,
            str(server.make_url("/voice.ogg")),
            dest,
            max_bytes=len(body),
            allowed_hosts=("127.0.0.1",),
        )
    assert got.look == (True, len(body))
    probed = await _probe.probe(got.path, timeout_s=10, look=got.look)
    assert looks == []
    assert probed == await _probe.probe(media.voice_ogg, timeout_s=10)
    assert looks == [media.voice_ogg]  # without a look, the probe takes its own
