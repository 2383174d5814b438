"""The moderators' queries of the SQLite audit log, and guild isolation across all of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from bot.guild_config import GuildConfig
from bot.storage import AuditLog, Review, ScanStatus, Trigger, _sqlite_queries
from bot.verdict import Label
from testkit.audit_log import (
    GUILD_A,
    GUILD_B,
    T0,
    Clock,
    failed_scan,
    finished_scan,
    new_scan,
    verdict,
)


async def test_recent_is_newest_first_and_pages(log: AuditLog) -> None:
    """Fails if recent() is not ordered newest first or its pages overlap or skip."""
    for _ in range(7):
        await finished_scan(log)
    first = await log.cases.recent(GUILD_A, limit=3)
    second = await log.cases.recent(GUILD_A, limit=3, offset=3)
    last = await log.cases.recent(GUILD_A, limit=3, offset=6)
    assert [r.case_number for r in first + second + last] == [7, 6, 5, 4, 3, 2, 1]
    assert await log.cases.count_cases(GUILD_A) == 7


async def test_by_author_returns_only_that_members_cases(log: AuditLog) -> None:
    """Fails if by_author() includes another member's cases or loses the order."""
    for author in (1, 2, 1, 3, 1):
        await finished_scan(log, new_scan(author_id=author))
    cases = await log.cases.by_author(GUILD_A, 1, limit=10)
    assert [r.case_number for r in cases] == [5, 3, 1]
    assert {r.author_id for r in cases} == {1}
    assert await log.cases.count_cases(GUILD_A, author_id=1) == 3


async def test_case_finds_one_case_by_number(log: AuditLog) -> None:
    """Fails if case() misses an existing number or invents a missing one."""
    record = await finished_scan(log)
    assert await log.cases.case(GUILD_A, record.case_number) == record
    assert await log.cases.case(GUILD_A, record.case_number + 1) is None


async def test_flagged_is_at_threshold_within_the_window(log: AuditLog, clock: Clock) -> None:
    """Fails if flagged() includes a clean, below-threshold or too-old case, or misses a
    flagged one: the threshold decides, the provider's label only when it gave no number
    (the rule of replies and alerts, `bot.verdict.decide`)."""
    old_spoof = await finished_scan(log, result=verdict(Label.SPOOFED, 0.99))
    clock.advance(days=10)
    spoofed_low = await finished_scan(log, result=verdict(Label.SPOOFED, None))
    await finished_scan(log, result=verdict(Label.SPOOFED, 0.3))
    high_bonafide = await finished_scan(log, result=verdict(Label.BONAFIDE, 0.7))
    await finished_scan(log, result=verdict(Label.BONAFIDE, 0.69))
    await finished_scan(log, result=verdict(Label.INCONCLUSIVE, None))
    await failed_scan(log)
    since = clock.now - timedelta(days=7)
    flagged = await log.cases.flagged(GUILD_A, since=since, threshold=0.7, limit=10)
    assert [r.case_number for r in flagged] == [high_bonafide.case_number, spoofed_low.case_number]
    assert await log.cases.count_flagged(GUILD_A, since=since, threshold=0.7) == 2
    wider = await log.cases.flagged(GUILD_A, since=T0, threshold=0.7, limit=10, offset=2)
    assert [r.case_number for r in wider] == [old_spoof.case_number]


async def test_stats_counts_labels_days_channels_authors_and_errors(
    log: AuditLog, clock: Clock
) -> None:
    """Fails if any part of stats() miscounts or counts a case outside the window."""
    await finished_scan(log, new_scan(channel_id=1, author_id=10), verdict(Label.SPOOFED, 0.9))
    clock.advance(days=40)  # the case above is now outside a 30-day window
    since = clock.now - timedelta(days=30)
    await finished_scan(log, new_scan(channel_id=1, author_id=10), verdict(Label.SPOOFED, 0.9))
    await finished_scan(log, new_scan(channel_id=1, author_id=11), verdict(Label.BONAFIDE, 0.6))
    clock.advance(days=1)
    await finished_scan(log, new_scan(channel_id=2, author_id=12), verdict(Label.BONAFIDE, 0.1))
    await failed_scan(log, new_scan(channel_id=2, author_id=12), kind="provider_timeout")
    await log.scans.create_scan(new_scan(channel_id=3, author_id=12))  # still queued

    stats = await log.cases.stats(GUILD_A, since=since)
    assert stats.total == 5
    assert stats.by_label == {"spoofed": 1, "bonafide": 2, "failed": 1, "pending": 1}
    day1 = (T0 + timedelta(days=40)).date().isoformat()
    day2 = (T0 + timedelta(days=41)).date().isoformat()
    assert stats.by_day == [(day1, 2), (day2, 3)]
    assert stats.top_channels == [(1, 2), (2, 2), (3, 1)]
    # The default alert threshold (0.5) also flags member 11's 0.6 bonafide case.
    assert stats.top_flagged_authors == [(10, 1), (11, 1)]
    assert stats.errors_by_kind == {"provider_timeout": 1}


