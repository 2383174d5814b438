"""The audit log: every scan is a case. `open_audit_log` picks the backend."""

from bot.storage._models import (
    NO_GUILD,
    AuditStats,
    NewScan,
    Review,
    ScanRecord,
    ScanStatus,
    StoredVerdict,
    Trigger,
)
from bot.storage._protocol import AuditLog

__all__ = [
    "NO_GUILD",
    "AuditLog",
    "AuditStats",
    "NewScan",
    "Review",
    "ScanRecord",
    "ScanStatus",
    "StoredVerdict",
    "Trigger",
]
