"""Second opinions through Discord: the alert's and `/audit case`'s button, `/check provider:`
and a guild's "provider both", against both provider stand-ins.

The Resemble stand-in judges the scripted file fake (90 %); the Behavioral Signals stand-in
answers its default, one bona fide utterance: so the two disagree unless told otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path

from bot.storage import ScanStatus, Trigger
from bot.verdict import ProviderName
from testkit.alerts import Alerted, buttons, make_alerted, make_modlog
from testkit.discord_emulator.models import Message
from testkit.e2e import Harness, MakeSpoofwatch
from testkit.moderation import FAKE, configure, field, listeners_done, run, text_of, wav
from testkit.standins.behavioral_signals import utterance

SECOND = "Second opinion (Behavioral Signals)"


def _alert_now(a: Alerted) -> Message:
    """The alert as it stands now (after its buttons redrew it)."""
    return next(m for m in a.sw.emu.bot_messages(a.modlog) if m.id == a.alert.id)


async def _press_second(a: Alerted, user: object = None) -> None:
    ix = await a.sw.emu.click_button(a.alert, user or a.sw.emu.moderator, label=SECOND)
    await ix.wait_for_ack()
    await a.sw.emu.wait_for(
        lambda: "Second opinion" in (field(_alert_now(a).embeds[0], "Actions") or "") or None
    )


async def test_alert_button_asks_the_other_provider_and_shows_both(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if the button does not ask Behavioral Signals once, keep its verdict as a case
    linked to the first, show both verdicts side by side with "disputed", or stay pressable."""
    a = await make_alerted(spoofwatch, tmp_path)
    await _press_second(a)
    assert spoofwatch.bs.submissions == 1
    second = await spoofwatch.bot.audit.cases.case(spoofwatch.emu.guild.id, 2)
    assert second is not None
    assert (second.provider, second.trigger) == (
        ProviderName.BEHAVIORAL_SIGNALS,
        Trigger.SECOND_OPINION,
    )
    assert second.second_opinion_of == 1 and second.requested_by == spoofwatch.emu.moderator.id
    alert = _alert_now(a)
    assert "disputed" in (field(alert.embeds[0], "Actions") or "")
    button = alert.button(label="Second opinion given (Behavioral Signals)")
    assert button.get("disabled") is True
    side = await spoofwatch.emu.wait_for_message(
        a.modlog, predicate=lambda m: bool(m.embeds) and m.id != a.alert.id
    )
    embed = side.embeds[0]
    assert field(embed, "Resemble AI") and field(embed, "Behavioral Signals")
    assert "disagree" in (field(embed, "Combined") or "")
    assert "Cases #1 + #2" in embed["footer"]["text"]


