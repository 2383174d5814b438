"""The emulated Discord world: the objects tests hold (users, guilds, channels, messages…).

The dataclasses are the emulator's own records, not discord.py objects. Tests receive them from
the emulator (``emu.member``, ``emu.send_message(...)``) and pass them back in; ``payloads.py``
turns them into the JSON Discord would send.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .bits import (
    MESSAGE_FLAG_EPHEMERAL,
    MESSAGE_FLAG_LOADING,
    NO_PERMISSIONS,
    ChannelType,
    Permission,
    snowflake_time,
)


@dataclass(eq=False)
class User:
    """A Discord account (person, bot or the webhook pseudo-user)."""

    id: int
    name: str
    bot: bool = False
    global_name: str | None = None
    system: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass(eq=False)
class Role:
    """A guild role. The @everyone role's id equals the guild id."""

    id: int
    guild_id: int
    name: str
    permissions: Permission
    position: int = 0
    managed: bool = False
    bot_id: int | None = None
    mentionable: bool = False

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"


@dataclass
class Overwrite:
    """A channel permission overwrite for a role (type 0) or a member (type 1)."""

    id: int
    type: int
    allow: Permission = NO_PERMISSIONS
    deny: Permission = NO_PERMISSIONS


@dataclass(eq=False)
class Channel:
    """A guild channel (text, voice, category, thread) or a DM channel."""

    id: int
    type: ChannelType
    name: str
    guild_id: int | None = None
    parent_id: int | None = None
    position: int = 0
    overwrites: dict[int, Overwrite] = field(default_factory=dict)
    topic: str | None = None
    owner_id: int | None = None
    recipient_ids: list[int] = field(default_factory=list)
    archived: bool = False
    last_message_id: int | None = None

    @property
    def is_thread(self) -> bool:
        return self.type in (ChannelType.PUBLIC_THREAD, ChannelType.PRIVATE_THREAD)

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"


@dataclass(eq=False)
class Member:
    """A user's membership of a guild. ``id`` is the user's id."""

    user: User
    guild_id: int
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    communication_disabled_until: datetime | None = None

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def mention(self) -> str:
        return f"<@{self.user.id}>"

    @property
    def timed_out(self) -> bool:
        until = self.communication_disabled_until
        return until is not None and until > datetime.now(UTC)


@dataclass(eq=False)
class Guild:
    """A guild and the objects that belong to it."""

    id: int
    name: str
    owner_id: int
    roles: dict[int, Role] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    premium_tier: int = 0
    preferred_locale: str = "en-US"
    #: Where Discord posts join notices (docs: resources/guild.mdx, "system_channel_id").
    system_channel_id: int | None = None

    @property
    def everyone_role(self) -> Role:
        return self.roles[self.id]

    @property
    def filesize_limit(self) -> int:
        return {2: 50 * 1024 * 1024, 3: 100 * 1024 * 1024}.get(self.premium_tier, 10 * 1024 * 1024)


@dataclass(eq=False)
class Attachment:
    """A file on the emulator's CDN. ``size`` is the reported size, not necessarily the file's."""

    id: int
    filename: str
    content_type: str | None
    path: Path
    size: int
    duration_secs: float | None = None
    waveform: str | None = None
    width: int | None = None
    height: int | None = None
    description: str | None = None
    title: str | None = None
    flags: int = 0
    url: str = ""
    proxy_url: str = ""
    ephemeral: bool = False
    message_id: int | None = None
    downloads: int = 0
    head_requests: int = 0

    @property
    def is_voice(self) -> bool:
        return self.duration_secs is not None and self.waveform is not None

    def read_bytes(self) -> bytes:
        """The bytes the CDN serves for this attachment."""
        return self.path.read_bytes()


@dataclass(frozen=True)
class UploadedFile:
    """A file the bot uploaded in a multipart request (``files[n]``)."""

    field_name: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class ReactionEvent:
    """One add or remove in a message's reaction history."""

    action: str  # "add" | "remove"
    emoji: str
    user_id: int


@dataclass(eq=False)
class Message:
    """A message in a channel, whoever sent it (test users, the bot, interactions, webhooks)."""

    id: int
    channel_id: int
    guild_id: int | None
    author: User
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    tts: bool = False
    pinned: bool = False
    message_reference: dict[str, Any] | None = None
    message_snapshots: list[dict[str, Any]] | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    interaction: dict[str, Any] | None = None
    mention_user_ids: list[int] = field(default_factory=list)
    mention_role_ids: list[int] = field(default_factory=list)
    mention_everyone: bool = False
    allowed_mentions: dict[str, Any] | None = None
    nonce: str | None = None
    files: list[UploadedFile] = field(default_factory=list)
    edited_at: datetime | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False
    reactions: dict[str, set[int]] = field(default_factory=dict)
    reaction_history: list[ReactionEvent] = field(default_factory=list)
    interaction_id: int | None = None

    @property
    def created_at(self) -> datetime:
        return snowflake_time(self.id)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MESSAGE_FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True while this is a deferred interaction's "thinking…" placeholder."""
        return bool(self.flags & MESSAGE_FLAG_LOADING)

    @property
    def reply_to_id(self) -> int | None:
        ref = self.message_reference
        if ref is None or ref.get("type", 0) != 0 or ref.get("message_id") is None:
            return None
        return int(ref["message_id"])

    def current_reactions(self) -> dict[str, set[int]]:
        """Emoji → users currently reacting (emptied emoji removed)."""
        return {emoji: set(users) for emoji, users in self.reactions.items() if users}

    def button(self, custom_id: str | None = None, *, label: str | None = None) -> dict[str, Any]:
        """Find a button component by custom id or label (LookupError if absent)."""
        for component in iter_components(self.components):
            if component.get("type") != 2:
                continue
            if (custom_id is not None and component.get("custom_id") == custom_id) or (
                label is not None and component.get("label") == label
            ):
                return component
        raise LookupError(f"message {self.id} has no button {custom_id or label!r}")


def iter_components(components: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Walk nested components (action rows, containers, sections) depth-first."""
    for component in components:
        yield component
        for key in ("components", "accessory"):
            child = component.get(key)
            if isinstance(child, list):
                yield from iter_components(child)
            elif isinstance(child, dict):
                yield from iter_components([child])


@dataclass
class CommandSync:
    """One bulk overwrite of application commands (global when ``guild_id`` is None)."""

    guild_id: int | None
    commands: list[dict[str, Any]]


def object_id(value: Any) -> int:
    """Accept an id or anything with an ``id`` attribute."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return int(value.id)
