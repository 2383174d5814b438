"""Moderators' decisions flow back, and the providers' copies go when the cases do.

Resemble: `POST /detect/{uuid}/feedback` and `DELETE /detect/{uuid}` (reference §7, from the
OpenAPI spec). Behavioral Signals documents neither. A vendor's refusal is recorded in the
audit log, never an error to the moderator.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bot.detectors import SubmitOptions, VendorAck
from bot.guild_config import GuildConfig
from bot.provider_copies import (
    DELETE_CHUNK,
    DELETE_OWED,
    DELETE_SETTLED,
    FEEDBACK,
    FEEDBACK_OWED,
    RESEND_AFTER,
    ProviderCopies,
    _chunks,
    deletion_summary,
)
from bot.storage import Review, ScanRecord, ShardFilter
from bot.verdict import Label, ProviderName
from testkit.audit_log import GUILD_A, GUILD_B, finished_scan, new_scan, verdict
from testkit.standins.resemble import ResembleStandIn, metrics


async def _finished_detect(resemble_standin, client, make_wav_upload, *, fake: bool) -> str:
    upload = make_wav_upload(tone_hz=880.0 if fake else 440.0)
    if fake:
        resemble_standin.script_result(upload.path, metrics=metrics([0.9, 0.95]))
    submission = await client.submit(upload, SubmitOptions())
    if submission.verdict is None:
        await client.wait(submission.job_id)
    return submission.job_id


@pytest.mark.parametrize(
    ("fake", "synthetic", "expected"),
    [
        (True, True, "correct"),
        (False, False, "correct"),
        (True, False, "should_be_authentic"),
        (False, True, "should_be_ai_generated"),
    ],
    ids=["confirmed-fake", "genuine-agreed", "false-positive", "missed-fake"],
)
async def test_feedback_says_what_the_moderator_decided(
    resemble_standin: ResembleStandIn,
    resemble_client,
    make_wav_upload,
    fake: bool,
    synthetic: bool,
    expected: str,
) -> None:
    """Fails if the feedback type sent does not match the moderator's decision against the
    verdict, or is not accepted by the documented endpoint."""
    job = await _finished_detect(resemble_standin, resemble_client, make_wav_upload, fake=fake)
    ack = await resemble_client.send_feedback(job, synthetic=synthetic, said_synthetic=fake)
    assert ack is VendorAck.DONE
    assert resemble_standin.feedback[job]["type"] == expected


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("refused", VendorAck.REFUSED),
        ("unknown", VendorAck.NOT_FOUND),
        ("outage", VendorAck.FAILED),
    ],
)
async def test_feedback_refusals_are_outcomes_not_errors(
    resemble_standin: ResembleStandIn, resemble_client, make_wav_upload, setup: str, expected
) -> None:
    """Fails if a vendor refusal (403), an unknown detect (404) or an outage raises instead
    of being reported as an outcome."""
    job = await _finished_detect(resemble_standin, resemble_client, make_wav_upload, fake=True)
    if setup == "refused":
        resemble_standin.feedback_refused = True
    elif setup == "unknown":
        job = "00000000-0000-0000-0000-000000000000"
    else:
        resemble_standin.fail_next("feedback", 500, times=10)
    ack = await resemble_client.send_feedback(job, synthetic=True, said_synthetic=True)
    assert ack is expected
    assert job not in resemble_standin.feedback


async def test_delete_removes_the_detect_and_a_second_delete_finds_it_gone(
    resemble_standin: ResembleStandIn, resemble_client, make_wav_upload
) -> None:
    """Fails if DELETE /detect/{uuid} is not sent, or a repeat is not NOT_FOUND."""
    job = await _finished_detect(resemble_standin, resemble_client, make_wav_upload, fake=False)
    assert await resemble_client.delete_job(job) is VendorAck.DONE
    assert resemble_standin.deleted == [job]
    assert await resemble_client.delete_job(job) is VendorAck.NOT_FOUND


async def test_a_refused_delete_is_reported(
    resemble_standin: ResembleStandIn, resemble_client, make_wav_upload
) -> None:
    """Fails if a vendor refusing the delete (403) raises or is reported as done."""
    job = await _finished_detect(resemble_standin, resemble_client, make_wav_upload, fake=False)
    resemble_standin.delete_refused = True
    assert await resemble_client.delete_job(job) is VendorAck.REFUSED
    assert resemble_standin.deleted == []


async def test_behavioral_signals_offers_neither(bs_client) -> None:
    """Fails if the Behavioral Signals client claims feedback or delete it cannot do."""
    assert await bs_client.send_feedback("1", synthetic=True, said_synthetic=True) is (
        VendorAck.UNSUPPORTED
    )
    assert await bs_client.delete_job("1") is VendorAck.UNSUPPORTED


# --- the service: opt-in, recorded -------------------------------------------------------------


async def _case(log, job_id: str, label: Label = Label.SPOOFED) -> ScanRecord:
    result = verdict(label, 0.9 if label is Label.SPOOFED else 0.1, job_id=job_id)
    return await finished_scan(log, new_scan(), result)


def _copies(log, client, *, feedback: bool) -> ProviderCopies:
    async def config_of(guild_id: int) -> GuildConfig:
        return GuildConfig(provider_feedback=feedback)

    return ProviderCopies({ProviderName.RESEMBLE: client}, log, config_of)


async def test_feedback_is_not_sent_unless_the_guild_opted_in(
    sqlite_log, resemble_standin: ResembleStandIn, resemble_client, make_wav_upload
) -> None:
    """Fails if a decision reaches the vendor from a guild that did not opt in."""
    job = await _finished_detect(resemble_standin, resemble_client, make_wav_upload, fake=True)
    case = await _case(sqlite_log, job)
    copies = _copies(sqlite_log, resemble_client, feedback=False)
    assert await copies.send_review_feedback(case, Review.CONFIRMED) is None
    assert resemble_standin.received["feedback"] == 0


@pytest.mark.parametrize("refused", [False, True])
async def test_feedback_outcome_is_recorded_in_the_audit_log(
    sqlite_log,
    resemble_standin: ResembleStandIn,
    resemble_client,
    make_wav_upload,
    refused: bool,
) -> None:
    """Fails if an opted-in decision is not sent in the background, or its outcome (a
    refusal included) is not an audit event of the case."""
    job = await _finished_detect(resemble_standin, resemble_client, make_wav_upload, fake=True)
    case = await _case(sqlite_log, job)
    resemble_standin.feedback_refused = refused
    copies = _copies(sqlite_log, resemble_client, feedback=True)
    copies.send_review_feedback_soon(case, Review.FALSE_POSITIVE)
    await copies.drain()
    owed, event = await sqlite_log.cases.case_events(GUILD_A, case.case_number)
    assert (owed.action, owed.reason) == (FEEDBACK_OWED, "false_positive")
    assert event.action == FEEDBACK
    assert event.target == f"case {case.case_number}"
    assert ("refused" in event.reason) is refused
    if not refused:
        assert resemble_standin.feedback[job]["type"] == "should_be_authentic"
    assert await sqlite_log.cases.unresolved_events(FEEDBACK_OWED, FEEDBACK) == []


async def _owed(log, case: ScanRecord, decision: Review) -> None:
    """Feedback recorded as owed and never sent: the process stopped right after."""
    await log.admin.log_event(
        GUILD_A,
        actor="spoofwatch",
        action=FEEDBACK_OWED,
        target=f"case {case.case_number}",
        reason=decision.value,
    )


async def test_feedback_cut_short_is_sent_at_the_next_start(
    log, clock, resemble_standin: ResembleStandIn, resemble_client, make_wav_upload
) -> None:
    """Fails if feedback owed when the process stopped is never sent, is sent twice, or
    its outcome is not recorded (either backend)."""
    job = await _finished_detect(resemble_standin, resemble_client, make_wav_upload, fake=True)
    case = await _case(log, job)
    await _owed(log, case, Review.FALSE_POSITIVE)
    copies = _copies(log, resemble_client, feedback=True)
    assert await copies.resend_owed(clock.now, older_than=timedelta(0)) == 1
    assert resemble_standin.feedback[job]["type"] == "should_be_authentic"
    assert await copies.resend_owed(clock.now, older_than=timedelta(0)) == 0
    assert resemble_standin.received["feedback"] == 1
    [event] = [e for e in await log.cases.case_events(GUILD_A, case.case_number)
               if e.action == FEEDBACK]  # fmt: skip
    assert "told 'false_positive': done" in event.reason


async def test_recent_owed_feedback_is_left_to_the_sender(
    sqlite_log, clock, resemble_standin: ResembleStandIn, resemble_client, make_wav_upload
) -> None:
    """Fails if the hourly run sends feedback younger than RESEND_AFTER, which another
    process may be sending at that moment."""
    job = await _finished_detect(resemble_standin, resemble_client, make_wav_upload, fake=True)
    case = await _case(sqlite_log, job)
    await _owed(sqlite_log, case, Review.CONFIRMED)
    copies = _copies(sqlite_log, resemble_client, feedback=True)
    assert await copies.resend_owed(clock.now) == 0
    assert resemble_standin.received["feedback"] == 0
    assert await copies.resend_owed(clock.now + RESEND_AFTER + timedelta(seconds=1)) == 1
    assert resemble_standin.feedback[job]["type"] == "correct"


@pytest.mark.parametrize("owned", [False, True])
async def test_owed_feedback_is_sent_only_by_the_process_running_its_guild(
    log, clock, resemble_standin: ResembleStandIn, resemble_client, make_wav_upload, owned: bool
) -> None:
    """Fails if a process of a sharded deployment sends feedback owed in another process's
    guild (at start-up both would take it: the vendor would hear it twice), or not in its
    own."""
    job = await _finished_detect(resemble_standin, resemble_client, make_wav_upload, fake=True)
    case = await _case(log, job)
    await _owed(log, case, Review.CONFIRMED)
    shard = (GUILD_A >> 22) % 2
    copies = ProviderCopies(
        {ProviderName.RESEMBLE: resemble_client},
        log,
        _copies(log, resemble_client, feedback=True)._config_of,
        shards=ShardFilter(count=2, ids=frozenset({shard if owned else 1 - shard})),
    )
    assert await copies.resend_owed(clock.now, older_than=timedelta(0)) == int(owned)
    assert resemble_standin.received["feedback"] == int(owned)
    assert len(await log.cases.unresolved_events(FEEDBACK_OWED, FEEDBACK)) == int(not owned)


@pytest.mark.parametrize("change", ["case deleted", "feedback turned off"])
async def test_owed_feedback_no_longer_wanted_is_settled_unsent(
    sqlite_log, clock, resemble_standin: ResembleStandIn, resemble_client, make_wav_upload, change
) -> None:
    """Fails if owed feedback is sent for a case deleted meanwhile or a guild that opted
    out meanwhile, or is left owed (and read again at every start)."""
    job = await _finished_detect(resemble_standin, resemble_client, make_wav_upload, fake=True)
    case = await _case(sqlite_log, job)
    await _owed(sqlite_log, case, Review.CONFIRMED)
    if change == "case deleted":
        await sqlite_log.admin.forget_author(GUILD_A, case.author_id, actor_id=9)
    copies = _copies(sqlite_log, resemble_client, feedback=change != "feedback turned off")
    assert await copies.resend_owed(clock.now, older_than=timedelta(0)) == 1
    assert resemble_standin.received["feedback"] == 0
    assert await sqlite_log.cases.unresolved_events(FEEDBACK_OWED, FEEDBACK) == []


async def test_forgetting_deletes_each_provider_copy_once_and_says_so(
    sqlite_log, resemble_standin: ResembleStandIn, resemble_client, make_wav_upload
) -> None:
    """Fails if a reused case's shared job is deleted twice, a refused or gone copy stops
    the rest, or the audit event does not say what the vendor answered."""
    kept = await _finished_detect(resemble_standin, resemble_client, make_wav_upload, fake=True)
    other = await _finished_detect(resemble_standin, resemble_client, make_wav_upload, fake=False)
    jobs: list[tuple[ProviderName, Any]] = [
        (ProviderName.RESEMBLE, kept),
        (ProviderName.RESEMBLE, kept),  # a reused case: the same detect
        (ProviderName.RESEMBLE, other),
        (ProviderName.RESEMBLE, "00000000-0000-0000-0000-000000000000"),
        (ProviderName.RESEMBLE, None),  # a case that never reached the provider
    ]
    copies = _copies(sqlite_log, resemble_client, feedback=False)
    counts = await copies.delete_copies(GUILD_A, jobs, why="forget of user 501")
    assert counts == {VendorAck.DONE: 2, VendorAck.NOT_FOUND: 1}
    assert sorted(resemble_standin.deleted) == sorted([kept, other])
    [event] = await sqlite_log.cases.events(GUILD_A, limit=5)
    assert event.action == "provider_delete"
    assert "forget of user 501" in event.reason and "Resemble" in event.reason
    assert deletion_summary(counts) == "The provider deleted its copy of 3 jobs."


def test_deletion_summary_names_copies_left_behind() -> None:
    """Fails if copies the vendor refused to delete are not mentioned to the moderator."""
    text = deletion_summary({VendorAck.DONE: 1, VendorAck.REFUSED: 2})
    assert text is not None and "2 could not be deleted" in text
    assert deletion_summary({VendorAck.UNSUPPORTED: 4}) is None


# --- the retention purge ---------------------------------------------------------------------


async def test_expired_jobs_are_the_purges_cases(log, clock) -> None:
    """Fails if `expired_jobs` does not list exactly the provider jobs (of the providers
    asked about) that `purge_expired` then deletes, on either backend."""
    await log.settings.save_guild_config(GUILD_A, GuildConfig(retention_days=7))
    uuid_job = "3f0c8a4e-9a55-4c0e-8d6a-2b1e4f1c9d77"
    await finished_scan(log, new_scan(GUILD_A), verdict(job_id=uuid_job))
    await finished_scan(
        log,
        new_scan(GUILD_A, provider=ProviderName.BEHAVIORAL_SIGNALS),
        verdict(provider=ProviderName.BEHAVIORAL_SIGNALS, job_id="51234"),
    )
    await finished_scan(log, new_scan(GUILD_B), verdict(job_id="text-job-id"))
    clock.advance(days=10)
    await finished_scan(log, new_scan(GUILD_A), verdict(job_id="young-job"))

    jobs = await log.admin.expired_jobs(clock.now, [ProviderName.RESEMBLE])
    assert jobs == {GUILD_A: [(ProviderName.RESEMBLE, uuid_job, 1)]}
    assert await log.admin.expired_jobs(clock.now, []) == {}
    assert await log.admin.purge_expired(clock.now) == {GUILD_A: 2}
    later = clock.now + timedelta(days=90)
    assert await log.admin.expired_jobs(later, [ProviderName.RESEMBLE]) == {
        GUILD_A: [(ProviderName.RESEMBLE, "young-job", 3)],
        GUILD_B: [(ProviderName.RESEMBLE, "text-job-id", 1)],
    }


async def test_the_retention_purge_deletes_the_provider_copies(
    sqlite_log, clock, resemble_standin: ResembleStandIn, resemble_client, make_wav_upload
) -> None:
    """Fails if purged cases' Resemble detects are not deleted, or the deletion is not an
    audit event next to the purge."""
    job = await _finished_detect(resemble_standin, resemble_client, make_wav_upload, fake=True)
    await _case(sqlite_log, job)
    copies = _copies(sqlite_log, resemble_client, feedback=False)
    assert await copies.purge_expired(clock.now + timedelta(days=91)) == {GUILD_A: 1}
    assert resemble_standin.deleted == [job]
    events = await sqlite_log.cases.events(GUILD_A, limit=5)
    assert [e.action for e in reversed(events)] == [
        DELETE_OWED,  # recorded before the purge, so a crash cannot lose it
        "purge",
        "provider_delete",
        DELETE_SETTLED,
    ]
    assert "retention purge" in events[1].reason
    assert await sqlite_log.cases.unresolved_events(DELETE_OWED, DELETE_SETTLED) == []


async def test_copies_owed_when_the_process_stopped_are_deleted_at_the_next_start(
    log, clock, resemble_standin: ResembleStandIn, resemble_client, make_wav_upload
) -> None:
    """Fails if a copy recorded as owed, whose case was purged before the process stopped,
    is never deleted at the vendor, or is deleted again at the following start (either
    backend)."""
    job = await _finished_detect(resemble_standin, resemble_client, make_wav_upload, fake=True)
    case = await _case(log, job)
    copies = _copies(log, resemble_client, feedback=False)
    later = clock.now + timedelta(days=91)

    async def purge_then_stop() -> None:
        await log.admin.purge_expired(later)
        raise SystemExit  # the process dies before the vendor hears of it

    with pytest.raises(SystemExit):
        await copies.delete_with_cases(
            GUILD_A, [(ProviderName.RESEMBLE, job, case.case_number)], purge_then_stop, why="x"
        )
    assert resemble_standin.deleted == []
    assert await copies.resend_owed(later, older_than=timedelta(0)) == 1
    assert resemble_standin.deleted == [job]
    assert await copies.resend_owed(later, older_than=timedelta(0)) == 0
    assert resemble_standin.deleted == [job]
    [event] = [
        e for e in await log.cases.events(GUILD_A, limit=10) if e.action == "provider_delete"
    ]
    assert "resumed after a restart" in event.reason


async def test_copies_of_cases_still_kept_are_not_deleted(
    sqlite_log, clock, resemble_standin: ResembleStandIn, resemble_client, make_wav_upload
) -> None:
    """Fails if a delete owed by a forget that never committed (the cases are still there)
    deletes the vendor's copy of a case the audit log still keeps."""
    job = await _finished_detect(resemble_standin, resemble_client, make_wav_upload, fake=True)
    case = await _case(sqlite_log, job)
    copies = _copies(sqlite_log, resemble_client, feedback=False)

    async def fails() -> None:
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError):
        await copies.delete_with_cases(
            GUILD_A, [(ProviderName.RESEMBLE, job, case.case_number)], fails, why="x"
        )
    assert await copies.resend_owed(clock.now, older_than=timedelta(0)) == 0
    assert resemble_standin.deleted == []


def test_owed_deletes_come_in_chunks_keyed_to_one_of_their_cases() -> None:
    """Fails if a job shared by several cases is owed twice, a job of a provider without a
    delete is owed, or a chunk's key is not one of its own cases."""
    jobs = [(ProviderName.RESEMBLE, f"job-{n}", n) for n in range(1, DELETE_CHUNK + 3)]
    jobs += [(ProviderName.RESEMBLE, "job-1", 99), (ProviderName.BEHAVIORAL_SIGNALS, "7", 100)]
    jobs += [(ProviderName.RESEMBLE, None, 101)]
    chunks = _chunks(jobs)
    assert [key for key, _ in chunks] == [1, DELETE_CHUNK + 1]
    assert [len(chunk) for _, chunk in chunks] == [DELETE_CHUNK, 2]
    assert sum(chunk.count((ProviderName.RESEMBLE, "job-1")) for _, chunk in chunks) == 1
