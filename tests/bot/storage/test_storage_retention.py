"""Deletion, retention, privacy, migrations and write-path safety of the SQLite audit log."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from bot.guild_config import GuildConfig
from bot.storage import AuditLog, Review
from bot.storage._migrations import LATEST_VERSION, SchemaTooNew, migrate
from bot.storage.sqlite import SQLiteAuditLog
from bot.verdict import Label, ProviderName
from testkit.audit_log import (
    GUILD_A,
    GUILD_B,
    T0,
    Clock,
    finished_scan,
    new_scan,
    verdict,
)

# --- forget and purge ------------------------------------------------------------------------


async def test_forget_author_deletes_their_cases_in_that_guild_only(log: AuditLog) -> None:
    """Fails if forget leaves one of the member's cases, or deletes anyone else's."""
    await finished_scan(log, new_scan(author_id=500))
    await finished_scan(log, new_scan(author_id=500))
    other = await finished_scan(log, new_scan(author_id=501, requested_by=500))
    elsewhere = await finished_scan(log, new_scan(GUILD_B, author_id=500))

    assert await log.admin.forget_author(GUILD_A, 500, actor_id=9) == 2
    assert await log.cases.by_author(GUILD_A, 500, limit=10) == []
    kept = await log.cases.case(GUILD_A, other.case_number)
    assert kept is not None
    assert kept.requested_by is None  # the member asked for this check; their id goes too
    assert await log.cases.case(GUILD_B, elsewhere.case_number) == elsewhere


async def test_forget_author_is_logged(log: AuditLog) -> None:
    """Fails if a forget leaves no event naming who, whom and how many."""
    await finished_scan(log, new_scan(author_id=500))
    await log.admin.forget_author(GUILD_A, 500, actor_id=9)
    (event,) = await log.cases.events(GUILD_A, limit=10)
    assert (event.actor, event.action, event.target, event.reason) == (
        "9",
        "forget",
        "member 500",
        "1 cases deleted",
    )


async def test_purge_before_deletes_only_older_cases_and_is_logged(
    log: AuditLog, clock: Clock
) -> None:
    """Fails if purge_before deletes a case at or after the cut-off, or is not logged."""
    await finished_scan(log)
    clock.advance(days=5)
    cutoff = clock.now
    kept = await finished_scan(log)
    assert await log.admin.purge_before(GUILD_A, cutoff, actor="operator") == 1
    assert [r.case_number for r in await log.cases.recent(GUILD_A, limit=10)] == [kept.case_number]
    (event,) = await log.cases.events(GUILD_A, limit=10)
    assert (event.actor, event.action, event.target) == ("operator", "purge", "1 cases")


async def test_purge_expired_applies_each_guilds_retention(log: AuditLog, clock: Clock) -> None:
    """Fails if retention purges a case younger than its guild's retention, or keeps an older."""
    await log.settings.save_guild_config(GUILD_A, GuildConfig(retention_days=7))
    await finished_scan(log, new_scan(GUILD_A))  # T0
    await finished_scan(log, new_scan(GUILD_B))  # T0, default retention 90 days
    clock.advance(days=10)
    young_a = await finished_scan(log, new_scan(GUILD_A))

    assert await log.admin.purge_expired(clock.now) == {GUILD_A: 1}
    assert [r.id for r in await log.cases.recent(GUILD_A, limit=10)] == [young_a.id]
    assert len(await log.cases.recent(GUILD_B, limit=10)) == 1
    assert await log.admin.purge_expired(T0 + timedelta(days=91)) == {GUILD_B: 1, GUILD_A: 1}
    assert [e.actor for e in await log.cases.events(GUILD_B, limit=10)] == ["retention"]


async def test_purge_expired_with_nothing_old_deletes_nothing(log: AuditLog) -> None:
    """Fails if a retention run with no expired cases deletes or logs anything."""
    await finished_scan(log)
    assert await log.admin.purge_expired(T0 + timedelta(days=89)) == {}
    assert await log.cases.events(GUILD_A, limit=10) == []


