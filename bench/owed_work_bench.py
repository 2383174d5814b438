"""CPU of finding the work the bot still owes (`CaseQueries.unresolved_events`) on SQLite.

    .venv/bin/python -m bench.owed_work_bench [--cases 200000]

The hourly retention run asks four times (feedback to send, provider copies to delete,
mod-log alerts to clear of deleted cases: those with the file, then the rest) and the alerts
cog every 5 minutes once (alerts left due) for events with no later resolving event on their
case. The events table has no index on `action`, so the worst case is when nothing is owed:
every candidate is probed (index events_case) and none returned. This fills a SQLite audit
log with one review per case, an `evidence_kept` per fifth case and its `evidence_removal`,
an `alert_due`, its `alert_posted` and its `alert_redaction` per third case, then times each
kind of query: process CPU time (the reader thread's included), best of 5.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

from bot.storage.sqlite import SQLiteAuditLog

#: What settles an alert due, and what clears a deleted case's alert (as the bot asks).
QUERIES_ALERT_SETTLED = ("alert_posted", "alert_not_posted")
QUERIES_CLEARED = ("evidence_removal", "alert_redaction")

_INSERT = (
    "INSERT INTO events (guild_id, at, actor, action, target, reason, case_number) "
    "VALUES (?, 0, 'spoofwatch', ?, ?, ?, ?)"
)


def _fill(path: Path, cases: int) -> int:
    rows = []
    for case in range(1, cases + 1):
        guild = 1000 + case % 50
        rows.append((guild, "review", f"case {case}", "confirmed", case))
        if case % 3 == 0:
            rows.append((guild, "alert_due", f"case {case}", "message 1/2", case))
            rows.append((guild, "alert_posted", f"case {case}", "mod-log 1/2", case))
            rows.append((guild, "alert_redaction", f"case {case}", "done", case))
        if case % 5 == 0:
            rows.append((guild, "evidence_kept", f"case {case}", "alert 1/2", case))
            rows.append((guild, "evidence_removal", f"case {case}", "done", case))
    with sqlite3.connect(path) as conn:
        conn.executemany(_INSERT, rows)
    return len(rows)


async def main(cases: int) -> None:
    with tempfile.TemporaryDirectory() as temp:
        path = Path(temp) / "audit.db"
        await (await SQLiteAuditLog.open(path)).close()  # the real schema
        events = _fill(path, cases)
        log = await SQLiteAuditLog.open(path)
        print(f"{events} events for {cases} cases")
        try:
            for name, (action, resolved_by, case_deleted), candidates in (
                ("kept files", ("evidence_kept", "evidence_removal", True), cases // 5),
                ("alerts left due", ("alert_due", QUERIES_ALERT_SETTLED, False), cases // 3),
                ("alerts to clear", ("alert_posted", QUERIES_CLEARED, True), cases // 3),
            ):
                best = float("inf")
                for _ in range(5):
                    start = time.process_time()
                    owed = await log.cases.unresolved_events(
                        action, resolved_by, case_deleted=case_deleted
                    )
                    best = min(best, time.process_time() - start)
                    assert owed == []
                print(f"  {name}: {candidates} resolved candidates, {best * 1000:.1f} ms CPU")
        finally:
            await log.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200_000)
    asyncio.run(main(parser.parse_args().cases))
