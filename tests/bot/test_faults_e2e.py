"""Faults end to end: provider and Discord failures leave the bot serving and members answered.

Real discord.py against the Discord emulator, provider stand-ins with scripted faults, real
ffmpeg and SQLite. Each provider fault is one row of a matrix: the member whose scan hit it
gets an error embed naming the failure (or, for faults that retries absorb, a verdict), the
case records it, and the next member's file still gets a verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.storage import ScanStatus
from testkit.discord_emulator.models import Message
from testkit.e2e import Harness, MakeSpoofwatch
from testkit.media_factory import MediaFiles
from testkit.moderation import configure, listeners_done, text_of

BS, RESEMBLE = "behavioral_signals", "resemble"


def error_kind(reply: Message) -> str | None:
    """The error kind a failure embed shows, or None for a verdict embed."""
    [embed] = reply.embeds
    if not embed.get("title", "").startswith("Could not check"):
        return None
    # The kind is the footer's code ("Case #4 · error code: too_large"), for moderators.
    return str(embed["footer"]["text"]).rpartition("error code: ")[2]


def polled(sw: Harness) -> None:
    """Make Resemble answer the upload at once and finish only by polling."""
    sw.resemble.wait_hold_s = 0
    sw.resemble.processing_polls = 1


def resemble_job_404(sw: Harness) -> None:
    polled(sw)
    sw.resemble.fail_next("status", 404, None)


def resemble_poll_hangs(sw: Harness) -> None:
    polled(sw)
    sw.resemble.hang("status", None)


@dataclass(frozen=True)
class ProviderFault:
    provider: str
    arrange: Callable[[Harness], Any]
    #: The error kind the member sees; None when retries absorb the fault (a verdict).
    kind: str | None
    settings: dict[str, Any] = field(default_factory=dict)


#: Account problems (the operator's to fix): the mod-log is told, the member's channel not.
ACCOUNT_FAULTS = {
    "bs-auth-401": ProviderFault(
        BS, lambda sw: sw.bs.fail_next("submit", 401, None), "provider_auth"
    ),
    "resemble-auth-401": ProviderFault(
        RESEMBLE, lambda sw: sw.resemble.fail_next("submit", 401, None), "provider_auth"
    ),
    "bs-out-of-credits": ProviderFault(BS, lambda sw: sw.bs.out_of_credits(), "provider_credits"),
    "resemble-out-of-credits-402": ProviderFault(
        RESEMBLE, lambda sw: sw.resemble.out_of_credits(), "provider_credits"
    ),
}

PROVIDER_FAULTS = {
    "bs-job-404": ProviderFault(
        BS, lambda sw: sw.bs.fail_next("status", 404, None), "provider_not_found"
    ),
    "resemble-job-404": ProviderFault(
        RESEMBLE,
        resemble_job_404,
        "provider_not_found",
    ),
    "bs-429-retry-after-too-long": ProviderFault(
        BS,
        lambda sw: sw.bs.fail_next("submit", 429, None, headers={"Retry-After": "120"}),
        "provider_rate_limited",
    ),
    "resemble-429-then-ok": ProviderFault(
        RESEMBLE,
        lambda sw: sw.resemble.fail_next("submit", 429, 1, headers={"Retry-After": "0"}),
        None,
    ),
    "bs-5xx-burst-then-ok": ProviderFault(BS, lambda sw: sw.bs.fail_next("status", 503, 2), None),
    "bs-5xx-for-good": ProviderFault(
        BS, lambda sw: sw.bs.fail_next("status", 502, None), "provider_unavailable"
    ),
    "resemble-upload-500": ProviderFault(
        RESEMBLE, lambda sw: sw.resemble.fail_next("submit", 500, None), "provider_unavailable"
    ),
    "bs-upload-hangs": ProviderFault(
        BS,
        lambda sw: sw.bs.hang("submit", None),
        "provider_timeout",
        {"request_timeout_s": 0.5, "behavioralsignals_upload_timeout_s": 0.5},
    ),
    "resemble-poll-hangs": ProviderFault(
        RESEMBLE,
        resemble_poll_hangs,
        "provider_timeout",
        {"request_timeout_s": 0.2},
    ),
    "bs-job-past-deadline": ProviderFault(
        BS,
        lambda sw: setattr(sw.bs, "processing_polls", 10**6),
        "provider_timeout",
        {"poll_deadline_s": 1.0},
    ),
    "bs-malformed-json": ProviderFault(
        BS, lambda sw: sw.bs.malformed("submit"), "provider_protocol"
    ),
    "resemble-malformed-json": ProviderFault(
        RESEMBLE, lambda sw: sw.resemble.malformed("submit"), "provider_protocol"
    ),
    "bs-drifted-json": ProviderFault(
        BS,
        lambda sw: sw.bs.fail_next("status", 200, None, body={"process": {"id": "51234"}}),
        "provider_protocol",
    ),
    "resemble-drifted-json": ProviderFault(
        RESEMBLE,
        lambda sw: sw.resemble.fail_next(
            "submit", 200, 1, body={"success": True, "data": {"id": "x", "score": "0.5"}}
        ),
        "provider_protocol",
    ),
    "bs-failed-job": ProviderFault(BS, lambda sw: sw.bs.fail_jobs(), "provider_job_failed"),
    "resemble-failed-job": ProviderFault(
        RESEMBLE, lambda sw: sw.resemble.fail_jobs(), "provider_job_failed"
    ),
}


@pytest.mark.parametrize("fault", PROVIDER_FAULTS.values(), ids=PROVIDER_FAULTS.keys())
async def test_provider_fault_is_answered_and_the_bot_keeps_serving(
    make_spoofwatch: MakeSpoofwatch,
    media: MediaFiles,
    fault: ProviderFault,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fails if a provider fault leaves the member without the right answer (an error embed
    naming the failure, or a verdict when retries absorb it), goes unrecorded, raises
    inside the bot, or stops the next member's file from getting a verdict."""
    async with make_spoofwatch(provider=fault.provider, **fault.settings) as sw:
        fault.arrange(sw)
        hit = await sw.reply_to(await sw.post(media.voice_ogg, voice=True))
        assert error_kind(hit) == fault.kind
        case = await sw.bot.audit.cases.case(sw.emu.guild.id, 1)
        assert case is not None
        assert case.status is (ScanStatus.DONE if fault.kind is None else ScanStatus.FAILED)
        assert case.error_kind == fault.kind

        sw.bs.clear_faults()
        sw.resemble.clear_faults()
        sw.bs.processing_polls = 2
        next_member = await sw.reply_to(await sw.post(media.tone_wav))
        assert error_kind(next_member) is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("fault", ACCOUNT_FAULTS.values(), ids=ACCOUNT_FAULTS.keys())
