"""`python -m bot db migrate-to-postgres`: a SQLite audit log copied into a real PostgreSQL,
read back through the PostgreSQL audit log."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from bot import audit_cli, db_cli
from bot.errors import SettingsError
from bot.guild_config import GuildConfig
from bot.settings import load_settings
from bot.storage import Review, open_audit_log
from bot.storage.postgres import PostgresAuditLog
from bot.storage.sqlite import SQLiteAuditLog
from bot.verdict import Label
from testkit.audit_log import (
    GUILD_A,
    GUILD_B,
    T0,
    Clock,
    failed_scan,
    finished_scan,
    new_scan,
    verdict,
)


async def _sqlite_log_with_history(path: Path, clock: Clock) -> None:
    log = await SQLiteAuditLog.open(path, clock=clock)
    try:
        for i in range(30):
            await finished_scan(log, new_scan(GUILD_A if i % 3 else GUILD_B, author_id=500 + i % 4))
            clock.advance(hours=5)
        await finished_scan(log, result=verdict(Label.SPOOFED, 0.97))
        await failed_scan(log)
        await log.scans.create_scan(new_scan(GUILD_B))  # still queued
        await log.admin.review(GUILD_A, 3, Review.CONFIRMED, moderator_id=9, note="seen")
        await log.admin.forget_author(GUILD_A, 501, actor_id=9)
        await log.settings.save_guild_config(GUILD_B, GuildConfig(alert_threshold=0.8))
    finally:
        await log.close()


async def test_migrate_copies_every_case_event_and_setting(
    tmp_path: Path, postgres_url: str, clock: Clock
) -> None:
    """Fails if the copy loses or alters a case, an event, a setting or a guild's counter,
    or leaves PostgreSQL unable to number the next case."""
    source = tmp_path / "audit.db"
    await _sqlite_log_with_history(source, clock)
    counts = await db_cli.migrate_to_postgres(source, postgres_url)
    lite = await SQLiteAuditLog.open(source, clock=clock)
    pg = await PostgresAuditLog.open(postgres_url, clock=clock)
    try:
        for guild in (GUILD_A, GUILD_B):
            assert await pg.cases.recent(guild, limit=100) == await lite.cases.recent(
                guild, limit=100
            )
            assert await pg.cases.events(guild, limit=100) == await lite.cases.events(
                guild, limit=100
            )
            since = T0 - timedelta(days=1)
            assert await pg.cases.stats(guild, since=since) == await lite.cases.stats(
                guild, since=since
            )
        assert await pg.settings.guild_config(GUILD_B) == GuildConfig(alert_threshold=0.8)
        assert [r.id for r in await pg.scans.unfinished_scans()] == [
            r.id for r in await lite.scans.unfinished_scans()
        ]
        same = new_scan()  # the next case, numbered by each backend's own counter
        after_copy, _ = await pg.scans.create_scan(same)
        in_sqlite, _ = await lite.scans.create_scan(same)
        assert (after_copy.id, after_copy.case_number) == (in_sqlite.id, in_sqlite.case_number)
    finally:
        await lite.close()
        await pg.close()
    assert counts["scans"][0] == 33 - 8  # forgetting member 501 deleted 8 of guild A's


async def test_migrate_refuses_a_database_that_already_has_cases(
    tmp_path: Path, postgres_url: str, clock: Clock
) -> None:
    """Fails if a second run copies the log again on top of the first (duplicate cases)."""
    source = tmp_path / "audit.db"
    await _sqlite_log_with_history(source, clock)
    await db_cli.migrate_to_postgres(source, postgres_url)
    with pytest.raises(db_cli.MigrationFailed, match="already holds cases"):
        await db_cli.migrate_to_postgres(source, postgres_url)
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM scans") == 25
    finally:
        await conn.close()


def test_the_command_needs_a_postgres_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails if the command runs (or crashes) without a database to copy into."""
    monkeypatch.delenv("SPOOFWATCH_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    args = argparse.Namespace(db=tmp_path / "audit.db", url=None)
    assert db_cli.run(args) == db_cli.EXIT_USAGE


async def test_a_postgresql_url_selects_postgresql_and_a_path_sqlite(
    tmp_path: Path, postgres_url: str
) -> None:
    """Fails if open_audit_log picks the wrong backend for a URL or a file path."""
    pg = await open_audit_log(postgres_url)
    lite = await open_audit_log(tmp_path / "audit.db")
    try:
        assert (type(pg), type(lite)) == (PostgresAuditLog, SQLiteAuditLog)
    finally:
        await pg.close()
        await lite.close()


@pytest.mark.parametrize(
    ("value", "location"),
    [
        ("", Path("data/spoofwatch.db")),
        ("postgresql://u:p@db/spoofwatch", "postgresql://u:p@db/spoofwatch"),
    ],
)
def test_spoofwatch_database_url_chooses_where_the_log_lives(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str, location: object
) -> None:
    """Fails if an empty SPOOFWATCH_DATABASE_URL does not leave SQLite the default, or a set
    one is not where the bot opens its audit log."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPOOFWATCH_DB", raising=False)
    monkeypatch.setenv("SPOOFWATCH_DATABASE_URL", value)
    assert load_settings(env_file=None).audit_log_location == location


def test_a_database_url_that_is_not_postgresql_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fails if a URL of another database is accepted (and then treated as a file path)."""
    monkeypatch.setenv("SPOOFWATCH_DATABASE_URL", "mysql://u:p@db/spoofwatch")
    with pytest.raises(SettingsError, match="SPOOFWATCH_DATABASE_URL"):
        load_settings(env_file=None)


async def test_audit_command_reads_the_postgresql_log_when_its_url_is_set(
    tmp_path: Path,
    postgres_url: str,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Fails if `python -m bot audit` keeps reading SQLite once SPOOFWATCH_DATABASE_URL is
    set (an operator would see an empty or stale log after moving)."""
    pg = await PostgresAuditLog.open(postgres_url, clock=clock)
    try:
        await finished_scan(pg, new_scan(filename="only-in-postgres.ogg"))
    finally:
        await pg.close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPOOFWATCH_DATABASE_URL", postgres_url)
    parser = argparse.ArgumentParser(prog="python -m bot")
    audit_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    status = await audit_cli.run(parser.parse_args(["audit", "recent", "--guild", str(GUILD_A)]))
    assert (status, "only-in-postgres" in capsys.readouterr().out) == (0, True)
