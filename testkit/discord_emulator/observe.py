"""What tests look at: requests, messages, replies, reactions, syncs; and waiting on them."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any, TypeVar

from .cdn import Cdn, CdnRequest
from .models import Attachment, CommandSync, Message, ReactionEvent, User, object_id
from .rest_app import RecordedRequest, RestRecorder
from .state import World
from .waiting import DEFAULT_TIMEOUT, Waiter

T = TypeVar("T")


class ObservationMixin:
    """Read-only views of what happened, and event-driven waits on them."""

    world: World
    cdn: Cdn
    recorder: RestRecorder
    _waiter: Waiter

    # ----------------------------------------------------------------- REST log

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every REST request the bot made, in order (path relative to /api/v10)."""
        return self.recorder.requests

    @property
    def unhandled_requests(self) -> list[RecordedRequest]:
        """Requests to routes the emulator does not implement (answered 404 and logged)."""
        return self.recorder.unhandled

    def requests_to(self, method: str, pattern: str | re.Pattern[str]) -> list[RecordedRequest]:
        """Requests with this method whose path matches a glob ("/channels/*/messages") or regex."""
        return [r for r in self.requests if _matches(r, method, pattern)]

    @property
    def cdn_requests(self) -> list[CdnRequest]:
        return self.cdn.requests

    def downloads(self, attachment: Attachment) -> int:
        """How many times the attachment's bytes were fetched (GET, not HEAD)."""
        return attachment.downloads

    @property
    def command_syncs(self) -> list[CommandSync]:
        """Every bulk overwrite of application commands, in order."""
        return self.world.command_syncs

    def commands(self, guild: Any = None) -> list[dict[str, Any]]:
        """The currently registered command definitions (global, or for one guild)."""
        return self.world.commands.get(None if guild is None else object_id(guild), [])

    # ----------------------------------------------------------------- messages

    def message(self, message: Any) -> Message:
        """The emulator's current record of a message (edits and deletion included)."""
        return self.world.messages[object_id(message)]

    def messages_in(
        self, channel: Any, *, include_deleted: bool = False, include_ephemeral: bool = False
    ) -> list[Message]:
        """Messages in a channel, oldest first."""
        ids = self.world.channel_messages.get(object_id(channel), [])
        return [
            m
            for m in (self.world.messages[i] for i in ids)
            if (include_deleted or not m.deleted) and (include_ephemeral or not m.ephemeral)
        ]

    def bot_messages(self, channel: Any = None) -> list[Message]:
        """Messages the bot authored (channel posts, interaction responses, follow-ups)."""
        bot_id = self.world.bot_user.id
        pool = (
            self.world.messages.values()
            if channel is None
            else self.messages_in(channel, include_ephemeral=True)
        )
        return [m for m in pool if m.author.id == bot_id and not m.deleted]

    def replies_to(self, message: Any) -> list[Message]:
        """Non-deleted messages that reply to ``message``."""
        target = object_id(message)
        return [
            m for m in self.world.messages.values() if m.reply_to_id == target and not m.deleted
        ]

    def reactions_on(self, message: Any) -> dict[str, set[int]]:
        """Current reactions: emoji → ids of users reacting."""
        return self.message(message).current_reactions()

    def reaction_history(self, message: Any) -> list[ReactionEvent]:
        """Every add and remove on the message, in order."""
        return self.message(message).reaction_history

    # ------------------------------------------------------------------ waiting

    async def wait_for(
        self,
        predicate: Callable[[], T | None],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        describe: str | Callable[[], str] = "condition",
    ) -> T:
        """Wait until ``predicate()`` returns something truthy, and return it."""
        return await self._waiter.wait_for(predicate, timeout=timeout, describe=describe)

    async def wait_for_message(
        self,
        channel: Any = None,
        *,
        author: User | Any = None,
        predicate: Callable[[Message], bool] | None = None,
        after: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Message:
        """The first matching message (by default from the bot), optionally newer than ``after``."""
        author_id = self.world.bot_user.id if author is None else self.world.user(author).id
        after_id = 0 if after is None else object_id(after)
        channel_id = None if channel is None else object_id(channel)

        def find() -> Message | None:
            for m in sorted(self.world.messages.values(), key=lambda m: m.id):
                if m.id <= after_id or m.deleted or m.author.id != author_id:
                    continue
                if channel_id is not None and m.channel_id != channel_id:
                    continue
                if predicate is None or predicate(m):
                    return m
            return None

        return await self.wait_for(
            find, timeout=timeout, describe=lambda: f"a message ({self._recent()})"
        )

    async def wait_for_reply(self, message: Any, *, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """The first reply to ``message`` (whoever wrote it)."""
        return await self.wait_for(
            lambda: next(iter(self.replies_to(message)), None),
            timeout=timeout,
            describe=lambda: f"a reply to message {object_id(message)} ({self._recent()})",
        )

    async def wait_for_request(
        self,
        method: str,
        pattern: str | re.Pattern[str],
        *,
        count: int = 1,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> RecordedRequest:
        """The ``count``-th answered request matching method and path pattern."""

        def find() -> RecordedRequest | None:
            done = [r for r in self.requests_to(method, pattern) if r.status]
            return done[count - 1] if len(done) >= count else None

        return await self.wait_for(
            find, timeout=timeout, describe=lambda: f"{method} {pattern} ({self._recent()})"
        )

    def _recent(self) -> str:
        tail = [f"{r.method} {r.path} → {r.status}" for r in self.requests[-6:]]
        return "recent requests: " + ("; ".join(tail) or "none")


def _matches(request: RecordedRequest, method: str, pattern: str | re.Pattern[str]) -> bool:
    if method.upper() not in (request.method, "*"):
        return False
    if isinstance(pattern, re.Pattern):
        return pattern.search(request.path) is not None
    return fnmatch.fnmatchcase(request.path, pattern)
