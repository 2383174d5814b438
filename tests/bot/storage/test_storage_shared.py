"""Several processes on one PostgreSQL audit log: each "process" here is an audit log of its
own (its own pool and listening connection) on the same real database schema."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import asyncpg
import pytest

from bot.discord_glue.client import GuildConfigs
from bot.guild_config import GuildConfig
from bot.storage._pg_migrations import LATEST_VERSION
from bot.storage.postgres import PostgresAuditLog
from testkit.audit_log import GUILD_A, GUILD_B, Clock, new_scan


@pytest.fixture
async def two(postgres_url: str, clock: Clock) -> AsyncIterator[list[PostgresAuditLog]]:
    first = await PostgresAuditLog.open(postgres_url, clock=clock)
    second = await PostgresAuditLog.open(postgres_url, clock=clock)
    yield [first, second]
    await asyncio.gather(first.close(), second.close())


async def test_processes_starting_together_migrate_once(postgres_url: str) -> None:
    """Fails if two processes starting at once both apply a migration (or one fails on the
    other's half-made schema)."""
    logs = await asyncio.gather(*(PostgresAuditLog.open(postgres_url) for _ in range(4)))
    try:
        conn = await asyncpg.connect(postgres_url)
        try:
            versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
        finally:
            await conn.close()
        assert [v[0] for v in versions] == list(range(1, LATEST_VERSION + 1))
    finally:
        await asyncio.gather(*(log.close() for log in logs))


async def test_case_numbers_are_consecutive_across_processes(
    two: list[PostgresAuditLog],
) -> None:
    """Fails if two processes allocating cases of one guild at once skip or repeat a number."""
    created = await asyncio.gather(
        *(two[i % 2].scans.create_scan(new_scan()) for i in range(200)),
        *(two[i % 2].scans.create_scan(new_scan(GUILD_B)) for i in range(50)),
    )
    a = sorted(r.case_number for r, _ in created if r.guild_id == GUILD_A)
    b = sorted(r.case_number for r, _ in created if r.guild_id == GUILD_B)
    assert (a, b) == (list(range(1, 201)), list(range(1, 51)))


async def test_one_attachment_raced_by_two_processes_is_one_case(
    two: list[PostgresAuditLog],
) -> None:
    """Fails if the same attachment accepted by two processes at once becomes two cases, or
    if the losing race leaves a gap in the guild's case numbers."""
    same = new_scan(message_id=10, attachment_id=20)
    results = await asyncio.gather(*(two[i % 2].scans.create_scan(same) for i in range(10)))
    assert sum(created for _, created in results) == 1
    assert {record.id for record, _ in results} == {results[0][0].id}
    after, _ = await two[0].scans.create_scan(new_scan())
    assert after.case_number == 2


async def test_settings_saved_in_one_process_reach_the_other_at_once(
    two: list[PostgresAuditLog],
) -> None:
    """Fails if a guild's settings change in one process is not announced to another."""
    heard: asyncio.Queue[int] = asyncio.Queue()
    two[1].settings.subscribe(heard.put_nowait)
    await two[0].settings.save_guild_config(GUILD_A, GuildConfig(alert_threshold=0.9))
    assert await asyncio.wait_for(heard.get(), timeout=5) == GUILD_A
    assert (await two[1].settings.guild_config(GUILD_A)).alert_threshold == 0.9


async def test_the_guild_config_cache_follows_another_processs_change(
    two: list[PostgresAuditLog],
) -> None:
    """Fails if the bot's guild-config cache keeps serving settings another process changed."""
    configs = GuildConfigs(SimpleNamespace(audit=two[1]))  # type: ignore[arg-type]
    assert (await configs.get(GUILD_A)).alert_threshold == 0.5  # now cached
    await two[0].settings.save_guild_config(GUILD_A, GuildConfig(alert_threshold=0.9))
    for _ in range(100):
        if (await configs.get(GUILD_A)).alert_threshold == 0.9:
            break
        await asyncio.sleep(0.05)
    assert (await configs.get(GUILD_A)).alert_threshold == 0.9


async def test_a_cooldown_counts_the_uses_of_every_process(two: list[PostgresAuditLog]) -> None:
    """Fails if each process keeps its own count, letting a member past the limit by
    reaching another shard."""
    results = await asyncio.gather(
        *(two[i % 2].cooldowns.hit("check", 7, rate=5, per_s=600) for i in range(12))
    )
    assert sum(r is None for r in results) == 5


@pytest.mark.parametrize(("query", "expected"), [("", "on"), ("&synchronous_commit=off", "off")])
async def test_commits_wait_for_the_wal_flush_unless_the_url_says_otherwise(
    postgres_url: str, query: str, expected: str
) -> None:
    """Fails if Spoofwatch weakens the server's durability on its own (acknowledging a scan
    step before its commit reached the WAL on disk), or overrides an operator's
    synchronous_commit in the URL."""
    log = await PostgresAuditLog.open(postgres_url + query)
    try:
        async with log.db.pool.acquire() as conn:
            assert await conn.fetchval("SHOW synchronous_commit") == expected
    finally:
        await log.close()


async def test_a_pooled_connection_is_reused_without_a_reset_round_trip(
    postgres_url: str,
) -> None:
    """Fails if releasing a pool connection sends asyncpg's reset query (a second round
    trip for every statement of every scan step)."""
    log = await PostgresAuditLog.open(postgres_url, pool_max=1)
    try:
        await log.scans.get_scan(1)
        async with log.db.pool.acquire() as conn:
            await conn.execute("SET application_name = 'left by the last user'")
        await log.scans.get_scan(1)
        async with log.db.pool.acquire() as conn:
            assert await conn.fetchval("SHOW application_name") == "left by the last user"
    finally:
        await log.close()
