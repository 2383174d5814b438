"""Discord's numbers: snowflakes, permission bits, intents, channel types and message flags."""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime

DISCORD_EPOCH_MS = 1_420_070_400_000


class SnowflakeFactory:
    """Allocates unique, increasing snowflakes whose timestamp bits are the creation time."""

    def __init__(self, worker_id: int = 1, process_id: int = 0) -> None:
        self._worker_id = worker_id
        self._process_id = process_id
        self._last_ms = 0
        self._increment = 0
        self._lock = threading.Lock()

    def next(self, at: datetime | None = None) -> int:
        """Return a new snowflake; ``at`` backdates it (for "old message" tests)."""
        with self._lock:
            if at is not None:
                ms = int(at.timestamp() * 1000)
                self._increment = (self._increment + 1) % 4096
                return self._pack(ms, self._increment)
            ms = int(time.time() * 1000)
            if ms <= self._last_ms:
                ms = self._last_ms
                self._increment += 1
                if self._increment >= 4096:
                    ms += 1
                    self._increment = 0
            else:
                self._increment = 0
            self._last_ms = ms
            return self._pack(ms, self._increment)

    def _pack(self, ms: int, increment: int) -> int:
        return (
            ((ms - DISCORD_EPOCH_MS) << 22)
            | (self._worker_id << 17)
            | (self._process_id << 12)
            | increment
        )


def snowflake_time(snowflake: int) -> datetime:
    """The creation time encoded in a snowflake."""
    return datetime.fromtimestamp(((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000, tz=UTC)


def iso(dt: datetime | None) -> str | None:
    """Discord's ISO-8601 timestamp format."""
    return None if dt is None else dt.astimezone(UTC).isoformat()


class Permission(enum.IntFlag):
    """Discord permission bits (developers/topics/permissions)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_AUDIT_LOG = 1 << 7
    PRIORITY_SPEAKER = 1 << 8
    STREAM = 1 << 9
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    SEND_TTS_MESSAGES = 1 << 12
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    VIEW_GUILD_INSIGHTS = 1 << 19
    CONNECT = 1 << 20
    SPEAK = 1 << 21
    MUTE_MEMBERS = 1 << 22
    DEAFEN_MEMBERS = 1 << 23
    MOVE_MEMBERS = 1 << 24
    USE_VAD = 1 << 25
    CHANGE_NICKNAME = 1 << 26
    MANAGE_NICKNAMES = 1 << 27
    MANAGE_ROLES = 1 << 28
    MANAGE_WEBHOOKS = 1 << 29
    MANAGE_GUILD_EXPRESSIONS = 1 << 30
    USE_APPLICATION_COMMANDS = 1 << 31
    REQUEST_TO_SPEAK = 1 << 32
    MANAGE_EVENTS = 1 << 33
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    CREATE_PRIVATE_THREADS = 1 << 36
    USE_EXTERNAL_STICKERS = 1 << 37
    SEND_MESSAGES_IN_THREADS = 1 << 38
    USE_EMBEDDED_ACTIVITIES = 1 << 39
    MODERATE_MEMBERS = 1 << 40
    SEND_VOICE_MESSAGES = 1 << 46
    SEND_POLLS = 1 << 49
    USE_EXTERNAL_APPS = 1 << 50

    @classmethod
    def of(cls, value: PermissionsLike) -> Permission:
        """Accept an int, a Permission, a name ("manage_messages") or an iterable of names."""
        if isinstance(value, int):
            return cls(value)
        if isinstance(value, str):
            return cls[value.upper()]
        result = cls(0)
        for item in value:
            result |= cls.of(item)
        return result


PermissionsLike = int | str | Iterable[str]

ALL_PERMISSIONS = Permission((1 << 51) - 1)
NO_PERMISSIONS = Permission(0)

DEFAULT_EVERYONE_PERMISSIONS = Permission.of(
    [
        "create_instant_invite", "change_nickname", "view_channel", "send_messages",
        "send_messages_in_threads", "create_public_threads", "create_private_threads",
        "embed_links", "attach_files", "add_reactions", "use_external_emojis",
        "use_external_stickers", "read_message_history", "send_tts_messages",
        "use_application_commands", "connect", "speak", "stream", "use_vad",
        "use_embedded_activities", "send_voice_messages", "send_polls", "use_external_apps",
        "request_to_speak",
    ]
)  # fmt: skip
MODERATOR_PERMISSIONS = Permission.MANAGE_MESSAGES | Permission.MODERATE_MEMBERS
ADMIN_PERMISSIONS = MODERATOR_PERMISSIONS | Permission.MANAGE_GUILD | Permission.MANAGE_CHANNELS
DEFAULT_BOT_PERMISSIONS = Permission.of(
    [
        "view_channel", "send_messages", "send_messages_in_threads", "embed_links",
        "attach_files", "read_message_history", "add_reactions", "manage_messages",
        "moderate_members", "use_application_commands",
    ]
)  # fmt: skip


class ChannelType(enum.IntEnum):
    """The channel types the emulator models."""

    GUILD_TEXT = 0
    DM = 1
    GUILD_VOICE = 2
    GUILD_CATEGORY = 4
    PUBLIC_THREAD = 11
    PRIVATE_THREAD = 12


class Intent(enum.IntFlag):
    """Gateway intents the emulator filters events by."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    MESSAGE_CONTENT = 1 << 15


PRIVILEGED_INTENTS = Intent.GUILD_MEMBERS | Intent.GUILD_PRESENCES | Intent.MESSAGE_CONTENT

MESSAGE_FLAG_EPHEMERAL = 1 << 6
MESSAGE_FLAG_LOADING = 1 << 7
MESSAGE_FLAG_VOICE = 1 << 13
