"""The embed builder: Discord's limits whatever the input, and untrusted text made inert."""

from __future__ import annotations

import json
import re

import discord
import pytest

from bot.embeds import (
    FAILURE_COLOUR,
    LABEL_COLOURS,
    failure_embed,
    fit_embed,
    mention_list,
    message_embeds,
    per_embed_budget,
    probability_bar,
    sanitize,
    verdict_embed,
)
from bot.errors import (
    MediaTooLarge,
    NoAudioTrack,
    ProviderOutOfCredits,
    ProviderUnavailable,
    SpoofwatchError,
)
from bot.verdict import Label, ProviderName, Segment, Verdict

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


@pytest.mark.parametrize("label", list(Label))
def test_colour_per_label(label: Label) -> None:
    """Fails if a label's embed is not in that label's colour."""
    embed = verdict_embed(make_verdict(label=label), filename="a.ogg", case_number=1)
    assert embed.colour == LABEL_COLOURS[label]


def test_label_colours_and_failure_colour_are_distinct() -> None:
    """Fails if two outcomes (or a failure) share a colour and cannot be told apart at a glance."""
    colours = [*LABEL_COLOURS.values(), FAILURE_COLOUR]
    assert len(set(colours)) == len(colours)


@pytest.mark.parametrize(
    ("label", "words"),
    [
        (Label.SPOOFED, "Likely deepfake"),
        (Label.BONAFIDE, "No sign of a deepfake"),
        (Label.INCONCLUSIVE, "Inconclusive"),
    ],
)
def test_title_names_outcome_and_file(label: Label, words: str) -> None:
    """Fails if the title does not say the outcome in plain words followed by the file name."""
    embed = verdict_embed(make_verdict(label=label), filename="clip.mp4", case_number=1)
    assert embed.title == f"{words} — clip.mp4"


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


@pytest.mark.parametrize(("p", "shown"), [(0.72, "███████░░░ 72%"), (None, "—")])
def test_embed_shows_spoofed_probability(p: float | None, shown: str) -> None:
    """Fails if the embed's probability field is not the bar, or not "—" when null."""
    embed = verdict_embed(make_verdict(spoofed_probability=p), filename="a.ogg", case_number=1)
    assert field(embed, "Spoofed probability") == shown


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
    assert timeline and re.search(r"^… \d+ more segments$", timeline, re.MULTILINE)


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
@pytest.mark.parametrize("place", ["transcript", "filename", "provider_label"])
def test_untrusted_text_is_inert(payload: str, place: str) -> None:
    """Fails if user or provider text could mention anyone or format the embed."""
    text = f"{payload} and {payload}"
    if place == "filename":
        embed = verdict_embed(make_verdict(), filename=text, case_number=1)
        shown = (embed.title or "").split(" — ", 1)[1]
    elif place == "transcript":
        embed = verdict_embed(make_verdict(transcript=text), filename="a.ogg", case_number=1)
        shown = (field(embed, "Transcript") or "").removeprefix("> ")
    else:
        embed = verdict_embed(make_verdict(provider_label=text), filename="a.ogg", case_number=1)
        shown = field(embed, "Behavioral Signals says") or ""
    assert is_inert(shown), shown


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
    assert embed.title == f"Likely deepfake — {filename}"


def test_overlong_filename_is_cut_with_ellipsis() -> None:
    """Fails if a file name longer than the title allows is not shortened visibly."""
    embed = verdict_embed(make_verdict(), filename="b" * 1000, case_number=1)
    assert embed.title and len(embed.title) <= 256 and embed.title.endswith("…")


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
        (ProviderName.BEHAVIORAL_SIGNALS, 7, "Case #7 · Behavioral Signals"),
        (ProviderName.RESEMBLE, 8, "Case #8 · Resemble AI"),
        (ProviderName.RESEMBLE, None, "Resemble AI"),
    ],
)
def test_footer_names_case_and_provider(
    provider: ProviderName, case: int | None, footer: str
) -> None:
    """Fails if the footer does not carry the case number and the provider's display name."""
    embed = verdict_embed(make_verdict(provider=provider), filename="a.ogg", case_number=case)
    assert embed.footer.text == footer


@pytest.mark.parametrize(("seconds", "shown"), [(65.4, "1:05"), (3725, "1:02:05"), (None, None)])
def test_duration_is_human(seconds: float | None, shown: str | None) -> None:
    """Fails if the duration is not shown as m:ss (h:mm:ss past an hour), or shown when unknown."""
    embed = verdict_embed(make_verdict(duration_s=seconds), filename="a.ogg", case_number=1)
    assert field(embed, "Duration") == shown


def test_language_speakers_and_provider_label_are_shown() -> None:
    """Fails if language, speaker count or the provider's own label is missing."""
    verdict = make_verdict(language="fr", speakers=2, provider_label="Fake")
    embed = verdict_embed(verdict, filename="a.ogg", case_number=1)
    shown = (field(embed, "Language"), field(embed, "Speakers"), field(embed, "Behavioral Sig"))
    assert shown == ("fr", "2", "Fake")


@pytest.mark.parametrize(("count", "has_timeline"), [(0, False), (1, False), (3, True)])
def test_timeline_only_with_several_segments(count: int, has_timeline: bool) -> None:
    """Fails if a timeline appears for a single segment or is missing for several."""
    embed = verdict_embed(make_verdict(segments=segments(count)), filename="a", case_number=1)
    assert (field(embed, "Timeline") is not None) is has_timeline


def test_timeline_lines() -> None:
    """Fails if a timeline line does not give span, probability and label of its segment."""
    embed = verdict_embed(make_verdict(segments=segments(2)), filename="a", case_number=1)
    assert field(embed, "Timeline") == "0:00–0:02 ░░░░░ 0% genuine\n0:02–0:04 ░░░░░ 1% spoofed"


ERRORS: list[SpoofwatchError] = [
    MediaTooLarge(30 * 1024 * 1024, 25 * 1024 * 1024),
    NoAudioTrack("The video has no audio track."),
    ProviderOutOfCredits("behavioral_signals", "The account has no credits left.", status=402),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.kind)
def test_failure_embed_says_what_happened_and_what_to_do(error: SpoofwatchError) -> None:
    """Fails if a failure embed lacks the message, the hint, the kind or the case number."""
    embed = failure_embed(error, filename="a.ogg", case_number=4)
    assert_within_limits(embed)
    assert embed.colour == FAILURE_COLOUR
    assert embed.description == error.message
    assert field(embed, "What to do") == error.hint
    assert error.kind in (field(embed, "Error") or "")
    assert (embed.footer.text or "").startswith("Case #4")


def test_failure_embed_sanitizes_provider_text() -> None:
    """Fails if an error message echoing a provider's response can mention or format."""
    error = ProviderUnavailable("behavioral_signals", "@everyone **down** " * 500, status=503)
    embed = failure_embed(error, filename="<@&5>.ogg", case_number=None, max_chars=600)
    assert_within_limits(embed, 600)
    assert is_inert(embed.description or "")
    assert embed.footer.text == "Behavioral Signals"


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