async def test_unresolved_events_are_those_without_a_later_resolution(log: AuditLog) -> None:
    """Fails if owed work (an event with no later resolving event on its case) is missed,
    reported once resolved, mixed up across guilds, or, with case_deleted, reported while
    its case still exists."""
    gone = await finished_scan(log, new_scan(author_id=500))
    kept = await finished_scan(log, new_scan(author_id=501))
    elsewhere = await finished_scan(log, new_scan(GUILD_B, author_id=500))
    for guild, case in ((GUILD_A, gone), (GUILD_A, kept), (GUILD_B, elsewhere)):
        await log.admin.log_event(
            guild, actor="bot", action="owed", target=f"case {case.case_number}", reason="x"
        )
    # Resolving GUILD_A's case in GUILD_B resolves nothing; an earlier resolution neither.
    await log.admin.log_event(
        GUILD_B, actor="bot", action="done", target=f"case {kept.case_number}", reason="y"
    )
    await log.admin.forget_author(GUILD_A, 500, actor_id=9)
    owed = await log.cases.unresolved_events("owed", "done")
    assert [(e.guild_id, e.case_number) for e in owed] == [
        (GUILD_A, gone.case_number),
        (GUILD_A, kept.case_number),
        (GUILD_B, elsewhere.case_number),
    ]
    deleted = await log.cases.unresolved_events("owed", "done", case_deleted=True)
    assert [(e.guild_id, e.case_number) for e in deleted] == [(GUILD_A, gone.case_number)]
    await log.admin.log_event(
        GUILD_A, actor="bot", action="done", target=f"case {gone.case_number}", reason="z"
    )
    assert await log.cases.unresolved_events("owed", "done", case_deleted=True) == []
    assert len(await log.cases.unresolved_events("owed", "done", limit=1)) == 1


async def test_owed_work_is_resolved_by_any_action_it_names(log: AuditLog) -> None:
    """Fails if owed work naming several resolving actions (an alert posted, or found not
    postable) stays owed after one of them, or is resolved by an action it does not name."""
    posted, refused, waiting = [
        await finished_scan(log, new_scan(author_id=author)) for author in (500, 501, 502)
    ]
    for case in (posted, refused, waiting):
        await log.admin.log_event(
            GUILD_A, actor="bot", action="owed", target=f"case {case.case_number}", reason="x"
        )
    for case, action in ((posted, "posted"), (refused, "refused"), (waiting, "other")):
        await log.admin.log_event(
            GUILD_A, actor="bot", action=action, target=f"case {case.case_number}", reason="y"
        )
    owed = await log.cases.unresolved_events("owed", ("posted", "refused"))
    assert [e.case_number for e in owed] == [waiting.case_number]
    owed = await log.cases.unresolved_events("owed", "posted")
    assert [e.case_number for e in owed] == [refused.case_number, waiting.case_number]


# --- privacy -------------------------------------------------------------------------------------


async def test_transcript_is_not_stored_when_the_guild_disallows_it(
    tmp_path: Path, clock: Clock
) -> None:
    """Fails if any trace of the transcript reaches the database files with storing off."""
    path = tmp_path / "audit.db"
    log = await SQLiteAuditLog.open(path, clock=clock)
    secret = "the-password-is-swordfish"
    record = await finished_scan(
        log,
        result=verdict(transcript=f"he said {secret}"),
        sha256="bb" * 32,
        store_transcript=False,
    )
    assert record.transcript is None
    stored = await log.scans.find_verdict("bb" * 32, ProviderName.RESEMBLE)
    assert stored is not None
    assert stored.verdict.transcript is None
    await log.close()
    for suffix in ("", "-wal"):
        file = Path(f"{path}{suffix}")
        if file.exists():
            assert secret.encode() not in file.read_bytes()


async def test_transcript_is_kept_as_a_snippet(log: AuditLog) -> None:
    """Fails if a stored transcript exceeds 1000 characters or loses its beginning."""
    record = await finished_scan(log, result=verdict(transcript="word " * 1000))
    assert record.transcript is not None
    assert len(record.transcript) <= 1000
    assert record.transcript.startswith("word word")


async def test_sql_injection_attempts_are_stored_as_text(log: AuditLog) -> None:
    """Fails if a value shaped like SQL is executed instead of stored verbatim."""
    evil = "x'); DROP TABLE scans; --"
    record = await finished_scan(log, new_scan(filename=evil))
    await log.admin.review(GUILD_A, record.case_number, Review.CONFIRMED, moderator_id=1, note=evil)
    await log.admin.log_event(
        GUILD_A, actor=evil, action=evil, target=f"case 1; {evil}", reason=evil
    )
    stored = await log.cases.case(GUILD_A, record.case_number)
    assert stored is not None
    assert (stored.filename, stored.review_note) == (evil, evil)
    events = await log.cases.events(GUILD_A, limit=10)
    assert events[0].target == f"case 1; {evil}"
    assert events[0].case_number is None
    assert await log.cases.count_cases(GUILD_A) == 1


# --- write path ------------------------------------------------------------------------------