async def test_account_fault_goes_to_the_operator_and_the_modlog_not_the_member(
    make_spoofwatch: MakeSpoofwatch,
    media: MediaFiles,
    fault: ProviderFault,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fails if a refused key or an empty balance is shown under the member's message, is
    not recorded on the case, is not in the operator's log once, or does not reach the
    mod-log (and its recovery too)."""
    async with make_spoofwatch(provider=fault.provider, **fault.settings) as sw:
        emu = sw.emu
        modlog = emu.create_text_channel(emu.guild, "mod-log")
        await emu.wait_for(lambda: sw.bot.get_channel(modlog.id))
        await configure(sw, "modlog", {"channel": modlog})
        fault.arrange(sw)
        message = await sw.post(media.voice_ogg, voice=True)
        notice = await emu.wait_for_message(modlog, predicate=lambda m: bool(m.embeds))
        await listeners_done(sw)
        case = await sw.bot.audit.cases.case(emu.guild.id, 1)
        assert case is not None and case.status is ScanStatus.FAILED
        assert case.error_kind == fault.kind
        assert emu.replies_to(message) == []
        assert "Scans are failing" in text_of(notice)
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "account problem" in errors[0]

        sw.bs.clear_faults()
        sw.resemble.clear_faults()
        next_member = await sw.reply_to(await sw.post(media.tone_wav))
        assert error_kind(next_member) is None
        await emu.wait_for_message(modlog, predicate=lambda m: "works again" in text_of(m))


async def test_check_hitting_an_empty_balance_shows_no_billing_details(
    spoofwatch: Harness, media: MediaFiles
) -> None:
    """Fails if a member's /check shows what the provider said about the account (billing),
    or the mod-log is not told."""
    emu = spoofwatch.emu
    modlog = emu.create_text_channel(emu.guild, "mod-log")
    await emu.wait_for(lambda: spoofwatch.bot.get_channel(modlog.id))
    await configure(spoofwatch, "modlog", {"channel": modlog})
    spoofwatch.resemble.out_of_credits()
    ix = await emu.invoke_slash(
        emu.text_channel,
        emu.member,
        "check",
        {"file": emu.attachment(media.tone_wav, "t.wav", "audio/wav")},
    )
    answer = text_of(await ix.wait_for_reply())
    notice = await emu.wait_for_message(modlog, predicate=lambda m: bool(m.embeds))
    assert "not available to this bot" in answer
    assert "balance" not in answer.lower() and "funds" not in answer.lower()
    assert "out of credits" in text_of(notice) and "balance is too low" in text_of(notice)
    case = await spoofwatch.bot.audit.cases.case(emu.guild.id, 1)
    assert case is not None and "balance is too low" in (case.error_message or "")


async def test_a_key_revoked_while_running_is_noticed_by_the_periodic_check(
    make_spoofwatch: MakeSpoofwatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fails if a key the provider stops accepting mid-run is only found by a member's scan
    (the periodic check must tell the operator and the mod-log), or its return is not told."""
    async with make_spoofwatch(provider=RESEMBLE, credential_check_s=0.05) as sw:
        emu = sw.emu
        modlog = emu.create_text_channel(emu.guild, "mod-log")
        await emu.wait_for(lambda: sw.bot.get_channel(modlog.id))
        await configure(sw, "modlog", {"channel": modlog})
        key = sw.resemble.api_key
        sw.resemble.api_key = "revoked"
        notice = await emu.wait_for_message(modlog, predicate=lambda m: bool(m.embeds))
        assert "refuses the bot's API key" in text_of(notice)
        assert sw.resemble.submissions == 0
        sw.resemble.api_key = key
        back = await emu.wait_for_message(modlog, predicate=lambda m: "works again" in text_of(m))
        assert back.id != notice.id
        assert len(emu.bot_messages(modlog)) == 2  # one notice per change, not per check
    assert any("account problem (refused)" in r.getMessage() for r in caplog.records)


# --- Discord faults ---------------------------------------------------------------------


async def test_reply_refused_with_403_is_recorded_and_the_bot_keeps_serving(
    spoofwatch: Harness, media: MediaFiles, caplog: pytest.LogCaptureFixture
) -> None:
    """Fails if a 403 on the reply crashes the scan, loses the case, or stops later replies."""
    emu = spoofwatch.emu
    emu.fail_next("POST", "/channels/*/messages", 403)
    caplog.set_level(logging.WARNING)
    message = await spoofwatch.post(media.voice_ogg, voice=True)
    await emu.wait_for(lambda: any("cannot reply" in r.getMessage() for r in caplog.records))
    await spoofwatch.settle()
    assert emu.replies_to(message) == []
    case = await spoofwatch.bot.audit.cases.case(emu.guild.id, 1)
    assert case is not None and case.status is ScanStatus.DONE and case.reply_message_id is None
    later = await spoofwatch.reply_to(await spoofwatch.post(media.tone_wav))
    assert error_kind(later) is None


async def test_reply_to_an_unknown_message_is_dropped_quietly(
    spoofwatch: Harness, media: MediaFiles, caplog: pytest.LogCaptureFixture
) -> None:
    """Fails if Discord's 404 Unknown Message on the reply raises, is logged as an error, or
    stops later replies."""
    emu = spoofwatch.emu
    emu.fail_next("POST", "/channels/*/messages", 404)
    message = await spoofwatch.post(media.voice_ogg, voice=True)
    await emu.wait_for_request("POST", "/channels/*/messages")
    await spoofwatch.settle()
    assert emu.replies_to(message) == []
    later = await spoofwatch.reply_to(await spoofwatch.post(media.tone_wav))
    assert error_kind(later) is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_rate_limited_reply_is_retried_and_lands(
    spoofwatch: Harness, media: MediaFiles
) -> None:
    """Fails if a 429 with retry_after on the reply is not retried (by discord.py) until the
    verdict lands, once."""
    emu = spoofwatch.emu
    emu.fail_next("POST", "/channels/*/messages", 429, retry_after=0.3)
    message = await spoofwatch.post(media.voice_ogg, voice=True)
    reply = await spoofwatch.reply_to(message)
    assert error_kind(reply) is None
    statuses = [r.status for r in emu.requests_to("POST", "/channels/*/messages")]
    assert statuses == [429, 200]
    assert len(emu.replies_to(message)) == 1


async def test_message_during_gateway_outage_is_processed_after_resume(
    spoofwatch: Harness, media: MediaFiles
) -> None:
    """Fails if a voice message posted while the gateway connection was down is not
    delivered on RESUME and answered, or is answered twice (RESUME replay and catch-up)."""
    emu = spoofwatch.emu
    resumes = emu.gateway.resumes
    async with emu.gateway_outage():
        message = await spoofwatch.post(media.voice_ogg, voice=True)
    reply = await spoofwatch.reply_to(message)
    assert emu.gateway.resumes > resumes
    assert error_kind(reply) is None
    assert len(emu.replies_to(message)) == 1
