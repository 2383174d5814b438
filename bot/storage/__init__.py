"""The audit log: every scan is a case. `open_audit_log` picks the backend."""

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeGuard

from bot.storage._models import (
    NO_GUILD,
    AuditEvent,
    AuditStats,
    GuildCases,
    NewScan,
    Review,
    ReviewBand,
    ScanRecord,
    ScanStatus,
    ShardFilter,
    StoredVerdict,
    Trigger,
    in_shards,
)
from bot.storage._protocol import (
    AuditLog,
    CaseAdmin,
    CaseQueries,
    Cooldowns,
    GuildSettings,
    ScanLifecycle,
    ScanNotFound,
)

__all__ = [
    "NO_GUILD",
    "AuditEvent",
    "AuditLog",
    "AuditStats",
    "CaseAdmin",
    "CaseQueries",
    "Cooldowns",
    "GuildCases",
    "GuildSettings",
    "NewScan",
    "Review",
    "ReviewBand",
    "ScanLifecycle",
    "ScanNotFound",
    "ScanRecord",
    "ScanStatus",
    "ShardFilter",
    "StoredVerdict",
    "Trigger",
    "in_shards",
    "is_postgres_url",
    "open_audit_log",
]


def is_postgres_url(location: object) -> TypeGuard[str]:
    """Whether `location` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


async def open_audit_log(
    location: Path | str, *, clock: Callable[[], datetime] | None = None
) -> AuditLog:
    """The audit log at `location`: a postgresql:// URL, or else a SQLite file path.

    `clock` stamps every row; the bot passes its own so that "today" (quotas) and "older than
    N days" (retention) are measured on the same clock as the rows they count.
    """
    # Imported here so that importing the models never drags in a database driver.
    if is_postgres_url(location):
        from bot.storage.postgres import PostgresAuditLog  # noqa: PLC0415

        if clock is None:
            return await PostgresAuditLog.open(location)
        return await PostgresAuditLog.open(location, clock=clock)
    from bot.storage.sqlite import SQLiteAuditLog  # noqa: PLC0415

    if clock is None:
        return await SQLiteAuditLog.open(Path(location))
    return await SQLiteAuditLog.open(Path(location), clock=clock)
