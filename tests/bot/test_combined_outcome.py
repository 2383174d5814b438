"""The combined outcome of two providers' verdicts (`bot.verdict.combine`), case by case."""

from __future__ import annotations

import pytest

from bot.verdict import Agreement, Finding, Label, ProviderName, Verdict, combine

THRESHOLD = 0.5


def _verdict(label: Label, p: float | None, provider: ProviderName) -> Verdict:
    return Verdict(label=label, spoofed_probability=p, provider=provider, provider_job_id="j")


BS, RE = ProviderName.BEHAVIORAL_SIGNALS, ProviderName.RESEMBLE
FLAG = (Label.SPOOFED, 0.92)
CLEAR = (Label.BONAFIDE, 0.05)
MIDDLE = (Label.BONAFIDE, 0.4)


@pytest.mark.parametrize(
    ("first", "second", "finding", "agreement"),
    [
        (FLAG, FLAG, Finding.FLAGGED, Agreement.AGREE),
        (CLEAR, CLEAR, Finding.GENUINE, Agreement.AGREE),
        (MIDDLE, MIDDLE, Finding.UNCLEAR, Agreement.AGREE),
        (FLAG, CLEAR, Finding.FLAGGED, Agreement.DISPUTED),
        (CLEAR, FLAG, Finding.FLAGGED, Agreement.DISPUTED),
        (FLAG, MIDDLE, Finding.FLAGGED, Agreement.DISPUTED),
        (MIDDLE, CLEAR, Finding.UNCLEAR, Agreement.UNCLEAR),
        (CLEAR, MIDDLE, Finding.UNCLEAR, Agreement.UNCLEAR),
    ],
)
def test_the_rule_for_two_verdicts(
    first: tuple[Label, float], second: tuple[Label, float], finding: Finding, agreement: Agreement
) -> None:
    """Fails if agreement does not keep the finding, if a flag beside a non-flag is not
    "disputed" (alerted), or if a file is called genuine when only one detector says so."""
    result = combine(_verdict(*first, BS), _verdict(*second, RE), THRESHOLD)
    assert (result.finding, result.agreement) == (finding, agreement)
    assert result.disputed is (agreement is Agreement.DISPUTED)


def test_scores_are_never_averaged() -> None:
    """Fails if 0.9 and 0.1 are averaged into an unflagged 0.5-ish result instead of disputed."""
    result = combine(_verdict(Label.SPOOFED, 0.9, BS), _verdict(Label.BONAFIDE, 0.1, RE), 0.6)
    assert result.agreement is Agreement.DISPUTED
    assert result.findings == (Finding.FLAGGED, Finding.GENUINE)


@pytest.mark.parametrize("missing", ["first", "second"])
def test_one_failed_provider_leaves_the_other_verdict(missing: str) -> None:
    """Fails if a provider's failure hides the other verdict or invents an agreement."""
    flagged = _verdict(*FLAG, RE)
    pair = (None, flagged) if missing == "first" else (flagged, None)
    result = combine(*pair, THRESHOLD)
    assert (result.finding, result.agreement) == (Finding.FLAGGED, Agreement.SINGLE)


def test_the_guild_threshold_decides_each_side() -> None:
    """Fails if the combined outcome does not use the guild's threshold for each verdict."""
    a, b = _verdict(Label.SPOOFED, 0.75, BS), _verdict(Label.SPOOFED, 0.85, RE)
    assert combine(a, b, 0.7).agreement is Agreement.AGREE
    assert combine(a, b, 0.8).agreement is Agreement.DISPUTED


# --- the side-by-side embed -------------------------------------------------------------------

from bot.discord_glue.opinion_embeds import Opinion, opinions_embed  # noqa: E402
from bot.errors import ProviderUnavailable  # noqa: E402


@pytest.mark.parametrize("audience", ["members", "moderators"])
def test_the_side_by_side_embed_fits_and_never_repeats_hostile_text(audience: str) -> None:
    """Fails if the embed breaks Discord's limits or shows a provider's own error text (a
    mention, markdown) to anyone, whatever the file name."""
    hostile = "@everyone **" + "x" * 5000
    error = ProviderUnavailable("behavioral_signals", hostile)
    first = Opinion(RE, 1, _verdict(*FLAG, RE))
    second = Opinion(BS, 2, None, error)
    result = combine(first.verdict, None, THRESHOLD)
    embed = opinions_embed(
        [first, second],
        result,
        filename=hostile + ".ogg",
        content_type="audio/ogg",
        audience=audience,  # type: ignore[arg-type]
    )
    assert len(embed) <= 6000
    assert all(0 < len(str(f.value)) <= 1024 for f in embed.fields)
    text = str(embed.to_dict())
    assert "@everyone" not in text and "xxxxxxxxxx" not in text


def test_a_disputed_file_is_never_called_ai_generated_to_members() -> None:
    """Fails if the members' wording of a disputed file says it may be AI-generated in its
    title, or if moderators are not told it is treated as flagged."""
    result = combine(_verdict(*FLAG, RE), _verdict(*CLEAR, BS), THRESHOLD)
    sides = [Opinion(RE, 1, _verdict(*FLAG, RE)), Opinion(BS, 2, _verdict(*CLEAR, BS))]
    members = opinions_embed(sides, result, filename="a.ogg", content_type="audio/ogg")
    assert members.title is not None and "disagree" in members.title
    assert "may be AI-generated" not in members.title
    mods = opinions_embed(
        sides, result, filename="a.ogg", content_type="audio/ogg", audience="moderators"
    )
    assert "treated as flagged" in (mods.description or "")
