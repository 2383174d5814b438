"""INTERACTION_CREATE payloads (slash commands, context menus, buttons) and the handles tests await.

Option types follow the synced command definitions when the bot has synced; otherwise they are
inferred from the Python values (Attachment → 11, bool → 5, int → 4, float → 10, str → 3,
User/Member → 6, Channel → 7, Role → 8).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from . import payloads
from .models import Attachment, Channel, Member, Message, Role, User
from .waiting import DEFAULT_TIMEOUT

if TYPE_CHECKING:
    from .cdn import Cdn
    from .state import World

JSON = dict[str, Any]
T = TypeVar("T")
WaitFn = Callable[..., Awaitable[Any]]

APPLICATION_COMMAND, MESSAGE_COMPONENT, MODAL_SUBMIT = 2, 3, 5
CHAT_INPUT, USER_COMMAND, MESSAGE_COMMAND = 1, 2, 3
CHANNEL_MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE = 4, 5, 6, 7
#: The MODAL callback (docs: interactions/receiving-and-responding.mdx, "Interaction
#: Callback Type").
MODAL = 9


@dataclass(eq=False)
class InteractionHandle:
    """One interaction the test started; await what the bot did with it."""

    id: int
    token: str
    type: int
    name: str
    payload: JSON = field(repr=False)
    channel_id: int
    user: User
    source_message_id: int | None = None
    #: How many edits the source message had when the interaction started: a deferred
    #: update is answered by an edit after those.
    source_edits: int = 0
    callback_type: int | None = None
    callback_data: JSON | None = None
    original_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    created_at: float = 0.0
    _world: World | None = field(default=None, repr=False)
    _wait: WaitFn | None = field(default=None, repr=False)

    @property
    def acknowledged(self) -> bool:
        return self.callback_type is not None

    @property
    def deferred(self) -> bool:
        """True if the bot answered with a deferred response (type 5 or 6)."""
        return self.callback_type in (DEFERRED_MESSAGE, DEFERRED_UPDATE)

    @property
    def deferred_ephemeral(self) -> bool:
        return bool((self.callback_data or {}).get("flags", 0) & 64)

    @property
    def original(self) -> Message | None:
        """The original response (for component updates: the clicked message)."""
        return None if self.original_id is None else self._message(self.original_id)

    @property
    def followups(self) -> list[Message]:
        return [self._message(m) for m in self.followup_ids]

    async def wait_for_ack(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Wait for the interaction callback; returns its type (4 reply, 5 defer, 7 update…)."""
        return await self._wait_until(
            lambda: self.callback_type, timeout, "an interaction callback"
        )

    @property
    def modal(self) -> JSON | None:
        """The modal the bot answered with (callback type 9), if it did."""
        return self.callback_data if self.callback_type == MODAL else None

    async def wait_for_modal(self, timeout: float = DEFAULT_TIMEOUT) -> JSON:
        """Wait for the bot to answer with a modal; returns its data (title, components…)."""
        return await self._wait_until(lambda: self.modal, timeout, "a modal")

    async def wait_for_reply(self, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """Wait for the first message the user sees as the answer.

        A type-4 reply; after a defer, the original once edited or the first follow-up
        (which fills in the "thinking…" message); for component updates, the updated message.
        """

        def answer() -> Message | None:
            if self.callback_type in (CHANNEL_MESSAGE, UPDATE_MESSAGE):
                return self.original
            if self.followup_ids:
                return self._message(self.followup_ids[0])
            original = self.original
            if self.callback_type == DEFERRED_MESSAGE and original and not original.loading:
                return original
            if (
                self.callback_type == DEFERRED_UPDATE
                and original
                and (len(original.edits) > self.source_edits)
            ):
                return original
            return None

        return await self._wait_until(answer, timeout, "the interaction's reply")

    async def wait_for_followup(self, index: int = 0, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """Wait for the ``index``-th follow-up message (0-based)."""
        return await self._wait_until(
            lambda: (
                self._message(self.followup_ids[index]) if len(self.followup_ids) > index else None
            ),
            timeout,
            f"follow-up #{index}",
        )

    def _message(self, message_id: int) -> Message:
        assert self._world is not None
        return self._world.messages[message_id]

    async def _wait_until(self, predicate: Callable[[], T | None], timeout: float, what: str) -> T:
        assert self._wait is not None
        return await self._wait(
            predicate,
            timeout=timeout,
            describe=lambda: (
                f"{what} to /{self.name} "
                f"(callback={self.callback_type}, followups={len(self.followup_ids)})"
            ),
        )


class InteractionBuilder:
    """Builds INTERACTION_CREATE payloads from emulator objects."""

    def __init__(self, world: World, cdn: Cdn) -> None:
        self.world = world
        self.cdn = cdn
        self._fallback_command_ids: dict[tuple[str, int], int] = {}

    def slash(self, channel: Channel, user: User, path: str, options: JSON) -> tuple[JSON, str]:
        """``path`` is "check", "audit recent" or "spoofwatch settings show"."""
        top, *subs = path.split()
        definition = self.find_command(top, CHAT_INPUT, channel.guild_id)
        resolved: JSON = {}
        data: JSON = {
            "id": self._command_id(definition, top, CHAT_INPUT),
            "name": top,
            "type": CHAT_INPUT,
            "options": self._options(subs, options, definition, resolved, channel),
        }
        if resolved:
            data["resolved"] = resolved
        if definition and definition.get("guild_id"):
            data["guild_id"] = definition["guild_id"]
        return data, top

    def message_command(self, channel: Channel, name: str, target: Message) -> JSON:
        """data for a message context-menu command (target content is always included)."""
        definition = self.find_command(name, MESSAGE_COMMAND, channel.guild_id)
        data: JSON = {
            "id": self._command_id(definition, name, MESSAGE_COMMAND),
            "name": name,
            "type": MESSAGE_COMMAND,
            "target_id": str(target.id),
            "resolved": {
                "messages": {str(target.id): payloads.message_payload(self.world, target)}
            },
        }
        if definition and definition.get("guild_id"):
            data["guild_id"] = definition["guild_id"]
        return data

    def user_command(self, channel: Channel, name: str, target: User | Member) -> JSON:
        """data for a user context-menu command."""
        definition = self.find_command(name, USER_COMMAND, channel.guild_id)
        resolved: JSON = {}
        user = target.user if isinstance(target, Member) else target
        self._resolve_user(resolved, channel, user)
        return {
            "id": self._command_id(definition, name, USER_COMMAND),
            "name": name,
            "type": USER_COMMAND,
            "target_id": str(user.id),
            "resolved": resolved,
        }

    def envelope(
        self, kind: int, channel: Channel, user: User, data: JSON, *, locale: str = "en-US"
    ) -> JSON:
        """The interaction object around ``data``: who, where, permissions, limits."""
        world = self.world
        guild = world.guild_of(channel)
        payload: JSON = {
            "id": str(world.snowflakes.next()),
            "application_id": str(world.application_id),
            "type": kind,
            "data": data,
            "token": "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48),
            "version": 1,
            "locale": locale,
            "channel_id": str(channel.id),
            "channel": payloads.channel_payload(world, channel),
            "app_permissions": str(int(world.permissions_in(channel, world.bot_user))),
            "attachment_size_limit": guild.filesize_limit if guild else 10 * 1024 * 1024,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild.id) if guild else "0"},
            "context": 0 if guild else 1,
        }
        if guild is None:
            payload["user"] = payloads.user_payload(user)
            return payload
        member = guild.members.get(user.id)
        if member is None:
            raise LookupError(f"{user.name} is not a member of {guild.name}")
        permissions = world.permissions_in(channel, user)
        payload["channel"]["permissions"] = str(int(permissions))
        payload.update(
            guild_id=str(guild.id),
            guild={"id": str(guild.id), "locale": guild.preferred_locale, "features": []},
            guild_locale=guild.preferred_locale,
            member=payloads.member_payload(member, permissions=permissions),
        )
        return payload

    def find_command(self, name: str, kind: int, guild_id: int | None) -> JSON | None:
        """The synced definition the bot registered for this command, if any."""
        for scope in (guild_id, None):
            for command in self.world.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == kind:
                    return command
        return None

    def _command_id(self, definition: JSON | None, name: str, kind: int) -> str:
        if definition is not None:
            return str(definition["id"])
        key = (name, kind)
        if key not in self._fallback_command_ids:
            self._fallback_command_ids[key] = self.world.snowflakes.next()
        return str(self._fallback_command_ids[key])

    def _options(
        self,
        subs: list[str],
        values: JSON,
        definition: JSON | None,
        resolved: JSON,
        channel: Channel,
    ) -> list[JSON]:
        defined = None if definition is None else definition.get("options", [])
        if subs:
            sub_def = next((o for o in defined or [] if o["name"] == subs[0]), None)
            if defined is not None and sub_def is None:
                raise ValueError(f"command has no subcommand {subs[0]!r}")
            kind = sub_def["type"] if sub_def else (2 if len(subs) > 1 else 1)
            inner = self._options(subs[1:], values, sub_def or None, resolved, channel)
            return [{"type": kind, "name": subs[0], "options": inner}]
        if defined is not None:
            names = {o["name"] for o in defined}
            unknown = set(values) - names
            missing = {o["name"] for o in defined if o.get("required")} - set(values)
            if unknown or missing:
                raise ValueError(
                    f"bad options: unknown={sorted(unknown)} missing={sorted(missing)}"
                )
        types = {o["name"]: o["type"] for o in defined or []}
        return [self._option(n, v, types.get(n), resolved, channel) for n, v in values.items()]

    def _option(
        self, name: str, value: Any, kind: int | None, resolved: JSON, channel: Channel
    ) -> JSON:
        if isinstance(value, Attachment):
            if not value.url:
                self.cdn.bind_ephemeral(value)
            resolved.setdefault("attachments", {})[str(value.id)] = payloads.attachment_payload(
                value
            )
            return {"type": 11, "name": name, "value": str(value.id)}
        if isinstance(value, User | Member):
            user = value.user if isinstance(value, Member) else value
            self._resolve_user(resolved, channel, user)
            return {"type": kind or 6, "name": name, "value": str(user.id)}
        if isinstance(value, Channel):
            resolved.setdefault("channels", {})[str(value.id)] = payloads.channel_payload(
                self.world, value
            ) | {"permissions": str(int(self.world.permissions_in(value, self.world.bot_user)))}
            return {"type": 7, "name": name, "value": str(value.id)}
        if isinstance(value, Role):
            resolved.setdefault("roles", {})[str(value.id)] = payloads.role_payload(value)
            return {"type": kind or 8, "name": name, "value": str(value.id)}
        if isinstance(value, bool):
            return {"type": 5, "name": name, "value": value}
        if isinstance(value, int) and kind != 3:
            return {"type": kind or 4, "name": name, "value": value}
        if isinstance(value, float):
            return {"type": 10, "name": name, "value": value}
        return {"type": kind or 3, "name": name, "value": str(value)}

    def _resolve_user(self, resolved: JSON, channel: Channel, user: User) -> None:
        resolved.setdefault("users", {})[str(user.id)] = payloads.user_payload(user)
        member = self.world.member(channel.guild_id, user.id) if channel.guild_id else None
        if member is not None:
            perms = self.world.permissions_in(channel, user)
            resolved.setdefault("members", {})[str(user.id)] = payloads.member_payload(
                member, with_user=False, permissions=perms
            )
