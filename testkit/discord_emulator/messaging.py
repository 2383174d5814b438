"""Creating, editing, deleting and reacting to messages, with the gateway events Discord sends."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from . import payloads
from .bits import MESSAGE_FLAG_EPHEMERAL, ChannelType, Intent
from .models import Attachment, Channel, Message, ReactionEvent, UploadedFile, User
from .state import World

JSON = dict[str, Any]

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_CONTENT_FIELDS = {"content": "", "embeds": [], "attachments": [], "components": []}


def post_message(
    world: World,
    channel: Channel,
    author: User,
    *,
    content: str = "",
    embeds: list[JSON] | None = None,
    components: list[JSON] | None = None,
    attachments: Iterable[Attachment] = (),
    flags: int = 0,
    message_type: int = 0,
    message_reference: JSON | None = None,
    message_snapshots: list[JSON] | None = None,
    webhook_id: int | None = None,
    application_id: int | None = None,
    allowed_mentions: JSON | None = None,
    tts: bool = False,
    nonce: str | None = None,
    files: Iterable[UploadedFile] = (),
    interaction_metadata: JSON | None = None,
    interaction: JSON | None = None,
    interaction_id: int | None = None,
) -> Message:
    """Store a new message and dispatch MESSAGE_CREATE (never for ephemeral messages)."""
    message = Message(
        id=world.snowflakes.next(),
        channel_id=channel.id,
        guild_id=channel.guild_id,
        author=author,
        content=content,
        embeds=list(embeds or []),
        components=list(components or []),
        attachments=list(attachments),
        flags=flags,
        type=message_type,
        tts=tts,
        message_reference=message_reference,
        message_snapshots=message_snapshots,
        webhook_id=webhook_id,
        application_id=application_id,
        allowed_mentions=allowed_mentions,
        nonce=nonce,
        files=list(files),
        interaction_metadata=interaction_metadata,
        interaction=interaction,
        interaction_id=interaction_id,
    )
    for attachment in message.attachments:
        if not attachment.url:
            world.bind_attachment(attachment, channel)
        attachment.message_id = attachment.message_id or message.id
        world.attachments[attachment.id] = attachment
    _resolve_mentions(world, message)
    world.messages[message.id] = message
    world.channel_messages[channel.id].append(message.id)
    if not message.ephemeral:
        channel.last_message_id = message.id
        world.emit(
            "MESSAGE_CREATE",
            content_filtered(world, message),
            guild_id=message.guild_id,
            intent=_message_intent(channel),
        )
    return message


def edit_message(
    world: World, message: Message, changes: JSON, *, files: Iterable[UploadedFile] = ()
) -> Message:
    """Apply a PATCH body (content, embeds, components, flags, attachments); MESSAGE_UPDATE."""
    message.edits.append(dict(changes))
    if "content" in changes:
        message.content = changes["content"] or ""
    if "embeds" in changes:
        message.embeds = list(changes["embeds"] or [])
    if "components" in changes:
        message.components = list(changes["components"] or [])
    if "flags" in changes and changes["flags"] is not None:
        keep = message.flags & MESSAGE_FLAG_EPHEMERAL
        message.flags = (int(changes["flags"]) & ~MESSAGE_FLAG_EPHEMERAL) | keep
    # Only the attachments listed are kept; `attachments: []` removes them all (Discord
    # OpenAPI spec, MessageEditRequestPartial.attachments; docs "Edit Message": "supply the
    # attachments field which specifies the files to retain on the message after edit").
    if "attachments" in changes and changes["attachments"] is not None:
        kept = {
            int(a["id"]) for a in changes["attachments"] if "id" in a and str(a["id"]).isdigit()
        }
        message.attachments = [
            a for a in message.attachments if a.id in kept and a.id in world.attachments
        ]
    message.files.extend(files)
    if "allowed_mentions" in changes:
        message.allowed_mentions = changes["allowed_mentions"]
    message.edited_at = datetime.now(UTC)
    _resolve_mentions(world, message)
    if not message.ephemeral:
        channel = world.channel(message.channel_id)
        world.emit(
            "MESSAGE_UPDATE",
            content_filtered(world, message),
            guild_id=message.guild_id,
            intent=_message_intent(channel),
        )
    return message


def delete_message(world: World, message: Message) -> None:
    """Mark a message deleted (its attachment URLs then 404) and dispatch MESSAGE_DELETE."""
    if message.deleted:
        return
    message.deleted = True
    if message.ephemeral:
        return
    data: JSON = {"id": str(message.id), "channel_id": str(message.channel_id)}
    if message.guild_id is not None:
        data["guild_id"] = str(message.guild_id)
    channel = world.channel(message.channel_id)
    world.emit("MESSAGE_DELETE", data, guild_id=message.guild_id, intent=_message_intent(channel))


def add_reaction(world: World, message: Message, emoji: str, user_id: int) -> bool:
    """Add a reaction; returns False (and dispatches nothing) if it was already there."""
    users = message.reactions.setdefault(emoji, set())
    if user_id in users:
        return False
    users.add(user_id)
    message.reaction_history.append(ReactionEvent("add", emoji, user_id))
    _emit_reaction(world, message, "MESSAGE_REACTION_ADD", emoji, user_id)
    return True


def remove_reaction(world: World, message: Message, emoji: str, user_id: int) -> bool:
    """Remove a reaction; returns False if it was not there."""
    users = message.reactions.get(emoji, set())
    if user_id not in users:
        return False
    users.discard(user_id)
    message.reaction_history.append(ReactionEvent("remove", emoji, user_id))
    _emit_reaction(world, message, "MESSAGE_REACTION_REMOVE", emoji, user_id)
    return True


def content_filtered(world: World, message: Message) -> Callable[[int], JSON]:
    """The MESSAGE_CREATE payload as a session with given intents receives it.

    Without MESSAGE_CONTENT, Discord blanks content, embeds, attachments, components (and, we
    assume, forwarded snapshots) unless the message is the bot's own, a DM, or mentions the bot.
    """

    def render(intents: int) -> JSON:
        data = payloads.message_payload(world, message, gateway=True)
        exempt = (
            intents & Intent.MESSAGE_CONTENT
            or message.author.id == world.bot_user.id
            or message.guild_id is None
            or world.bot_user.id in message.mention_user_ids
        )
        if not exempt:
            data.update({k: type(v)() for k, v in _CONTENT_FIELDS.items()})
            data.pop("message_snapshots", None)
        return data

    return render


def _message_intent(channel: Channel) -> Intent:
    return Intent.DIRECT_MESSAGES if channel.type == ChannelType.DM else Intent.GUILD_MESSAGES


def _emit_reaction(world: World, message: Message, event: str, emoji: str, user_id: int) -> None:
    channel = world.channel(message.channel_id)
    intent = (
        Intent.DIRECT_MESSAGE_REACTIONS
        if channel.type == ChannelType.DM
        else Intent.GUILD_MESSAGE_REACTIONS
    )
    data = payloads.reaction_event_payload(world, message, user_id, emoji)
    if event == "MESSAGE_REACTION_REMOVE":
        data.pop("member", None)
        data.pop("message_author_id", None)
    world.emit(event, data, guild_id=message.guild_id, intent=intent)


def _resolve_mentions(world: World, message: Message) -> None:
    """Who the message actually pings, honouring ``allowed_mentions`` as Discord does."""
    allowed = message.allowed_mentions
    if allowed is None:
        parse = {"users", "roles", "everyone"}
        listed_users: set[int] = set()
        listed_roles: set[int] = set()
        replied_user = True
    else:
        parse = set(allowed.get("parse") or [])
        listed_users = {int(u) for u in allowed.get("users") or []}
        listed_roles = {int(r) for r in allowed.get("roles") or []}
        replied_user = bool(allowed.get("replied_user", False))

    users: list[int] = []
    for raw in _USER_MENTION.findall(message.content):
        user_id = int(raw)
        if (
            user_id in world.users
            and ("users" in parse or user_id in listed_users)
            and user_id not in users
        ):
            users.append(user_id)
    target_id = message.reply_to_id
    target = world.messages.get(target_id) if target_id is not None else None
    if target is not None and replied_user and target.author.id not in users:
        users.append(target.author.id)
    message.mention_user_ids = users

    guild = world.guilds.get(message.guild_id or 0)
    message.mention_role_ids = [
        int(r)
        for r in _ROLE_MENTION.findall(message.content)
        if guild is not None
        and int(r) in guild.roles
        and ("roles" in parse or int(r) in listed_roles)
    ]
    mass = "@everyone" in message.content or "@here" in message.content
    message.mention_everyone = mass and "everyone" in parse
