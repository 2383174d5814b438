"""Moderators' feedback to the vendor survives a restart: what was owed when the process
stopped is sent at the next start.

The real bot against the Discord emulator, the Resemble stand-in and a real SQLite file.
"""

from __future__ import annotations

from pathlib import Path

from bot.provider_copies import FEEDBACK, FEEDBACK_OWED
from testkit.e2e import MakeSpoofwatch
from testkit.moderation import FAKE, configure, listeners_done, run, scan, wav


async def test_feedback_owed_at_a_stop_is_sent_at_the_next_start(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path
) -> None:
    """Fails if feedback recorded as owed, but not sent before the process stopped, is not
    sent (once) after a restart, with its outcome in the case's events."""
    async with make_spoofwatch() as sw:
        guild = sw.emu.guild
        await configure(sw, "feedback", {"enabled": True})
        path = wav(tmp_path, 1)
        sw.resemble.script_result(path, metrics=FAKE)
        await scan(sw, path)
        await listeners_done(sw)
        case = await sw.bot.audit.cases.case(guild.id, 1)
        assert case is not None and case.provider_job_id is not None
        # What the process had written when it stopped: the decision, owed to the vendor.
        await sw.bot.audit.admin.log_event(
            guild.id, actor="spoofwatch", action=FEEDBACK_OWED, target="case 1", reason="confirmed"
        )
    assert case.provider_job_id not in sw.resemble.feedback

    async with make_spoofwatch() as sw:
        await sw.emu.wait_for(lambda: case.provider_job_id in sw.resemble.feedback)
        assert sw.resemble.feedback[case.provider_job_id]["type"] == "correct"
        events = await sw.bot.audit.cases.case_events(guild.id, 1)
        [outcome] = [e for e in events if e.action == FEEDBACK]
        assert outcome.reason == "Resemble told 'confirmed': done"
        answer = await run(sw, sw.emu.moderator, "audit case", {"number": 1})
        assert "feedback to the provider queued" in answer.embeds[0]["fields"][-1]["value"]
