"""The crash test (issue 6) as a slow test: `bench/crash_test.py` with its defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.crash_test import run_crash_test, summary


@pytest.mark.slow
async def test_sigkilled_bot_answers_every_message_once_and_submits_each_file_once(
    tmp_path: Path,
) -> None:
    """Fails if, after 6 SIGKILLs and restarts while 50 voice messages arrive, any message
    lacks exactly one reply, any attachment reached the provider twice, a case is left
    unfinished, a temp file is left behind, or the bot logged a traceback."""
    report = await run_crash_test(messages=50, kills=6, workdir=tmp_path)
    # The summary names the seed: `bench/crash_test.py --seed N` replays the kill schedule.
    assert report.passed, summary(report)
