"""The SQLite audit log: a scan's lifecycle, verdict reuse, case numbers, guild isolation and
the moderators' queries, on a real database file with the real migrations."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.storage import (
    NO_GUILD,
    AuditLog,
    CaseAdmin,
    CaseQueries,
    GuildSettings,
    NewScan,
    ScanLifecycle,
    ScanNotFound,
    ScanStatus,
    ShardFilter,
    Trigger,
    open_audit_log,
)
from bot.storage._migrations import LATEST_VERSION
from bot.verdict import Label, ProviderName
from testkit.audit_log import (
    GUILD_A,
    GUILD_B,
    T0,
    Clock,
    failed_scan,
    finished_scan,
    new_scan,
    next_id,
    verdict,
)


async def test_open_creates_a_wal_database_at_the_latest_schema(tmp_path: Path) -> None:
    """Fails if open() does not create the directory, enable WAL and apply every migration."""
    path = tmp_path / "nested" / "dir" / "audit.db"
    audit = await open_audit_log(path)
    await audit.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("repository", "protocol"),
    [
        ("scans", ScanLifecycle),
        ("cases", CaseQueries),
        ("admin", CaseAdmin),
        ("settings", GuildSettings),
    ],
)
async def test_each_repository_has_every_method_of_its_protocol(
    log: AuditLog, repository: str, protocol: type
) -> None:
    """Fails if a repository of the audit log lacks a method of its protocol."""
    found = getattr(log, repository)
    missing = [
        name
        for name in dir(protocol)
        if not name.startswith("_") and not callable(getattr(found, name, None))
    ]
    assert missing == []


# --- lifecycle ---------------------------------------------------------------------------


async def test_lifecycle_queued_submitted_done_records_each_step(
    log: AuditLog, clock: Clock
) -> None:
    """Fails if a step of queued → submitted → done loses its status, timestamp or data."""
    created, is_new = await log.scans.create_scan(new_scan())
    assert is_new
    assert (created.status, created.created_at, created.case_number) == (ScanStatus.QUEUED, T0, 1)
    assert created.source_url is not None

    await log.scans.set_media(
        created.id, sha256="ab" * 32, size=999, content_type="audio/ogg", duration_s=3.5
    )
    submitted_at = clock.advance(seconds=2)
    await log.scans.mark_submitted(created.id, "3f0c8a4e-9a55-4c0e-8d6a-2b1e4f1c9d77")
    submitted = await log.scans.get_scan(created.id)
    assert submitted is not None
    assert submitted.status is ScanStatus.SUBMITTED
    assert submitted.submitted_at == submitted_at
    assert submitted.provider_job_id == "3f0c8a4e-9a55-4c0e-8d6a-2b1e4f1c9d77"

    finished_at = clock.advance(seconds=30)
    done = await log.scans.mark_done(created.id, verdict(Label.SPOOFED, 0.93))
    assert done.status is ScanStatus.DONE
    assert (done.created_at, done.submitted_at, done.finished_at) == (
        T0,
        submitted_at,
        finished_at,
    )
    assert (done.label, done.spoofed_probability, done.language, done.speakers) == (
        Label.SPOOFED,
        0.93,
        "en",
        1,
    )
    assert (done.sha256, done.size, done.duration_s) == ("ab" * 32, 999, 3.5)
    assert done.transcript == "hello there"
    # The signed CDN link is only needed to resume; it is not kept once the scan is over.
    assert done.source_url is None
    assert await log.scans.get_scan(created.id) == done


@pytest.mark.parametrize(
    "new",
    [
        new_scan(),
        new_scan(requested_by=42, trigger=Trigger.CHECK),
        new_scan().model_copy(update={"jump_url": "https://ptb.discord.com/channels/1/2/3"}),
        new_scan().model_copy(
            update={"jump_url": None, "content_type": None, "size": None, "source_url": None}
        ),
        NewScan(
            guild_id=NO_GUILD,
            filename="from the command line.wav",
            trigger=Trigger.CLI,
            provider=ProviderName.BEHAVIORAL_SIGNALS,
        ),
    ],
    ids=["auto", "requested", "other-jump-url", "sparse", "cli"],
)
async def test_create_scan_returns_the_row_as_stored(log: AuditLog, new: NewScan) -> None:
    """Fails if the record create_scan builds from its parameters differs from a fresh read."""
    created, is_new = await log.scans.create_scan(new)
    assert is_new
    assert await log.scans.get_scan(created.id) == created
    again, is_new = await log.scans.create_scan(new)
    if new.message_id is not None:  # the replay is read back from the database
        assert (again, is_new) == (created, False)


@pytest.mark.parametrize("reused", [False, True], ids=["done", "reused"])
@pytest.mark.parametrize("store_transcript", [True, False], ids=["transcript", "no-transcript"])
async def test_mark_done_returns_the_row_as_stored(
    log: AuditLog, clock: Clock, reused: bool, store_transcript: bool
) -> None:
    """Fails if the record mark_done returns differs from a fresh read of the case."""
    earlier = await finished_scan(log)
    created, _ = await log.scans.create_scan(new_scan())
    clock.advance(seconds=5)
    done = await log.scans.mark_done(
        created.id,
        verdict(Label.SPOOFED, 0.875, job_id="412"),
        reused_from=earlier.id if reused else None,
        store_transcript=store_transcript,
    )
    assert await log.scans.get_scan(created.id) == done
    assert done.status is (ScanStatus.REUSED if reused else ScanStatus.DONE)


async def test_mark_failed_returns_the_row_as_stored(log: AuditLog, clock: Clock) -> None:
    """Fails if the record mark_failed returns differs from a fresh read of the case."""
    created, _ = await log.scans.create_scan(new_scan())
    clock.advance(seconds=5)
    failed = await log.scans.mark_failed(created.id, "too_large", "x" * 2000)
    assert await log.scans.get_scan(created.id) == failed


async def test_failed_scan_keeps_the_error_and_finish_time(log: AuditLog, clock: Clock) -> None:
    """Fails if mark_failed does not record status, error kind, message and finish time."""
    created, _ = await log.scans.create_scan(new_scan())
    finished_at = clock.advance(seconds=5)
    failed = await log.scans.mark_failed(created.id, "too_large", "The file is 120.0 MiB.")
    assert (failed.status, failed.error_kind, failed.error_message, failed.finished_at) == (
        ScanStatus.FAILED,
        "too_large",
        "The file is 120.0 MiB.",
        finished_at,
    )
    assert failed.label is None


async def test_reused_verdict_marks_the_scan_reused(log: AuditLog) -> None:
    """Fails if mark_done with reused_from does not give status reused and the source id."""
    original = await finished_scan(log, sha256="cd" * 32)
    stored = await log.scans.find_verdict("cd" * 32, ProviderName.RESEMBLE)
    assert stored is not None
    again, _ = await log.scans.create_scan(new_scan())
    reused = await log.scans.mark_done(again.id, stored.verdict, reused_from=stored.scan_id)
    assert (reused.status, reused.reused_from, reused.submitted_at) == (
        ScanStatus.REUSED,
        original.id,
        None,
    )
    assert reused.label is original.label


async def test_mark_replied_stores_the_reply(log: AuditLog) -> None:
    """Fails if the verdict reply's message id is not stored on the case."""
    record = await finished_scan(log)
    await log.scans.mark_replied(record.id, 42)
    assert (await log.scans.get_scan(record.id)).reply_message_id == 42  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "update",
    [
        lambda log: log.scans.mark_submitted(999, "job"),
        lambda log: log.scans.mark_done(999, verdict()),
        lambda log: log.scans.mark_failed(999, "x", "y"),
        lambda log: log.scans.mark_replied(999, 1),
        lambda log: log.scans.set_media(
            999, sha256="0" * 64, size=1, content_type=None, duration_s=None
        ),
    ],
    ids=["submitted", "done", "failed", "replied", "media"],
)
async def test_updating_an_unknown_scan_raises_scan_not_found(
    log: AuditLog, update: Callable[[AuditLog], Awaitable[Any]]
) -> None:
    """Fails if a lifecycle update of a missing scan (e.g. forgotten mid-scan) passes silently."""
    with pytest.raises(ScanNotFound):
        await update(log)