async def test_stats_window_starts_exactly_at_since(log: AuditLog, clock: Clock) -> None:
    """Fails if stats() counts a case from the first day's hours before `since`, or drops one
    after it (whole days come from rollups, the first partial day from the cases)."""
    await finished_scan(log)  # T0 = 12:00, before the window
    clock.advance(hours=3)  # 15:00 the same day
    await finished_scan(log, result=verdict(Label.SPOOFED, 0.9))
    clock.advance(days=1)
    await failed_scan(log)
    stats = await log.cases.stats(GUILD_A, since=T0 + timedelta(hours=1))
    assert stats.total == 2
    assert stats.by_label == {"spoofed": 1, "failed": 1}
    assert [n for _, n in stats.by_day] == [1, 1]
    assert stats.top_channels == [(601, 2)]


async def test_stats_follow_deletions_and_status_changes(log: AuditLog, clock: Clock) -> None:
    """Fails if the daily counts behind stats() drift from the cases after forget or purge."""
    pending, _ = await log.scans.create_scan(new_scan(author_id=1))
    await finished_scan(log, new_scan(author_id=2), verdict(Label.SPOOFED, 0.9))
    clock.advance(days=3)
    await finished_scan(log, new_scan(author_id=1))
    await log.scans.mark_done(pending.id, verdict(Label.INCONCLUSIVE, None))
    before = await log.cases.stats(GUILD_A, since=T0 - timedelta(days=1))
    assert before.by_label == {"inconclusive": 1, "spoofed": 1, "bonafide": 1}
    await log.admin.forget_author(GUILD_A, 1, actor_id=9)
    assert (await log.cases.stats(GUILD_A, since=T0 - timedelta(days=1))).by_label == {"spoofed": 1}
    await log.admin.purge_before(GUILD_A, clock.now, actor="test")
    after = await log.cases.stats(GUILD_A, since=T0 - timedelta(days=1))
    assert (after.total, after.by_day, after.top_channels) == (0, [], [])


async def test_stats_top_flagged_authors_follow_the_guild_threshold(log: AuditLog) -> None:
    """Fails if stats() ignores the guild's saved alert threshold."""
    await log.settings.save_guild_config(GUILD_A, GuildConfig(alert_threshold=0.95))
    await finished_scan(log, new_scan(author_id=11), verdict(Label.BONAFIDE, 0.9))
    stats = await log.cases.stats(GUILD_A, since=T0)
    assert stats.top_flagged_authors == []


