"""The buttons under a public verdict: "What does this mean?" and "This is wrong".

The case travels in the custom id (`sw:verdict:<action>:<case>`) and the guild comes from the
interaction, so the buttons keep working after a restart without any stored view state.
Both are rate-limited per member in the database (shared by every process); a review request
is recorded among the case's events and posted to the mod-log.
"""

from __future__ import annotations

import logging
import re
from enum import StrEnum
from typing import Any, Final

import discord

from bot.discord_glue.client import Spoofwatch
from bot.discord_glue.embeds import (
    FINDING_COLOURS,
    PROVIDER_NAMES,
    fit_embed,
    media_phrase,
    sanitize,
)
from bot.discord_glue.modlog import post_to_modlog
from bot.discord_glue.opinion_embeds import DISPUTED_COLOUR
from bot.guild_config import GuildConfig
from bot.scanning import ScanOutcome
from bot.storage import ScanRecord
from bot.verdict import GENUINE_BELOW, Agreement, Finding, combine_findings, decide, percent

log = logging.getLogger(__name__)

#: A member may open this many explainers per window (they cost a database read each).
EXPLAIN_RATE: Final = (10, 600.0)
#: A member may ask for this many reviews per window, across cases (one per case).
REVIEW_RATE: Final = (3, 3600.0)
#: Requests posted to the mod-log per case; later ones are recorded on the case only.
REVIEW_POSTS_PER_CASE: Final = 3
#: The action name of a review request among a case's events.
REVIEW_REQUEST: Final = "review_request"
#: Discord allows five action rows per message (docs: components/reference.mdx).
MAX_ROWS: Final = 5


class VerdictAction(StrEnum):
    EXPLAIN = "explain"
    WRONG = "wrong"


LABELS: Final = {
    VerdictAction.EXPLAIN: ("What does this mean?", discord.ButtonStyle.secondary, None),
    VerdictAction.WRONG: ("This is wrong", discord.ButtonStyle.secondary, "⚑"),
}


class VerdictButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"sw:verdict:(?P<action>[a-z]+):(?P<case>\d+)",
):
    """One member-facing action on one case of the interaction's guild."""

    def __init__(self, action: VerdictAction, case_number: int, *, several: bool = False) -> None:
        label, style, emoji = LABELS[action]
        if several:  # one row per file: say which file each row is about
            label = f"{label} (#{case_number})"
        super().__init__(
            discord.ui.Button(
                label=label,
                style=style,
                emoji=emoji,
                custom_id=f"sw:verdict:{action.value}:{case_number}",
            )
        )
        self.action = action
        self.case_number = case_number

    @classmethod
    async def from_custom_id(  # type: ignore[override]
        cls,
        interaction: discord.Interaction[Spoofwatch],
        item: discord.ui.Button[Any],
        match: re.Match[str],
    ) -> VerdictButton:
        return cls(VerdictAction(match["action"]), int(match["case"]))

    async def callback(self, interaction: discord.Interaction[Spoofwatch]) -> None:  # type: ignore[override]
        if interaction.guild is None:
            return
        bot = interaction.client
        guild_id = interaction.guild.id
        bucket, (rate, per_s) = (
            ("explain", EXPLAIN_RATE)
            if self.action is VerdictAction.EXPLAIN
            else ("review_request", REVIEW_RATE)
        )
        resets_at = await bot.audit.cooldowns.hit(
            bucket, interaction.user.id, rate=rate, per_s=per_s
        )
        if resets_at is not None:
            await interaction.response.send_message(
                f"You have used this button often lately; try again <t:{int(resets_at) + 1}:R>.",
                ephemeral=True,
            )
            return
        record = await bot.audit.cases.case(guild_id, self.case_number)
        if record is None:
            await interaction.response.send_message(
                f"Case #{self.case_number} is no longer in the audit log (deleted or expired).",
                ephemeral=True,
            )
            return
        config = await bot.guild_configs.get(guild_id)
        if self.action is VerdictAction.EXPLAIN:
            log.info(
                "explainer of case %s/#%s shown to %s", guild_id, record.case_number,
                interaction.user.id,
            )  # fmt: skip
            second = await shown_alongside(bot, record)
            await interaction.response.send_message(
                embed=explainer_embed(record, config, second), ephemeral=True
            )
        else:
            await interaction.response.send_message(
                await request_review(interaction, record, config), ephemeral=True
            )


def verdict_view(outcomes: list[ScanOutcome]) -> discord.ui.View | None:
    """The buttons for a reply: one row per verdict (failures have nothing to explain)."""
    cases = [o.record.case_number for o in outcomes if o.verdict is not None][:MAX_ROWS]
    if not cases:
        return None
    view = discord.ui.View(timeout=None)
    for row, case_number in enumerate(cases):
        for action in VerdictAction:
            button = VerdictButton(action, case_number, several=len(cases) > 1)
            button.item.row = row
            view.add_item(button)
    return view


