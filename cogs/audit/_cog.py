"""`/audit recent|user|case|flagged|stats|export|review`, guild-only, Manage Messages."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.discord_glue.client import Spoofwatch
from bot.discord_glue.embeds import (
    FINDING_COLOURS,
    PROVIDER_NAMES,
    fit_embed,
    media_phrase,
    sanitize,
)
from bot.discord_glue.opinion_embeds import Opinion, combined_words, opinion_line
from bot.discord_glue.permissions import check_member
from bot.discord_glue.second_opinion_flow import first_verdict_of
from bot.errors import error_for_kind
from bot.provenance import FRAUD_FIELD, LIKELY_MADE_WITH, fraud_text, generator_title
from bot.provider_copies import RESEND_AFTER
from bot.settings import MIB
from bot.storage import AuditEvent, Review, ReviewBand, ScanRecord, ScanStatus, Trigger
from bot.storage.export import export_bytes, export_filename
from bot.verdict import DEFAULT_THRESHOLD, combine, decide
from cogs.audit._views import (
    REVIEW_WORDS,
    Pager,
    SecondOpinionButton,
    case_outcome,
    since_days,
)

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
        allow it (the audit log records each purge and each deletion); finish what a
        stopped process left owed (feedback to the providers, files on mod-log alerts)."""
        # At start-up (the first run) nothing of this process is in flight yet.
        starting = self.purge.current_loop == 0
        await self.bot.provider_copies.resend_owed(
            self.bot.clock(), older_than=timedelta(0) if starting else RESEND_AFTER
        )
        purged = await self.bot.provider_copies.purge_expired(self.bot.clock())
        for guild_id, count in purged.items():
            log.info("retention: purged %d old case(s) of guild %s", count, guild_id)
        # After the purge, never before it: Discord being down must not keep cases past
        # their retention. What cannot be removed now stays owed until the next run.
        for guild_id, count in (await self.bot.kept_evidence.remove_owed(self.bot)).items():
            log.info("retention: deleted cases taken off %d alert(s) of guild %s", count, guild_id)

    @purge.error
    async def _purge_failed(self, error: BaseException) -> None:
        log.error("retention purge failed; will retry next hour", exc_info=error)

    async def interaction_check(self, interaction: discord.Interaction[Spoofwatch]) -> bool:  # type: ignore[override]
        # default_permissions is a hint server admins can change; this is the real gate.
        check_member(interaction, manage_messages=True)
        return True

    async def _threshold(self, guild_id: int) -> float:
        return (await self.bot.guild_configs.get(guild_id)).alert_threshold

    async def _case_embed(self, record: ScanRecord) -> discord.Embed:
        events = await self.bot.audit.cases.case_events(record.guild_id, record.case_number)
        # The case's other verdict: its second opinions, or the case it is one of.
        cases = self.bot.audit.cases
        if record.second_opinion_of is not None:
            first = await cases.case(record.guild_id, record.second_opinion_of)
            linked = [first] if first is not None else []
        else:
            linked = await cases.second_opinions(record.guild_id, record.case_number)
        return case_embed(record, events, await self._threshold(record.guild_id), linked)

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
        threshold = await self._threshold(guild_id)
        pager = Pager(interaction.user.id, title, fetch, page_size=limit, threshold=threshold)
        await self._pager(interaction, pager)

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
        threshold = await self._threshold(guild_id)
        await self._pager(
            interaction, Pager(interaction.user.id, title, fetch, threshold=threshold)
        )

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
        embed = await self._case_embed(record)
        provider = self.bot.second_opinions.other(record)
        given = await self.bot.second_opinions.existing(record.guild_id, record.case_number)
        if (
            provider is None
            or record.second_opinion_of is not None
            or any(r.label is not None and r.provider is provider for r in given)
        ):
            # One provider configured, a second opinion itself, or already answered.
            await interaction.response.send_message(embed=embed, ephemeral=True)
            return
        view = discord.ui.View(timeout=None)
        view.add_item(SecondOpinionButton(record.case_number, PROVIDER_NAMES[provider]))
        await interaction.response.send_message(embed=embed, view=view, ephemeral=True)

    @app_commands.command(name="flagged")
    @app_commands.describe(
        days="How far back to look (default 7 days)",
        generator="Only cases the provider said this generator made (e.g. elevenlabs)",
        fraud="Only cases Resemble's report classed as this kind of fraud (e.g. vishing)",
    )
    async def flagged(
        self,
        interaction: discord.Interaction[Spoofwatch],
        days: app_commands.Range[int, 1, 3650] = 7,
        generator: app_commands.Range[str, 1, 40] | None = None,
        fraud: app_commands.Range[str, 1, 40] | None = None,
    ) -> None:
        """Cases flagged at this server's alert threshold (as replies and alerts are)."""
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
                fraud_type=fraud_type,
            )

        # As stored: Resemble's vocabulary is lower case with underscores ("romance_scam").
        fraud_type = "_".join(fraud.lower().split()) if fraud else None
        title = f"Flagged in the last {days} day{'s' if days != 1 else ''}"
        if generator is not None:
            title += f", made with {generator_title(generator)}"
        if fraud_type is not None:
            title += f", {sanitize(fraud_text(fraud_type) or fraud_type, limit=60)}"
        pager = Pager(interaction.user.id, title, fetch, threshold=config.alert_threshold)
        await self._pager(interaction, pager)

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
        description = f"**{stats.total}** scans"
        if stats.second_opinions:
            # Each second opinion is a case of its own: say how many, so a guild that checks
            # with both providers does not read its file count as doubled.
            description += (
                f", of which **{stats.second_opinions}** "
                f"{'is a second opinion' if stats.second_opinions == 1 else 'are second opinions'}"
                " on an earlier file"
            )
        embed = discord.Embed(
            title=f"Scans in the last {days} day{'s' if days != 1 else ''}",
            description=description,
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
        embed.add_field(
            name="Moderators' reviews by probability",
            value=review_lines(stats.reviews_by_band),
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
            f"Case #{number} marked **{REVIEW_WORDS[Review(decision)]}**.",
            embed=await self._case_embed(record),
            ephemeral=True,
        )


def case_embed(
    record: ScanRecord,
    events: Sequence[AuditEvent] = (),
    threshold: float = DEFAULT_THRESHOLD,
    linked: Sequence[ScanRecord] = (),
) -> discord.Embed:
    """A case in full, for moderators: coloured by outcome, with every action taken on it.

    The one view that names the provider's own label and job id (for a support ticket).
    """
    finding = decide(record.label, record.spoofed_probability, threshold) if record.label else None
    colour = FINDING_COLOURS[finding] if finding else discord.Colour.light_grey()
    what = media_phrase(record.filename, record.content_type, record.duration_s)
    embed = discord.Embed(
        title=f"Case #{record.case_number} · {case_outcome(record, threshold)}", colour=colour
    )
    who = f"<@{record.author_id}>" if record.author_id else "someone"
    where = f" in <#{record.channel_id}>" if record.channel_id else ""
    when = f"<t:{int(record.created_at.timestamp())}:f>"
    link = f" · [open the message]({record.jump_url})" if record.jump_url else ""
    embed.description = f"{what} by {who}{where}, {when}{link}"
    how = {
        Trigger.AUTO: "automatic scan",
        Trigger.CHECK: "`/check`",
        Trigger.CONTEXT_MENU: "Apps → Check for deepfake",
        Trigger.CLI: "command line",
        Trigger.SECOND_OPINION: f"second opinion on case #{record.second_opinion_of}",
    }[record.trigger]
    if record.requested_by:
        how += f" by <@{record.requested_by}>"
    embed.add_field(name="Checked by", value=how)
    embed.add_field(name="State", value=_state(record))
    # The job id is the provider's string: its length is theirs to choose, so it is capped.
    job_id = (record.provider_job_id or "").replace("`", "'").strip() or "—"
    if len(job_id) > JOB_ID_CHARS:
        job_id = job_id[: JOB_ID_CHARS - 1] + "…"
    said = f" said **{record.label.value}**" if record.label else ""
    embed.add_field(
        name="Detector",
        value=f"{PROVIDER_NAMES.get(record.provider, record.provider.value)}{said}\n`{job_id}`",
    )
    details = []
    if record.size is not None:
        details.append(f"{record.size / 1024:.0f} KiB")
    if record.language:
        details.append(f"language {sanitize(record.language, limit=20)}")
    if record.generator:
        embed.add_field(name=LIKELY_MADE_WITH, value=generator_title(record.generator))
    if record.fraud_type and (fraud := fraud_text(record.fraud_type)):
        embed.add_field(name=FRAUD_FIELD, value=sanitize(fraud, limit=100))
    if record.sha256:
        details.append(f"SHA-256 `{record.sha256[:16]}…`")
    if details:
        embed.add_field(name="File", value=" · ".join(details))
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
            value=f"{REVIEW_WORDS[record.review]} by <@{record.reviewed_by}>{when}{note}",
            inline=False,
        )
    for line in _opinion_lines(record, linked, threshold):
        embed.add_field(name=line[0], value=line[1], inline=line[2])
    actions = [_event_line(e) for e in events if e.action not in _NOT_AMONG_ACTIONS]
    if actions:
        embed.add_field(name="Actions", value=_lines(actions[-10:]), inline=False)
    return fit_embed(embed)


