"""What users do: post messages (voice, video, forwards, webhooks), react, run commands, click.

Each action returns once its gateway event has been written to the bot's socket; the bot's
reaction is then awaited with the observation helpers or the returned interaction handle.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from . import messaging, payloads
from .bits import MESSAGE_FLAG_VOICE, ChannelType
from .cdn import Cdn
from .gateway import Gateway
from .interactions import (
    APPLICATION_COMMAND,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    InteractionBuilder,
    InteractionHandle,
)
from .models import Attachment, Channel, Guild, Member, Message, User, iter_components, object_id
from .rest_app import Backend
from .state import World
from .waiting import Waiter

JSON = dict[str, Any]


class UserActionsMixin:
    """Events injected as if people were using Discord."""

    world: World
    cdn: Cdn
    gateway: Gateway
    builder: InteractionBuilder
    backend: Backend
    _waiter: Waiter

    def attachment(
        self,
        source: bytes | str | Path,
        filename: str | None = None,
        content_type: str | None = None,
        *,
        voice: bool = False,
        duration_secs: float | None = None,
        waveform: bytes | str | None = None,
        size: int | None = None,
        width: int | None = None,
        height: int | None = None,
        description: str | None = None,
        spoiler: bool = False,
    ) -> Attachment:
        """A file on the emulator's CDN, ready to attach to a message or a /command option.

        ``voice=True`` makes it a voice message attachment (audio/ogg, ``duration_secs``,
        base64 ``waveform``; the message gets flag 8192). ``size`` overrides the reported size
        to fake a huge file without creating one; the CDN still serves the real bytes.
        """
        return self.cdn.create(
            source, filename, content_type, voice=voice, duration_secs=duration_secs,
            waveform=waveform, size=size, width=width, height=height, description=description,
            spoiler=spoiler,
        )  # fmt: skip

    async def send_message(
        self,
        channel: Channel | Any,
        author: Member | User | Any,
        content: str = "",
        *,
        attachments: Sequence[Attachment] = (),
        flags: int | None = None,
        webhook_id: int | None = None,
        message_snapshots: Sequence[Message | JSON] | None = None,
        reply_to: Message | None = None,
        embeds: list[JSON] | None = None,
        components: list[JSON] | None = None,
    ) -> Message:
        """Post a message as a user (or as a webhook) and dispatch MESSAGE_CREATE.

        ``flags`` defaults to 8192 (voice message) when an attachment is a voice attachment.
        ``message_snapshots`` makes it a forward (message_reference type 1).
        """
        channel = self.world.channel(channel)
        user = self._webhook_user(webhook_id) if webhook_id is not None else self.world.user(author)
        guild = self.world.guild_of(channel)
        if guild is not None and webhook_id is None and user.id not in guild.members:
            raise LookupError(f"{user.name} is not a member of {guild.name}")
        if flags is None:
            flags = MESSAGE_FLAG_VOICE if any(a.is_voice for a in attachments) else 0
        reference: JSON | None = None
        snapshots: list[JSON] | None = None
        if message_snapshots is not None:
            snapshots = [
                payloads.snapshot_payload(s) if isinstance(s, Message) else s
                for s in message_snapshots
            ]
            source = next((s for s in message_snapshots if isinstance(s, Message)), None)
            reference = self._forward_reference(source)
        elif reply_to is not None:
            reference = {
                "type": 0,
                "message_id": str(reply_to.id),
                "channel_id": str(reply_to.channel_id),
            }
            if reply_to.guild_id:
                reference["guild_id"] = str(reply_to.guild_id)
        message = messaging.post_message(
            self.world, channel, user, content=content, embeds=embeds, components=components,
            attachments=attachments, flags=flags, message_type=19 if reply_to is not None else 0,
            message_reference=reference, message_snapshots=snapshots, webhook_id=webhook_id,
        )  # fmt: skip
        await self.gateway.flush()
        return message

    async def send_voice_message(
        self,
        channel: Channel | Any,
        author: Member | User | Any,
        audio: bytes | str | Path,
        *,
        duration_secs: float = 3.2,
    ) -> Message:
        """Shortcut: a voice message (flag 8192, one audio/ogg attachment with waveform)."""
        voice = self.attachment(audio, voice=True, duration_secs=duration_secs)
        return await self.send_message(channel, author, attachments=[voice])

    async def forward_message(
        self,
        channel: Channel | Any,
        author: Member | User | Any,
        source: Message | None = None,
        *,
        attachments: Sequence[Attachment] = (),
        content: str = "",
        flags: int | None = None,
    ) -> Message:
        """Forward ``source``, or a message with ``attachments`` from a server the bot is not in."""
        if source is None:
            foreign = Channel(
                self.world.snowflakes.next(),
                ChannelType.GUILD_TEXT,
                "elsewhere",
                guild_id=self.world.snowflakes.next(),
            )
            for attachment in attachments:
                self.cdn.bind(attachment, foreign)
            if flags is None:
                flags = MESSAGE_FLAG_VOICE if any(a.is_voice for a in attachments) else 0
            source = Message(
                self.world.snowflakes.next(), foreign.id, foreign.guild_id, self.world.user(author),
                content=content, attachments=list(attachments), flags=flags,
            )  # fmt: skip
        return await self.send_message(channel, author, message_snapshots=[source])

    async def delete_message(self, channel_or_message: Any, message: Any = None) -> None:
        """Delete a message as a user or moderator would: MESSAGE_DELETE; its URLs start to 404."""
        target = self.world.messages[
            object_id(message if message is not None else channel_or_message)
        ]
        messaging.delete_message(self.world, target)
        await self.gateway.flush()

    async def add_reaction(
        self, message: Message | Any, user: Member | User | Any, emoji: str
    ) -> None:
        """A user reacts (MESSAGE_REACTION_ADD)."""
        messaging.add_reaction(
            self.world, self.world.messages[object_id(message)], emoji, self.world.user(user).id
        )
        await self.gateway.flush()

    async def invoke_slash(
        self,
        channel: Channel | Guild | Any,
        user: Member | User | Any,
        command: str,
        options: JSON | None = None,
        *,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Run a slash command: ``invoke_slash(ch, mod, "audit recent", {"limit": 5})``.

        Option values may be Attachments (type 11, added to ``resolved``), members, channels,
        roles, or plain values. A Guild means its first text channel.
        """
        target = self._command_channel(channel)
        data, name = self.builder.slash(target, self.world.user(user), command, options or {})
        return await self._interact(APPLICATION_COMMAND, target, user, data, name, locale=locale)

    async def invoke_message_command(
        self, channel: Channel | Any, user: Member | User | Any, name: str, target: Message
    ) -> InteractionHandle:
        """Run a message context-menu command (e.g. "Check for deepfake") on ``target``."""
        where = self.world.channel(channel if channel is not None else target.channel_id)
        data = self.builder.message_command(where, name, target)
        return await self._interact(APPLICATION_COMMAND, where, user, data, name)

    async def invoke_user_command(
        self, channel: Channel | Any, user: Member | User | Any, name: str, target: Member | User
    ) -> InteractionHandle:
        """Run a user context-menu command on ``target``."""
        where = self.world.channel(channel)
        data = self.builder.user_command(where, name, target)
        return await self._interact(APPLICATION_COMMAND, where, user, data, name)

    async def click_button(
        self,
        message: Message | Any,
        user: Member | User | Any,
        custom_id: str | None = None,
        *,
        label: str | None = None,
    ) -> InteractionHandle:
        """Click a button on a message (found by custom_id or label; disabled buttons refuse)."""
        message = self.world.messages[object_id(message)]
        button = message.button(custom_id, label=label)
        if button.get("disabled"):
            raise ValueError(f"button {button.get('custom_id')!r} is disabled")
        data = {"custom_id": button["custom_id"], "component_type": 2}
        return await self._interact(
            MESSAGE_COMPONENT,
            self.world.channel(message.channel_id),
            user,
            data,
            data["custom_id"],
            source=message,
        )

    async def submit_modal(
        self, opened: InteractionHandle, values: dict[str, str] | None = None
    ) -> InteractionHandle:
        """Submit the modal the bot answered ``opened`` with, as the user who opened it.

        ``values`` maps text inputs' custom ids to what was typed (others are left empty).
        A MODAL_SUBMIT carries the message of the component that opened the modal (docs:
        interactions/receiving-and-responding.mdx, "Interaction Object": ``message``, "for
        components or modals triggered by components").
        """
        modal = opened.modal
        if modal is None:
            raise ValueError(f"the bot did not answer {opened.name!r} with a modal")
        typed = values or {}
        rows = [
            {
                "type": 1,
                "components": [
                    {"type": 4, "custom_id": c["custom_id"], "value": typed.get(c["custom_id"], "")}
                    for c in row.get("components", [])
                    if c.get("type") == 4
                ],
            }
            for row in modal.get("components", [])
            if row.get("type") == 1
        ]
        unknown = set(typed) - {c["custom_id"] for row in rows for c in row["components"]}
        if unknown:
            raise LookupError(f"the modal has no text input {sorted(unknown)}")
        data = {"custom_id": modal["custom_id"], "components": rows}
        source = (
            self.world.messages[opened.source_message_id]
            if opened.source_message_id is not None
            else None
        )
        return await self._interact(
            MODAL_SUBMIT,
            self.world.channel(opened.channel_id),
            opened.user,
            data,
            modal["custom_id"],
            source=source,
        )

    async def choose(
        self,
        message: Message | Any,
        user: Member | User | Any,
        custom_id: str,
        values: Iterable[str],
    ) -> InteractionHandle:
        """Pick values in a select menu on a message."""
        message = self.world.messages[object_id(message)]
        select = next(
            (c for c in iter_components(message.components) if c.get("custom_id") == custom_id),
            None,
        )
        if select is None:
            raise LookupError(f"message {message.id} has no select {custom_id!r}")
        data = {"custom_id": custom_id, "component_type": select["type"], "values": list(values)}
        return await self._interact(
            MESSAGE_COMPONENT,
            self.world.channel(message.channel_id),
            user,
            data,
            custom_id,
            source=message,
        )

    async def _interact(
        self,
        kind: int,
        channel: Channel,
        user: Any,
        data: JSON,
        name: str,
        *,
        source: Message | None = None,
        locale: str = "en-US",
    ) -> InteractionHandle:
        who = self.world.user(user)
        payload = self.builder.envelope(kind, channel, who, data, locale=locale)
        if source is not None:
            payload["message"] = payloads.message_payload(self.world, source)
        handle = InteractionHandle(
            id=int(payload["id"]), token=payload["token"], type=kind, name=name, payload=payload,
            channel_id=channel.id, user=who, source_message_id=source.id if source else None,
            source_edits=len(source.edits) if source else 0,
            created_at=time.monotonic(), _world=self.world, _wait=self._waiter.wait_for,
        )  # fmt: skip
        self.backend.interactions[handle.id] = handle
        self.gateway.dispatch("INTERACTION_CREATE", payload, guild_id=channel.guild_id)
        await self.gateway.flush()
        return handle

    def _command_channel(self, where: Any) -> Channel:
        if isinstance(where, Guild):
            return next(c for c in where.channels.values() if c.type == ChannelType.GUILD_TEXT)
        return self.world.channel(where)

    def _webhook_user(self, webhook_id: int) -> User:
        if webhook_id not in self.world.users:
            self.world.users[webhook_id] = User(webhook_id, "Captain Hook", bot=True)
        return self.world.users[webhook_id]

    def _forward_reference(self, source: Message | None) -> JSON:
        if source is None:
            return {
                "type": 1,
                "message_id": str(self.world.snowflakes.next()),
                "channel_id": str(self.world.snowflakes.next()),
            }
        reference = {"type": 1, "message_id": str(source.id), "channel_id": str(source.channel_id)}
        if source.guild_id:
            reference["guild_id"] = str(source.guild_id)
        return reference
