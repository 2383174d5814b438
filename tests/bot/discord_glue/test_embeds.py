"""The embed builder: Discord's limits whatever the input, and untrusted text made inert."""

from __future__ import annotations

import json
import re

import discord
import pytest

from bot.discord_glue.embeds import (
    FAILURE_COLOUR,
    FINDING_COLOURS,
    failure_embed,
    fit_embed,
    mention_list,
    message_embeds,
    per_embed_budget,
    probability_bar,
    sanitize,
    timeline_summary,
    verdict_embed,
)
from bot.errors import (
    MediaTooLarge,
    NoAudioTrack,
    ProviderOutOfCredits,
    ProviderUnavailable,
    SpoofwatchError,
)
from bot.verdict import Finding, Label, ProviderName, Segment, Verdict

HOSTILE = "@everyone <@123> <@&5> <#7> **bold** `code` ||spoiler|| [link](http://x) _i_ ~~s~~ "


def make_verdict(**overrides: object) -> Verdict:
    fields: dict[str, object] = {
        "label": Label.SPOOFED,
        "spoofed_probability": 0.72,
        "transcript": "hello there",
        "language": "en",
        "speakers": 1,
        "provider": ProviderName.BEHAVIORAL_SIGNALS,
        "provider_job_id": "job-1",
        "duration_s": 65.4,
        "provider_label": "spoofed",
    }
    fields.update(overrides)
    return Verdict.model_validate(fields)


def segments(n: int) -> tuple[Segment, ...]:
    return tuple(
        Segment(
            start=2.0 * i,
            end=2.0 * i + 2,
            label=Label.SPOOFED if i % 2 else Label.BONAFIDE,
            spoofed_probability=(i % 100) / 100,
        )
        for i in range(n)
    )


def huge_verdict() -> Verdict:
    return make_verdict(transcript=(HOSTILE * 1000)[:50_000], segments=segments(500))


def field(embed: discord.Embed, name: str) -> str | None:
    return next((f.value for f in embed.fields if f.name and f.name.startswith(name)), None)


def assert_within_limits(embed: discord.Embed, max_chars: int = 6000) -> None:
    """Every limit of discord-platform.md §3.7, and the embed serializes to JSON."""
    assert len(embed.title or "") <= 256
    assert len(embed.description or "") <= 4096
    assert len(embed.fields) <= 25
    for f in embed.fields:
        assert f.name and len(f.name) <= 256
        assert f.value and len(f.value) <= 1024
    assert len(embed.footer.text or "") <= 2048
    assert len(embed) <= max_chars
    json.dumps(embed.to_dict())


def is_inert(text: str) -> bool:
    """No mention Discord would render and no markdown character left unescaped."""
    if re.search(r"@(everyone|here)|<@[!&]?\d|<#\d", text):
        return False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "*_`|~[":
            return False
    return True


@pytest.mark.parametrize(
    ("label", "p", "threshold", "finding"),
    [
        (Label.SPOOFED, 0.72, 0.5, Finding.FLAGGED),
        (Label.SPOOFED, 0.72, 0.9, Finding.UNCLEAR),
        (Label.BONAFIDE, 0.35, 0.3, Finding.FLAGGED),
        (Label.BONAFIDE, 0.04, 0.5, Finding.GENUINE),
        (Label.INCONCLUSIVE, None, 0.5, Finding.UNCLEAR),
        (Label.SPOOFED, None, 0.5, Finding.FLAGGED),
    ],
)
def test_colour_follows_the_guild_threshold(
    label: Label, p: float | None, threshold: float, finding: Finding
) -> None:
    """Fails if the colour follows the provider's label instead of the guild's threshold."""
    verdict = make_verdict(label=label, spoofed_probability=p)
    embed = verdict_embed(verdict, filename="a.ogg", case_number=1, threshold=threshold)
    assert embed.colour == FINDING_COLOURS[finding]


