"""Per-guild settings (`GuildSettings`) and cooldowns (`Cooldowns`) on SQLite.

One process owns a SQLite file, so the listeners hear of every change as it is saved here.
"""

from __future__ import annotations

import logging
import sqlite3

from bot.guild_config import GuildConfig
from bot.storage._protocol import SettingsListener
from bot.storage._sqlite_base import SQLiteDatabase

log = logging.getLogger(__name__)


async def read_guild_config(db: SQLiteDatabase, guild_id: int) -> GuildConfig:
    """The guild's settings, or the defaults when it never changed any."""
    row = await db.fetch_one("SELECT config FROM guild_settings WHERE guild_id = ?", (guild_id,))
    return GuildConfig() if row is None else GuildConfig.model_validate_json(row[0])


class SQLiteGuildSettings:
    """`GuildSettings` over SQLite."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db
        self._listeners: list[SettingsListener] = []

    async def guild_config(self, guild_id: int) -> GuildConfig:
        return await read_guild_config(self._db, guild_id)

    async def save_guild_config(self, guild_id: int, config: GuildConfig) -> None:
        await self._db.write_one(
            "INSERT INTO guild_settings (guild_id, config, retention_days, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (guild_id) DO UPDATE SET "
            "config = excluded.config, retention_days = excluded.retention_days, "
            "updated_at = excluded.updated_at",
            (guild_id, config.model_dump_json(), config.retention_days, self._db.now()),
        )
        log.info("guild settings saved: actor=caller target=guild %d reason=update", guild_id)
        for listener in self._listeners:
            listener(guild_id)

    def subscribe(self, listener: SettingsListener) -> None:
        self._listeners.append(listener)


class SQLiteCooldowns:
    """`Cooldowns` over SQLite: each hit is one transaction in the writer thread."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def hit(self, bucket: str, key: int, *, rate: int, per_s: float) -> float | None:
        now = self._db.clock().timestamp()

        def work(conn: sqlite3.Connection) -> float | None:
            conn.execute(
                "DELETE FROM cooldown_uses WHERE bucket = ? AND key = ? AND at <= ?",
                (bucket, key, now - per_s),
            )
            count, first = conn.execute(
                "SELECT count(*), min(at) FROM cooldown_uses WHERE bucket = ? AND key = ?",
                (bucket, key),
            ).fetchone()
            if count >= rate:
                return float(first) + per_s
            conn.execute(
                "INSERT INTO cooldown_uses (bucket, key, at) VALUES (?, ?, ?)", (bucket, key, now)
            )
            return None

        return await self._db.unit(work)
