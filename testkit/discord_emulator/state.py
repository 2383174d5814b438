"""The emulator's world: registries, lookups and the builders tests use to set a scene.

Builders that change something a connected bot has cached emit the gateway event Discord would
send (CHANNEL_UPDATE, GUILD_MEMBER_UPDATE, …) through ``World.emit``, so the bot's cache and the
emulator never disagree.
"""

from __future__ import annotations

import base64
import secrets
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from . import payloads
from .bits import (
    ADMIN_PERMISSIONS,
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    MODERATOR_PERMISSIONS,
    ChannelType,
    Intent,
    Permission,
    PermissionsLike,
    SnowflakeFactory,
)
from .models import (
    Attachment,
    Channel,
    CommandSync,
    Guild,
    Member,
    Message,
    Overwrite,
    Role,
    User,
    object_id,
)
from .permissions import channel_permissions

JSON = dict[str, Any]
DM_PERMISSIONS = Permission.of(
    ["view_channel", "send_messages", "embed_links", "attach_files", "read_message_history",
     "add_reactions", "use_external_emojis", "use_application_commands"]
)  # fmt: skip


class EventSink(Protocol):
    def __call__(
        self,
        event: str,
        data: JSON | Callable[[int], JSON | None],
        *,
        guild_id: int | None = None,
        intent: Intent | None = None,
    ) -> None: ...


def _no_sink(event: str, data: Any, *, guild_id: int | None = None, intent: Any = None) -> None:
    return None


def make_token(application_id: int) -> str:
    """A bot token shaped like Discord's (base64 id . timestamp . hmac)."""
    head = base64.urlsafe_b64encode(str(application_id).encode()).decode().rstrip("=")
    return f"{head}.{secrets.token_urlsafe(4)[:6]}.{secrets.token_urlsafe(27)[:38]}"


