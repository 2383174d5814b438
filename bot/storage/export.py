"""Audit-log exports as CSV or JSON, shared by `/audit export` and `python -m bot audit export`.

Records stream through: nothing holds more than the storage's export batch in memory.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterable
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, TextIO

from bot.storage._models import ScanRecord


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


#: Columns, in order: every field of a case.
EXPORT_FIELDS: tuple[str, ...] = tuple(ScanRecord.model_fields)

# Spreadsheet programs run a cell starting with one of these as a formula; file names,
# transcripts and notes are written by members, so such cells are prefixed with a quote
# (OWASP's advice for CSV injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


async def write_export(
    records: AsyncIterable[ScanRecord], fmt: ExportFormat | str, out: TextIO
) -> int:
    """Write `records` to `out` as CSV (header row first) or a JSON array; the count written.

    For CSV, open files with `newline=""` (the csv module writes its own line endings).
    """
    fmt = ExportFormat(fmt)
    if fmt is ExportFormat.CSV:
        return await _write_csv(records, out)
    return await _write_json(records, out)


async def export_bytes(records: AsyncIterable[ScanRecord], fmt: ExportFormat | str) -> bytes:
    """The export as UTF-8 bytes, for a Discord attachment (held in memory: Discord caps
    attachments at a few MiB anyway, about ten thousand cases)."""
    out = io.StringIO(newline="")
    await write_export(records, fmt, out)
    return out.getvalue().encode()


def export_filename(guild_id: int, fmt: ExportFormat | str, now: datetime) -> str:
    """A file name that says what the export holds: `spoofwatch-<guild>-<date>.<ext>`."""
    return f"spoofwatch-{guild_id}-{now:%Y%m%d-%H%M%S}.{ExportFormat(fmt).value}"


async def _write_csv(records: AsyncIterable[ScanRecord], out: TextIO) -> int:
    writer = csv.writer(out)
    writer.writerow(EXPORT_FIELDS)
    count = 0
    async for record in records:
        writer.writerow([_csv_cell(getattr(record, name)) for name in EXPORT_FIELDS])
        count += 1
    return count


async def _write_json(records: AsyncIterable[ScanRecord], out: TextIO) -> int:
    # One object per line inside the array: valid JSON, yet still readable and greppable.
    out.write("[")
    count = 0
    async for record in records:
        out.write(",\n" if count else "\n")
        out.write(json.dumps(record.model_dump(mode="json"), ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_PREFIXES) else value
    return str(value)