async def shown_alongside(bot: Spoofwatch, record: ScanRecord) -> ScanRecord | None:
    """The second opinion the verdict's reply showed beside this case, if any.

    A guild that scans with both providers (and `/check … provider: both`) answers with both
    verdicts in one reply: the second case was asked by whoever asked the first (no one, for
    an automatic scan). A second opinion a moderator asked for later, from the mod-log, was
    never shown to members and is left out.
    """
    if record.second_opinion_of is not None:
        return None
    linked = await bot.audit.cases.second_opinions(record.guild_id, record.case_number)
    shown = (r for r in linked if r.requested_by == record.requested_by)
    # Still running (a restart cut it short): the reply showed no verdict of it yet either.
    return next((r for r in shown if r.finished_at is not None), None)


def _finding(record: ScanRecord, threshold: float) -> Finding | None:
    if record.label is None:
        return None
    return decide(record.label, record.spoofed_probability, threshold)


_SHOWN_AS: Final = {
    Finding.FLAGGED: "*may be AI-generated*",
    Finding.UNCLEAR: "*unclear*",
    Finding.GENUINE: "*no sign of AI generation*",
}


def explainer_embed(
    record: ScanRecord, config: GuildConfig, second: ScanRecord | None = None
) -> discord.Embed:
    """What a verdict means, for the member who asked: the score, the bands, what to do.
    With `second` (the other provider's case shown in the same reply), what the two verdicts
    mean together: each is judged alone and the scores are never averaged (`combine`)."""
    threshold = config.alert_threshold
    what = media_phrase(record.filename, record.content_type, record.duration_s)
    if second is None:
        finding = _finding(record, threshold)
        title = f"What this verdict means (case #{record.case_number})"
        colour = FINDING_COLOURS[finding] if finding else discord.Colour.light_grey()
        description = _one_verdict(record, finding, what, threshold)
    else:
        title = f"What these verdicts mean (cases #{record.case_number} + #{second.case_number})"
        colour, description = _two_verdicts(record, second, what, threshold)
    embed = discord.Embed(title=title, colour=colour, description=description)
    embed.add_field(
        name="How to read the score",
        value=(
            f"Under {percent(GENUINE_BELOW)}%: a strong sign the voice is real\n"
            f"{percent(GENUINE_BELOW)}–49%: unclear\n"
            "50–69%: likely synthetic\n"
            "70% and over: very likely synthetic\n"
            "-# The bands the detector vendor publishes; this server's threshold decides the flag."
        ),
        inline=False,
    )
    embed.add_field(
        name="Detectors can be wrong",
        value=(
            "Both ways: a real voice on a bad line can look synthetic, and a good fake can pass. "
            "Treat a flag as a warning, not proof. If a message asks for codes, passwords or "
            "money, check with the sender another way first (a call you start)."
        ),
        inline=False,
    )
    if config.show_transcripts and record.transcript:
        embed.add_field(
            name="What the detector heard",
            value=f"> {sanitize(record.transcript, limit=1000)}",
            inline=False,
        )
    embed.add_field(
        name="Think it is wrong?",
        value="Press **This is wrong** under the verdict: the server's moderators will look.",
        inline=False,
    )
    return fit_embed(embed)


def _one_verdict(record: ScanRecord, finding: Finding | None, what: str, threshold: float) -> str:
    lines = [f"Spoofwatch sent this {what} to an automated deepfake detector."]
    p = record.spoofed_probability
    if p is not None:
        lines.append(
            f"It rated the speech **{percent(p)}% likely synthetic** (made by AI). This server "
            f"flags a file from {percent(threshold)}%."
        )
    elif finding is not None:
        lines.append("The detector gave a decision but no score.")
    lines.append(
        {
            Finding.FLAGGED: "So it is shown as *may be AI-generated*.",
            Finding.UNCLEAR: "That is neither a flag nor a clear all-clear: *unclear*.",
            Finding.GENUINE: "So it is shown as *no sign of AI generation*.",
            None: "The check did not reach a verdict.",
        }[finding]
    )
    return " ".join(lines)


