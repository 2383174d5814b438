"""Second opinions in the audit log: the link to the first case, on both backends."""

from __future__ import annotations

from datetime import timedelta

from bot.storage import AuditLog, Trigger
from bot.storage._sqlite_queries import without_second_opinions
from bot.storage.export import export_bytes
from bot.verdict import Label, ProviderName
from testkit.audit_log import GUILD_A, GUILD_B, T0, finished_scan, new_scan, verdict


async def _second_of(log: AuditLog, first_case: int, message_id: int, attachment_id: int) -> int:
    new = new_scan(message_id=message_id, attachment_id=attachment_id)
    second = new.model_copy(
        update={
            "trigger": Trigger.SECOND_OPINION,
            "provider": ProviderName.BEHAVIORAL_SIGNALS,
            "second_opinion_of": first_case,
        }
    )
    record = await finished_scan(
        log,
        second,
        verdict(Label.SPOOFED, 0.91, provider=ProviderName.BEHAVIORAL_SIGNALS, job_id="pid-7"),
    )
    return record.case_number


async def test_a_second_opinion_is_its_own_case_linked_to_the_first(log: AuditLog) -> None:
    """Fails if the same attachment cannot get a second-opinion case next to its automatic
    one (the idempotency key includes the trigger), or if the link is not read back."""
    first = await finished_scan(log)
    assert first.message_id is not None and first.attachment_id is not None
    second_case = await _second_of(log, first.case_number, first.message_id, first.attachment_id)
    assert second_case == first.case_number + 1
    found = await log.cases.second_opinions(GUILD_A, first.case_number)
    assert [r.case_number for r in found] == [second_case]
    assert found[0].second_opinion_of == first.case_number
    assert found[0].trigger is Trigger.SECOND_OPINION
    assert found[0].provider is ProviderName.BEHAVIORAL_SIGNALS
    assert found[0].label is Label.SPOOFED
    # The first case itself names no case.
    assert (await log.cases.case(GUILD_A, first.case_number)).second_opinion_of is None  # type: ignore[union-attr]


async def test_second_opinions_are_read_within_one_guild(log: AuditLog) -> None:
    """Fails if another guild's case with the same number shows as a second opinion."""
    first = await finished_scan(log)
    other = await finished_scan(log, new_scan(GUILD_B))
    assert other.case_number == first.case_number  # both guilds' case #1
    assert first.message_id is not None and first.attachment_id is not None
    await _second_of(log, first.case_number, first.message_id, first.attachment_id)
    assert await log.cases.second_opinions(GUILD_B, other.case_number) == []


async def test_a_repeated_second_opinion_request_is_the_same_case(log: AuditLog) -> None:
    """Fails if asking twice for the same attachment opens two billed cases."""
    first = await finished_scan(log)
    new = new_scan(message_id=first.message_id, attachment_id=first.attachment_id)
    second = new.model_copy(
        update={"trigger": Trigger.SECOND_OPINION, "second_opinion_of": first.case_number}
    )
    one, created_one = await log.scans.create_scan(second)
    two, created_two = await log.scans.create_scan(second)
    assert (created_one, created_two) == (True, False)
    assert one.id == two.id


async def test_the_export_names_the_case_a_second_opinion_judges(log: AuditLog) -> None:
    """Fails if the export leaves out the link between the two verdicts of a file."""
    first = await finished_scan(log)
    assert first.message_id is not None and first.attachment_id is not None
    await _second_of(log, first.case_number, first.message_id, first.attachment_id)
    rows = (await export_bytes(log.cases.export(GUILD_A, since=first.created_at), "csv")).decode()
    header, *lines = rows.splitlines()
    column = header.split(",").index("second_opinion_of")
    assert [line.split(",")[column] for line in lines] == ["", str(first.case_number)]


async def test_flagged_finds_cases_by_the_kind_of_fraud(log: AuditLog) -> None:
    """Fails if Resemble's fraud type is not kept on the case, or if `/audit flagged fraud:`
    returns another kind, an unflagged case, or miscounts (alone and with a generator)."""
    spoofed = verdict(Label.SPOOFED, 0.95)
    vishing = await finished_scan(
        log, result=spoofed.model_copy(update={"fraud_type": "vishing", "generator": "elevenlabs"})
    )
    await finished_scan(log, result=spoofed.model_copy(update={"fraud_type": "extortion"}))
    await finished_scan(log, result=verdict(Label.BONAFIDE, 0.05).model_copy(
        update={"fraud_type": "vishing"}
    ))  # fmt: skip
    await finished_scan(log, result=spoofed)
    since = vishing.created_at
    assert vishing.fraud_type == "vishing"
    found = await log.cases.flagged(
        GUILD_A, since=since, threshold=0.5, limit=10, fraud_type="vishing"
    )
    assert [r.case_number for r in found] == [vishing.case_number]
    assert (
        await log.cases.count_flagged(GUILD_A, since=since, threshold=0.5, fraud_type="vishing")
        == 1
    )
    both = await log.cases.flagged(
        GUILD_A, since=since, threshold=0.5, limit=10, fraud_type="vishing", generator="xtts"
    )
    assert both == []
    assert (
        await log.cases.flagged(GUILD_B, since=since, threshold=0.5, limit=10, fraud_type="vishing")
        == []
    )


async def test_stats_name_second_opinions_and_count_a_flagged_file_once(log: AuditLog) -> None:
    """Fails if `/audit stats` cannot tell second opinions apart (a guild checking with both
    providers would read every file twice with no word why), or if the member whose one file
    both providers flagged is counted as flagged twice."""
    first = await finished_scan(
        log, new_scan(author_id=777), verdict(Label.SPOOFED, 0.97, transcript=None)
    )
    assert first.message_id is not None and first.attachment_id is not None
    await _second_of(log, first.case_number, first.message_id, first.attachment_id)
    since = T0 - timedelta(days=1)
    stats = await log.cases.stats(GUILD_A, since=since)
    assert stats.total == 2
    assert stats.second_opinions == 1
    assert dict(stats.top_flagged_authors) == {777: 1}
    assert (await log.cases.stats(GUILD_B, since=since)).second_opinions == 0


def test_second_opinion_flags_come_off_the_widened_top_list() -> None:
    """Fails if taking second opinions' flags off the widened top list loses an author of
    the true top list, keeps one whose flags were all second opinions, or mis-orders them."""
    # Raw counts, top 2 + 1 (one author has second opinions): 1 has 5 of which 3 doubled.
    raw = [(1, 5), (2, 4), (3, 3)]
    assert without_second_opinions(raw, [(1, 3)], top=2) == [(2, 4), (3, 3)]
    assert without_second_opinions([(9, 1)], [(9, 1)], top=2) == []
    assert without_second_opinions([(4, 2), (3, 2)], [], top=5) == [(3, 2), (4, 2)]
