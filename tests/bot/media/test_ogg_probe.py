"""Voice messages (Ogg Opus) are described from their page headers, without starting ffprobe."""

from __future__ import annotations

import json
import subprocess
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
from bot.media._ogg import read_ogg_opus
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


@pytest.fixture
def no_ffprobe(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("ffprobe was started")

    monkeypatch.setattr(_probe, "run_tool", refuse)


@pytest.mark.usefixtures("no_ffprobe")
async def test_a_voice_message_is_probed_from_its_pages(media: MediaFiles) -> None:
    """Fails if an Ogg Opus voice message needs ffprobe, or its facts differ from ffprobe's."""
    probed = await _probe.probe(media.voice_ogg, timeout_s=10)
    assert probed.format_name == "ogg"
    assert probed.audio_codec == "opus"
    assert probed.has_audio
    assert not probed.has_video
    assert probed.duration_s == pytest.approx(ffprobe_duration(media.voice_ogg), abs=1e-6)


@pytest.mark.usefixtures("no_ffprobe")
async def test_hours_of_opus_are_measured_without_ffprobe(media: MediaFiles) -> None:
    """Fails if a long recording's duration (for the length limit) is not read correctly."""
    probed = await _probe.probe(media.long_ogg, timeout_s=10)
    assert probed.duration_s == pytest.approx(ffprobe_duration(media.long_ogg), abs=1e-6)


@pytest.mark.usefixtures("no_ffprobe")
async def test_a_cut_short_voice_message_is_still_refused(media: MediaFiles) -> None:
    """Fails if a truncated voice message is accepted on the fast path."""
    with pytest.raises(CorruptMedia):
        await _probe.probe(media.truncated_ogg, timeout_s=10)


def test_other_ogg_files_are_left_to_ffprobe(tmp_path: Path, media: MediaFiles) -> None:
    """Fails if Vorbis, or an Ogg holding a second stream, is described without ffprobe."""
    vorbis = tmp_path / "vorbis.ogg"
    ffmpeg("-i", media.speech_wav, "-c:a", "libvorbis", vorbis)
    two_streams = tmp_path / "two.ogg"
    ffmpeg(
        "-i", media.voice_ogg, "-i", media.voice_ogg,
        "-map", "0:a", "-map", "1:a", "-c", "copy", two_streams,
    )  # fmt: skip
    assert read_ogg_opus(vorbis) is None
    assert read_ogg_opus(two_streams) is None
    assert read_ogg_opus(media.tone_wav) is None
    assert read_ogg_opus(media.random_ogg) is None


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


async def test_a_cut_short_ogg_described_by_ffprobe_is_refused(
    tmp_path: Path, media: MediaFiles
) -> None:
    """Fails if an Ogg file that goes to ffprobe (Vorbis) is accepted with its end missing."""
    vorbis = tmp_path / "vorbis.ogg"
    ffmpeg("-i", media.speech_wav, "-c:a", "libvorbis", vorbis)
    cut = make_truncated(tmp_path / "cut.ogg", vorbis, 0.6)
    with pytest.raises(CorruptMedia):
        await _probe.probe(cut, timeout_s=10)


async def test_a_downloaded_voice_message_is_looked_at_once(
    tmp_path: Path,
    http_session: aiohttp.ClientSession,
    media: MediaFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails if the probe of a file the download just wrote reads it again in a thread hop of
    its own (the download's hop looks at it), or describes it differently from a fresh probe."""
    looks: list[Path] = []
    original = _probe._look_at

    def look_at(path: Path) -> tuple[bool, object]:
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
    assert looks == [dest]  # in the download's own hop to a thread
    assert got.look is not None
    probed = await _probe.probe(got.path, timeout_s=10, look=got.look)
    assert looks == [dest]
    assert probed == await _probe.probe(media.voice_ogg, timeout_s=10)
    assert looks == [dest, media.voice_ogg]  # without a look, the probe takes its own
