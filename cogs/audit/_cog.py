"""`/audit recent|user|case|flagged|stats|export|review`, guild-only, Manage Messages."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.client import Spoofwatch
from bot.embeds import fit_embed, sanitize
from bot.permissions import check_member
from bot.provenance import LIKELY_MADE_WITH, generator_title
from bot.settings import MIB
from bot.storage import Review, ScanRecord
from bot.storage.export import export_bytes, export_filename
from cogs.audit._views import Pager, case_line, since_days

log = logging.getLogger(__name__)

#: Enough for any job id seen so far (UUIDs, numeric pids); longer ones end in "…".
JOB_ID_CHARS = 100


@app_commands.guild_only()
@app_commands.default_permissions(manage_messages=True)
class Audit(commands.GroupCog, group_name="audit", group_description="Query the scan audit log"):
    def __init__(self, bot: Spoofwatch) -> None:
        self.bot = bot
        super().__init__()

    async def cog_load(self) -> None:
        self.purge.start()

    async def cog_unload(self) -> None:
        self.purge.cancel()

    @tasks.loop(hours=1)
    async def purge(self) -> None:
        """Delete cases past each guild's retention, and the providers' copies where they
        allow it (the audit log records each purge and each deletion)."""
        purged = await self.bot.provider_copies.purge_expired(self.bot.clock())
        for guild_id, count in purged.items():
            log.info("retention: purged %d old case(s) of guild %s", count, guild_id)

    @purge.error
    async def _purge_failed(self, error: BaseException) -> None:
        log.error("retention purge failed; will retry next hour", exc_info=error)

    async def interaction_check(self, interaction: discord.Interaction[Spoofwatch]) -> bool:  # type: ignore[override]
        # default_permissions is a hint server admins can change; this is the real gate.
        check_member(interaction, manage_messages=True)
        return True

    async def _pager(self, interaction: discord.Interaction[Spoofwatch], pager: Pager) -> None:
        embed = await pager.first_page()
        # Set before sending: the view's timeout starts counting as soon as it is sent.
        pager.interaction = interaction
        await interaction.response.send_message(embed=embed, view=pager, ephemeral=True)

    @app_commands.command(name="recent")
    @app_commands.describe(limit="How many cases per page (default 10)")
    async def recent(
        self,
        interaction: discord.Interaction[Spoofwatch],
        limit: app_commands.Range[int, 1, 10] = 10,
    ) -> None:
        """The latest cases in this server."""
        guild_id = _guild_id(interaction)

        async def fetch(offset: int, n: int) -> list[ScanRecord]:
            return await self.bot.audit.cases.recent(guild_id, limit=n, offset=offset)

        title = "Latest cases"
        await self._pager(interaction, Pager(interaction.user.id, title, fetch, page_size=limit))

    @app_commands.command(name="user")
    @app_commands.describe(member="Whose cases to list")
    async def user(
        self, interaction: discord.Interaction[Spoofwatch], member: discord.User
    ) -> None:
        """A member's cases, newest first."""
        guild_id = _guild_id(interaction)

        async def fetch(offset: int, n: int) -> list[ScanRecord]:
            return await self.bot.audit.cases.by_author(guild_id, member.id, limit=n, offset=offset)

        title = f"Cases of {sanitize(member.display_name, limit=80)}"
        await self._pager(interaction, Pager(interaction.user.id, title, fetch))

    @app_commands.command(name="case")
    @app_commands.describe(number="The case number (from a verdict's footer)")
    async def case(
        self, interaction: discord.Interaction[Spoofwatch], number: app_commands.Range[int, 1]
    ) -> None:
        """One case in full, with a link to the message."""
        record = await self.bot.audit.cases.case(_guild_id(interaction), number)
        if record is None:
            await interaction.response.send_message(
                f"There is no case #{number} here.", ephemeral=True
            )
            return
        await interaction.response.send_message(embed=case_embed(record), ephemeral=True)

    @app_commands.command(name="flagged")
    @app_commands.describe(
        days="How far back to look (default 7 days)",
        generator="Only cases the provider said this generator made (e.g. elevenlabs)",
    )
    async def flagged(
        self,
        interaction: discord.Interaction[Spoofwatch],
        days: app_commands.Range[int, 1, 3650] = 7,
        generator: app_commands.Range[str, 1, 40] | None = None,
    ) -> None:
        """Cases labelled spoofed or at/above this server's alert threshold."""
        guild_id = _guild_id(interaction)
        config = await self.bot.guild_configs.get(guild_id)
        since = since_days(self.bot.clock(), days)

        async def fetch(offset: int, n: int) -> list[ScanRecord]:
            return await self.bot.audit.cases.flagged(
                guild_id,
                since=since,
                threshold=config.alert_threshold,
                limit=n,
                offset=offset,
                generator=generator,
            )

        title = f"Flagged in the last {days} day{'s' if days != 1 else ''}"
        if generator is not None:
            title += f", made with {generator_title(generator)}"
        await self._pager(interaction, Pager(interaction.user.id, title, fetch))

    @app_commands.command(name="stats")
    @app_commands.describe(days="How far back to count (default 30 days)")
    async def stats(
        self,
        interaction: discord.Interaction[Spoofwatch],
        days: app_commands.Range[int, 1, 3650] = 30,
    ) -> None:
        """Counts by label and by day, top channels, top flagged members, provider errors."""
        stats = await self.bot.audit.cases.stats(
            _guild_id(interaction), since=since_days(self.bot.clock(), days)
        )
        embed = discord.Embed(
            title=f"Scans in the last {days} day{'s' if days != 1 else ''}",
            description=f"**{stats.total}** scans",
            colour=discord.Colour.blurple(),
        )
        embed.add_field(
            name="By label",
            value=_lines(f"{k}: {v}" for k, v in sorted(stats.by_label.items())),
        )
        embed.add_field(
            name="Top channels", value=_lines(f"<#{c}>: {n}" for c, n in stats.top_channels[:5])
        )
        embed.add_field(
            name="Most flagged members",
            value=_lines(f"<@{a}>: {n}" for a, n in stats.top_flagged_authors[:5]),
        )
        embed.add_field(
            name="By day",
            value=_lines(f"{day}: {n}" for day, n in stats.by_day[-14:]),
            inline=False,
        )
        embed.add_field(
            name="Errors",
            value=_lines(f"{k}: {v}" for k, v in sorted(stats.errors_by_kind.items())),
            inline=False,
        )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="export")
    @app_commands.describe(days="How far back (default 30 days)", format="csv or json")
    async def export(
        self,
        interaction: discord.Interaction[Spoofwatch],
        days: app_commands.Range[int, 1, 3650] = 30,
        format: Literal["csv", "json"] = "csv",
    ) -> None:
        """This server's cases as a file."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = _guild_id(interaction)
        now = self.bot.clock()
        data = await export_bytes(
            self.bot.audit.cases.export(guild_id, since=since_days(now, days)), format
        )
        if len(data) > interaction.filesize_limit:
            # Discord would refuse the upload with a bare 413; say what to do instead.
            await interaction.followup.send(
                f"The export of the last {days} days is {len(data) / MIB:.1f} MiB, over "
                f"Discord's {interaction.filesize_limit / MIB:.0f} MiB upload limit. Ask for "
                "fewer days, or ask the operator for `python -m bot audit export`.",
                ephemeral=True,
            )
            return
        await interaction.followup.send(
            f"Cases of the last {days} days.",
            file=discord.File(io.BytesIO(data), filename=export_filename(guild_id, format, now)),
            ephemeral=True,
        )
        log.info(
            "audit export of guild %s (%d days, %s, %d bytes) by %s",
            guild_id,
            days,
            format,
            len(data),
            interaction.user.id,
        )

    @app_commands.command(name="review")
    @app_commands.describe(
        number="The case number", decision="Your judgement", note="Why (optional)"
    )
    async def review(
        self,
        interaction: discord.Interaction[Spoofwatch],
        number: app_commands.Range[int, 1],
        decision: Literal["confirmed", "false_positive"],
        note: app_commands.Range[str, 1, 500] | None = None,
    ) -> None:
        """Record a moderator's judgement of a verdict."""
        record = await self.bot.audit.admin.review(
            _guild_id(interaction),
            number,
            Review(decision),
            moderator_id=interaction.user.id,
            note=note,
        )
        if record is None:
            await interaction.response.send_message(
                f"There is no case #{number} here.", ephemeral=True
            )
            return
        log.info(
            "case %s/#%s reviewed %s by %s", record.guild_id, number, decision, interaction.user.id
        )
        self.bot.provider_copies.send_review_feedback_soon(record, Review(decision))
        await interaction.response.send_message(
            f"Case #{number} marked **{decision.replace('_', ' ')}**.",
            embed=case_embed(record),
            ephemeral=True,
        )