async def test_export_streams_every_case_in_the_window_in_batches(
    log: AuditLog, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if export() drops, repeats or misorders cases across batch boundaries."""
    monkeypatch.setattr(_sqlite_queries, "EXPORT_BATCH", 3)
    await finished_scan(log)  # before the window
    clock.advance(days=30)
    since = clock.now
    expected = []
    for i in range(8):
        if i % 3 == 0:
            clock.advance(seconds=1)  # several cases share a second, others do not
        expected.append((await finished_scan(log)).case_number)
    exported = [r.case_number async for r in log.cases.export(GUILD_A, since=since)]
    assert exported == expected


async def test_review_records_the_decision_and_an_event(log: AuditLog, clock: Clock) -> None:
    """Fails if review() does not store decision, moderator, time and note, and log it."""
    record = await finished_scan(log, result=verdict(Label.SPOOFED, 0.9))
    reviewed_at = clock.advance(hours=1)
    reviewed = await log.admin.review(
        GUILD_A, record.case_number, Review.FALSE_POSITIVE, moderator_id=77, note="known clip"
    )
    assert reviewed is not None
    assert (reviewed.review, reviewed.reviewed_by, reviewed.reviewed_at, reviewed.review_note) == (
        Review.FALSE_POSITIVE,
        77,
        reviewed_at,
        "known clip",
    )
    events = await log.cases.case_events(GUILD_A, record.case_number)
    assert [(e.action, e.actor, e.reason) for e in events] == [("review", "77", "false_positive")]


async def test_review_of_a_missing_case_is_none(log: AuditLog) -> None:
    """Fails if reviewing a case number that does not exist reports success."""
    assert await log.admin.review(GUILD_A, 5, Review.CONFIRMED, moderator_id=1) is None
    assert await log.cases.events(GUILD_A, limit=10) == []


async def test_record_action_is_listed_with_the_case(log: AuditLog) -> None:
    """Fails if a moderator action is not retrievable with its case and in the event list."""
    record = await finished_scan(log)
    await log.admin.record_action(
        GUILD_A, record.case_number, action="timeout", actor_id=55, outcome="10 minutes"
    )
    (event,) = await log.cases.case_events(GUILD_A, record.case_number)
    assert (event.action, event.actor, event.reason, event.target) == (
        "timeout",
        "55",
        "10 minutes",
        f"case {record.case_number}",
    )
    assert await log.cases.events(GUILD_A, limit=5) == [event]


async def test_count_scans_counts_only_provider_calls_since(log: AuditLog, clock: Clock) -> None:
    """Fails if count_scans counts a reused, refused, queued, old or other-guild scan."""
    await finished_scan(log)  # yesterday: outside
    clock.advance(days=1)
    since = clock.now
    await finished_scan(log)  # counts
    submitted, _ = await log.scans.create_scan(new_scan())
    await log.scans.mark_submitted(submitted.id, "job")  # counts
    await failed_scan(log)  # failed after submission: counts
    refused, _ = await log.scans.create_scan(new_scan())
    await log.scans.mark_failed(refused.id, "quota", "quota reached")  # refused before: no
    await log.scans.create_scan(new_scan())  # queued: no
    source = await finished_scan(log, sha256="aa" * 32)  # counts
    reused, _ = await log.scans.create_scan(new_scan())
    await log.scans.mark_done(reused.id, verdict(), reused_from=source.id)  # reused: no
    await finished_scan(log, new_scan(GUILD_B))  # other guild: no
    assert await log.scans.count_scans(GUILD_A, since=since) == 4


# --- guild isolation -------------------------------------------------------------------------

Query = Callable[[AuditLog, int, int], Awaitable[Any]]

_QUERIES: dict[str, Query] = {
    "recent": lambda log, g, n: log.cases.recent(g, limit=100),
    "by_author": lambda log, g, n: log.cases.by_author(g, 500, limit=100),
    "case": lambda log, g, n: log.cases.case(g, n),
    "flagged": lambda log, g, n: log.cases.flagged(g, since=T0, threshold=0.0, limit=100),
    "count_flagged": lambda log, g, n: log.cases.count_flagged(g, since=T0, threshold=0.0),
    "stats": lambda log, g, n: log.cases.stats(g, since=T0),
    "export": lambda log, g, n: _collect(log.cases.export(g, since=T0)),
    "count_scans": lambda log, g, n: log.scans.count_scans(g, since=T0),
    "count_cases": lambda log, g, n: log.cases.count_cases(g),
    "case_events": lambda log, g, n: log.cases.case_events(g, n),
    "events": lambda log, g, n: log.cases.events(g, limit=100),
}


async def _collect(records: AsyncIterator[Any]) -> list[Any]:
    return [r async for r in records]


@pytest.mark.parametrize("query", list(_QUERIES), ids=list(_QUERIES))
async def test_no_query_of_guild_a_sees_guild_b(log: AuditLog, query: str) -> None:
    """Fails if a query scoped to guild A returns or counts anything of guild B's."""
    b_case = await finished_scan(log, new_scan(GUILD_B, author_id=500), verdict(Label.SPOOFED, 0.9))
    await log.admin.record_action(
        GUILD_B, b_case.case_number, action="delete", actor_id=1, outcome="ok"
    )
    await log.admin.review(GUILD_B, b_case.case_number, Review.CONFIRMED, moderator_id=1)
    # Guild A is empty: every answer must be empty, zero or None, whatever the ids.
    answer = await _QUERIES[query](log, GUILD_A, b_case.case_number)
    if query == "stats":
        assert answer.total == 0
        assert (answer.by_label, answer.by_day, answer.top_channels) == ({}, [], [])
    else:
        assert answer in (None, 0, [])
    # The same query does see guild B's data, so the empty answer above is meaningful.
    assert await _QUERIES[query](log, GUILD_B, b_case.case_number) not in (None, 0, [])


async def test_guild_a_cannot_change_guild_b(log: AuditLog) -> None:
    """Fails if review, forget or purge given guild A touch a case of guild B."""
    b_case = await finished_scan(log, new_scan(GUILD_B, author_id=500))
    assert (
        await log.admin.review(GUILD_A, b_case.case_number, Review.CONFIRMED, moderator_id=1)
        is None
    )
    assert await log.admin.forget_author(GUILD_A, 500, actor_id=1) == 0
    assert await log.admin.purge_before(GUILD_A, T0 + timedelta(days=999), actor="test") == 0
    assert await log.cases.case(GUILD_B, b_case.case_number) == b_case


async def test_guild_config_defaults_and_round_trip(log: AuditLog) -> None:
    """Fails if an unconfigured guild does not get defaults, or saved settings change."""
    assert await log.settings.guild_config(GUILD_A) == GuildConfig()
    custom = GuildConfig(
        auto_scan=False, scope_channels=frozenset({1, 2}), alert_threshold=0.8, retention_days=7
    )
    await log.settings.save_guild_config(GUILD_A, custom)
    assert await log.settings.guild_config(GUILD_A) == custom
    updated = custom.model_copy(update={"store_transcripts": False})
    await log.settings.save_guild_config(GUILD_A, updated)
    assert await log.settings.guild_config(GUILD_A) == updated
    assert await log.settings.guild_config(GUILD_B) == GuildConfig()


async def test_statuses_reported_by_recent_match_the_lifecycle(log: AuditLog) -> None:
    """Fails if a list query reports a status different from the scan's lifecycle state."""
    await log.scans.create_scan(new_scan(trigger=Trigger.CHECK))
    await finished_scan(log)
    await failed_scan(log)
    statuses = [r.status for r in await log.cases.recent(GUILD_A, limit=10)]
    assert statuses == [ScanStatus.FAILED, ScanStatus.DONE, ScanStatus.QUEUED]


async def test_stats_count_review_outcomes_per_probability_band(log: AuditLog) -> None:
    """Fails if reviews are counted in the wrong band or decision, unreviewed cases count,
    or a probability of exactly 1 (or none) is lost."""
    cases = [
        (0.95, Review.CONFIRMED),
        (1.0, Review.FALSE_POSITIVE),
        (0.91, Review.CONFIRMED),
        (0.55, Review.FALSE_POSITIVE),
        (0.58, Review.FALSE_POSITIVE),
        (None, Review.CONFIRMED),
        (0.97, None),
    ]
    for p, decision in cases:
        label = Label.INCONCLUSIVE if p is None else Label.SPOOFED
        record = await finished_scan(log, result=verdict(label, p))
        if decision is not None:
            await log.admin.review(GUILD_A, record.case_number, decision, moderator_id=7)
    stats = await log.cases.stats(GUILD_A, since=T0 - timedelta(days=1))
    shown = [(b.name, b.confirmed, b.false_positive) for b in stats.reviews_by_band]
    assert shown == [("50–60%", 0, 2), ("90–100%", 2, 1), ("no score", 1, 0)]
    other = await log.cases.stats(GUILD_B, since=T0 - timedelta(days=1))
    assert other.reviews_by_band == []


async def test_guilds_lists_every_guild_with_its_case_count(log: AuditLog, clock: Clock) -> None:
    """Fails if guilds() misses a guild, miscounts, or orders them otherwise than most
    cases first."""
    assert await log.cases.guilds() == []
    await finished_scan(log, new_scan(GUILD_B))
    for _ in range(3):
        await finished_scan(log)
    clock.advance(days=1)
    await finished_scan(log, new_scan(GUILD_B))
    await finished_scan(log)
    guilds = await log.cases.guilds()
    assert [(g.guild_id, g.cases) for g in guilds] == [(GUILD_A, 4), (GUILD_B, 2)]
    assert guilds[0].last_case_at == clock.now


async def test_a_first_review_is_not_overwritten(log: AuditLog) -> None:
    """Fails if `first=True` replaces an earlier review (two moderators deciding at once) or
    logs an event for the refused one; without it a review may still be changed."""
    record = await finished_scan(log)
    n = record.case_number
    assert await log.admin.review(GUILD_A, n, Review.CONFIRMED, moderator_id=1, first=True)
    refused = await log.admin.review(GUILD_A, n, Review.FALSE_POSITIVE, moderator_id=2, first=True)
    assert refused is None
    stored = await log.cases.case(GUILD_A, n)
    assert stored is not None and (stored.review, stored.reviewed_by) == (Review.CONFIRMED, 1)
    assert [e.actor for e in await log.cases.case_events(GUILD_A, n)] == ["1"]
    changed = await log.admin.review(GUILD_A, n, Review.FALSE_POSITIVE, moderator_id=3)
    assert changed is not None and changed.review is Review.FALSE_POSITIVE


async def test_role_exemptions_and_the_alert_ping_are_stored(log: AuditLog) -> None:
    """Fails if a backend drops the exempt roles or the alert ping role of a guild."""
    config = GuildConfig(exempt_roles=frozenset({11, 12}), alert_role_id=13)
    await log.settings.save_guild_config(GUILD_A, config)
    stored = await log.settings.guild_config(GUILD_A)
    assert (stored.exempt_roles, stored.alert_role_id) == (frozenset({11, 12}), 13)
    assert stored.exempts([5, 12]) and not stored.exempts([5])
