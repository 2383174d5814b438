"""Building a ScanService for tests that need no Discord (real SQLite, stand-ins, media workers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from bot.detectors import Detector
from bot.media import Transcoder
from bot.scanning import MediaSource, MediaTools, ScanLimits, ScanRequest, ScanService
from bot.storage import AuditLog, NewScan, Trigger, open_audit_log
from bot.verdict import ProviderName

NOON = datetime(2026, 11, 21, 12, tzinfo=UTC)
LIMITS = ScanLimits(max_file_bytes=50 * 1024 * 1024, max_duration_s=600)


@pytest.fixture
async def audit(tmp_path: Path) -> AsyncIterator[AuditLog]:
    """A fresh audit log (real SQLite, real migrations) in tmp_path."""
    log = await open_audit_log(tmp_path / "audit.db")
    yield log
    await log.close()


def make_service(
    audit: AuditLog,
    http_session: aiohttp.ClientSession,
    *detectors: Detector,
    temp_dir: Path | None = None,
    clock: Callable[[], datetime] = lambda: NOON,
    transcoder: Transcoder | None = None,
) -> ScanService:
    """A scan service over the given detectors, downloading only from 127.0.0.1."""
    return ScanService(
        audit=audit.scans,
        detectors={d.provider: d for d in detectors},
        media=MediaTools(
            http_session, allowed_hosts=("127.0.0.1",), timeout_s=30, transcoder=transcoder
        ),
        temp_dir=temp_dir,
        clock=clock,
    )


def cli_request(
    path: Path,
    provider: ProviderName = ProviderName.BEHAVIORAL_SIGNALS,
    *,
    limits: ScanLimits = LIMITS,
    content_type: str | None = "audio/ogg",
    message_id: int | None = None,
    guild_id: int = 1,
) -> ScanRequest:
    """A scan of a local file, as `python -m bot check` asks for it."""
    return ScanRequest(
        new=NewScan(
            guild_id=guild_id,
            message_id=message_id,
            attachment_id=message_id,
            filename=path.name,
            content_type=content_type,
            trigger=Trigger.CLI,
            provider=provider,
        ),
        source=MediaSource(path=path),
        limits=limits,
    )
