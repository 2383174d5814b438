"""Paginated, ephemeral answers: Previous / Next buttons, usable only by who asked."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import discord

from bot.client import Spoofwatch
from bot.embeds import sanitize
from bot.provenance import generator_title
from bot.storage import ScanRecord, ScanStatus
from bot.verdict import Label

PAGE_SIZE = 10
Fetch = Callable[[int, int], Awaitable[list[ScanRecord]]]

_LABEL_MARK = {Label.SPOOFED: "🟥", Label.BONAFIDE: "🟩", Label.INCONCLUSIVE: "⬜"}


def case_line(record: ScanRecord) -> str:
    """One line of a case list: number, when, who, outcome, link."""
    when = f"<t:{int(record.created_at.timestamp())}:f>"
    who = f"<@{record.author_id}>" if record.author_id else "—"
    if record.label is not None:
        p = "" if record.spoofed_probability is None else f" {record.spoofed_probability:.0%}"
        outcome = f"{_LABEL_MARK[record.label]} {record.label.value}{p}"
        if record.generator:
            outcome += f" ({generator_title(record.generator)})"
    elif record.status is ScanStatus.FAILED:
        outcome = f"⚠️ failed ({record.error_kind})"
    else:
        outcome = f"⏳ {record.status.value}"
    review = f" · reviewed: {record.review.value}" if record.review else ""
    link = f" · [jump]({record.jump_url})" if record.jump_url else ""
    name = sanitize(record.filename, limit=40)
    return f"**#{record.case_number}** {when} · {who} · {name} · {outcome}{review}{link}"


def page_embed(title: str, records: Sequence[ScanRecord], page: int) -> discord.Embed:
    embed = discord.Embed(title=title, colour=discord.Colour.blurple())
    if records:
        embed.description = "\n".join(case_line(r) for r in records)[:4000]
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
        self, owner_id: int, title: str, fetch: Fetch, *, page_size: int = PAGE_SIZE
    ) -> None:
        super().__init__(timeout=self.TIMEOUT_S)
        #: The command's interaction, once the first page is sent: its token edits the answer.
        self.interaction: discord.Interaction[Spoofwatch] | None = None
        self.page_size = page_size
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
        return page_embed(self.title, rows[: self.page_size], page)

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
