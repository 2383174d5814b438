"""Builders shared by the audit-log tests: a movable clock, scans and verdicts."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.storage import AuditLog, NewScan, ScanRecord, Trigger
from bot.storage.postgres import PostgresAuditLog
from bot.storage.sqlite import SQLiteAuditLog
from bot.verdict import Label, ProviderName, Segment, Verdict
from testkit.postgres_server import drop_schema, fresh_schema

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GUILD_A = 880_000_000_000_000_001
GUILD_B = 880_000_000_000_000_002
_ids = itertools.count(1_100_000_000_000_000_000)


class Clock:
    """The audit log's notion of now, moved by the test."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def next_id() -> int:
    return next(_ids)


def new_scan(
    guild_id: int = GUILD_A,
    *,
    author_id: int | None = 501,
    channel_id: int | None = 601,
    message_id: int | None = None,
    attachment_id: int | None = None,
    trigger: Trigger = Trigger.AUTO,
    provider: ProviderName = ProviderName.RESEMBLE,
    filename: str = "voice-message.ogg",
    requested_by: int | None = None,
) -> NewScan:
    """A scan of a fresh message attachment unless ids are given."""
    message_id = next_id() if message_id is None else message_id
    return NewScan(
        guild_id=guild_id,
        channel_id=channel_id,
        message_id=message_id,
        author_id=author_id,
        jump_url=f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}",
        attachment_id=next_id() if attachment_id is None else attachment_id,
        filename=filename,
        content_type="audio/ogg",
        size=12_345,
        trigger=trigger,
        requested_by=requested_by,
        provider=provider,
        source_url=f"https://cdn.discordapp.com/attachments/{channel_id}/{message_id}/{filename}",
    )


def verdict(
    label: Label = Label.BONAFIDE,
    probability: float | None = 0.1,
    *,
    provider: ProviderName = ProviderName.RESEMBLE,
    job_id: str = "3f0c8a4e-9a55-4c0e-8d6a-2b1e4f1c9d77",
    transcript: str | None = "hello there",
) -> Verdict:
    return Verdict(
        label=label,
        spoofed_probability=probability,
        transcript=transcript,
        language="en",
        speakers=1,
        segments=(
            Segment(start=0.0, end=2.0, label=Label.BONAFIDE, spoofed_probability=0.05),
            Segment(start=2.0, end=3.5, label=label, spoofed_probability=probability),
        ),
        provider=provider,
        provider_job_id=job_id,
        duration_s=3.5,
        provider_label="real" if label is Label.BONAFIDE else "fake",
    )


async def finished_scan(
    log: AuditLog,
    new: NewScan | None = None,
    result: Verdict | None = None,
    *,
    sha256: str | None = None,
    store_transcript: bool = True,
) -> ScanRecord:
    """A scan taken through the whole lifecycle to `done`."""
    record, _ = await log.scans.create_scan(new or new_scan())
    result = result or verdict(provider=record.provider)
    await log.scans.set_media(
        record.id,
        sha256=sha256 or f"{next_id():064x}",
        size=12_345,
        content_type="audio/ogg",
        duration_s=3.5,
    )
    await log.scans.mark_submitted(record.id, result.provider_job_id)
    return await log.scans.mark_done(record.id, result, store_transcript=store_transcript)


async def failed_scan(
    log: AuditLog, new: NewScan | None = None, *, kind: str = "provider_timeout"
) -> ScanRecord:
    record, _ = await log.scans.create_scan(new or new_scan())
    await log.scans.mark_submitted(record.id, "job-that-timed-out")
    return await log.scans.mark_failed(
        record.id, kind, "The detection service did not finish in time."
    )


@pytest.fixture
def clock() -> Clock:
    """The audit log's clock, advanced by tests."""
    return Clock()


#: The backends every contract test of the audit log runs against.
BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
async def log(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> AsyncIterator[Any]:
    """A fresh audit log on the test's clock, once per backend (real migrations, real
    servers): SQLite in tmp_path, PostgreSQL in a schema of its own."""
    if request.param == "sqlite":
        audit: AuditLog = await SQLiteAuditLog.open(tmp_path / "audit.db", clock=clock)
        yield audit
        await audit.close()
        return
    url = await fresh_schema(request.getfixturevalue("postgres_server"))
    try:
        audit = await PostgresAuditLog.open(url, clock=clock)
        try:
            yield audit
        finally:
            await audit.close()
    finally:
        await drop_schema(url)


@pytest.fixture
async def sqlite_log(tmp_path: Path, clock: Clock) -> AsyncIterator[SQLiteAuditLog]:
    """A fresh SQLite audit log in tmp_path, for what only SQLite has (its writer thread)."""
    audit = await SQLiteAuditLog.open(tmp_path / "audit.db", clock=clock)
    yield audit
    await audit.close()