def _two_verdicts(
    first: ScanRecord, second: ScanRecord, what: str, threshold: float
) -> tuple[discord.Colour, str]:
    """The colour and words of the explainer for two providers' verdicts on one file."""
    records = (first, second)
    combined = combine_findings((_finding(first, threshold), _finding(second, threshold)))
    lines = [f"Spoofwatch sent this {what} to two automated deepfake detectors, separately."]
    for record, finding in zip(records, combined.findings, strict=True):
        name = PROVIDER_NAMES.get(record.provider, str(record.provider))
        p = record.spoofed_probability
        if finding is None:
            lines.append(f"{name} could not check it.")
        elif p is None:
            lines.append(f"{name} gave a decision but no score.")
        else:
            lines.append(f"{name} rated the speech **{percent(p)}% likely synthetic**.")
    lines.append(
        f"This server flags a file from {percent(threshold)}%, and each verdict is judged "
        "on its own: the scores are never averaged."
    )
    shown = _SHOWN_AS[combined.finding]
    if combined.agreement is Agreement.AGREE:
        lines.append(f"Both reach the same finding, so it is shown as {shown}.")
    elif combined.disputed:
        lines.append(
            "One flags it and the other does not, so nothing is decided: it is shown as "
            "*the detectors disagree*, and the server's moderators are asked to look."
        )
    elif combined.agreement is Agreement.UNCLEAR:
        lines.append(
            "One finds no sign of AI generation and the other is unsure; a file is called "
            "genuine only when both say so, so it is shown as *unclear*."
        )
    elif any(f is not None for f in combined.findings):
        lines.append(f"With one verdict only, that one stands: it is shown as {shown}.")
    else:
        lines.append("Neither check reached a verdict.")
    if combined.disputed:
        colour = DISPUTED_COLOUR
    elif all(f is None for f in combined.findings):
        colour = discord.Colour.light_grey()
    else:
        colour = FINDING_COLOURS[combined.finding]
    return colour, " ".join(lines)


async def request_review(
    interaction: discord.Interaction[Spoofwatch], record: ScanRecord, config: GuildConfig
) -> str:
    """Ask the moderators to look at a case; what to tell the member who asked."""
    assert interaction.guild is not None
    bot = interaction.client
    guild = interaction.guild
    events = await bot.audit.cases.case_events(guild.id, record.case_number)
    requests = [e for e in events if e.action == REVIEW_REQUEST]
    if any(e.actor == str(interaction.user.id) for e in requests):
        return f"You already asked the moderators to review case #{record.case_number}."
    if record.review is not None:
        return (
            f"A moderator already reviewed case #{record.case_number}: "
            f"{'confirmed' if record.review.value == 'confirmed' else 'not a deepfake'}."
        )
    posted = "not posted: the server has no mod-log channel"
    answer = (
        "Your request is recorded, but this server has no mod-log channel, so no moderator "
        "was notified. Tell a moderator directly."
    )
    if len(requests) >= REVIEW_POSTS_PER_CASE:
        posted = "not posted: enough requests for this case are in the mod-log already"
        answer = "Thanks: moderators have already been asked to review this case."
    elif config.modlog_channel_id is not None:
        sent = await post_to_modlog(
            guild, config, embed=review_request_embed(record, interaction, config)
        )
        if isinstance(sent, discord.Message):
            posted = f"posted to the mod-log {sent.channel.id}"
            answer = "Thanks: the server's moderators have been asked to review this verdict."
        else:
            log.warning(
                "review request for case %s/#%s not posted: %s", guild.id, record.case_number, sent
            )
            posted = f"not posted: {sent}"
            answer = (
                "Your request is recorded, but it could not be posted for the moderators; "
                "tell a moderator directly."
            )
    await bot.audit.admin.record_action(
        guild.id,
        record.case_number,
        action=REVIEW_REQUEST,
        actor_id=interaction.user.id,
        outcome=posted,
    )
    log.info(
        "review of case %s/#%s requested by %s: %s",
        guild.id, record.case_number, interaction.user.id, posted,
    )  # fmt: skip
    return answer


def review_request_embed(
    record: ScanRecord, interaction: discord.Interaction[Spoofwatch], config: GuildConfig
) -> discord.Embed:
    """The mod-log message for a member's review request: who asks about which case."""
    user = interaction.user
    p = record.spoofed_probability
    finding = decide(record.label, p, config.alert_threshold) if record.label else None
    shown = {
        Finding.FLAGGED: "may be AI-generated",
        Finding.UNCLEAR: "unclear",
        Finding.GENUINE: "genuine",
        None: "no verdict",
    }[finding]
    score = f" · {percent(p)}% (server threshold {percent(config.alert_threshold)}%)" if p else ""
    is_author = record.author_id == user.id
    embed = discord.Embed(
        title=f"Review requested — case #{record.case_number}",
        colour=discord.Colour.blurple(),
        description=(
            f"{user.mention} {'(who posted it) ' if is_author else ''}says the verdict is wrong.\n"
            f"Verdict shown: **{shown}**{score}\n"
            f"Posted by <@{record.author_id}> in <#{record.channel_id}>"
            + (f" · [open the message]({record.jump_url})" if record.jump_url else "")
        ),
        timestamp=interaction.created_at,
    )
    embed.set_author(
        name=sanitize(f"{user.display_name} ({user.name})", limit=200) or str(user.id),
        icon_url=user.display_avatar.url,
    )
    if record.transcript:
        embed.add_field(
            name="Transcript", value=f"> {sanitize(record.transcript, limit=600)}", inline=False
        )
    embed.add_field(
        name="To decide",
        value=f"`/audit case number:{record.case_number}`, then `/audit review`.",
        inline=False,
    )
    embed.set_footer(text=f"Case #{record.case_number} · user ID {user.id}")
    return fit_embed(embed)
