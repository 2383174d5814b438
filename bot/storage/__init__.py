"""The audit log: every scan is a case. `open_audit_log` picks the backend."""

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from bot.storage._models import (
    NO_GUILD,
    AuditEvent,
    AuditStats,
    NewScan,
    Review,
    ScanRecord,
    ScanStatus,
    ShardFilter,
    StoredVerdict,
    Trigger,
)
from bot.storage._protocol import (
    AuditLog,
    CaseAdmin,
    CaseQueries,
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
    "GuildSettings",
    "NewScan",
    "Review",
    "ScanLifecycle",
    "ScanNotFound",
    "ScanRecord",
    "ScanStatus",
    "ShardFilter",
    "StoredVerdict",
    "Trigger",
    "open_audit_log",
]


async def open_audit_log(path: Path, *, clock: Callable[[], datetime] | None = None) -> AuditLog:
    """The audit log at `path` (SQLite; a PostgreSQL URL will select that backend later).

    `clock` stamps every row; the bot passes its own so that "today" (quotas) and "older than
    N days" (retention) are measured on the same clock as the rows they count.
    """
    # Imported here so that importing the models never drags in a database driver.
    from bot.storage.sqlite import SQLiteAuditLog  # noqa: PLC0415

    if clock is None:
        return await SQLiteAuditLog.open(path)
    return await SQLiteAuditLog.open(path, clock=clock)
