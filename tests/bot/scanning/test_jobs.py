"""One file, many scans at once: it reaches the provider once, whichever process (or task)
scans it, on either backend (real SQLite, real PostgreSQL, the provider's stand-in)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from bot.detectors.behavioral_signals import BehavioralSignalsClient
from bot.storage import AuditLog, ScanStatus
from bot.storage.postgres import PostgresAuditLog
from bot.storage.sqlite import SQLiteAuditLog
from testkit.postgres_server import drop_schema, fresh_schema
from testkit.scan_support import cli_request, make_service
from testkit.standins import BehavioralSignalsStandIn, write_wav


@pytest.mark.parametrize("backend", ["sqlite-one-process", "postgres-two-processes"])
async def test_the_same_file_scanned_at_once_is_submitted_once(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    http_session: aiohttp.ClientSession,
    bs_client: BehavioralSignalsClient,
    bs_standin: BehavioralSignalsStandIn,
    backend: str,
) -> None:
    """Fails if two scans of the same bytes running at the same time both send the file to
    the provider, instead of one waiting for the other's verdict."""
    logs: list[AuditLog]
    url = None
    if backend == "sqlite-one-process":
        logs = [await SQLiteAuditLog.open(tmp_path / "audit.db")]
    else:
        url = await fresh_schema(request.getfixturevalue("postgres_server"))
        logs = [await PostgresAuditLog.open(url), await PostgresAuditLog.open(url)]
    try:
        services = [make_service(log, http_session, bs_client) for log in logs]
        wav = write_wav(tmp_path / "same.wav", 1.0)
        outcomes = await asyncio.gather(
            *(
                services[i % len(services)].scan(
                    cli_request(wav, content_type="audio/wav", message_id=1000 + i)
                )
                for i in range(4)
            )
        )
    finally:
        await asyncio.gather(*(log.close() for log in logs))
        if url is not None:
            await drop_schema(url)
    assert [o.error for o in outcomes] == [None] * 4
    assert bs_standin.submissions == 1
    statuses = sorted(o.record.status for o in outcomes)
    assert statuses == [ScanStatus.DONE, *[ScanStatus.REUSED] * 3]