def _opinion_lines(
    record: ScanRecord, linked: Sequence[ScanRecord], threshold: float
) -> list[tuple[str, str, bool]]:
    """Both verdicts side by side and their combined outcome (`bot.verdict.combine`): the
    case's own and the other provider's (its second opinion, or the case it gives one on)."""
    if not linked:
        return []
    other = linked[-1]
    pair = (record, other) if record.second_opinion_of is None else (other, record)
    verdicts = [first_verdict_of(r) for r in pair]
    both = combine(verdicts[0], verdicts[1], threshold)
    fields = []
    for r, verdict, finding in zip(pair, verdicts, both.findings, strict=True):
        error = error_for_kind(r.error_kind, r.error_message or "") if r.error_kind else None
        opinion = Opinion(r.provider, r.case_number, verdict, error)
        name = PROVIDER_NAMES.get(r.provider, r.provider.value)
        fields.append((name, opinion_line(opinion, finding, audience="moderators"), True))
    fields.append(("Combined (two providers)", combined_words(both), False))
    return fields


#: Events a case's "Actions" leave out: the review has its own field, and an alert being due
#: then posted is the bot's bookkeeping (an alert that could not be posted is shown).
_NOT_AMONG_ACTIONS = frozenset({"review", "alert_due", "alert_posted"})