def test_finding_colours_and_failure_colour_are_distinct() -> None:
    """Fails if two findings (or a failure) share a colour and cannot be told apart at a glance."""
    colours = [*FINDING_COLOURS.values(), FAILURE_COLOUR]
    assert len(set(colours)) == len(colours)


@pytest.mark.parametrize(
    ("label", "p", "filename", "title"),
    [
        (Label.SPOOFED, 0.72, "clip.wav", "⚠️ This 1:05 recording may be AI-generated"),
        (Label.SPOOFED, 0.72, "voice-message.ogg", "⚠️ This 1:05 voice message may be AI-generated"),
        (Label.BONAFIDE, 0.04, "clip.mp4", "✅ No sign of AI generation in this 1:05 video"),
        (
            Label.INCONCLUSIVE,
            None,
            "clip.mp4",
            "❔ Unclear whether this 1:05 video is AI-generated",
        ),
    ],
)
def test_title_says_the_finding_and_what_was_posted(
    label: Label, p: float | None, filename: str, title: str
) -> None:
    """Fails if the title is not the finding in plain words and the file's kind and length."""
    verdict = make_verdict(label=label, spoofed_probability=p)
    embed = verdict_embed(verdict, filename=filename, case_number=1)
    assert embed.title == title


def test_a_score_below_a_strict_threshold_is_never_called_ai_generated() -> None:
    """Fails if a 71 % clip under a 90 % threshold is shown as a deepfake (the alert would not
    be sent: two rules for one file)."""
    verdict = make_verdict(spoofed_probability=0.71)
    embed = verdict_embed(verdict, filename="a.ogg", case_number=1, threshold=0.9)
    assert "may be AI-generated" not in (embed.title or "")
    assert "71% likely synthetic" in (embed.description or "")
    assert "below the 90%" in (embed.description or "")


def test_flagged_says_detectors_can_be_wrong() -> None:
    """Fails if a flagged verdict reads as certainty instead of a warning."""
    embed = verdict_embed(make_verdict(), filename="a.ogg", case_number=1)
    assert "Detectors can be wrong" in (embed.description or "")


def test_unclear_gives_advice() -> None:
    """Fails if an unclear result leaves the member without anything to do."""
    verdict = make_verdict(label=Label.INCONCLUSIVE, spoofed_probability=None)
    embed = verdict_embed(verdict, filename="a.ogg", case_number=1)
    assert "check with the sender another way" in (embed.description or "")


def test_compact_genuine_is_one_line_with_the_case() -> None:
    """Fails if an automatic genuine reply is more than the outcome, the percentage and the
    case (a busy channel would be flooded)."""
    verdict = make_verdict(label=Label.BONAFIDE, spoofed_probability=0.04, segments=segments(3))
    embed = verdict_embed(verdict, filename="voice-message.ogg", case_number=42, compact=True)
    assert embed.title is None and embed.fields == [] and embed.image.url is None
    assert (embed.description or "").count("\n") == 0
    assert "4% likely synthetic" in (embed.description or "")
    assert (embed.footer.text or "").startswith("Case #42")


def test_compact_only_shortens_genuine_results() -> None:
    """Fails if a flagged result is shortened like a genuine one."""
    embed = verdict_embed(make_verdict(), filename="a.ogg", case_number=1, compact=True)
    assert embed.title and field(embed, "Transcript")


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0.72, "███████░░░ 72%"),
        (0.0, "░░░░░░░░░░ 0%"),
        (1.0, "██████████ 100%"),
        (0.05, "█░░░░░░░░░ 5%"),
        (None, "—"),
        (float("nan"), "—"),
    ],
)
def test_probability_bar(p: float | None, expected: str) -> None:
    """Fails if the bar or percentage misrepresents the probability."""
    assert probability_bar(p) == expected


