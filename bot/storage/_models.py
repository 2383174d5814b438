"""Rows as they come out of (and go into) the audit log."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from bot.verdict import Label, ProviderName, Verdict

#: Guild id used for scans that belong to no guild (DMs with the bot, the CLI).
NO_GUILD = 0


class ShardFilter(BaseModel):
    """The shards one process runs: it owns a guild if `(guild_id >> 22) % count` is in `ids`.

    Scans without a guild (DMs, the CLI: `NO_GUILD`) come out as shard 0 by the same formula,
    which is where Discord delivers DMs too.
    """

    model_config = ConfigDict(frozen=True)

    count: int = Field(ge=1)
    ids: frozenset[int]

    def owns(self, guild_id: int) -> bool:
        return (guild_id >> 22) % self.count in self.ids


def in_shards(shards: ShardFilter | None, guild_id: int) -> bool:
    """Whether the process running `shards` owns the guild (None: one process runs them all)."""
    return shards is None or shards.owns(guild_id)


class Trigger(StrEnum):
    AUTO = "auto"
    CHECK = "check"
    CONTEXT_MENU = "context_menu"
    CLI = "cli"
    #: The other provider asked about a case's file (a moderator, or "both" mode).
    SECOND_OPINION = "second_opinion"


class ScanStatus(StrEnum):
    QUEUED = "queued"
    SUBMITTED = "submitted"
    DONE = "done"
    FAILED = "failed"
    REUSED = "reused"

    @property
    def finished(self) -> bool:
        return self in {ScanStatus.DONE, ScanStatus.FAILED, ScanStatus.REUSED}


class Review(StrEnum):
    CONFIRMED = "confirmed"
    FALSE_POSITIVE = "false_positive"


class NewScan(BaseModel):
    """A scan as accepted, before anything is known about the file."""

    model_config = ConfigDict(frozen=True)

    guild_id: int = NO_GUILD
    channel_id: int | None = None
    message_id: int | None = None
    author_id: int | None = None
    jump_url: str | None = None
    attachment_id: int | None = None
    filename: str
    content_type: str | None = None
    size: int | None = None
    trigger: Trigger
    requested_by: int | None = None
    provider: ProviderName
    #: Where the media can be fetched again to resume the scan after a restart.
    source_url: str | None = None
    #: The case (its number in the same guild) this scan gives a second opinion on.
    second_opinion_of: int | None = None


class ScanRecord(BaseModel):
    """One case of the audit log."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    guild_id: int
    case_number: int
    channel_id: int | None = None
    message_id: int | None = None
    author_id: int | None = None
    jump_url: str | None = None
    attachment_id: int | None = None
    filename: str
    content_type: str | None = None
    size: int | None = None
    duration_s: float | None = None
    sha256: str | None = None
    trigger: Trigger
    requested_by: int | None = None
    provider: ProviderName
    provider_job_id: str | None = None
    source_url: str | None = None
    status: ScanStatus
    created_at: datetime
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    label: Label | None = None
    spoofed_probability: float | None = None
    language: str | None = None
    speakers: int | None = None
    transcript: str | None = None
    error_kind: str | None = None
    error_message: str | None = None
    reused_from: int | None = None
    review: Review | None = None
    reviewed_by: int | None = None
    reviewed_at: datetime | None = None
    review_note: str | None = None
    reply_message_id: int | None = None
    #: The likely generator the provider named ("elevenlabs"), or None.
    generator: str | None = None
    #: The case number (same guild) this case is a second opinion on, or None.
    second_opinion_of: int | None = None
    #: The kind of fraud Resemble's intelligence report named ("vishing"), or None.
    fraud_type: str | None = None


class GuildCases(BaseModel):
    """A guild in the audit log: how many cases it has and when the last was opened."""

    model_config = ConfigDict(frozen=True)

    guild_id: int
    cases: int
    last_case_at: datetime | None = None


class ReviewBand(BaseModel):
    """Moderators' reviews of the cases whose probability fell in one band (say 80–90 %)."""

    model_config = ConfigDict(frozen=True)

    #: Lower bound of the band in percent (0, 10, … 90), or None for cases with no score.
    low: int | None
    confirmed: int = 0
    false_positive: int = 0

    @property
    def name(self) -> str:
        return "no score" if self.low is None else f"{self.low}–{self.low + 10}%"


class AuditStats(BaseModel):
    model_config = ConfigDict(frozen=True)

    total: int
    by_label: dict[str, int] = Field(default_factory=dict)
    by_day: list[tuple[str, int]] = Field(default_factory=list)
    top_channels: list[tuple[int, int]] = Field(default_factory=list)
    top_flagged_authors: list[tuple[int, int]] = Field(default_factory=list)
    errors_by_kind: dict[str, int] = Field(default_factory=dict)
    #: Review outcomes per probability band (bands with reviews only, lowest first).
    reviews_by_band: list[ReviewBand] = Field(default_factory=list)
    #: Of `total`, the cases that are a second opinion on an earlier case's file: a guild
    #: that checks with both providers sees each file counted twice in `total`.
    second_opinions: int = 0


class StoredVerdict(BaseModel):
    """A verdict remembered for reuse, with the case it came from."""

    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    scan_id: int


class AuditEvent(BaseModel):
    """An administrative event: a purge, a forget, a settings change, a moderator's action.

    `actor` is a user id as text for people, or a name such as "retention" for the bot
    itself; `case_number` is set when the event concerns one case.
    """

    model_config = ConfigDict(frozen=True)

    id: int
    guild_id: int
    at: datetime
    actor: str
    action: str
    target: str
    reason: str
    case_number: int | None = None