async def test_a_failing_statement_does_not_undo_its_batch(sqlite_log: SQLiteAuditLog) -> None:
    """Fails if one bad statement in a group commit loses the other statements' writes."""
    log = sqlite_log
    writer = log.db.writer
    bad = writer.statement("INSERT INTO guild_counters (guild_id, last_case) VALUES (1, NULL)", ())
    good = [log.scans.create_scan(new_scan()) for _ in range(5)]
    results = await asyncio.gather(bad, *good, return_exceptions=True)
    assert isinstance(results[0], sqlite3.IntegrityError)
    assert [r[0].case_number for r in results[1:]] == [1, 2, 3, 4, 5]
    assert await log.cases.count_cases(GUILD_A) == 5


async def test_a_failing_decode_reaches_its_caller_alone(sqlite_log: SQLiteAuditLog) -> None:
    """Fails if an error while decoding one statement's rows (done as the batch commits) is
    lost, or spoils the results of the other statements in the batch."""
    log = sqlite_log

    def broken(rows: list[object]) -> object:
        raise ValueError(f"cannot decode {rows}")

    writer = log.db.writer
    bad = writer.decoded(
        "INSERT INTO guild_counters (guild_id, last_case) VALUES (7, 0) RETURNING guild_id",
        (),
        broken,
    )
    good = [log.scans.create_scan(new_scan()) for _ in range(3)]
    results = await asyncio.gather(bad, *good, return_exceptions=True)
    assert isinstance(results[0], ValueError)
    assert [r[0].case_number for r in results[1:]] == [1, 2, 3]
    assert await log.cases.count_cases(GUILD_A) == 3


async def test_close_finishes_queued_writes(tmp_path: Path) -> None:
    """Fails if writes queued before close() are lost."""
    path = tmp_path / "audit.db"
    log = await SQLiteAuditLog.open(path)
    pending = [asyncio.ensure_future(log.scans.create_scan(new_scan())) for _ in range(20)]
    await asyncio.sleep(0)  # let them queue
    await log.close()
    assert all(task.done() and not task.exception() for task in pending)
    reopened = await SQLiteAuditLog.open(path)
    try:
        assert await reopened.cases.count_cases(GUILD_A) == 20
    finally:
        await reopened.close()


async def test_writes_after_close_raise(tmp_path: Path) -> None:
    """Fails if a write after close() waits forever (or succeeds) instead of raising."""
    log = await SQLiteAuditLog.open(tmp_path / "audit.db")
    await log.close()
    with pytest.raises(RuntimeError, match="closed"):
        await asyncio.wait_for(log.scans.create_scan(new_scan()), timeout=10)


async def test_units_and_statements_run_in_the_order_they_were_queued(
    sqlite_log: SQLiteAuditLog,
) -> None:
    """Fails if a unit is merged into a batch of statements or overtakes one queued before."""
    log = sqlite_log
    writer = log.db.writer

    def count(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT count(*) FROM scans").fetchone()[0])

    first = [log.scans.create_scan(new_scan()) for _ in range(3)]
    queued = [asyncio.ensure_future(call) for call in first]
    await asyncio.sleep(0)  # queued behind the three statements
    in_between = asyncio.ensure_future(writer.unit(count))
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(log.scans.create_scan(new_scan())) for _ in range(2)]
    await asyncio.gather(*queued, *later)
    assert await in_between == 3
    assert await log.cases.count_cases(GUILD_A) == 5