@pytest.mark.parametrize(
    ("p", "shown"),
    [(0.72, "72% likely synthetic"), (0.899, "89% likely synthetic"), (None, "rates it synthetic")],
)
def test_embed_shows_the_percentage_in_words(p: float | None, shown: str) -> None:
    """Fails if the description does not give the score as a percentage in words (rounded
    down, so 89.9 % is never shown as the 90 % of a threshold it did not reach)."""
    embed = verdict_embed(make_verdict(spoofed_probability=p), filename="a.ogg", case_number=1)
    assert shown in (embed.description or "")


@pytest.mark.parametrize("max_chars", [6000, per_embed_budget(10), 1000, 300, 50, 1, 0])
def test_huge_transcript_and_500_segments_stay_within_limits(max_chars: int) -> None:
    """Fails if a 50,000-character transcript and 500 segments break any Discord limit."""
    embed = verdict_embed(
        huge_verdict(), filename="x" * 300, case_number=99999, reused=True, max_chars=max_chars
    )
    assert_within_limits(embed, max_chars)


def test_huge_verdict_keeps_transcript_and_capped_timeline() -> None:
    """Fails if the embed drops the transcript or timeline instead of shortening them."""
    embed = verdict_embed(huge_verdict(), filename="a.ogg", case_number=1)
    transcript, timeline = field(embed, "Transcript"), field(embed, "Timeline")
    assert transcript and transcript.startswith("> ") and transcript.endswith("…")
    assert timeline and timeline.startswith("🟥 Sounds generated: ")


def test_a_timeline_of_many_spans_is_capped_with_a_count() -> None:
    """Fails if 250 separate generated stretches overflow the field instead of ending in
    "… +N more"."""
    verdict = make_verdict(segments=_stretches(*[0.9, 0.1] * 250))
    embed = verdict_embed(verdict, filename="a.ogg", case_number=1)
    timeline = field(embed, "Timeline")
    assert timeline and re.search(r"… \+\d+ more$", timeline)
    assert_within_limits(embed)


def test_ten_huge_embeds_fit_one_message() -> None:
    """Fails if ten worst-case verdicts cannot go out as one message of ≤ 6000 characters."""
    built = [verdict_embed(huge_verdict(), filename="a.ogg", case_number=i) for i in range(10)]
    sent = message_embeds(built)
    assert len(sent) == 10
    assert sum(len(e) for e in sent) <= 6000
    for embed in sent:
        assert_within_limits(embed)
        assert field(embed, "Transcript"), "trimmed, not dropped"


def test_message_embeds_trims_fairly() -> None:
    """Fails if one oversized embed keeps its size while a small one is cut or dropped."""
    small = verdict_embed(make_verdict(), filename="small.ogg", case_number=1)
    big = [verdict_embed(huge_verdict(), filename="big.ogg", case_number=i) for i in (2, 3)]
    sent = message_embeds([small, *big])
    assert len(sent[0]) == len(small)
    assert abs(len(sent[1]) - len(sent[2])) < 100
    assert sum(len(e) for e in sent) <= 6000


def test_message_embeds_leaves_inputs_untouched() -> None:
    """Fails if trimming for one message mutates the caller's embeds."""
    built = [verdict_embed(huge_verdict(), filename="a.ogg", case_number=i) for i in range(11)]
    before = [e.to_dict() for e in built]
    message_embeds(built)
    assert [e.to_dict() for e in built] == before


def test_eleven_embeds_become_ten_with_a_note() -> None:
    """Fails if more than ten embeds are sent, or the hidden file goes unmentioned."""
    built = [verdict_embed(make_verdict(), filename=f"{i}.ogg", case_number=i) for i in range(11)]
    sent = message_embeds(built)
    assert len(sent) == 10
    assert "+1 more file not shown" in (sent[-1].footer.text or "")


def test_message_embeds_of_nothing_is_nothing() -> None:
    """Fails if an empty list of embeds does not stay empty."""
    assert message_embeds([]) == []