async def test_unfinished_scans_are_the_queued_and_submitted_ones(log: AuditLog) -> None:
    """Fails if unfinished_scans misses a queued/submitted scan or returns a finished one."""
    queued, _ = await log.scans.create_scan(new_scan())
    submitted, _ = await log.scans.create_scan(new_scan(GUILD_B))
    await log.scans.mark_submitted(submitted.id, "job-7")
    await finished_scan(log)
    await failed_scan(log)
    assert [r.id for r in await log.scans.unfinished_scans()] == [queued.id, submitted.id]


async def test_unfinished_scans_of_a_shard_are_its_guilds_and_shard_0_has_no_guild(
    log: AuditLog,
) -> None:
    """Fails if the shard filter keeps another shard's guild or drops a guildless (CLI) scan."""
    # (guild_id >> 22) % 2: GUILD_SHARD_0 lands on shard 0, GUILD_SHARD_1 on shard 1.
    guild_shard_0, guild_shard_1 = 2 << 22, 3 << 22
    on_0, _ = await log.scans.create_scan(new_scan(guild_shard_0))
    on_1, _ = await log.scans.create_scan(new_scan(guild_shard_1))
    cli, _ = await log.scans.create_scan(
        NewScan(filename="a.wav", trigger=Trigger.CLI, provider=ProviderName.RESEMBLE)
    )
    shard_0 = ShardFilter(count=2, ids=frozenset({0}))
    shard_1 = ShardFilter(count=2, ids=frozenset({1}))
    both = ShardFilter(count=2, ids=frozenset({0, 1}))
    assert [r.id for r in await log.scans.unfinished_scans(shard_0)] == [on_0.id, cli.id]
    assert [r.id for r in await log.scans.unfinished_scans(shard_1)] == [on_1.id]
    assert [r.id for r in await log.scans.unfinished_scans(both)] == [on_0.id, on_1.id, cli.id]


