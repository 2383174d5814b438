"""Per-guild settings chosen by a server's admins (`/spoofwatch settings`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.verdict import MediaKind, ProviderName


class ChannelScope(StrEnum):
    ALL = "all"
    ONLY_LISTED = "only_listed"
    ALL_EXCEPT_LISTED = "all_except_listed"


class ActionPolicy(StrEnum):
    REPLY = "reply"
    ALERT = "alert"
    DELETE_AND_ALERT = "delete_and_alert"


class PublicReplies(StrEnum):
    """Which automatic scans get a reply in the channel (moderators' alerts are separate)."""

    #: Every scanned file: genuine ones in one compact line, the rest in full.
    ALL = "all"
    #: Only files at or above the alert threshold.
    FLAGGED = "flagged"
    #: None: verdicts stay among moderators (mod-log alerts, `/audit`).
    NEVER = "never"


class GuildConfig(BaseModel):
    """Defaults make a freshly invited bot useful without configuration."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    auto_scan: bool = True
    scope: ChannelScope = ChannelScope.ALL
    #: Channel or category ids the scope lists.
    scope_channels: frozenset[int] = frozenset()
    kinds: frozenset[MediaKind] = frozenset(MediaKind)
    alert_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    action: ActionPolicy = ActionPolicy.ALERT
    modlog_channel_id: int | None = None
    public_replies: PublicReplies = PublicReplies.ALL
    show_transcripts: bool = True
    store_transcripts: bool = True
    retention_days: int = Field(default=90, ge=1, le=3650)
    provider: ProviderName | None = None
    daily_quota: int | None = Field(default=None, ge=1)
    max_file_mb: float | None = Field(default=None, gt=0)
    max_duration_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _earlier_reply_setting(cls, data: Any) -> Any:
        """Settings saved before `public_replies` existed: "no replies to bona fide results"
        becomes `flagged`. The storage migrations rewrite stored rows the same way; this
        covers a row an older process writes while a newer one runs (PostgreSQL)."""
        if isinstance(data, dict) and "public_replies" not in data and "reply_bonafide" in data:
            data = dict(data)
            if data.pop("reply_bonafide") is False:
                data["public_replies"] = PublicReplies.FLAGGED
        return data

    def scans_channel(self, *place_ids: int | None) -> bool:
        """Whether automatic scans apply to a channel, given its id, parent and category ids."""
        listed = any(i is not None and i in self.scope_channels for i in place_ids)
        if self.scope is ChannelScope.ONLY_LISTED:
            return listed
        if self.scope is ChannelScope.ALL_EXCEPT_LISTED:
            return not listed
        return True
