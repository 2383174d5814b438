"""The audit log: every scan is a case. `open_audit_log` picks the backend."""

from pathlib import Path

from bot.storage._models import (
    NO_GUILD,
    AuditEvent,
    AuditStats,
    NewScan,
    Review,
    ScanRecord,
    ScanStatus,
    StoredVerdict,
    Trigger,
)
from bot.storage._protocol import AuditLog, ScanNotFound

__all__ = [
    "NO_GUILD",
    "AuditEvent",
    "AuditLog",
    "AuditStats",
    "NewScan",
    "Review",
    "ScanNotFound",
    "ScanRecord",
    "ScanStatus",
    "StoredVerdict",
    "Trigger",
    "open_audit_log",
]


async def open_audit_log(path: Path) -> AuditLog:
    """The audit log at `path` (SQLite; a PostgreSQL URL will select that backend later)."""
    # Imported here so that importing the models never drags in a database driver.
    from bot.storage.sqlite import SQLiteAuditLog  # noqa: PLC0415

    return await SQLiteAuditLog.open(path)