@pytest.mark.parametrize(
    ("count", "budget"), [(0, 6000), (1, 6000), (2, 3000), (3, 2000), (10, 600), (11, 600)]
)
def test_per_embed_budget(count: int, budget: int) -> None:
    """Fails if `count` embeds each within the budget could exceed one message's 6000."""
    assert per_embed_budget(count) == budget


MENTIONS = ["@everyone", "@here", "<@123>", "<@!123456789012345678>", "<@&5>", "<#7>"]
MARKDOWN = ["**bold**", "`code`", "||spoiler||", "[link](http://x)", "# heading", "> quote"]
# escape_markdown alone escapes only the first "[" of this and leaves the rest live.
PAYLOADS = [*MENTIONS, *MARKDOWN, "[a](b) **x** ||y|| [c](d)", "_i_ ~~s~~ \\*"]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_untrusted_transcript_is_inert(payload: str) -> None:
    """Fails if a transcript could mention anyone or format the embed."""
    text = f"{payload} and {payload}"
    embed = verdict_embed(make_verdict(transcript=text), filename="a.ogg", case_number=1)
    shown = (field(embed, "Transcript") or "").removeprefix("> ")
    assert is_inert(shown), shown


@pytest.mark.parametrize("payload", PAYLOADS)
def test_file_name_and_provider_label_are_not_shown(payload: str) -> None:
    """Fails if a member-chosen file name or the provider's own label reaches a member's view
    (the kind and length say what was posted; vendor words stay in /audit case)."""
    verdict = make_verdict(provider_label=f"label {payload}")
    embed = verdict_embed(verdict, filename=f"name {payload}.ogg", case_number=1)
    text = json.dumps(embed.to_dict(), ensure_ascii=False)
    assert "name " not in text and "label " not in text


@pytest.mark.parametrize("payload", PAYLOADS)
def test_sanitized_text_reads_as_typed(payload: str) -> None:
    """Fails if escaping changes what the reader sees, beyond the escapes themselves."""
    shown = re.sub(r"\\(.)", r"\1", sanitize(payload, limit=200)).replace("\u200b", "")
    assert shown == payload


def test_sanitize_removes_controls_and_collapses_whitespace() -> None:
    """Fails if control or bidi characters survive, or whitespace is not one space."""
    assert sanitize(" a\x00b\n\n\tc\u202ed\x1b ", limit=50) == "ab cd"


@pytest.mark.parametrize("limit", [1, 2, 10, 99])
def test_sanitize_limit_counts_the_escapes(limit: int) -> None:
    """Fails if escaping pushes the result past the limit, or truncation is not marked."""
    out = sanitize("*" * 100, limit=limit)
    assert len(out) <= limit
    assert out.endswith("…")


@pytest.mark.parametrize(
    "filename", ["a" * 196 + ".ogg", "голосовое сообщение 音声メッセージ.ogg", "🎤 تسجيل.mp4"]
)
def test_long_and_non_latin_filenames(filename: str) -> None:
    """Fails if a long or non-Latin file name is mangled or breaks the title limit."""
    embed = verdict_embed(make_verdict(), filename=filename, case_number=1)
    assert_within_limits(embed)
    assert embed.title and filename not in embed.title


@pytest.mark.parametrize(("show", "shown"), [(True, True), (False, False)])
def test_show_transcript(show: bool, shown: bool) -> None:
    """Fails if show_transcript=False still shows the transcript (or True hides it)."""
    embed = verdict_embed(make_verdict(), filename="a.ogg", case_number=1, show_transcript=show)
    assert (field(embed, "Transcript") is not None) is shown


@pytest.mark.parametrize("transcript", [None, "", "  \n "])
def test_no_transcript_no_field(transcript: str | None) -> None:
    """Fails if an absent or blank transcript leaves an empty field Discord would refuse."""
    embed = verdict_embed(make_verdict(transcript=transcript), filename="a.ogg", case_number=1)
    assert field(embed, "Transcript") is None