# --- idempotency and case numbers ------------------------------------------------------------


async def test_create_scan_is_idempotent_per_message_attachment_and_trigger(
    log: AuditLog,
) -> None:
    """Fails if the same attachment and trigger get a second case, or another trigger none."""
    first, created = await log.scans.create_scan(new_scan(message_id=10, attachment_id=20))
    again, created_again = await log.scans.create_scan(new_scan(message_id=10, attachment_id=20))
    checked, created_check = await log.scans.create_scan(
        new_scan(message_id=10, attachment_id=20, trigger=Trigger.CHECK)
    )
    assert (created, created_again, created_check) == (True, False, True)
    assert again == first
    assert checked.case_number == first.case_number + 1


async def test_scans_without_message_ids_are_never_merged(log: AuditLog) -> None:
    """Fails if CLI-style scans (no message or attachment id) are deduplicated."""
    cli = NewScan(filename="a.wav", trigger=Trigger.CLI, provider=ProviderName.RESEMBLE)
    first, _ = await log.scans.create_scan(cli)
    second, created = await log.scans.create_scan(cli)
    assert created
    assert (first.guild_id, second.case_number) == (NO_GUILD, 2)


async def test_case_numbers_stay_unique_under_200_concurrent_scans(log: AuditLog) -> None:
    """Fails if concurrent create_scan calls ever share or skip a guild's case number."""
    results = await asyncio.gather(
        *(log.scans.create_scan(new_scan(GUILD_A if i % 2 else GUILD_B)) for i in range(200))
    )
    for guild in (GUILD_A, GUILD_B):
        numbers = sorted(r.case_number for r, _ in results if r.guild_id == guild)
        assert numbers == list(range(1, 101))


