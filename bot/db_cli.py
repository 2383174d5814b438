"""`python -m bot db migrate-to-postgres`: copy a SQLite audit log into PostgreSQL.

For a deployment outgrowing one process: stop the bot, run this once, then start every
process with `SPOOFWATCH_DATABASE_URL`. The copy is one PostgreSQL transaction (all or
nothing) into a database with no cases yet, and is verified by counting every table on both
sides (and each guild's last case number) before it commits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bot.storage import _pg_rows as pg_rows
from bot.storage import _sqlite_rows as rows
from bot.storage.postgres import PostgresAuditLog
from bot.storage.sqlite import SQLiteAuditLog

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: Rows per COPY: bounded memory whatever the size of the log.
BATCH = 10_000

_SCAN_BLOBS = ("sha256", "provider_job_id", "detail")
_SCAN_COLUMNS = (*rows.SCAN_COLUMNS, "detail")
#: Tables copied as they are, in this order; the daily rollups are rebuilt by PostgreSQL's
#: triggers as the cases arrive (and then compared), cooldowns are minutes-long and skipped.
_TABLES: dict[str, tuple[str, ...]] = {
    "guild_counters": ("guild_id", "last_case"),
    "guild_settings": ("guild_id", "config", "retention_days", "updated_at"),
    "scans": _SCAN_COLUMNS,
    "events": ("id", "guild_id", "at", "actor", "action", "target", "reason", "case_number"),
    "submission_claims": ("sha256", "provider", "scan_id", "claimed_at"),
}
_CHECKS = (
    ("guild_counters", "SELECT count(*), coalesce(sum(last_case), 0) FROM guild_counters"),
    ("guild_settings", "SELECT count(*), 0 FROM guild_settings"),
    ("scans", "SELECT count(*), coalesce(sum(case_number), 0) FROM scans"),
    ("events", "SELECT count(*), coalesce(sum(id), 0) FROM events"),
    # Days a case left (pending → done) keep a zero row in SQLite; only counted days compare.
    (
        "daily_outcomes",
        "SELECT count(*), coalesce(sum(cases), 0) FROM daily_outcomes WHERE cases > 0",
    ),
    (
        "daily_channels",
        "SELECT count(*), coalesce(sum(cases), 0) FROM daily_channels WHERE cases > 0",
    ),
    ("submission_claims", "SELECT count(*), 0 FROM submission_claims"),
)


class MigrationFailed(RuntimeError):
    """The copy could not be made or did not verify; PostgreSQL was left unchanged."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `db` and its commands to the `python -m bot` command line."""
    db = subparsers.add_parser("db", help="manage the audit database")
    commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    copy = commands.add_parser(
        "migrate-to-postgres",
        help="copy the SQLite audit log into PostgreSQL (verified by counts)",
        description=(
            "Copy the SQLite audit log (SPOOFWATCH_DB or --db) into the PostgreSQL database "
            "SPOOFWATCH_DATABASE_URL (or --url), which must hold no cases yet. Stop the bot "
            "first. Nothing is written to PostgreSQL unless every table's count matches."
        ),
    )
    copy.add_argument("--db", type=Path, default=None, metavar="PATH", help="the SQLite file")
    copy.add_argument(
        "--url", default=None, metavar="URL", help="postgresql://... (default: from settings)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the `db` command in `args`; the process exit status."""
    source, target = args.db, args.url
    if source is None or target is None:
        # Imported here: only this path needs the settings (it reads .env like the bot).
        from bot.settings import load_settings  # noqa: PLC0415

        settings = load_settings()
        source = source or settings.db_path
        if target is None and settings.database_url is not None:
            target = settings.database_url.get_secret_value()
    if target is None:
        print("error: set SPOOFWATCH_DATABASE_URL or pass --url", file=sys.stderr)
        return EXIT_USAGE
    if not Path(source).is_file():
        print(f"error: no SQLite audit log at {source}", file=sys.stderr)
        return EXIT_USAGE
    try:
        counts = asyncio.run(migrate_to_postgres(Path(source), target))
    except MigrationFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for table, (count, _) in counts.items():
        print(f"{table}: {count} rows, the same on both sides")
    print("done: start every process with SPOOFWATCH_DATABASE_URL set")
    return EXIT_OK


async def migrate_to_postgres(source: Path, url: str) -> dict[str, tuple[int, int]]:
    """Copy the SQLite log at `source` into the PostgreSQL database at `url`; the verified
    (rows, checksum) of every table.

    A command of its own with nothing else on its event loop: SQLite is read directly.
    """
    # Bring the SQLite file to the latest schema first, so both sides have the same tables.
    await (await SQLiteAuditLog.open(source)).close()
    # Creates PostgreSQL's schema (migrations) if it is new.
    await (await PostgresAuditLog.open(url, pool_max=1)).close()
    lite = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        expected = {table: tuple(lite.execute(sql).fetchone()) for table, sql in _CHECKS}
        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                if await conn.fetchval("SELECT count(*) FROM scans"):
                    raise MigrationFailed("the PostgreSQL database already holds cases")
                for table, columns in _TABLES.items():
                    for batch in _batches(lite, table, columns):
                        await conn.copy_records_to_table(table, records=batch, columns=columns)
                for table in ("scans", "events"):
                    await conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                        f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                    )
                copied = {
                    table: tuple(await conn.fetchrow(sql) or (0, 0)) for table, sql in _CHECKS
                }
                if copied != expected:
                    raise MigrationFailed(f"counts differ: SQLite {expected}, copy {copied}")
        finally:
            await conn.close()
    except (OSError, sqlite3.Error, asyncpg.PostgresError) as exc:
        raise MigrationFailed(str(exc)) from exc
    finally:
        lite.close()
    log.info(
        "audit log copied: actor=cli target=postgresql reason=migrate-to-postgres (%d cases)",
        expected["scans"][0],
    )
    return {table: (int(n), int(total)) for table, (n, total) in expected.items()}


def _batches(
    lite: sqlite3.Connection, table: str, columns: Sequence[str]
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of `table`, as PostgreSQL stores them, `BATCH` at a time."""
    # Names are the module's own constants, never input.
    cursor = lite.execute(f"SELECT {', '.join(columns)} FROM {table}")  # noqa: S608
    blobs = [i for i, column in enumerate(columns) if column in _SCAN_BLOBS]
    while True:
        fetched = cursor.fetchmany(BATCH)
        if not fetched:
            return
        if blobs:
            converted = []
            for row in fetched:
                values = list(row)
                for i in blobs:
                    values[i] = pg_rows.pack(values[i])
                converted.append(tuple(values))
            yield converted
        else:
            yield fetched
