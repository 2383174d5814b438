"""The `scans` columns are named once, by the models' fields (`bot.storage._sqlite_rows`)."""

from __future__ import annotations

from typing import Any

from bot.storage import AuditLog, NewScan, ScanRecord
from bot.storage import _sqlite_rows as rows
from bot.storage.postgres import PostgresAuditLog
from bot.storage.sqlite import SQLiteAuditLog
from testkit.audit_log import finished_scan, new_scan


async def _table_columns(log: AuditLog) -> set[str]:
    if isinstance(log, SQLiteAuditLog):
        found: list[Any] = await log.db.fetch_all("SELECT name FROM pragma_table_info('scans')", ())
    else:
        assert isinstance(log, PostgresAuditLog)
        found = await log.db.fetch_all(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'scans'"
        )
    return {row[0] for row in found}


async def test_the_models_name_every_column_of_the_table(log: AuditLog) -> None:
    """Fails if a migration adds a `scans` column no `ScanRecord` field reads (or a field
    names a column the schema lacks), on either backend: the detail blob is the one column
    read apart, into verdicts."""
    assert await _table_columns(log) == {*rows.SCAN_COLUMNS, "detail"}


def test_an_accepted_scan_is_the_first_part_of_a_case() -> None:
    """Fails if `NewScan` grows a field `ScanRecord` lacks, or the two disagree on a type:
    each `NewScan` field is a column `create_scan` binds and a case reads back."""
    for name, field in NewScan.model_fields.items():
        assert field.annotation == ScanRecord.model_fields[name].annotation, name
    assert rows.INSERT_COLUMNS[-1] == "created_at"


async def test_a_new_case_reads_back_as_it_was_accepted(log: AuditLog) -> None:
    """Fails if a `NewScan` field is lost or altered on its way into the table and back
    (the record `create_scan` returns is built from the bound values, not read back)."""
    new = new_scan(requested_by=77, filename="clip.mp4")
    record, created = await log.scans.create_scan(new)
    assert created
    stored = await log.scans.get_scan(record.id)
    assert stored == record
    assert {name: getattr(stored, name) for name in NewScan.model_fields} == dict(new)
    done = await finished_scan(log)
    assert await log.scans.get_scan(done.id) == done