@pytest.mark.parametrize("reused", [True, False])
def test_reused_note(reused: bool) -> None:
    """Fails if a reused verdict does not say so, or a fresh one claims to be reused."""
    embed = verdict_embed(make_verdict(), filename="a.ogg", case_number=1, reused=reused)
    note = "Reused the verdict of an earlier scan of the same file"
    assert (note in (embed.description or "")) is reused


@pytest.mark.parametrize(
    ("provider", "case", "footer"),
    [
        (ProviderName.BEHAVIORAL_SIGNALS, 7, "Case #7 · checked by Behavioral Signals"),
        (ProviderName.RESEMBLE, 8, "Case #8 · checked by Resemble AI"),
        (ProviderName.RESEMBLE, None, "checked by Resemble AI"),
    ],
)
def test_footer_names_case_and_provider(
    provider: ProviderName, case: int | None, footer: str
) -> None:
    """Fails if the footer does not carry the case number and the provider's display name."""
    embed = verdict_embed(make_verdict(provider=provider), filename="a.ogg", case_number=case)
    assert embed.footer.text == f"{footer} · automated, may be wrong"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(65.4, "This 1:05 recording"), (3725, "This 1:02:05 recording"), (None, "This recording")],
)
def test_duration_is_human(seconds: float | None, shown: str) -> None:
    """Fails if the length is not shown as m:ss (h:mm:ss past an hour), or shown when unknown."""
    embed = verdict_embed(make_verdict(duration_s=seconds), filename="a.ogg", case_number=1)
    assert shown in (embed.title or "")


def test_vendor_fields_are_left_to_moderators() -> None:
    """Fails if language, speaker count or the provider's label clutter a member's verdict."""
    verdict = make_verdict(language="fr", speakers=2, provider_label="Fake")
    embed = verdict_embed(verdict, filename="a.ogg", case_number=1)
    assert [f.name for f in embed.fields] == ["Transcript"]


@pytest.mark.parametrize(("count", "has_timeline"), [(0, False), (1, False), (3, True)])
def test_timeline_only_with_several_segments(count: int, has_timeline: bool) -> None:
    """Fails if a timeline appears for a single segment or is missing for several."""
    embed = verdict_embed(make_verdict(segments=segments(count)), filename="a", case_number=1)
    assert (field(embed, "Timeline") is not None) is has_timeline


def _stretches(*scores: float) -> tuple[Segment, ...]:
    return tuple(
        Segment(start=2.0 * i, end=2.0 * i + 2, label=Label.BONAFIDE, spoofed_probability=p)
        for i, p in enumerate(scores)
    )


def test_timeline_names_where_it_sounds_generated() -> None:
    """Fails if the text timeline does not merge neighbouring stretches into the spans where it
    sounds generated and where it is unclear (the picture's accessible twin)."""
    verdict = make_verdict(segments=_stretches(0.1, 0.9, 0.95, 0.4, 0.05, 0.8))
    embed = verdict_embed(verdict, filename="a", case_number=1)
    assert field(embed, "Timeline") == (
        "🟥 Sounds generated: 0:02–0:06, 0:10–0:12\n🟨 Unclear: 0:06–0:08"
    )


def test_timeline_colours_follow_the_threshold() -> None:
    """Fails if a stretch is called generated below the guild's threshold."""
    verdict = make_verdict(segments=_stretches(0.1, 0.85, 0.95))
    embed = verdict_embed(verdict, filename="a", case_number=1, threshold=0.9)
    assert field(embed, "Timeline") == "🟥 Sounds generated: 0:04–0:06\n🟨 Unclear: 0:02–0:04"


def test_summary_line_counts_stretches_and_says_where() -> None:
    """Fails if the summary does not say how many stretches sound generated and where."""
    scores = [0.1] * 3 + [0.9, 0.1, 0.9, 0.9, 0.1, 0.9] + [0.1] * 11
    line = timeline_summary(_stretches(*scores), 0.5, 40.0)
    assert line == "4 of 20 stretches sound generated, mostly 0:06–0:18."