async def test_a_member_cannot_ask_for_a_second_opinion(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if someone without Manage Messages can bill a second provider from the alert."""
    a = await make_alerted(spoofwatch, tmp_path)
    ix = await spoofwatch.emu.click_button(a.alert, spoofwatch.emu.member, label=SECOND)
    answer = await ix.wait_for_reply()
    assert answer.ephemeral and "Manage Messages" in answer.content
    assert spoofwatch.bs.submissions == 0
    assert await spoofwatch.bot.audit.cases.second_opinions(spoofwatch.emu.guild.id, 1) == []


async def test_the_same_file_judged_before_costs_nothing(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if a second opinion on bytes Behavioral Signals already judged sends them again
    (the reuse by hash, per provider), or if the reused case is not recorded as such."""
    path = wav(tmp_path, 1)
    a = await make_alerted(spoofwatch, tmp_path)
    await _press_second(a)
    assert spoofwatch.bs.submissions == 1
    seen = {m.id for m in spoofwatch.emu.bot_messages(a.modlog)}
    message = await spoofwatch.post(path)  # the same bytes in a new message: case #3
    await spoofwatch.reply_to(message)
    alert = await spoofwatch.emu.wait_for_message(
        a.modlog,
        predicate=lambda m: (
            bool(m.embeds)
            and m.id not in seen
            and str(m.embeds[0].get("title")).startswith("Possible deepfake")
        ),
    )
    await listeners_done(spoofwatch)
    await _press_second(Alerted(spoofwatch, a.modlog, message, alert))
    assert spoofwatch.bs.submissions == 1
    reused = await spoofwatch.bot.audit.cases.second_opinions(spoofwatch.emu.guild.id, 3)
    assert [r.status for r in reused] == [ScanStatus.REUSED]


async def test_a_refusing_provider_is_a_recorded_failure_and_the_button_stays(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if a failed second opinion is silent, unrecorded, or greys the button out."""
    a = await make_alerted(spoofwatch, tmp_path)
    spoofwatch.bs.fail_jobs()
    await _press_second(a)
    second = await spoofwatch.bot.audit.cases.case(spoofwatch.emu.guild.id, 2)
    assert second is not None and second.status is ScanStatus.FAILED
    assert second.error_kind is not None and second.error_kind.startswith("provider")
    alert = _alert_now(a)
    assert "failed" in (field(alert.embeds[0], "Actions") or "")
    assert alert.button(label=SECOND).get("disabled") is not True
    # Asking again works once the provider does; the failure stays in the log.
    ix = await spoofwatch.emu.click_button(alert, spoofwatch.emu.moderator, label=SECOND)
    await ix.wait_for_ack()
    await spoofwatch.emu.wait_for(
        lambda: "disputed" in (field(_alert_now(a).embeds[0], "Actions") or "") or None
    )
    seconds = await spoofwatch.bot.audit.cases.second_opinions(spoofwatch.emu.guild.id, 1)
    assert [r.status for r in seconds] == [ScanStatus.FAILED, ScanStatus.DONE]
    assert spoofwatch.bs.submissions == 2


async def test_no_second_opinion_with_one_provider(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path
) -> None:
    """Fails if the alert or /audit case offers a second opinion nobody can give."""
    async with make_spoofwatch(behavioralsignals_api_key=None) as sw:
        a = await make_alerted(sw, tmp_path)
        assert not any("Second opinion" in str(b.get("label")) for b in buttons(a.alert))
        answer = await run(sw, sw.emu.moderator, "audit case", {"number": 1})
        assert not any("Second opinion" in str(b.get("label")) for b in buttons(answer))
        both = await run(sw, sw.emu.admin, "spoofwatch settings provider", {"provider": "both"})
        assert "Only one detection service" in both.content
        upload = sw.emu.attachment(wav(tmp_path, 2), "clip.wav", "audio/wav")
        check = await run(
            sw, sw.emu.moderator, "check", {"file": upload, "provider": "behavioral_signals"}
        )
        assert "not set up" in check.content
        assert sw.bs.submissions == 0


async def test_audit_case_shows_both_verdicts_and_its_button_asks(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if /audit case lacks the button before, or both verdicts and the combined
    outcome after, a second opinion asked from it."""
    await make_alerted(spoofwatch, tmp_path)
    emu = spoofwatch.emu
    before = await run(spoofwatch, emu.moderator, "audit case", {"number": 1})
    ix = await emu.click_button(before, emu.moderator, label=SECOND)
    answer = await ix.wait_for_followup()
    assert answer.ephemeral and "Second opinion by Behavioral Signals" in answer.content
    after = await run(spoofwatch, emu.moderator, "audit case", {"number": 1})
    embed = after.embeds[0]
    assert "may be AI-generated" in (field(embed, "Resemble AI") or "")
    assert "no sign of AI generation" in (field(embed, "Behavioral Signals") or "")
    assert "disagree" in (field(embed, "Combined (two providers)") or "")
    assert not any("Second opinion" in str(b.get("label")) for b in buttons(after))
    linked = await run(spoofwatch, emu.moderator, "audit case", {"number": 2})
    assert "second opinion on case #1" in text_of(linked)
    recent = await run(spoofwatch, emu.moderator, "audit recent")
    assert "**#2**" in text_of(recent) and "second opinion on #1" in text_of(recent)


async def test_both_mode_bills_twice_and_never_accuses_when_they_disagree(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if "provider both" does not say it bills twice, does not ask both providers, or
    if a disputed file's public reply calls it AI-generated instead of saying the detectors
    disagree; moderators must still be alerted."""
    saved = await configure(spoofwatch, "provider", {"provider": "both"})
    assert "billed twice" in saved.content
    assert "billed twice" in text_of(saved)  # the settings embed's Provider line too
    checklist = await run(spoofwatch, spoofwatch.emu.admin, "spoofwatch setup")
    assert "two paid calls (billed twice)" in text_of(checklist)
    modlog = await make_modlog(spoofwatch)
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    message = await spoofwatch.post(path)
    reply = await spoofwatch.reply_to(message)
    await listeners_done(spoofwatch)
    assert (spoofwatch.resemble.submissions, spoofwatch.bs.submissions) == (1, 1)
    embed = reply.embeds[0]
    assert "disagree" in embed["title"] and "may be AI-generated" not in embed["title"]
    assert field(embed, "Resemble AI") and field(embed, "Behavioral Signals")
    alert = await spoofwatch.emu.wait_for_message(modlog, predicate=lambda m: bool(m.embeds))
    assert "Disputed" in alert.embeds[0]["title"]
    # Both verdicts are kept: case #1 (Resemble) and its second opinion #2.
    seconds = await spoofwatch.bot.audit.cases.second_opinions(spoofwatch.emu.guild.id, 1)
    assert [r.provider for r in seconds] == [ProviderName.BEHAVIORAL_SIGNALS]
    assert seconds[0].reply_message_id == reply.id


async def test_the_explainer_of_a_both_mode_reply_explains_both_verdicts(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if "What does this mean?" under a reply showing two detectors' verdicts explains
    only the first one's score (the member reads "90%" beside a reply that says the detectors
    disagree), or does not say that the two are judged apart and never averaged."""
    await configure(spoofwatch, "provider", {"provider": "both"})
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    reply = await spoofwatch.reply_to(await spoofwatch.post(path))
    await listeners_done(spoofwatch)
    emu = spoofwatch.emu
    answer = await (
        await emu.click_button(reply, emu.member, label="What does this mean?")
    ).wait_for_reply()
    text = text_of(answer)
    assert answer.ephemeral
    assert "cases #1 + #2" in answer.embeds[0]["title"]
    assert "two automated deepfake detectors" in text
    assert "Resemble AI rated the speech **90% likely synthetic**" in text
    assert "Behavioral Signals rated the speech" in text
    assert "never averaged" in text and "*the detectors disagree*" in text
    assert "shown as *may be AI-generated*" not in text


async def test_the_explainer_leaves_out_a_second_opinion_moderators_asked_later(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if a member's explainer reveals a second opinion a moderator asked for from the
    mod-log: the member's reply showed one verdict, and its explainer explains that one."""
    a = await make_alerted(spoofwatch, tmp_path)
    await _press_second(a)
    reply = await spoofwatch.reply_to(a.message)
    emu = spoofwatch.emu
    answer = await (
        await emu.click_button(reply, emu.member, label="What does this mean?")
    ).wait_for_reply()
    text = text_of(answer)
    assert answer.embeds[0]["title"] == "What this verdict means (case #1)"
    assert "an automated deepfake detector" in text and "Behavioral Signals" not in text


async def test_both_mode_one_provider_failing_still_answers_with_the_other(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if a failed provider in "both" mode costs the member the other verdict, or if
    the failure is not recorded on its case."""
    await configure(spoofwatch, "provider", {"provider": "both"})
    spoofwatch.bs.fail_jobs()
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    reply = await spoofwatch.reply_to(await spoofwatch.post(path))
    embed = reply.embeds[0]
    assert "may be AI-generated" in embed["title"]
    assert "could not check it" in (field(embed, "Behavioral Signals") or "")
    [second] = await spoofwatch.bot.audit.cases.second_opinions(spoofwatch.emu.guild.id, 1)
    assert second.status is ScanStatus.FAILED


async def test_check_provider_is_for_moderators_and_shows_both(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if a member may choose (and bill) a provider with /check, or if a moderator's
    `provider:` does not show the server's verdict beside the other provider's."""
    emu = spoofwatch.emu
    upload = emu.attachment(wav(tmp_path, 1), "clip.wav", "audio/wav")
    refused = await run(
        spoofwatch, emu.member, "check", {"file": upload, "provider": "behavioral_signals"}
    )
    assert "for moderators" in refused.content
    assert spoofwatch.bs.submissions == 0
    upload = emu.attachment(wav(tmp_path, 2), "clip.wav", "audio/wav")
    answer = await run(
        spoofwatch, emu.moderator, "check", {"file": upload, "provider": "behavioral_signals"}
    )
    embed = answer.embeds[0]
    assert field(embed, "Resemble AI") and field(embed, "Behavioral Signals")
    assert "agree" in (field(embed, "Combined") or "")
    assert (spoofwatch.resemble.submissions, spoofwatch.bs.submissions) == (1, 1)


async def test_both_mode_counts_both_scans_against_the_quota(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if the second provider's scan is free of the daily quota ("billed twice" must
    count twice): with a quota of 1, the second opinion is refused and recorded as such."""
    await configure(spoofwatch, "provider", {"provider": "both"})
    await configure(spoofwatch, "quota", {"per_day": 1})
    reply = await spoofwatch.reply_to(await spoofwatch.post(wav(tmp_path, 1)))
    assert spoofwatch.bs.submissions == 0
    [second] = await spoofwatch.bot.audit.cases.second_opinions(spoofwatch.emu.guild.id, 1)
    assert (second.status, second.error_kind) == (ScanStatus.FAILED, "quota")
    assert "could not check it" in (field(reply.embeds[0], "Behavioral Signals") or "")


async def test_a_second_opinion_is_not_counted_as_another_flag_of_the_member(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if the alert's "Nth flag for this member" counts a second opinion on an earlier
    file as a flag of its own."""
    await configure(spoofwatch, "provider", {"provider": "both"})
    modlog = await make_modlog(spoofwatch)
    for n in (1, 2):
        path = wav(tmp_path, n)
        spoofwatch.resemble.script_result(path, metrics=FAKE)
        spoofwatch.bs.script_result(path, utterance(0, 0.0, 1.0, spoofed=0.95))
        await spoofwatch.reply_to(await spoofwatch.post(path))
        await listeners_done(spoofwatch)
    alerts = [m for m in spoofwatch.emu.bot_messages(modlog) if m.embeds]
    assert "2nd flag for this member" in text_of(alerts[-1])


# --- Resemble's fraud type on the case and in /audit flagged ------------------------------------


async def test_fraud_type_is_shown_on_the_case_and_searchable(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path
) -> None:
    """Fails if `/audit case` leaves out the kind of fraud Resemble's report named, or if
    `/audit flagged fraud:` lists a case of another kind."""
    async with make_spoofwatch(resemble_intelligence=True) as sw:
        vishing, other = wav(tmp_path, 1), wav(tmp_path, 2)
        for path, kind in ((vishing, "vishing"), (other, "extortion")):
            sw.resemble.script_result(
                path,
                metrics=FAKE,
                description={
                    "transcription": "send me the code",
                    "fraud": {"type": kind, "confidence": 8, "reasoning": "…"},
                },
            )
            await sw.reply_to(await sw.post(path))
        case = await run(sw, sw.emu.moderator, "audit case", {"number": 1})
        assert "Vishing (voice phishing)" in text_of(case)
        listed = await run(sw, sw.emu.moderator, "audit flagged", {"fraud": "Vishing"})
        assert re.findall(r"\*\*#(\d+)\*\*", text_of(listed)) == ["1"]


async def test_both_mode_after_a_restart_answers_once_with_both_verdicts(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path
) -> None:
    """Fails if a file whose first scan was cut short by a restart loses its second opinion,
    is sent to a provider twice, or is answered more than once."""
    path = wav(tmp_path, 1)
    async with make_spoofwatch(provider="behavioral_signals") as sw:
        await configure(sw, "provider", {"provider": "both"})
        sw.bs.processing_polls = 10**6  # pending until the second run
        message = await sw.post(path)
        await sw.emu.wait_for(lambda: sw.bs.status_polls >= 1)
        await sw.bot.close()  # cancels the scan; its row stays `submitted`
    sw.bs.processing_polls = 0
    async with make_spoofwatch(provider="behavioral_signals") as sw:
        reply = await sw.emu.wait_for_reply(message)
        await sw.settle()
        replies = [m for m in sw.emu.replies_to(message) if m.author.id == sw.emu.bot_user.id]
        assert replies == [reply]
        assert (sw.bs.submissions, sw.resemble.submissions) == (1, 1)
        embed = reply.embeds[0]
        assert field(embed, "Behavioral Signals") and field(embed, "Resemble AI")
        seconds = await sw.bot.audit.cases.second_opinions(sw.emu.guild.id, 1)
        assert [r.provider for r in seconds] == [ProviderName.RESEMBLE]


async def test_check_naming_the_servers_own_provider_is_a_plain_check(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if `/check provider:` naming the server's own provider bills the other one."""
    emu = spoofwatch.emu
    upload = emu.attachment(wav(tmp_path, 1), "clip.wav", "audio/wav")
    answer = await run(spoofwatch, emu.moderator, "check", {"file": upload, "provider": "resemble"})
    assert field(answer.embeds[0], "Behavioral Signals") is None
    assert (spoofwatch.resemble.submissions, spoofwatch.bs.submissions) == (1, 0)


async def test_a_second_opinion_cut_short_by_a_restart_is_told_in_the_mod_log(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path
) -> None:
    """Fails if a moderator's second opinion interrupted by a restart finishes silently (the
    button's interaction died with the process, so the mod-log must hear the answer, once),
    or if finishing it sends the file to the provider again."""
    async with make_spoofwatch() as sw:
        a = await make_alerted(sw, tmp_path)
        modlog = a.modlog
        sw.bs.processing_polls = 10**6  # pending until the second run
        ix = await sw.emu.click_button(a.alert, sw.emu.moderator, label=SECOND)
        await ix.wait_for_ack()
        await sw.emu.wait_for(lambda: sw.bs.status_polls >= 1)
        await sw.bot.close()  # the second opinion's row stays `submitted`
    sw.bs.processing_polls = 0
    async with make_spoofwatch() as sw:
        told = await sw.emu.wait_for_message(
            modlog, predicate=lambda m: "asked before a restart" in m.content
        )
        await sw.settle()
        assert sw.bs.submissions == 1
        assert told.content.startswith("Case #1:")
        assert f"<@{sw.emu.moderator.id}>" in told.content
        assert field(told.embeds[0], "Behavioral Signals") and field(told.embeds[0], "Resemble AI")
        second = await sw.bot.audit.cases.case(sw.emu.guild.id, 2)
        assert second is not None and second.status is ScanStatus.DONE
        restarts = [m for m in sw.emu.bot_messages(modlog) if "before a restart" in m.content]
        assert restarts == [told]


async def test_both_mode_restart_during_the_second_scan_shows_both_verdicts(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path
) -> None:
    """Fails if, when a restart cuts short the second provider's scan of a "both" mode file
    (the first provider's verdict is in), the one reply the catch-up posts says that side is
    "already being checked" instead of showing its verdict, or a provider is asked twice."""
    path = wav(tmp_path, 1)
    async with make_spoofwatch() as sw:
        await configure(sw, "provider", {"provider": "both"})
        sw.bs.processing_polls = 10**6  # the second side stays pending until the second run
        message = await sw.post(path)
        await sw.emu.wait_for(lambda: sw.bs.status_polls >= 1)
        await sw.bot.close()  # cancels the second scan; its row stays `submitted`
        first = await sw.bot.audit.cases.case(sw.emu.guild.id, 1)
        second = await sw.bot.audit.cases.case(sw.emu.guild.id, 2)
        assert first is not None and first.status is ScanStatus.DONE
        assert second is not None and second.status is ScanStatus.SUBMITTED
    sw.bs.processing_polls = 0
    async with make_spoofwatch() as sw:
        reply = await sw.emu.wait_for_reply(message)
        await sw.settle()
        replies = [m for m in sw.emu.replies_to(message) if m.author.id == sw.emu.bot_user.id]
        assert replies == [reply]
        assert "already being checked" not in text_of(reply)
        embed = reply.embeds[0]
        assert field(embed, "Behavioral Signals") and field(embed, "Resemble AI")
        assert (sw.bs.submissions, sw.resemble.submissions) == (1, 1)
