"""Paginated, ephemeral answers: Previous / Next buttons, usable only by who asked."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import discord

from bot.discord_glue.client import Spoofwatch
from bot.discord_glue.embeds import FINDING_WORDS
from bot.discord_glue.second_opinion_flow import ask_second_opinion
from bot.provenance import generator_title
from bot.storage import Review, ScanRecord, ScanStatus
from bot.verdict import DEFAULT_THRESHOLD, Finding, decide, percent

log = logging.getLogger(__name__)

PAGE_SIZE = 10
Fetch = Callable[[int, int], Awaitable[list[ScanRecord]]]

_FINDING_MARK = {Finding.FLAGGED: "🟥", Finding.UNCLEAR: "🟨", Finding.GENUINE: "🟩"}
#: A moderator's review in words: "false_positive" is a column value, not a sentence.
REVIEW_WORDS = {Review.CONFIRMED: "confirmed", Review.FALSE_POSITIVE: "not a deepfake"}


def case_outcome(record: ScanRecord, threshold: float = DEFAULT_THRESHOLD) -> str:
    """The outcome in a few words, at the guild's threshold: "🟥 97% may be AI-generated"."""
    if record.label is not None:
        finding = decide(record.label, record.spoofed_probability, threshold)
        p = record.spoofed_probability
        score = f" {percent(p)}%" if p is not None else ""
        made = f" ({generator_title(record.generator)})" if record.generator else ""
        return f"{_FINDING_MARK[finding]}{score} {FINDING_WORDS[finding]}{made}"
    if record.status is ScanStatus.FAILED:
        return f"⚠️ failed ({record.error_kind})"
    return "⏳ in progress"


def case_line(record: ScanRecord, threshold: float = DEFAULT_THRESHOLD) -> str:
    """One short line of a case list: number, when, who, outcome, review, link."""
    when = f"<t:{int(record.created_at.timestamp())}:R>"
    who = f"<@{record.author_id}>" if record.author_id else "—"
    review = f" · ✔ {REVIEW_WORDS[record.review]}" if record.review else ""
    link = f" · [open]({record.jump_url})" if record.jump_url else ""
    outcome = case_outcome(record, threshold)
    second = (
        f" · second opinion on #{record.second_opinion_of}"
        if record.second_opinion_of is not None
        else ""
    )
    return f"**#{record.case_number}** {when} · {who} · {outcome}{second}{review}{link}"


def page_embed(
    title: str, records: Sequence[ScanRecord], page: int, threshold: float = DEFAULT_THRESHOLD
) -> discord.Embed:
    embed = discord.Embed(title=title, colour=discord.Colour.blurple())
    if records:
        embed.description = "\n".join(case_line(r, threshold) for r in records)[:4000]
    else:
        embed.description = "No cases." if page == 0 else "No more cases."
    embed.set_footer(text=f"Page {page + 1}")
    return embed


