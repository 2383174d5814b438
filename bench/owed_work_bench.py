"""CPU of finding the work the bot still owes (`CaseQueries.unresolved_events`) on SQLite.

    .venv/bin/python -m bench.owed_work_bench [--cases 200000]

The hourly retention run asks three times (feedback to send, provider copies to delete,
mod-log alert files to remove) for events with no later resolving event on their case. The
events table has no index on `action`, so the worst case is when nothing is owed: every
candidate is probed (index events_case) and none returned. This fills a SQLite audit log
with one review per case, an `evidence_kept` per fifth case and its `evidence_removal`, then
times the query: process CPU time (the reader thread's included), best of 5.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

from bot.storage.sqlite import SQLiteAuditLog

_INSERT = (
    "INSERT INTO events (guild_id, at, actor, action, target, reason, case_number) "
    "VALUES (?, 0, 'spoofwatch', ?, ?, ?, ?)"
)


def _fill(path: Path, cases: int) -> int:
    rows = []
    for case in range(1, cases + 1):
        guild = 1000 + case % 50
        rows.append((guild, "review", f"case {case}", "confirmed", case))
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
        try:
            best = float("inf")
            for _ in range(5):
                start = time.process_time()
                owed = await log.cases.unresolved_events(
                    "evidence_kept", "evidence_removal", case_deleted=True
                )
                best = min(best, time.process_time() - start)
                assert owed == []
        finally:
            await log.close()
    print(f"{events} events, {cases // 5} resolved candidates: {best * 1000:.1f} ms CPU per query")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200_000)
    asyncio.run(main(parser.parse_args().cases))
