"""Concurrent scan steps sharing one PostgreSQL statement (`bot.storage._pg_writer`): what each
caller gets back must be what it would get from a statement of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bot.storage import ScanNotFound, ScanRecord, ScanStatus
from bot.storage.postgres import PostgresAuditLog
from testkit.audit_log import GUILD_A, GUILD_B, Clock, new_scan, verdict

GUILD_C = 880_000_000_000_000_003


@pytest.fixture
async def two(postgres_url: str, clock: Clock) -> AsyncIterator[list[PostgresAuditLog]]:
    """Two processes on one database: each an audit log with its own pool."""
    first = await PostgresAuditLog.open(postgres_url, clock=clock)
    second = await PostgresAuditLog.open(postgres_url, clock=clock)
    yield [first, second]
    await asyncio.gather(first.close(), second.close())


async def accepted(log: PostgresAuditLog, count: int) -> list[ScanRecord]:
    """`count` new scans of guild A, accepted at once."""
    created = await asyncio.gather(*(log.scans.create_scan(new_scan()) for _ in range(count)))
    return [record for record, _ in created]


async def test_batched_accepts_keep_case_numbers_consecutive_per_guild(
    two: list[PostgresAuditLog],
) -> None:
    """Fails if cases accepted together in shared statements, by two processes, across
    guilds, skip or repeat a number, or if the accepts did not share statements at all."""
    guilds = (GUILD_A, GUILD_B, GUILD_C)
    created = await asyncio.gather(
        *(two[i % 2].scans.create_scan(new_scan(guilds[i % 3])) for i in range(600))
    )
    assert all(was_new for _, was_new in created)
    for guild in guilds:
        numbers = sorted(r.case_number for r, _ in created if r.guild_id == guild)
        assert numbers == list(range(1, 201))
    for log in two:
        assert log.scans._insert.statements < log.scans._insert.items == 300


async def test_a_batched_case_is_the_row_that_was_stored(two: list[PostgresAuditLog]) -> None:
    """Fails if the record a batched accept returns (built from the bound values) differs
    from the row the database holds."""
    log = two[0]
    created = await asyncio.gather(
        *(log.scans.create_scan(new_scan(GUILD_A if i % 2 else GUILD_B)) for i in range(20))
    )
    for record, _ in created:
        assert await log.scans.get_scan(record.id) == record


async def test_an_attachment_twice_in_one_batch_is_one_case(two: list[PostgresAuditLog]) -> None:
    """Fails if the same attachment accepted twice at once, beside others, becomes two cases
    or costs its guild a case number."""
    log = two[0]
    same = new_scan(message_id=10, attachment_id=20)
    results = await asyncio.gather(
        log.scans.create_scan(new_scan()),
        log.scans.create_scan(same),
        log.scans.create_scan(new_scan()),
        log.scans.create_scan(same),
        log.scans.create_scan(new_scan()),
    )
    assert [created for _, created in results] == [True, True, True, False, True]
    assert results[1][0] == results[3][0]
    assert sorted(r.case_number for r, created in results if created) == [1, 2, 3, 4]


async def test_a_replayed_attachment_beside_new_ones_takes_no_number(
    two: list[PostgresAuditLog],
) -> None:
    """Fails if an attachment recorded earlier, accepted again in a statement with new ones,
    is recorded again or bumps its guild's counter."""
    log = two[0]
    first, _ = await log.scans.create_scan(new_scan(message_id=10, attachment_id=20))
    results = await asyncio.gather(
        log.scans.create_scan(new_scan()),
        log.scans.create_scan(new_scan(message_id=10, attachment_id=20)),
        log.scans.create_scan(new_scan()),
    )
    assert results[1] == (first, False)
    assert sorted(r.case_number for r, _ in results) == [1, 2, 3]


async def test_one_bad_value_fails_only_its_own_call(two: list[PostgresAuditLog]) -> None:
    """Fails if a value PostgreSQL cannot take sinks the other scans of its statement, or if
    the refused statement leaves a gap in the case numbers."""
    log = two[0]
    too_big = new_scan().model_copy(update={"size": 2**64})
    results = await asyncio.gather(
        *(log.scans.create_scan(new_scan()) for _ in range(3)),
        log.scans.create_scan(too_big),
        *(log.scans.create_scan(new_scan()) for _ in range(3)),
        return_exceptions=True,
    )
    assert isinstance(results[3], asyncpg.DataError)
    good = [r for i, r in enumerate(results) if i != 3]
    assert sorted(r[0].case_number for r in good if isinstance(r, tuple)) == list(range(1, 7))