async def test_the_writer_folds_the_wal_back_when_the_checkpointer_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if the writer ignores the checkpointer's request to finish a checkpoint, so that
    the WAL never starts over (SQLite's own auto-checkpoint is out of the way here)."""
    from bot.storage import _sqlite_writer

    monkeypatch.setattr(_sqlite_writer, "_WAL_AUTOCHECKPOINT_PAGES", 1_000_000)
    monkeypatch.setattr(_sqlite_writer, "_WAL_RESTART_PAGES", 1_000_000)
    monkeypatch.setattr(_sqlite_writer, "_CHECKPOINT_INTERVAL_S", 3600.0)  # one pass, then idle
    path = tmp_path / "audit.db"
    wal = Path(f"{path}-wal")
    log = await SQLiteAuditLog.open(path)
    try:
        for _ in range(30):
            await finished_scan(log)
        grown = wal.stat().st_size
        log.db.writer._request_checkpoint()
        await finished_scan(log)  # the writer checkpoints after this commit...
        for _ in range(30):  # ...so these are written from the start of the WAL again
            await finished_scan(log)
        assert wal.stat().st_size < grown * 1.5
        assert await log.cases.count_cases(GUILD_A) == 61
    finally:
        await log.close()


async def test_the_checkpointer_asks_for_the_last_step_once_the_wal_is_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if the checkpointer never asks the writer to finish, whatever the WAL's length."""
    from bot.storage import _sqlite_writer

    monkeypatch.setattr(_sqlite_writer, "_WAL_RESTART_PAGES", 1)
    monkeypatch.setattr(_sqlite_writer, "_CHECKPOINT_INTERVAL_S", 3600.0)  # one pass, then idle
    log = await SQLiteAuditLog.open(tmp_path / "audit.db")
    try:
        await log.scans.create_scan(new_scan())  # one commit wakes the checkpointer: one pass
        for _ in range(200):
            if log.db.writer._checkpoint_due:
                break
            await asyncio.sleep(0.005)
        assert log.db.writer._checkpoint_due
        await finished_scan(log)
        assert not log.db.writer._checkpoint_due  # done after the next commit
    finally:
        await log.close()


async def test_close_stops_the_checkpointer(tmp_path: Path) -> None:
    """Fails if the checkpointer thread outlives the audit log."""
    import threading

    log = await SQLiteAuditLog.open(tmp_path / "audit.db")
    await finished_scan(log)
    await log.close()
    assert [t for t in threading.enumerate() if t.name == "audit-log-checkpointer"] == []


# --- migrations ---------------------------------------------------------------------------


def _v1_database(path: Path) -> None:
    """A database as version 1 of the schema left it, with a case, settings and events."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate(conn, target=1) == 1
        conn.execute(
            "INSERT INTO scans (guild_id, case_number, status, scan_trigger, provider, "
            "created_at, finished_at, author_id, filename, label, spoofed_probability) "
            "VALUES (?, 1, 2, 0, 1, ?, ?, 500, 'old.ogg', 0, 0.97)",
            (GUILD_A, int(T0.timestamp()), int(T0.timestamp()) + 30),
        )
        conn.execute(
            "INSERT INTO guild_settings (guild_id, config, updated_at) VALUES (?, ?, ?)",
            (GUILD_A, GuildConfig(retention_days=7).model_dump_json(), int(T0.timestamp())),
        )
        for target in ("case 1", "member 500"):
            conn.execute(
                "INSERT INTO events (guild_id, at, actor, action, target, reason) "
                "VALUES (?, ?, '9', 'review', ?, 'confirmed')",
                (GUILD_A, int(T0.timestamp()), target),
            )
    finally:
        conn.close()


async def test_migrating_a_version_1_database_keeps_and_reshapes_its_data(
    tmp_path: Path, clock: Clock
) -> None:
    """Fails if migrating from version 1 loses a case, a setting, an event or the counter."""
    path = tmp_path / "audit.db"
    _v1_database(path)
    log = await SQLiteAuditLog.open(path, clock=clock)
    try:
        old = await log.cases.case(GUILD_A, 1)
        assert old is not None
        assert (old.filename, old.label, old.spoofed_probability) == (
            "old.ogg",
            Label.SPOOFED,
            0.97,
        )
        assert (await log.settings.guild_config(GUILD_A)).retention_days == 7
        # Version 2 backfilled retention_days from the JSON and case numbers from targets.
        (event,) = await log.cases.case_events(GUILD_A, 1)
        assert event.target == "case 1"
        # Version 3 backfilled the daily rollups that stats() reads.
        stats = await log.cases.stats(GUILD_A, since=T0 - timedelta(days=1))
        assert (stats.total, stats.by_label) == (1, {"spoofed": 1})
        new = await finished_scan(log)
        assert new.case_number == 2
        clock.advance(days=8)
        assert await log.admin.purge_expired(clock.now) == {GUILD_A: 2}
    finally:
        await log.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    finally:
        conn.close()


async def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    """Fails if a schema newer than the code is opened (and possibly damaged) anyway."""
    path = tmp_path / "audit.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew):
        await SQLiteAuditLog.open(path)


async def test_reopening_does_not_migrate_twice(tmp_path: Path) -> None:
    """Fails if opening an up-to-date database re-runs a migration (it would fail or dupe)."""
    path = tmp_path / "audit.db"
    for _ in range(2):
        log = await SQLiteAuditLog.open(path)
        await finished_scan(log)
        await log.close()
    log = await SQLiteAuditLog.open(path)
    try:
        assert await log.cases.count_cases(GUILD_A) == 2
    finally:
        await log.close()
