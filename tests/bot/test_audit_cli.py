"""`python -m bot audit …` and the CSV/JSON export it shares with `/audit export`."""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import audit_cli
from bot.storage import Review, ScanRecord
from bot.storage.export import EXPORT_FIELDS, ExportFormat, export_bytes, write_export
from bot.storage.sqlite import SQLiteAuditLog
from bot.verdict import Label
from testkit.audit_log import (
    GUILD_A,
    GUILD_B,
    Clock,
    failed_scan,
    finished_scan,
    new_scan,
    verdict,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    """A database with cases in two guilds, written an hour ago (inside every window)."""
    path = tmp_path / "audit.db"
    log = await SQLiteAuditLog.open(path, clock=Clock(datetime.now(UTC) - timedelta(hours=1)))
    try:
        await finished_scan(log, new_scan(author_id=500), verdict(Label.SPOOFED, 0.97))
        await finished_scan(log, new_scan(author_id=501, filename='=HYPERLINK("x")\x1b[2J.ogg'))
        await failed_scan(log, new_scan(author_id=500))
        await log.admin.review(GUILD_A, 1, Review.CONFIRMED, moderator_id=9, note="obvious clone")
        await finished_scan(log, new_scan(GUILD_B, author_id=500, filename="guild-b-secret.ogg"))
    finally:
        await log.close()
    return path


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bot")
    audit_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = await audit_cli.run(parse(*argv))
    out, err = capsys.readouterr()
    return status, out, err


async def test_recent_lists_the_guilds_cases_newest_first(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fails if `audit recent` misses, misorders or leaks another guild's cases."""
    status, out, _ = await run(capsys, "audit", "recent", "--guild", str(GUILD_A), "--db", str(db))
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == f"3 most recent of 3 cases in guild {GUILD_A}"
    assert [line.split()[0] for line in lines[2:]] == ["3", "2", "1"]
    assert "guild-b-secret" not in out


async def test_table_output_neutralizes_control_characters(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fails if a member's file name can send escape sequences to the operator's terminal."""
    _, out, _ = await run(capsys, "audit", "recent", "--guild", str(GUILD_A), "--db", str(db))
    assert "\x1b" not in out
    assert "?[2J" in out


async def test_user_lists_only_that_members_cases(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fails if `audit user` shows another member's case."""
    status, out, _ = await run(
        capsys, "audit", "user", "500", "--guild", str(GUILD_A), "--db", str(db)
    )
    assert status == 0
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["3", "1"]


async def test_case_prints_every_field_and_its_events(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fails if `audit case` omits a field of the case or its review event."""
    status, out, _ = await run(
        capsys, "audit", "case", "1", "--guild", str(GUILD_A), "--db", str(db)
    )
    assert status == 0
    printed = {line.split()[0] for line in out.splitlines() if line and not line.startswith(" ")}
    assert set(ScanRecord.model_fields) <= printed
    assert "review by 9: confirmed" in out
    assert "obvious clone" in out


async def test_missing_case_exits_2_with_a_message(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fails if asking for a case the guild does not have (e.g. guild B's) is not an error."""
    status, out, err = await run(
        capsys, "audit", "case", "4", "--guild", str(GUILD_A), "--db", str(db)
    )
    assert (status, out) == (2, "")
    assert f"guild {GUILD_A} has no case 4" in err


async def test_missing_database_exits_2_without_creating_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fails if a mistyped --db silently creates an empty database instead of failing."""
    missing = tmp_path / "nope.db"
    status, _, err = await run(capsys, "audit", "recent", "--guild", "1", "--db", str(missing))
    assert status == 2
    assert "no audit database" in err
    assert not missing.exists()


async def test_db_defaults_to_spoofwatch_db(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Fails if --db does not default to the SPOOFWATCH_DB setting."""
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("SPOOFWATCH_DB", str(db))
    status, out, _ = await run(capsys, "audit", "recent", "--guild", str(GUILD_A))
    assert status == 0
    assert out.startswith("3 most recent")


async def test_flagged_uses_the_threshold(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Fails if `audit flagged` ignores --threshold or lists an unflagged case."""
    args = ("audit", "flagged", "--guild", str(GUILD_A), "--db", str(db))
    _, out, _ = await run(capsys, *args)
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["1"]
    _, out, _ = await run(capsys, *args, "--threshold", "0.05")
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["2", "1"]


async def test_stats_prints_each_section(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Fails if `audit stats` omits the totals, labels or errors."""
    status, out, _ = await run(capsys, "audit", "stats", "--guild", str(GUILD_A), "--db", str(db))
    assert status == 0
    assert out.startswith("3 cases in the last 30 days")
    assert "provider_timeout" in out
    assert "spoofed" in out
    # Case 1 (97 %) was confirmed by a moderator.
    assert "90–100%                  1 confirmed, 0 not a deepfake (0% false positives)" in out


@pytest.mark.parametrize("fmt", ["csv", "json"])
async def test_export_writes_a_parseable_file_with_the_guilds_rows(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """Fails if the export file does not parse or holds the wrong rows."""
    out_file = tmp_path / f"export.{fmt}"
    status, _, err = await run(
        capsys, "audit", "export", "--guild", str(GUILD_A), "--db", str(db),
        "--format", fmt, "--output", str(out_file),
    )  # fmt: skip
    assert status == 0
    assert "exported 3 cases" in err
    text = out_file.read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text))) if fmt == "csv" else json.loads(text)
    assert [int(r["case_number"]) for r in rows] == [1, 2, 3]
    assert {int(r["guild_id"]) for r in rows} == {GUILD_A}


# --- the export helper ------------------------------------------------------------------------


async def _records(db: Path) -> list[ScanRecord]:
    log = await SQLiteAuditLog.open(db)
    try:
        return [
            r async for r in log.cases.export(GUILD_A, since=datetime.now(UTC) - timedelta(days=1))
        ]
    finally:
        await log.close()


async def _aiter(records: list[ScanRecord]) -> AsyncIterator[ScanRecord]:
    for record in records:
        yield record


async def test_csv_export_defuses_formulas(db: Path) -> None:
    """Fails if a member-chosen file name starting with '=' reaches a spreadsheet as a formula."""
    out = io.StringIO(newline="")
    assert await write_export(_aiter(await _records(db)), ExportFormat.CSV, out) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == EXPORT_FIELDS
    assert rows[1]["filename"].startswith("'=HYPERLINK")


async def test_json_export_round_trips_records(db: Path) -> None:
    """Fails if a JSON export does not validate back into the same records."""
    records = await _records(db)
    out = io.StringIO()
    await write_export(_aiter(records), "json", out)
    assert [ScanRecord.model_validate(item) for item in json.loads(out.getvalue())] == records


@pytest.mark.parametrize("fmt", ["csv", "json"])
async def test_empty_export_is_still_a_valid_file(fmt: str) -> None:
    """Fails if exporting no cases produces a file that does not parse."""
    out = io.StringIO()
    assert await write_export(_aiter([]), fmt, out) == 0
    if fmt == "json":
        assert json.loads(out.getvalue()) == []
    else:
        assert list(csv.reader(io.StringIO(out.getvalue()))) == [list(EXPORT_FIELDS)]


async def test_export_bytes_is_the_same_export_as_utf8(db: Path) -> None:
    """Fails if the bytes for a Discord attachment differ from the text export."""
    records = await _records(db)
    out = io.StringIO(newline="")
    await write_export(_aiter(records), "csv", out)
    assert await export_bytes(_aiter(records), "csv") == out.getvalue().encode()


def test_python_m_bot_audit_runs_as_a_separate_process(db: Path) -> None:
    """Fails if `python -m bot audit` does not work without a token or provider keys."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "audit",
            "case",
            "1",
            "--guild",
            str(GUILD_A),
            "--db",
            str(db),
        ],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(db.parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "obvious clone" in result.stdout


def test_main_runs_as_a_separate_process(db: Path) -> None:
    """Fails if the CLI does not work as its own process (no token, no provider keys)."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from bot.audit_cli import main; sys.exit(main(sys.argv[1:]))",
            "audit",
            "export",
            "--guild",
            str(GUILD_A),
            "--db",
            str(db),
            "--format",
            "json",
        ],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(db.parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [item["case_number"] for item in json.loads(result.stdout)] == [1, 2, 3]


def test_main_exits_2_for_a_missing_database(tmp_path: Path) -> None:
    """Fails if the process exit status for a missing database is not 2."""
    assert audit_cli.main(["audit", "stats", "--guild", "1", "--db", str(tmp_path / "x.db")]) == 2


async def test_guilds_lists_the_guild_ids_with_case_counts(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fails if `audit guilds` does not list every guild id with its count, most first."""
    status, out, _ = await run(capsys, "audit", "guilds", "--db", str(db))
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "2 guilds in the audit log"
    assert [line.split()[:2] for line in lines[2:]] == [[str(GUILD_A), "3"], [str(GUILD_B), "1"]]


async def test_an_unknown_guild_says_so(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Fails if a guild id with no cases reads as an empty server instead of an error."""
    status, out, err = await run(capsys, "audit", "recent", "--guild", "12345", "--db", str(db))
    assert status == 2 and out == ""
    assert "no cases of guild 12345" in err and "audit guilds" in err
