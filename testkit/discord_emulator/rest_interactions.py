"""Interaction callbacks and the interaction webhook (follow-ups, @original edits and deletes).

Modelled on Discord's behaviour: one callback per interaction (a second is 400 code 40060); the
webhook only exists once the interaction is acknowledged; after a type-5 defer the first
follow-up fills in the "thinking…" message and keeps the defer's ephemerality.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from . import messaging, payloads
from .bits import MESSAGE_FLAG_EPHEMERAL, MESSAGE_FLAG_LOADING
from .interactions import (
    APPLICATION_COMMAND,
    CHANNEL_MESSAGE,
    DEFERRED_MESSAGE,
    DEFERRED_UPDATE,
    MESSAGE_COMMAND,
    MODAL,
    MODAL_SUBMIT,
    UPDATE_MESSAGE,
    InteractionHandle,
)
from .models import Message
from .rest_app import ApiError, Backend, json_response, no_content, unknown
from .rest_messages import MessageRoutes
from .validation import enforce, validate_callback, validate_message, validate_modal

JSON = dict[str, Any]
CHAT_INPUT_COMMAND_MESSAGE, CONTEXT_MENU_COMMAND_MESSAGE = 20, 23
_ALLOWED_FLAGS = MESSAGE_FLAG_EPHEMERAL | (1 << 2) | (1 << 12) | (1 << 15)


class InteractionRoutes:
    """POST /interactions/{id}/{token}/callback and /webhooks/{application}/{token}/…"""

    def __init__(self, backend: Backend, messages: MessageRoutes) -> None:
        self.b = backend
        self.world = backend.world
        self.messages = messages

    def routes(self) -> list[web.RouteDef]:
        hook = "/api/v10/webhooks/{app}/{token}"
        return [
            web.post("/api/v10/interactions/{id}/{token}/callback", self.callback),
            web.post(hook, self.create_followup),
            web.get(hook + "/messages/{message}", self.get_message),
            web.patch(hook + "/messages/{message}", self.edit_message),
            web.delete(hook + "/messages/{message}", self.delete_message),
        ]

    async def callback(self, request: web.Request) -> web.Response:
        handle = self.b.interactions.get(self.b.snowflake(request, "id"))
        if handle is None or handle.token != request.match_info["token"]:
            raise unknown("interaction")
        deadline = self.b.interaction_ack_deadline
        if deadline is not None and time.monotonic() - handle.created_at > deadline:
            raise unknown("interaction")
        if handle.acknowledged:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        body = self.b.body(request)
        enforce(self.b.refusals, request.path, validate_callback(body))
        kind = int(body.get("type", 0))
        data: JSON = body.get("data") or {}
        files = self.b.files(request)
        if kind in (CHANNEL_MESSAGE, UPDATE_MESSAGE):
            enforce(
                self.b.refusals,
                request.path,
                validate_message(data, has_files=bool(files), partial=kind == UPDATE_MESSAGE),
            )
        if kind == MODAL:
            # "Not available for MODAL_SUBMIT and PING interactions" (docs: interactions/
            # receiving-and-responding.mdx, "Interaction Callback Type", MODAL).
            if handle.type == MODAL_SUBMIT:
                raise ApiError(
                    400, 40004, "Interaction response type not valid for this interaction"
                )
            enforce(self.b.refusals, request.path, validate_modal(data))
        if kind in (DEFERRED_UPDATE, UPDATE_MESSAGE) and handle.source_message_id is None:
            raise ApiError(400, 40004, "Interaction response type not valid for this interaction")
        handle.callback_type, handle.callback_data = kind, data
        message: Message | None = None
        if kind == CHANNEL_MESSAGE:
            message = self._post(
                handle, data, files, flags=int(data.get("flags") or 0), original=True
            )
        elif kind == DEFERRED_MESSAGE:
            flags = MESSAGE_FLAG_LOADING | (int(data.get("flags") or 0) & MESSAGE_FLAG_EPHEMERAL)
            message = self._post(handle, {}, [], flags=flags, original=True)
        elif kind in (DEFERRED_UPDATE, UPDATE_MESSAGE):
            handle.original_id = handle.source_message_id
            message = self.world.messages[handle.original_id or 0]
            if kind == UPDATE_MESSAGE:
                messaging.edit_message(self.world, message, data, files=files)
        self.b.gateway.notify()
        if request.query.get("with_response") not in ("1", "true", "True"):
            return no_content()
        return json_response(self._callback_response(handle, kind, message))

    async def create_followup(self, request: web.Request) -> web.Response:
        handle = self._handle(request)
        body, files = self.b.body(request), self.b.files(request)
        enforce(self.b.refusals, request.path, validate_message(body, has_files=bool(files)))
        original = handle.original
        if (
            handle.callback_type == DEFERRED_MESSAGE
            and original is not None
            and original.loading
            and not original.deleted
        ):
            # The first follow-up after a defer replaces the "thinking…" message, and "the
            # ephemeral flag will be ignored, and the value you provided in the initial defer
            # response will be preserved" (docs: interactions/receiving-and-responding.mdx,
            # "Create Followup Message"). Once that message is deleted there is nothing to
            # fill in: the follow-up is a new message with its own flags (an assumption: the
            # docs say nothing of this order).
            keep = original.flags & MESSAGE_FLAG_EPHEMERAL
            flags = (
                int(body.get("flags") or 0) & ~(MESSAGE_FLAG_EPHEMERAL | MESSAGE_FLAG_LOADING)
            ) | keep
            changes = {**body, "flags": flags}
            original.flags &= ~MESSAGE_FLAG_LOADING
            messaging.edit_message(self.world, original, changes, files=files)
            original.attachments.extend(
                self.messages.attachments_from(files, body, self._channel(handle))
            )
            original.edited_at = None  # Discord shows the first follow-up as a fresh message
            handle.followup_ids.append(original.id)
            message = original
        else:
            flags = int(body.get("flags") or 0) & _ALLOWED_FLAGS
            message = self._post(handle, body, files, flags=flags, original=False)
        self.b.gateway.notify()
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(payloads.message_payload(self.world, message))
        return no_content()

    async def get_message(self, request: web.Request) -> web.Response:
        handle = self._handle(request)
        return json_response(payloads.message_payload(self.world, self._target(request, handle)))

    async def edit_message(self, request: web.Request) -> web.Response:
        handle = self._handle(request)
        message = self._target(request, handle)
        body, files = self.b.body(request), self.b.files(request)
        enforce(
            self.b.refusals,
            request.path,
            validate_message(body, has_files=bool(files), partial=True),
        )
        message.flags &= ~MESSAGE_FLAG_LOADING
        messaging.edit_message(self.world, message, body, files=files)
        message.attachments.extend(
            self.messages.attachments_from(files, body, self._channel(handle))
        )
        self.b.gateway.notify()
        return json_response(payloads.message_payload(self.world, message))

    async def delete_message(self, request: web.Request) -> web.Response:
        handle = self._handle(request)
        messaging.delete_message(self.world, self._target(request, handle))
        return no_content()

    # ----------------------------------------------------------------- helpers

    def _post(
        self, handle: InteractionHandle, data: JSON, files: list[Any], *, flags: int, original: bool
    ) -> Message:
        channel = self._channel(handle)
        command = handle.type == APPLICATION_COMMAND
        if original and command:
            message_type = (
                CONTEXT_MENU_COMMAND_MESSAGE
                if handle.payload["data"].get("type", 1) > 1
                else CHAT_INPUT_COMMAND_MESSAGE
            )
        else:
            message_type = 0
        metadata: JSON = {
            "id": str(handle.id),
            "type": handle.type,
            "user": payloads.user_payload(handle.user),
            "authorizing_integration_owners": handle.payload["authorizing_integration_owners"],
        }
        if handle.source_message_id is not None:
            metadata["interacted_message_id"] = str(handle.source_message_id)
        if not original and handle.original_id is not None:
            metadata["original_response_message_id"] = str(handle.original_id)
        if handle.payload["data"].get("type") == MESSAGE_COMMAND:
            metadata["target_message_id"] = handle.payload["data"]["target_id"]
        message = messaging.post_message(
            self.world,
            channel,
            self.world.bot_user,
            content=data.get("content") or "",
            embeds=data.get("embeds"),
            components=data.get("components"),
            attachments=self.messages.attachments_from(files, data, channel),
            flags=flags & (_ALLOWED_FLAGS | MESSAGE_FLAG_LOADING),
            message_type=message_type,
            webhook_id=self.world.application_id,
            application_id=self.world.application_id,
            allowed_mentions=data.get("allowed_mentions"),
            tts=bool(data.get("tts")),
            files=files,
            interaction_metadata=metadata,
            interaction={
                "id": str(handle.id),
                "type": handle.type,
                "name": handle.name,
                "user": payloads.user_payload(handle.user),
            }
            if command
            else None,
            interaction_id=handle.id,
        )
        if original:
            handle.original_id = message.id
        else:
            handle.followup_ids.append(message.id)
        return message

    def _callback_response(
        self, handle: InteractionHandle, kind: int, message: Message | None
    ) -> JSON:
        interaction: JSON = {"id": str(handle.id), "type": handle.type}
        resource: JSON = {"type": kind}
        if kind in (CHANNEL_MESSAGE, DEFERRED_MESSAGE) and message is not None:
            interaction.update(
                response_message_id=str(message.id),
                response_message_loading=kind == DEFERRED_MESSAGE,
                response_message_ephemeral=message.ephemeral,
            )
        if kind in (CHANNEL_MESSAGE, UPDATE_MESSAGE) and message is not None:
            resource["message"] = payloads.message_payload(self.world, message)
        return {"interaction": interaction, "resource": resource}

    def _handle(self, request: web.Request) -> InteractionHandle:
        token = request.match_info["token"]
        handle = next((h for h in self.b.interactions.values() if h.token == token), None)
        if handle is None or self.b.snowflake(request, "app") != self.world.application_id:
            raise unknown("Webhook")
        if not handle.acknowledged:
            raise unknown("Webhook")
        # "Interaction tokens are valid for 15 minutes" (docs: interactions/
        # receiving-and-responding.mdx); Discord then answers 50027 "Invalid Webhook Token"
        # (docs: topics/opcodes-and-status-codes.mdx, with the 401 of an invalid token).
        if time.monotonic() - handle.created_at > self.b.interaction_token_lifetime:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return handle

    def _target(self, request: web.Request, handle: InteractionHandle) -> Message:
        raw = request.match_info["message"]
        if raw == "@original":
            target_id = handle.original_id
        else:
            target_id = int(raw) if raw.isdigit() else None
            if target_id not in (handle.original_id, *handle.followup_ids):
                target_id = None
        message = self.world.messages.get(target_id or 0)
        if message is None or message.deleted:
            raise unknown("Message")
        return message

    def _channel(self, handle: InteractionHandle) -> Any:
        return self.world.channel(handle.channel_id)