class Pager(discord.ui.View):
    """Pages through a query; `fetch(offset, limit)` returns one page of cases.

    After `TIMEOUT_S` without a click the buttons are greyed out (they would stop answering
    anyway); this stays under the 15 minutes an interaction's token may edit its answer.
    """

    TIMEOUT_S = 600.0

    def __init__(
        self,
        owner_id: int,
        title: str,
        fetch: Fetch,
        *,
        page_size: int = PAGE_SIZE,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        super().__init__(timeout=self.TIMEOUT_S)
        #: The command's interaction, once the first page is sent: its token edits the answer.
        self.interaction: discord.Interaction[Spoofwatch] | None = None
        self.page_size = page_size
        self.threshold = threshold
        self.owner_id = owner_id
        self.title = title
        self.fetch = fetch
        self.page = 0
        self.has_next = False

    async def first_page(self) -> discord.Embed:
        return await self._load(0)

    async def _load(self, page: int) -> discord.Embed:
        # One extra row tells whether a next page exists without a COUNT query.
        rows = await self.fetch(page * self.page_size, self.page_size + 1)
        self.page = page
        self.has_next = len(rows) > self.page_size
        self.previous.disabled = page == 0
        self.next.disabled = not self.has_next
        return page_embed(self.title, rows[: self.page_size], page, self.threshold)

    async def on_timeout(self) -> None:
        self.previous.disabled = True
        self.next.disabled = True
        if self.interaction is not None:
            # Best effort: the answer may have been dismissed by the moderator.
            with contextlib.suppress(discord.HTTPException):
                await self.interaction.edit_original_response(view=self)

    async def interaction_check(self, interaction: discord.Interaction[Spoofwatch]) -> bool:  # type: ignore[override]
        if interaction.user.id != self.owner_id:
            await interaction.response.send_message(
                "Only the moderator who asked can turn these pages.", ephemeral=True
            )
            return False
        return True

    @discord.ui.button(label="Previous", style=discord.ButtonStyle.secondary)
    async def previous(
        self, interaction: discord.Interaction[Spoofwatch], _: discord.ui.Button[Pager]
    ) -> None:
        embed = await self._load(max(0, self.page - 1))
        await interaction.response.edit_message(embed=embed, view=self)

    @discord.ui.button(label="Next", style=discord.ButtonStyle.primary)
    async def next(
        self, interaction: discord.Interaction[Spoofwatch], _: discord.ui.Button[Pager]
    ) -> None:
        embed = await self._load(self.page + 1)
        await interaction.response.edit_message(embed=embed, view=self)


def since_days(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)


class SecondOpinionButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"sw:audit:second:(?P<case>\d+)",
):
    """`/audit case`'s "Second opinion" button; the case travels in the id (as the alert's),
    the guild comes from the interaction."""

    def __init__(self, case_number: int, provider_name: str = "the other provider") -> None:
        super().__init__(
            discord.ui.Button(
                label=f"Second opinion ({provider_name})"[:80],
                style=discord.ButtonStyle.primary,
                custom_id=f"sw:audit:second:{case_number}",
            )
        )
        self.case_number = case_number

    @classmethod
    async def from_custom_id(  # type: ignore[override]
        cls,
        interaction: discord.Interaction[Spoofwatch],
        item: discord.ui.Button[Any],
        match: re.Match[str],
    ) -> SecondOpinionButton:
        return cls(int(match["case"]))

    async def interaction_check(self, interaction: discord.Interaction[Spoofwatch]) -> bool:  # type: ignore[override]
        # Billed like a scan: moderators only, as every /audit command.
        if interaction.guild is None or not interaction.permissions.manage_messages:
            await interaction.response.send_message(
                "You need the Manage Messages permission for that.", ephemeral=True
            )
            return False
        return True

    async def callback(self, interaction: discord.Interaction[Spoofwatch]) -> None:  # type: ignore[override]
        assert interaction.guild is not None
        bot = interaction.client
        await interaction.response.defer(ephemeral=True, thinking=True)
        record = await bot.audit.cases.case(interaction.guild.id, self.case_number)
        if record is None:
            await interaction.followup.send(
                f"Case #{self.case_number} no longer exists.", ephemeral=True
            )
            return
        answer = await ask_second_opinion(bot, record, requested_by=interaction.user.id)
        if answer.done:
            await bot.audit.admin.record_action(
                interaction.guild.id,
                self.case_number,
                action="second_opinion",
                actor_id=interaction.user.id,
                outcome=answer.line,
            )
        log.info(
            "second opinion on case %s/#%s asked by %s: %s",
            interaction.guild.id,
            self.case_number,
            interaction.user.id,
            answer.line,
        )
        if answer.embed is not None:
            await interaction.followup.send(answer.line[:2000], embed=answer.embed, ephemeral=True)
        else:
            await interaction.followup.send(answer.line[:2000], ephemeral=True)