def test_picture_is_the_embed_image() -> None:
    """Fails if an attached timeline picture is not shown as the embed's image."""
    verdict = make_verdict(segments=segments(3))
    embed = verdict_embed(verdict, filename="a", case_number=1, picture="timeline-1.png")
    assert embed.image.url == "attachment://timeline-1.png"


ERRORS: list[SpoofwatchError] = [
    MediaTooLarge(30 * 1024 * 1024, 25 * 1024 * 1024),
    NoAudioTrack("The video has no audio track."),
    ProviderOutOfCredits("behavioral_signals", "The account has no credits left.", status=402),
]


@pytest.mark.parametrize("error", ERRORS[:2], ids=lambda e: e.kind)
def test_failure_embed_says_what_happened_and_what_to_do(error: SpoofwatchError) -> None:
    """Fails if a file's failure lacks the message, the hint, the code or the case number."""
    embed = failure_embed(error, filename="a.ogg", case_number=4)
    assert_within_limits(embed)
    assert embed.colour == FAILURE_COLOUR
    assert embed.description == error.message
    assert field(embed, "What to do") == error.hint
    assert embed.footer.text == f"Case #4 · error code: {error.kind}"


def test_compact_failure_is_one_line() -> None:
    """Fails if an automatic scan's failure is more than a short line under the file."""
    embed = failure_embed(ERRORS[0], filename="voice-message.ogg", case_number=4, compact=True)
    assert embed.title == "Could not check this voice message" and embed.fields == []
    assert ERRORS[0].hint in (embed.description or "")


@pytest.mark.parametrize(
    "error",
    [
        ERRORS[2],
        ProviderUnavailable("resemble", "HTTP 503 on the upload after 3 attempts", status=503),
    ],
    ids=lambda e: e.kind,
)
def test_service_failures_hide_the_technical_detail(error: SpoofwatchError) -> None:
    """Fails if a member is shown the provider's text, a status code or the operator's chores."""
    embed = failure_embed(error, filename="a.ogg", case_number=4)
    text = json.dumps(embed.to_dict())
    # str(): what the service said (an account error's billing detail included).
    assert str(error) not in text and "HTTP" not in text and "operator" not in text
    assert "try `/check` again later" in text


def test_failure_embed_never_shows_provider_text() -> None:
    """Fails if an error message echoing a provider's response reaches the embed at all."""
    error = ProviderUnavailable("behavioral_signals", "@everyone **down** " * 500, status=503)
    embed = failure_embed(error, filename="<@&5>.ogg", case_number=None, max_chars=600)
    assert_within_limits(embed, 600)
    assert "down" not in json.dumps(embed.to_dict())
    assert embed.footer.text == "error code: provider_unavailable"


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_fit_embed_never_leaves_a_field_empty(value: str) -> None:
    """Fails if a blank field value or name reaches Discord, which refuses it (50035)."""
    embed = discord.Embed(title="t")
    embed.add_field(name=value, value=value)
    fitted = fit_embed(embed)
    assert (fitted.fields[0].name, fitted.fields[0].value) == ("—", "—")


def test_fit_embed_caps_a_value_of_any_length() -> None:
    """Fails if an over-long field value (an id, say) is left over Discord's 1,024."""
    embed = discord.Embed(title="t")
    embed.add_field(name="Provider", value="x" * 5000)
    assert len(fit_embed(embed).fields[0].value or "") <= 1024


def test_mention_list_keeps_whole_mentions_and_counts_the_rest() -> None:
    """Fails if a long list is cut inside a mention or loses count of what is left out."""
    ids = list(range(10**17, 10**17 + 50))
    text = mention_list(ids, limit=200)
    assert len(text) <= 200
    shown = text.count("<#")
    assert text.endswith(f"+{50 - shown} more") and text.count(">") == shown