class World:
    """All emulated Discord state. Lookups accept ids or model objects."""

    def __init__(self, app_name: str = "Spoofwatch") -> None:
        self.snowflakes = SnowflakeFactory()
        self.application_id = self.snowflakes.next()
        # Modern applications' bot user shares the application's id.
        self.bot_user = User(id=self.application_id, name=app_name, bot=True)
        self.app_owner = User(id=self.snowflakes.next(), name="app-owner")
        self.app_name = app_name
        self.token = make_token(self.application_id)
        self.users: dict[int, User] = {u.id: u for u in (self.bot_user, self.app_owner)}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.channel_messages: dict[int, list[int]] = defaultdict(list)
        self.attachments: dict[int, Attachment] = {}
        self.commands: dict[int | None, list[JSON]] = {}
        self.command_syncs: list[CommandSync] = []
        self.emit: EventSink = _no_sink
        self.bind_attachment: Callable[[Attachment, Channel], None] = lambda a, c: None

    # ----------------------------------------------------------------- lookups

    def channel(self, ref: Any) -> Channel:
        """The channel with this id (LookupError if unknown)."""
        try:
            return self.channels[object_id(ref)]
        except KeyError:
            raise LookupError(f"unknown channel {ref!r}") from None

    def guild(self, ref: Any) -> Guild:
        """The guild with this id (LookupError if unknown)."""
        try:
            return self.guilds[object_id(ref)]
        except KeyError:
            raise LookupError(f"unknown guild {ref!r}") from None

    def guild_of(self, channel: Channel) -> Guild | None:
        return None if channel.guild_id is None else self.guilds.get(channel.guild_id)

    def user(self, ref: Any) -> User:
        """The user behind an id, a User or a Member."""
        if isinstance(ref, User):
            return ref
        if isinstance(ref, Member):
            return ref.user
        try:
            return self.users[object_id(ref)]
        except KeyError:
            raise LookupError(f"unknown user {ref!r}") from None

    def member(self, guild_id: int, user_id: int) -> Member | None:
        guild = self.guilds.get(guild_id)
        return None if guild is None else guild.members.get(user_id)

    def bot_member(self, guild: Guild) -> Member:
        return guild.members[self.bot_user.id]

    def permissions_in(self, channel: Channel, user: Any) -> Permission:
        """A user's permissions in a channel (DMs: what Discord grants in DMs)."""
        guild = self.guild_of(channel)
        if guild is None:
            return DM_PERMISSIONS
        member = guild.members.get(self.user(user).id)
        return Permission(0) if member is None else channel_permissions(guild, channel, member)

    # ---------------------------------------------------------------- builders

    def create_user(self, name: str, *, bot: bool = False) -> User:
        """A new user who is in no guild yet."""
        user = User(id=self.snowflakes.next(), name=name, bot=bot, global_name=name.title())
        self.users[user.id] = user
        return user

    def create_guild(
        self,
        name: str,
        *,
        owner: User | None = None,
        premium_tier: int = 0,
        bot_permissions: PermissionsLike = DEFAULT_BOT_PERMISSIONS,
        everyone_permissions: PermissionsLike = DEFAULT_EVERYONE_PERMISSIONS,
        shard: tuple[int, int] | None = None,
        system_channel: str | None = None,
    ) -> Guild:
        """A guild the bot is in: @everyone, the bot's managed role, its owner and the bot.

        ``shard=(id, count)`` picks an id that shard owns: ``(guild_id >> 22) % count == id``
        (docs: gateway.mdx, "Sharding"), drawing snowflakes until one falls to that shard.
        ``system_channel`` names a text channel that exists from the start and is the guild's
        system channel (where Discord posts join notices).
        """
        owner = owner or self.create_user(f"{name.lower().replace(' ', '-')}-owner")
        guild_id = self.snowflakes.next()
        # Drawn until the shard owns it (a few ms at most): still unique, as every snowflake.
        while shard is not None and (guild_id >> 22) % shard[1] != shard[0]:
            guild_id = self.snowflakes.next()
        guild = Guild(id=guild_id, name=name, owner_id=owner.id, premium_tier=premium_tier)
        guild.roles[guild_id] = Role(
            guild_id, guild_id, "@everyone", Permission.of(everyone_permissions)
        )
        bot_role = Role(
            id=self.snowflakes.next(),
            guild_id=guild_id,
            name=self.app_name,
            permissions=Permission.of(bot_permissions),
            position=1,
            managed=True,
            bot_id=self.bot_user.id,
        )
        guild.roles[bot_role.id] = bot_role
        guild.members[owner.id] = Member(owner, guild_id)
        guild.members[self.bot_user.id] = Member(self.bot_user, guild_id, [bot_role.id])
        self.guilds[guild_id] = guild
        if system_channel is not None:
            channel = Channel(
                self.snowflakes.next(),
                ChannelType.GUILD_TEXT,
                name=system_channel,
                guild_id=guild_id,
            )
            self._register_channel(guild, channel)
            guild.system_channel_id = channel.id
        self.emit(
            "GUILD_CREATE",
            lambda _: payloads.guild_payload(self, guild, gateway=True, joined=True),
            guild_id=guild_id,
            intent=Intent.GUILDS,
        )
        return guild

    def bot_role(self, guild: Guild) -> Role:
        return next(r for r in guild.roles.values() if r.bot_id == self.bot_user.id)

    def create_role(
        self, guild: Guild, name: str, permissions: PermissionsLike = 0, *, position: int = 0
    ) -> Role:
        """A role; by default placed just below the bot's role, so the bot outranks it."""
        bot_role = self.bot_role(guild)
        if not position:
            position = bot_role.position
            bot_role.position += 1
        role = Role(self.snowflakes.next(), guild.id, name, Permission.of(permissions), position)
        guild.roles[role.id] = role
        self._emit_guild("GUILD_ROLE_CREATE", guild, role=payloads.role_payload(role))
        self._emit_guild("GUILD_ROLE_UPDATE", guild, role=payloads.role_payload(bot_role))
        return role

    def set_role_permissions(self, role: Role, permissions: PermissionsLike) -> None:
        """Change a role's permissions (GUILD_ROLE_UPDATE)."""
        role.permissions = Permission.of(permissions)
        self._emit_guild(
            "GUILD_ROLE_UPDATE", self.guild(role.guild_id), role=payloads.role_payload(role)
        )

    def set_bot_permissions(self, guild: Guild, permissions: PermissionsLike) -> None:
        """Replace the permissions of the bot's managed role (@everyone still applies)."""
        self.set_role_permissions(self.bot_role(guild), permissions)

    def role_named(self, guild: Guild, name: str, permissions: PermissionsLike) -> Role:
        existing = next((r for r in guild.roles.values() if r.name == name), None)
        return existing or self.create_role(guild, name, permissions)

    def add_member(
        self,
        guild: Guild,
        user: User | str,
        *,
        roles: tuple[Role, ...] = (),
        nick: str | None = None,
    ) -> Member:
        """Add a user (or a new user with this name) to the guild."""
        if isinstance(user, str):
            user = self.create_user(user)
        member = Member(user, guild.id, [r.id for r in roles], nick=nick)
        guild.members[user.id] = member
        data = payloads.member_payload(member) | {"guild_id": str(guild.id)}
        self.emit("GUILD_MEMBER_ADD", data, guild_id=guild.id, intent=Intent.GUILD_MEMBERS)
        return member

    def update_member(self, member: Member) -> None:
        """Tell the bot a member changed (GUILD_MEMBER_UPDATE)."""
        data = payloads.member_payload(member) | {"guild_id": str(member.guild_id)}
        self.emit(
            "GUILD_MEMBER_UPDATE", data, guild_id=member.guild_id, intent=Intent.GUILD_MEMBERS
        )

    def add_moderator(self, guild: Guild, name: str = "moderator") -> Member:
        """A member whose "Moderator" role grants Manage Messages and Moderate Members."""
        return self.add_member(
            guild, name, roles=(self.role_named(guild, "Moderator", MODERATOR_PERMISSIONS),)
        )

    def add_admin(self, guild: Guild, name: str = "admin") -> Member:
        """A member whose "Admin" role adds Manage Guild and Manage Channels (not Administrator)."""
        return self.add_member(
            guild, name, roles=(self.role_named(guild, "Admin", ADMIN_PERMISSIONS),)
        )

    def create_channel(
        self,
        guild: Guild,
        name: str,
        type: ChannelType = ChannelType.GUILD_TEXT,
        *,
        category: Channel | None = None,
        topic: str | None = None,
    ) -> Channel:
        """A guild channel; with ``category``, nested in it and with its overwrites copied."""
        channel = Channel(
            id=self.snowflakes.next(),
            type=type,
            name=name,
            guild_id=guild.id,
            parent_id=category.id if category else None,
            position=len(guild.channels),
            topic=topic,
        )
        if category is not None:
            channel.overwrites = {
                k: Overwrite(o.id, o.type, o.allow, o.deny) for k, o in category.overwrites.items()
            }
        self._register_channel(guild, channel)
        self.emit(
            "CHANNEL_CREATE",
            lambda _: payloads.channel_payload(self, channel),
            guild_id=guild.id,
            intent=Intent.GUILDS,
        )
        return channel

    def create_thread(
        self, parent: Channel, name: str, *, owner: Any = None, private: bool = False
    ) -> Channel:
        """A thread under a text channel (THREAD_CREATE)."""
        guild = self.guild(parent.guild_id)
        thread = Channel(
            id=self.snowflakes.next(),
            type=ChannelType.PRIVATE_THREAD if private else ChannelType.PUBLIC_THREAD,
            name=name,
            guild_id=guild.id,
            parent_id=parent.id,
            owner_id=self.user(owner).id if owner is not None else guild.owner_id,
        )
        self._register_channel(guild, thread)
        self.emit(
            "THREAD_CREATE",
            lambda _: payloads.channel_payload(self, thread) | {"newly_created": True},
            guild_id=guild.id,
            intent=Intent.GUILDS,
        )
        return thread

    def set_overwrite(
        self,
        channel: Channel,
        target: Any,
        *,
        allow: PermissionsLike = 0,
        deny: PermissionsLike = 0,
    ) -> Overwrite:
        """Set (replace) the overwrite for a role, member or user on a channel (CHANNEL_UPDATE)."""
        kind = 0 if isinstance(target, Role) else 1
        target_id = target.id if isinstance(target, Role) else self.user(target).id
        overwrite = Overwrite(target_id, kind, Permission.of(allow), Permission.of(deny))
        channel.overwrites[target_id] = overwrite
        self.emit(
            "CHANNEL_UPDATE",
            lambda _: payloads.channel_payload(self, channel),
            guild_id=channel.guild_id,
            intent=Intent.GUILDS,
        )
        return overwrite

    def deny_bot(self, channel: Channel, *permissions: str) -> None:
        """Deny the bot some permissions in one channel, e.g. ``deny_bot(ch, "send_messages")``."""
        existing = channel.overwrites.get(self.bot_user.id)
        allow = existing.allow if existing else Permission(0)
        deny = (existing.deny if existing else Permission(0)) | Permission.of(permissions)
        self.set_overwrite(channel, self.bot_user, allow=allow & ~deny, deny=deny)

    def dm_channel(self, user: Any) -> Channel:
        """The DM channel between the bot and a user (created on first use)."""
        user = self.user(user)
        for channel in self.channels.values():
            if channel.type == ChannelType.DM and channel.recipient_ids == [user.id]:
                return channel
        channel = Channel(self.snowflakes.next(), ChannelType.DM, name="", recipient_ids=[user.id])
        self.channels[channel.id] = channel
        return channel

    def time_out(self, member: Member, until: datetime | None) -> None:
        """Set or clear a member's timeout (GUILD_MEMBER_UPDATE)."""
        member.communication_disabled_until = until
        self.update_member(member)

    def _register_channel(self, guild: Guild, channel: Channel) -> None:
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel

    def _emit_guild(self, event: str, guild: Guild, **data: Any) -> None:
        self.emit(
            event, {"guild_id": str(guild.id), **data}, guild_id=guild.id, intent=Intent.GUILDS
        )