async def test_case_numbers_are_never_reused_after_deletion(log: AuditLog) -> None:
    """Fails if a number freed by forget or purge is handed out again."""
    await finished_scan(log, new_scan(author_id=1))
    await finished_scan(log, new_scan(author_id=2))
    assert await log.admin.forget_author(GUILD_A, 2, actor_id=9) == 1  # deletes case 2, the last
    third = await finished_scan(log, new_scan(author_id=1))
    assert third.case_number == 3
    assert await log.admin.purge_before(GUILD_A, T0 + timedelta(days=1), actor="test") == 2
    fourth = await finished_scan(log)
    assert fourth.case_number == 4


# --- verdict reuse ------------------------------------------------------------------------------


async def test_find_verdict_returns_the_newest_successful_verdict_exactly(
    log: AuditLog, clock: Clock
) -> None:
    """Fails if the stored verdict is not the newest done one, or does not round-trip."""
    sha = "ef" * 32
    await finished_scan(log, result=verdict(Label.BONAFIDE, 0.2), sha256=sha)
    clock.advance(minutes=1)
    newest_verdict = verdict(Label.SPOOFED, 0.875, job_id="job 17")
    newest = await finished_scan(log, result=newest_verdict, sha256=sha)
    clock.advance(minutes=1)
    failed, _ = await log.scans.create_scan(new_scan())
    await log.scans.set_media(failed.id, sha256=sha, size=1, content_type=None, duration_s=None)
    await log.scans.mark_failed(failed.id, "provider_timeout", "late")

    stored = await log.scans.find_verdict(sha, ProviderName.RESEMBLE)
    assert stored is not None
    assert stored.scan_id == newest.id
    assert stored.verdict == newest_verdict


async def test_find_verdict_is_per_provider_and_per_file(log: AuditLog) -> None:
    """Fails if a verdict is reused for another provider or for different bytes."""
    await finished_scan(log, sha256="01" * 32)
    assert await log.scans.find_verdict("01" * 32, ProviderName.BEHAVIORAL_SIGNALS) is None
    assert await log.scans.find_verdict("02" * 32, ProviderName.RESEMBLE) is None
    # Same first 8 bytes (the index key), different digest.
    assert await log.scans.find_verdict("01" * 16 + "ff" * 16, ProviderName.RESEMBLE) is None


async def test_find_verdict_ignores_unfinished_scans(log: AuditLog) -> None:
    """Fails if a scan that has not finished is offered for reuse."""
    record, _ = await log.scans.create_scan(new_scan())
    await log.scans.set_media(
        record.id, sha256="03" * 32, size=1, content_type=None, duration_s=None
    )
    assert await log.scans.find_verdict("03" * 32, ProviderName.RESEMBLE) is None


# --- compact storage round trips ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("guild_id", "jump_url"),
    [
        (GUILD_A, "canonical"),
        (GUILD_A, "https://ptb.discord.com/channels/1/2/3"),
        (GUILD_A, None),
        (NO_GUILD, "https://discord.com/channels/@me/601/77"),
    ],
    ids=["canonical", "other-host", "none", "direct-message"],
)
async def test_jump_url_round_trips(log: AuditLog, guild_id: int, jump_url: str | None) -> None:
    """Fails if the compact storage of jump URLs changes any URL (or invents one)."""
    base = new_scan(guild_id, message_id=77)
    url = base.jump_url if jump_url == "canonical" else jump_url
    record, _ = await log.scans.create_scan(base.model_copy(update={"jump_url": url}))
    assert record.jump_url == url


