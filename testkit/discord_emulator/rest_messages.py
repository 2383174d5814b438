"""REST routes for channels, messages and reactions, with Discord's permission checks and errors."""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from . import messaging, payloads
from .bits import ChannelType, Permission
from .models import Attachment, Channel, Message, UploadedFile
from .rest_app import (
    ApiError,
    Backend,
    json_response,
    missing_access,
    missing_permissions,
    no_content,
    unknown,
)
from .validation import enforce, validate_message

JSON = dict[str, Any]
REPLY = 19
_REPLY_GONE = {
    "message_reference": {
        "_errors": [{"code": "REPLIES_UNKNOWN_MESSAGE", "message": "Unknown message"}]
    }
}


class MessageRoutes:
    """Channel reads, message CRUD and the bot's own reactions."""

    def __init__(self, backend: Backend) -> None:
        self.b = backend
        self.world = backend.world

    def routes(self) -> list[web.RouteDef]:
        channel = "/api/v10/channels/{channel}"
        message = channel + "/messages/{message}"
        reaction = message + "/reactions/{emoji}"
        return [
            web.get(channel, self.get_channel),
            web.post(channel + "/typing", self.typing),
            web.get(channel + "/messages", self.list_messages),
            web.post(channel + "/messages", self.create_message),
            web.get(message, self.get_message),
            web.patch(message, self.edit_message),
            web.delete(message, self.delete_message),
            web.put(reaction + "/@me", self.add_reaction),
            web.delete(reaction + "/@me", self.remove_own_reaction),
            web.delete(reaction + "/{user}", self.remove_user_reaction),
        ]

    # ---------------------------------------------------------------- channels

    async def get_channel(self, request: web.Request) -> web.Response:
        channel = self._channel(request, Permission.VIEW_CHANNEL)
        return json_response(payloads.channel_payload(self.world, channel))

    async def typing(self, request: web.Request) -> web.Response:
        self._channel(request, Permission.VIEW_CHANNEL | self._send_permission(request))
        return no_content()

    # ---------------------------------------------------------------- messages

    async def list_messages(self, request: web.Request) -> web.Response:
        channel = self._channel(request, Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY)
        limit = min(int(request.query.get("limit", 50)), 100)
        visible = [
            m
            for m in (
                self.world.messages[i] for i in self.world.channel_messages.get(channel.id, [])
            )
            if not m.deleted and not m.ephemeral
        ]
        before, after = request.query.get("before"), request.query.get("after")
        if before:
            visible = [m for m in visible if m.id < int(before)]
        if after:
            visible = [m for m in visible if m.id > int(after)][:limit]
        newest_first = sorted(visible, key=lambda m: m.id, reverse=True)[:limit]
        return json_response([payloads.message_payload(self.world, m) for m in newest_first])

    async def create_message(self, request: web.Request) -> web.Response:
        channel = self.world.channels.get(self.b.snowflake(request, "channel"))
        if channel is None:
            raise unknown("Channel")
        body, files = self.b.body(request), self.b.files(request)
        if channel.type == ChannelType.DM and channel.recipient_ids[0] in self.b.closed_dms:
            raise ApiError(403, 50007, "Cannot send messages to this user")
        needed = Permission.VIEW_CHANNEL | self._send_permission(request, channel)
        if files:
            needed |= Permission.ATTACH_FILES
        reference = self._reference(channel, body)
        if reference is not None and reference.get("type", 0) == 0:
            needed |= Permission.READ_MESSAGE_HISTORY
        self._require(channel, needed)
        self._check_upload(channel, files)
        enforce(self.b.refusals, request.path, validate_message(body, has_files=bool(files)))
        message = messaging.post_message(
            self.world,
            channel,
            self.world.bot_user,
            content=body.get("content") or "",
            embeds=body.get("embeds"),
            components=body.get("components"),
            attachments=self.attachments_from(files, body),
            flags=int(body.get("flags") or 0) & ~(1 << 6),
            message_type=REPLY if reference is not None and reference.get("type", 0) == 0 else 0,
            message_reference=reference,
            allowed_mentions=body.get("allowed_mentions"),
            tts=bool(body.get("tts")),
            nonce=body.get("nonce"),
            files=files,
        )
        return json_response(payloads.message_payload(self.world, message))

    async def get_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request, Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY)
        return json_response(payloads.message_payload(self.world, self._message(request, channel)))

    async def edit_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request, Permission.VIEW_CHANNEL)
        message = self._message(request, channel)
        if message.author.id != self.world.bot_user.id:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        body, files = self.b.body(request), self.b.files(request)
        enforce(
            self.b.refusals,
            request.path,
            validate_message(body, has_files=bool(files), partial=True),
        )
        if files:
            body = {**body, "attachments": body.get("attachments", [])}
        messaging.edit_message(self.world, message, body, files=files)
        message.attachments.extend(self.attachments_from(files, body, channel))
        return json_response(payloads.message_payload(self.world, message))

    async def delete_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request, Permission.VIEW_CHANNEL)
        message = self._message(request, channel)
        if message.author.id != self.world.bot_user.id:
            self._require(channel, Permission.MANAGE_MESSAGES)
        messaging.delete_message(self.world, message)
        return no_content()

    # --------------------------------------------------------------- reactions

    async def add_reaction(self, request: web.Request) -> web.Response:
        channel = self._channel(request, Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY)
        message = self._message(request, channel)
        emoji = unquote(request.match_info["emoji"])
        if not message.reactions.get(emoji):
            self._require(channel, Permission.ADD_REACTIONS)
        messaging.add_reaction(self.world, message, emoji, self.world.bot_user.id)
        return no_content()

    async def remove_own_reaction(self, request: web.Request) -> web.Response:
        channel = self._channel(request, Permission.VIEW_CHANNEL)
        message = self._message(request, channel)
        messaging.remove_reaction(
            self.world, message, unquote(request.match_info["emoji"]), self.world.bot_user.id
        )
        return no_content()

    async def remove_user_reaction(self, request: web.Request) -> web.Response:
        channel = self._channel(request, Permission.VIEW_CHANNEL | Permission.MANAGE_MESSAGES)
        message = self._message(request, channel)
        user_id = self.b.snowflake(request, "user")
        messaging.remove_reaction(
            self.world, message, unquote(request.match_info["emoji"]), user_id
        )
        return no_content()

    # ----------------------------------------------------------------- helpers

    def attachments_from(
        self, files: list[UploadedFile], body: JSON, channel: Channel | None = None
    ) -> list[Attachment]:
        """Turn uploaded ``files[n]`` into CDN attachments (descriptions from ``attachments``)."""
        described = {str(a.get("id")): a for a in body.get("attachments") or []}
        result = []
        for index, upload in enumerate(files):
            meta = described.get(str(index), {})
            attachment = self.b.cdn.create(
                upload.data,
                meta.get("filename") or upload.filename,
                _guess_type(upload.filename, upload.content_type),
                description=meta.get("description"),
            )
            if channel is not None:
                self.b.cdn.bind(attachment, channel)
            result.append(attachment)
        return result

    def _check_upload(self, channel: Channel, files: list[UploadedFile]) -> None:
        guild = self.world.guild_of(channel)
        limit = guild.filesize_limit if guild else 10 * 1024 * 1024
        if any(len(f.data) > limit for f in files):
            raise ApiError(413, 40005, "Request entity too large")

    def _reference(self, channel: Channel, body: JSON) -> JSON | None:
        """Validate ``message_reference``; replies to deleted messages fail like Discord's."""
        ref = body.get("message_reference")
        if not ref:
            return None
        target = self.world.messages.get(int(ref.get("message_id") or 0))
        same_channel = target is not None and target.channel_id == int(
            ref.get("channel_id") or channel.id
        )
        if target is None or target.deleted or not same_channel:
            if ref.get("fail_if_not_exists", True):
                raise ApiError(400, 50035, "Invalid Form Body", _REPLY_GONE)
            return None
        return {
            "type": ref.get("type", 0),
            "message_id": str(target.id),
            "channel_id": str(target.channel_id),
            **({"guild_id": str(target.guild_id)} if target.guild_id else {}),
        }

    def _send_permission(self, request: web.Request, channel: Channel | None = None) -> Permission:
        channel = channel or self.world.channels.get(int(request.match_info["channel"]))
        if channel is not None and channel.is_thread:
            return Permission.SEND_MESSAGES_IN_THREADS
        return Permission.SEND_MESSAGES

    def _channel(self, request: web.Request, needed: Permission) -> Channel:
        channel = self.world.channels.get(self.b.snowflake(request, "channel"))
        if channel is None:
            raise unknown("Channel")
        self._require(channel, needed)
        return channel

    def _require(self, channel: Channel, needed: Permission) -> None:
        have = self.world.permissions_in(channel, self.world.bot_user)
        if not have & Permission.VIEW_CHANNEL:
            raise missing_access()
        if needed & ~have:
            raise missing_permissions()

    def _message(self, request: web.Request, channel: Channel) -> Message:
        message = self.world.messages.get(self.b.snowflake(request, "message"))
        if (
            message is None
            or message.deleted
            or message.ephemeral
            or message.channel_id != channel.id
        ):
            raise unknown("Message")
        return message


def _guess_type(filename: str, declared: str) -> str | None:
    if declared and declared != "application/octet-stream":
        return declared
    return mimetypes.guess_type(filename)[0]
