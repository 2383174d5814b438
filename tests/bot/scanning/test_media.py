"""The media stages as one object: the scan service asks the `MediaSteps` it was given."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp

from bot import media
from bot.detectors.behavioral_signals import BehavioralSignalsClient
from bot.scanning import MediaSource, ScanService
from bot.storage import AuditLog, ScanStatus
from testkit.scan_support import NOON, cli_request
from testkit.standins import BehavioralSignalsStandIn, write_wav

#: What the fake's probe says every file is: a voice message (Opus in Ogg), which Behavioral
#: Signals does not take as it is.
VOICE = media.MediaProbe(
    format_name="ogg",
    duration_s=2.0,
    has_audio=True,
    has_video=False,
    audio_codec="opus",
    video_codec=None,
)


class FakeMedia:
    """Media steps that decode nothing: the file is taken as is, its probe is `VOICE`, and
    its WAV is a tone the fake writes itself."""

    def __init__(self) -> None:
        self.steps: list[str] = []

    async def fetch(
        self, source: MediaSource, workdir: Path, *, max_bytes: int
    ) -> media.Downloaded:
        self.steps.append("fetch")
        assert source.path is not None
        data = source.path.read_bytes()
        return media.Downloaded(
            path=source.path, size=len(data), sha256=hashlib.sha256(data).hexdigest()
        )

    async def probe(self, fetched: media.Downloaded) -> media.MediaProbe:
        self.steps.append("probe")
        return VOICE

    async def to_wav(
        self, src: Path, dst: Path, *, probe: media.MediaProbe, max_duration_s: float
    ) -> None:
        self.steps.append("to_wav")
        write_wav(dst, seconds=2.0)


async def test_the_service_uses_the_media_steps_it_is_given(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    bs_standin: BehavioralSignalsStandIn,
    tmp_path: Path,
) -> None:
    """Fails if the scan service fetches, probes or converts a file itself instead of through
    the media steps passed in: the "voice message" here is bytes no decoder could read, and
    only the fake's WAV can reach the provider."""
    not_really_ogg = tmp_path / "voice-message.ogg"
    not_really_ogg.write_bytes(b"OggS but not really" * 10)
    fake = FakeMedia()
    scans = ScanService(
        audit=audit.scans,
        detectors={bs_client.provider: bs_client},
        media=fake,
        clock=lambda: NOON,
    )
    outcome = await scans.scan(cli_request(not_really_ogg))
    assert outcome.error is None, outcome.error
    assert outcome.record.status is ScanStatus.DONE
    assert fake.steps == ["fetch", "probe", "to_wav"]
    [job] = bs_standin.jobs.values()
    assert job.upload.head.startswith(b"RIFF")
    assert job.upload.filename == "voice-message.wav"