_ACTION_WORDS = {
    "delete": "message deleted",
    "timeout": "member timed out",
    "review_request": "review requested",
    "alert_not_posted": "alert could not be posted",
    "second_opinion": "second opinion asked",
    "evidence_kept": "file kept on the mod-log alert",
    "provider_feedback_pending": "feedback to the provider queued",
}


def _event_line(event: AuditEvent) -> str:
    who = f"<@{event.actor}>" if event.actor.isdigit() else event.actor
    what = _ACTION_WORDS.get(event.action, event.action.replace("_", " "))
    detail = sanitize(event.reason, limit=150) if event.reason else ""
    return f"<t:{int(event.at.timestamp())}:R> {what} by {who}" + (f": {detail}" if detail else "")


def _state(record: ScanRecord) -> str:
    if record.status is ScanStatus.REUSED:
        return f"reused the verdict of an earlier scan (case id {record.reused_from})"
    return {
        ScanStatus.QUEUED: "waiting to be sent",
        ScanStatus.SUBMITTED: "with the detector",
        ScanStatus.DONE: "finished",
        ScanStatus.FAILED: "failed",
        ScanStatus.REUSED: "reused",
    }[record.status]


def _guild_id(interaction: discord.Interaction[Spoofwatch]) -> int:
    assert interaction.guild_id is not None  # guild_only
    return interaction.guild_id


def review_lines(bands: Sequence[ReviewBand]) -> str:
    """One line per band: how many cases moderators confirmed, and how many they cleared.

    The false-positive share per band is what a guild tunes its alert threshold with.
    """
    if not bands:
        return "No reviews yet: Confirm deepfake / Not a deepfake on alerts count here."
    lines = []
    for band in bands:
        reviewed = band.confirmed + band.false_positive
        share = band.false_positive / reviewed
        lines.append(
            f"{band.name}: {band.confirmed} confirmed, {band.false_positive} not a deepfake "
            f"({share:.0%} false positives)"
        )
    return "\n".join(lines)[:1024]


def _lines(items: Iterable[str]) -> str:
    text = "\n".join(items)
    return text[:1024] or "—"