@pytest.mark.parametrize(
    "job_id",
    ["3f0c8a4e-9a55-4c0e-8d6a-2b1e4f1c9d77", "3F0C8A4E-9A55-4C0E-8D6A-2B1E4F1C9D77", "412"],
)
async def test_provider_job_ids_round_trip(log: AuditLog, job_id: str) -> None:
    """Fails if packing UUID job ids alters any job id's text."""
    record, _ = await log.scans.create_scan(new_scan())
    await log.scans.mark_submitted(record.id, job_id)
    assert (await log.scans.get_scan(record.id)).provider_job_id == job_id  # type: ignore[union-attr]


@pytest.mark.parametrize("sha256", ["9f" * 32, "not-a-digest", "AB" * 32])
async def test_sha256_round_trips(log: AuditLog, sha256: str) -> None:
    """Fails if a digest (or a value that is not one) comes back different."""
    record = await finished_scan(log, sha256=sha256)
    expected = sha256.lower() if len(sha256) == 64 else sha256
    assert record.sha256 == expected
    assert await log.scans.find_verdict(sha256, ProviderName.RESEMBLE) is not None


async def test_long_segment_lists_round_trip(log: AuditLog) -> None:
    """Fails if the compressed, column-wise segment storage alters a long verdict."""
    from bot.verdict import Segment

    segments = tuple(
        Segment(
            start=i * 2.0,
            end=i * 2.0 + (2.0 if i < 59 else 0.25),
            label=Label.SPOOFED,
            spoofed_probability=None if i == 3 else round(0.5 + i / 200, 3),
        )
        for i in range(60)
    )
    gapped = (*segments[:2], segments[3])  # not contiguous: stored as start/end pairs
    for segs in (segments, gapped):
        result = verdict(Label.SPOOFED, 0.9).model_copy(update={"segments": segs})
        sha = f"{next_id():064x}"
        await finished_scan(log, result=result, sha256=sha)
        stored = await log.scans.find_verdict(sha, ProviderName.RESEMBLE)
        assert stored is not None
        assert stored.verdict == result


# --- cooldowns and submission claims ----------------------------------------------------------


async def test_cooldown_allows_rate_uses_per_window_then_says_when(
    log: AuditLog, clock: Clock
) -> None:
    """Fails if a cooldown allows more than `rate` uses in `per_s`, names the wrong time of
    the next allowed use, or never lets the key in again."""
    start = clock.now.timestamp()
    for _ in range(3):
        assert await log.cooldowns.hit("check", 7, rate=3, per_s=60) is None
        clock.advance(seconds=1)
    assert await log.cooldowns.hit("check", 7, rate=3, per_s=60) == start + 60
    assert await log.cooldowns.hit("check", 8, rate=3, per_s=60) is None  # another member
    assert await log.cooldowns.hit("menu", 7, rate=3, per_s=60) is None  # another bucket
    clock.advance(seconds=58)  # the first use is now a minute old
    assert await log.cooldowns.hit("check", 7, rate=3, per_s=60) is None


async def test_a_file_is_claimed_by_one_unfinished_scan_at_a_time(log: AuditLog) -> None:
    """Fails if a second scan may claim a file held by an unfinished scan, the holder loses
    its own claim, or a finished holder keeps the file from being submitted again."""
    sha = "ab" * 32
    first, _ = await log.scans.create_scan(new_scan())
    second, _ = await log.scans.create_scan(new_scan())
    provider = ProviderName.RESEMBLE
    assert await log.scans.claim_submission(first.id, sha, provider) is None
    assert await log.scans.claim_submission(second.id, sha, provider) == first.id
    assert await log.scans.claim_submission(first.id, sha, provider) is None  # resumed
    assert await log.scans.claim_submission(second.id, sha, ProviderName.BEHAVIORAL_SIGNALS) is None
    await log.scans.mark_failed(first.id, "provider_timeout", "gave up")
    assert await log.scans.claim_submission(second.id, sha, provider) is None