async def test_a_missing_scan_fails_only_its_own_step(two: list[PostgresAuditLog]) -> None:
    """Fails if finishing a scan that does not exist, beside real ones in one statement,
    is silently accepted or fails the others."""
    log = two[0]
    records = [
        r for r, _ in await asyncio.gather(*(log.scans.create_scan(new_scan()) for _ in range(4)))
    ]
    result = verdict()
    done = await asyncio.gather(
        *(log.scans.mark_done(r.id, result) for r in records[:2]),
        log.scans.mark_done(999_999, result),
        *(log.scans.mark_done(r.id, result) for r in records[2:]),
        return_exceptions=True,
    )
    assert isinstance(done[2], ScanNotFound)
    assert [d.status for d in done if not isinstance(d, BaseException)] == [ScanStatus.DONE] * 4
    replied = await asyncio.gather(
        log.scans.mark_replied(records[0].id, 77),
        log.scans.mark_replied(999_999, 78),
        return_exceptions=True,
    )
    assert replied[0] is None
    assert isinstance(replied[1], ScanNotFound)
    assert log.scans._done.statements < log.scans._done.items


async def test_each_step_of_a_batch_gets_its_own_values(two: list[PostgresAuditLog]) -> None:
    """Fails if the scans of one statement get each other's media, job or verdict."""
    log = two[0]
    records = [
        r for r, _ in await asyncio.gather(*(log.scans.create_scan(new_scan()) for _ in range(6)))
    ]
    await asyncio.gather(
        *(
            log.scans.set_media(
                r.id, sha256=f"{i:064x}", size=1000 + i, content_type="audio/ogg", duration_s=i
            )
            for i, r in enumerate(records)
        )
    )
    await asyncio.gather(
        *(log.scans.mark_submitted(r.id, f"job-{i}") for i, r in enumerate(records))
    )
    finished = await asyncio.gather(
        *(
            log.scans.mark_done(r.id, verdict(job_id=f"job-{i}", transcript=f"words {i}"))
            if i % 2
            else log.scans.mark_failed(r.id, "provider_timeout", f"timed out {i}")
            for i, r in enumerate(records)
        )
    )
    for i, (record, result) in enumerate(zip(records, finished, strict=True)):
        stored = await log.scans.get_scan(record.id)
        assert stored == result
        assert (stored.sha256, stored.size, stored.provider_job_id) == (
            f"{i:064x}",
            1000 + i,
            f"job-{i}",
        )
        if i % 2:
            assert (stored.status, stored.transcript) == (ScanStatus.DONE, f"words {i}")
        else:
            assert (stored.status, stored.error_message) == (ScanStatus.FAILED, f"timed out {i}")


async def test_opening_and_finishing_cases_at_once_do_not_deadlock(
    two: list[PostgresAuditLog],
) -> None:
    """Fails if a process's shared statements opening and finishing cases of the same guilds
    on the same day run at once and lock the case counters and daily rollups in orders that
    deadlock (the server then refuses one statement, and its calls are retried one by one)."""
    log = two[0]
    result = verdict()

    async def finish(scan: ScanRecord, i: int) -> None:
        if i % 5:
            await log.scans.mark_done(scan.id, result)
        else:
            await log.scans.mark_failed(scan.id, "provider_timeout", "timed out")

    for _round in range(3):
        # Opened guild by guild, highest first: in id order, the cases' guilds descend...
        opened: list[ScanRecord] = []
        for guild in (GUILD_C, GUILD_B, GUILD_A):
            created = await asyncio.gather(
                *(log.scans.create_scan(new_scan(guild)) for _ in range(40))
            )
            opened += [record for record, _ in created]
        # ...while a statement opening new cases takes the guilds in ascending order.
        await asyncio.gather(
            *(finish(scan, i) for i, scan in enumerate(opened)),
            *(
                log.scans.create_scan(new_scan((GUILD_A, GUILD_B, GUILD_C)[i % 3]))
                for i in range(120)
            ),
        )
    steps = (log.scans._insert, log.scans._done, log.scans._failed)
    assert sum(step.items for step in steps) == 3 * 360
    assert sum(step.statements for step in steps) < 3 * 360
    assert [step.refused for step in steps] == [0, 0, 0]
