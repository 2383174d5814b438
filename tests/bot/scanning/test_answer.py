"""The answer stage: one reply per message, recorded on its cases, whoever finished them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from bot.errors import ProviderUnavailable
from bot.scanning import MessagePart, Reply, ScanOutcome
from bot.scanning._answer import Answers
from bot.storage import AuditLog, ScanRecord
from testkit.scan_support import cli_request, make_service

MESSAGE = 4242


class Posting:
    """A Discord side that shows every outcome it is given, as reply `reply_id`."""

    def __init__(self, reply_id: int | None) -> None:
        self.reply_id = reply_id
        self.scanned_calls = 0
        self.shown: list[list[ScanOutcome]] = []

    def scanned(self) -> None:
        self.scanned_calls += 1

    async def reply(self, unanswered: list[ScanOutcome]) -> Reply | None:
        await asyncio.sleep(0)  # a post takes a while: another task may try meanwhile
        self.shown.append(unanswered)
        return None if self.reply_id is None else Reply(self.reply_id, unanswered)


async def failed_case(audit: AuditLog, tmp_path: Path) -> ScanOutcome:
    request = cli_request(tmp_path / "voice.ogg", message_id=MESSAGE)
    record, _ = await audit.scans.create_scan(request.new)
    error = ProviderUnavailable("resemble", "the provider is down", status=503)
    failed = await audit.scans.mark_failed(record.id, error.kind, str(error))
    return ScanOutcome(record=failed, error=error)


async def stored(audit: AuditLog, record: ScanRecord) -> ScanRecord:
    found = await audit.scans.get_scan(record.id)
    assert found is not None
    return found


async def test_two_tasks_answering_one_message_post_one_reply(
    audit: AuditLog, tmp_path: Path
) -> None:
    """Fails if a live scan and a restart's resume finishing the same message at once both
    post a reply, or if the reply posted is not recorded on the case."""
    outcome = await failed_case(audit, tmp_path)
    answers = Answers(audit.scans)
    live, resumed = Posting(reply_id=7001), Posting(reply_id=7002)
    await asyncio.gather(
        answers.answer(MESSAGE, [outcome], live),
        answers.answer(MESSAGE, [outcome], resumed),
    )
    assert len(live.shown) + len(resumed.shown) == 1
    posted = 7001 if live.shown else 7002
    assert (await stored(audit, outcome.record)).reply_message_id == posted


async def test_a_reply_not_posted_leaves_the_case_unanswered(
    audit: AuditLog, tmp_path: Path
) -> None:
    """Fails if a case counts as answered although Discord refused (or nothing was shown):
    the next answer to the message, after a restart, would then never show it."""
    outcome = await failed_case(audit, tmp_path)
    answers = Answers(audit.scans)
    await answers.answer(MESSAGE, [outcome], Posting(reply_id=None))
    assert (await stored(audit, outcome.record)).reply_message_id is None
    later = Posting(reply_id=7003)
    await answers.answer(MESSAGE, [outcome], later)
    assert [[o.record.id for o in shown] for shown in later.shown] == [[outcome.record.id]]


async def test_a_message_another_task_is_scanning_is_left_to_it(
    audit: AuditLog, http_session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Fails if a duplicate event for a message whose scan is running answers it too (the
    running scan answers for every attachment)."""
    request = cli_request(tmp_path / "voice.ogg", message_id=MESSAGE)
    await audit.scans.create_scan(request.new)  # accepted by the other task, still running
    scans = make_service(audit, http_session)
    posting = Posting(reply_id=7004)
    current = await scans.scan_message(MESSAGE, [MessagePart(request)], posting)
    assert current is None
    assert posting.scanned_calls == 0 and posting.shown == []
