"""The public-replies setting (`all | flagged | never`) and the migration that introduced it:
guilds that had turned bona fide replies off keep a quiet channel, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import asyncpg

from bot.guild_config import GuildConfig, PublicReplies
from bot.storage._migrations import migrate
from bot.storage._pg_migrations import MIGRATIONS as PG_MIGRATIONS
from bot.storage._pg_migrations import migrate as pg_migrate
from bot.storage.postgres import PostgresAuditLog
from bot.storage.sqlite import SQLiteAuditLog
from testkit.audit_log import GUILD_A, GUILD_B

#: Settings as releases before `public_replies` saved them (`GuildConfig.model_dump_json`).
QUIET = {"alert_threshold": 0.8, "reply_bonafide": False, "retention_days": 30}
LOUD = {"alert_threshold": 0.5, "reply_bonafide": True, "retention_days": 90}


def test_default_is_a_reply_under_every_file() -> None:
    """Fails if a fresh install stops promising a verdict under every scanned file."""
    assert GuildConfig().public_replies is PublicReplies.ALL


def test_an_old_row_read_before_migrating_keeps_its_choice() -> None:
    """Fails if settings saved with bona fide replies off read as `all` (e.g. a row an older
    process wrote after the migration ran)."""
    assert GuildConfig.model_validate(QUIET).public_replies is PublicReplies.FLAGGED
    assert GuildConfig.model_validate(LOUD).public_replies is PublicReplies.ALL


async def test_sqlite_migration_keeps_each_guilds_choice(tmp_path: Path) -> None:
    """Fails if SQLite's migration 5 loses a guild's choice or leaves the old key behind."""
    path = tmp_path / "audit.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate(conn, target=4) == 4
        for guild, config in ((GUILD_A, QUIET), (GUILD_B, LOUD)):
            conn.execute(
                "INSERT INTO guild_settings (guild_id, config, retention_days, updated_at) "
                "VALUES (?, ?, ?, 0)",
                (guild, json.dumps(config), config["retention_days"]),
            )
    finally:
        conn.close()
    log = await SQLiteAuditLog.open(path)
    try:
        quiet = await log.settings.guild_config(GUILD_A)
        loud = await log.settings.guild_config(GUILD_B)
    finally:
        await log.close()
    assert (quiet.public_replies, quiet.alert_threshold) == (PublicReplies.FLAGGED, 0.8)
    assert loud.public_replies is PublicReplies.ALL
    conn = sqlite3.connect(path)
    try:
        stored = [json.loads(r[0]) for r in conn.execute("SELECT config FROM guild_settings")]
    finally:
        conn.close()
    assert all("reply_bonafide" not in c and "public_replies" in c for c in stored)


async def test_postgres_migration_keeps_each_guilds_choice(postgres_url: str) -> None:
    """Fails if PostgreSQL's migration 2 loses a guild's choice or leaves the old key behind."""
    conn = await asyncpg.connect(postgres_url)
    try:
        await pg_migrate(conn, migrations=PG_MIGRATIONS[:1])
        for guild, config in ((GUILD_A, QUIET), (GUILD_B, LOUD)):
            await conn.execute(
                "INSERT INTO guild_settings (guild_id, config, retention_days, updated_at) "
                "VALUES ($1, $2, $3, 0)",
                guild,
                json.dumps(config),
                config["retention_days"],
            )
    finally:
        await conn.close()
    log = await PostgresAuditLog.open(postgres_url)
    try:
        quiet = await log.settings.guild_config(GUILD_A)
        loud = await log.settings.guild_config(GUILD_B)
    finally:
        await log.close()
    assert (quiet.public_replies, quiet.alert_threshold) == (PublicReplies.FLAGGED, 0.8)
    assert loud.public_replies is PublicReplies.ALL
    conn = await asyncpg.connect(postgres_url)
    try:
        stored = [json.loads(r[0]) for r in await conn.fetch("SELECT config FROM guild_settings")]
    finally:
        await conn.close()
    assert all("reply_bonafide" not in c and "public_replies" in c for c in stored)
