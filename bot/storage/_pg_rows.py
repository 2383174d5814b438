"""The three `scans` columns whose SQLite type depends on the value, as PostgreSQL BYTEA.

SQLite keeps a sha256 as 32 raw bytes (or the text it was given, if it is not a hex digest),
a job id as 16 raw bytes (or text) and the segment detail as zlib bytes (or JSON text) in one
column each (`_sqlite_rows`). PostgreSQL columns have one type, so each value is stored with
a leading tag byte saying which it was: one byte per value, and the same decoders after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.storage import _sqlite_rows as rows
from bot.storage._models import ScanRecord
from bot.verdict import Verdict

_BYTES, _TEXT = b"\x01", b"\x00"
_SHA256 = rows.SCAN_COLUMNS.index("sha256")
_JOB_ID = rows.SCAN_COLUMNS.index("provider_job_id")
#: Positions in `rows.VERDICT_COLUMNS`.
_VERDICT_JOB_ID, _VERDICT_DETAIL = 6, 8


def pack(value: bytes | str | None) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return _BYTES + value
    return _TEXT + value.encode()


def unpack(value: bytes | None) -> bytes | str | None:
    if value is None:
        return None
    body = bytes(value[1:])
    return body if value[:1] == _BYTES else body.decode()


def record_from_row(row: Sequence[Any]) -> ScanRecord:
    """A `scans` row in `SCAN_COLUMNS` order, as read from PostgreSQL."""
    values = list(row)
    values[_SHA256] = unpack(values[_SHA256])
    values[_JOB_ID] = unpack(values[_JOB_ID])
    return rows.record_from_row(values)


def verdict_from_row(row: Sequence[Any]) -> Verdict:
    """`rows.VERDICT_COLUMNS`, as read from PostgreSQL."""
    values = list(row)
    values[_VERDICT_JOB_ID] = unpack(values[_VERDICT_JOB_ID])
    values[_VERDICT_DETAIL] = unpack(values[_VERDICT_DETAIL])
    return rows.verdict_from_row(values)