def case_embed(record: ScanRecord) -> discord.Embed:
    """A case in full, for moderators."""
    embed = discord.Embed(title=f"Case #{record.case_number}", description=case_line(record))
    embed.add_field(name="Status", value=record.status.value)
    embed.add_field(name="Trigger", value=record.trigger.value)
    # The job id is the provider's string: its length is theirs to choose, so it is capped.
    job_id = (record.provider_job_id or "").replace("`", "'").strip() or "—"
    if len(job_id) > JOB_ID_CHARS:
        job_id = job_id[: JOB_ID_CHARS - 1] + "…"
    embed.add_field(name="Provider", value=f"{record.provider.value}\n`{job_id}`")
    if record.channel_id:
        embed.add_field(name="Channel", value=f"<#{record.channel_id}>")
    if record.requested_by:
        embed.add_field(name="Requested by", value=f"<@{record.requested_by}>")
    if record.duration_s is not None:
        embed.add_field(name="Duration", value=f"{record.duration_s:.1f} s")
    if record.size is not None:
        embed.add_field(name="Size", value=f"{record.size / 1024:.0f} KiB")
    if record.language:
        embed.add_field(name="Language", value=sanitize(record.language, limit=20))
    if record.generator:
        embed.add_field(name=LIKELY_MADE_WITH, value=generator_title(record.generator))
    if record.sha256:
        embed.add_field(name="SHA-256", value=f"`{record.sha256[:16]}…`")
    if record.error_kind:
        embed.add_field(
            name="Error",
            value=sanitize(f"{record.error_kind}: {record.error_message or ''}", limit=1000),
            inline=False,
        )
    if record.transcript:
        embed.add_field(
            name="Transcript", value=f">>> {sanitize(record.transcript, limit=1000)}", inline=False
        )
    if record.review is not None:
        note = f"\n{sanitize(record.review_note, limit=500)}" if record.review_note else ""
        when = f" <t:{int(record.reviewed_at.timestamp())}:R>" if record.reviewed_at else ""
        embed.add_field(
            name="Review",
            value=f"{record.review.value} by <@{record.reviewed_by}>{when}{note}",
            inline=False,
        )
    return fit_embed(embed)


def _guild_id(interaction: discord.Interaction[Spoofwatch]) -> int:
    assert interaction.guild_id is not None  # guild_only
    return interaction.guild_id


def _lines(items: Iterable[str]) -> str:
    text = "\n".join(items)
    return text[:1024] or "—"
