"""``DiscordEmulator``: a loopback Discord (REST, gateway, CDN) for the real discord.py client.

emu = DiscordEmulator()
await emu.start()
with emu.patch_discord():
    guild = emu.create_guild("Test Guild")
    ...
    async with emu.run(bot):
        voice = emu.attachment(ogg_bytes, voice=True)
        message = await emu.send_message(channel, member, attachments=[voice])
        reply = await emu.wait_for_reply(message)
await emu.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self

import discord
import discord.gateway
import discord.http
import yarl
from aiohttp import web

from .actions import UserActionsMixin
from .bits import ChannelType, Intent
from .cdn import Cdn
from .gateway import Gateway
from .interactions import InteractionBuilder
from .models import Channel, Guild, Member, Role, User
from .observe import ObservationMixin
from .ratelimits import RateLimits
from .rest_app import Backend, FaultRule, RestRecorder, make_fault
from .rest_core import CoreRoutes
from .rest_interactions import InteractionRoutes
from .rest_messages import MessageRoutes
from .state import World
from .waiting import Waiter

log = logging.getLogger(__name__)
FAST_GUILD_READY_TIMEOUT = 0.05


class DiscordPatch:
    """Points discord.py at the emulator; restores the real endpoints on exit or ``restore()``."""

    def __init__(self, emulator: DiscordEmulator) -> None:
        self._emulator = emulator
        self._saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        discord.http.Route.BASE = f"{emulator.url}/api/v10"
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(emulator.gateway_url)
        self.active = True

    def restore(self) -> None:
        if self.active:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._saved
            self.active = False

    def __enter__(self) -> DiscordEmulator:
        return self._emulator

    def __exit__(self, *exc: object) -> None:
        self.restore()


class DiscordEmulator(UserActionsMixin, ObservationMixin):
    """The emulator façade: world building, user actions, faults, gateway control, observation."""

    def __init__(
        self, *, app_name: str = "Spoofwatch", host: str = "127.0.0.1", rate_limits: bool = False
    ) -> None:
        self.host = host
        #: Discord's rate limits (see ratelimits.py); ``ratelimits.sent_429s`` counts refusals.
        self.ratelimits = RateLimits(enabled=rate_limits)
        self.world = World(app_name)
        self._waiter = Waiter()
        self.cdn = Cdn(self.world, self._waiter.notify)
        self.gateway = Gateway(self.world, self._waiter.notify)
        self.world.emit = self.gateway.dispatch
        self.world.bind_attachment = self.cdn.bind
        self.builder = InteractionBuilder(self.world, self.cdn)
        self.backend = Backend(self.world, self.cdn, self.gateway)
        self.recorder = RestRecorder(self.world.token, self._waiter.notify)
        self.url = ""
        self.gateway_url = ""
        self._runner: web.AppRunner | None = None
        self._patch: DiscordPatch | None = None
        #: Set by a test that sends Discord a bad body on purpose; otherwise the fixture fails
        #: any test during which the emulator refused a body (see ``refusals``).
        self.refusals_expected = False
        # Handles the default fixture fills in (see fixtures.py).
        self.guild: Guild
        self.text_channel: Channel
        self.voice_channel: Channel
        self.thread: Channel
        self.category: Channel
        self.member: Member
        self.moderator: Member
        self.admin: Member

    # ---------------------------------------------------------------- lifecycle

    @property
    def token(self) -> str:
        """The bot token the emulator accepts (``bot.start(emu.token)``)."""
        return self.world.token

    @property
    def application_id(self) -> int:
        """The application's id (also the bot user's id)."""
        return self.world.application_id

    @property
    def bot_user(self) -> User:
        """The bot's user."""
        return self.world.bot_user

    async def start(self) -> Self:
        """Listen on an ephemeral 127.0.0.1 port."""
        app = web.Application(
            middlewares=[self.recorder.middleware, self.ratelimits.middleware],
            client_max_size=1024**3,
        )
        messages = MessageRoutes(self.backend)
        app.add_routes(CoreRoutes(self.backend).routes())
        app.add_routes(messages.routes())
        app.add_routes(InteractionRoutes(self.backend, messages).routes())
        app.add_routes(self.cdn.routes())
        for path in ("/gateway-ws", "/gateway-ws/", "/resume-ws", "/resume-ws/"):
            app.router.add_get(path, self.gateway.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{port}"
        self.gateway_url = f"ws://{self.host}:{port}/gateway-ws/"
        self.gateway.resume_url = f"ws://{self.host}:{port}/resume-ws/"
        self.backend.base_url, self.backend.gateway_url = self.url, self.gateway_url
        self.cdn.base_url = self.url
        return self

    async def close(self) -> None:
        """Close gateway connections, stop the server, delete temp files, undo the patch."""
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.cdn.close()
        if self._patch is not None:
            self._patch.restore()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def patch_discord(self) -> DiscordPatch:
        """Redirect discord.py's REST base and gateway URL here (usable as a context manager)."""
        if not self.url:
            raise RuntimeError("start() the emulator before patching discord.py")
        self._patch = DiscordPatch(self)
        return self._patch

    @contextlib.asynccontextmanager
    async def run(
        self, bot: discord.Client, *, timeout: float = 30.0, fast_ready: bool = True
    ) -> AsyncIterator[Any]:
        """Start ``bot`` against the emulator, wait for on_ready, and close it cleanly afterwards.

        Errors raised before ready (e.g. ``PrivilegedIntentsRequired``) propagate. ``fast_ready``
        shortens discord.py's 2 s wait for stray GUILD_CREATEs: the emulator sends them all
        straight after READY.
        """
        if fast_ready:
            bot._connection.guild_ready_timeout = FAST_GUILD_READY_TIMEOUT
        task = asyncio.create_task(bot.start(self.token), name="discord-emulator-bot")
        try:
            await self._waiter.wait_for(
                lambda: task.done() or bot.is_ready(),
                timeout=timeout,
                describe="the bot to become ready",
            )
            if task.done():
                task.result()  # raises the start-up error
                raise RuntimeError("the bot stopped before it became ready")
            yield bot
        finally:
            await bot.close()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout)

    # ------------------------------------------------------------ world building

    def create_user(self, name: str, *, bot: bool = False) -> User:
        """A user in no guild (e.g. for DMs or to add later)."""
        return self.world.create_user(name, bot=bot)

    def create_guild(self, name: str, **kwargs: Any) -> Guild:
        """A guild with @everyone, the bot's managed role, an owner and the bot as members."""
        return self.world.create_guild(name, **kwargs)

    def create_role(self, guild: Guild, name: str, permissions: Any = 0) -> Role:
        """A role placed below the bot's role; permissions as int or names ("manage_messages")."""
        return self.world.create_role(guild, name, permissions)

    def add_member(self, guild: Guild, user: User | str, *, roles: tuple[Role, ...] = ()) -> Member:
        """A plain member (no permissions beyond @everyone unless ``roles`` say so)."""
        return self.world.add_member(guild, user, roles=roles)

    def add_moderator(self, guild: Guild, name: str = "moderator") -> Member:
        """A member with Manage Messages and Moderate Members (role "Moderator")."""
        return self.world.add_moderator(guild, name)

    def add_admin(self, guild: Guild, name: str = "admin") -> Member:
        """A member with Manage Guild, Manage Channels, Manage Messages, Moderate Members."""
        return self.world.add_admin(guild, name)

    def create_text_channel(
        self, guild: Guild, name: str, *, category: Channel | None = None
    ) -> Channel:
        """A text channel (optionally inside a category)."""
        return self.world.create_channel(guild, name, ChannelType.GUILD_TEXT, category=category)

    def create_voice_channel(
        self, guild: Guild, name: str, *, category: Channel | None = None
    ) -> Channel:
        """A voice channel (its text chat accepts messages)."""
        return self.world.create_channel(guild, name, ChannelType.GUILD_VOICE, category=category)

    def create_category(self, guild: Guild, name: str) -> Channel:
        """A category; channels created in it copy its overwrites."""
        return self.world.create_channel(guild, name, ChannelType.GUILD_CATEGORY)

    def create_thread(self, parent: Channel, name: str, *, owner: Any = None) -> Channel:
        """A public thread under a text channel (uses the parent's permissions)."""
        return self.world.create_thread(parent, name, owner=owner)

    def set_overwrite(
        self, channel: Channel, target: Any, *, allow: Any = 0, deny: Any = 0
    ) -> None:
        """Per-channel overwrite for a Role, Member or User (CHANNEL_UPDATE)."""
        self.world.set_overwrite(channel, target, allow=allow, deny=deny)

    def deny_bot(self, channel: Channel, *permissions: str) -> None:
        """E.g. ``deny_bot(ch, "send_messages")``: REST calls needing it then get 403 / 50013."""
        self.world.deny_bot(channel, *permissions)

    def set_bot_permissions(self, guild: Guild, permissions: Any) -> None:
        """Replace the bot role's permissions (@everyone's still apply)."""
        self.world.set_bot_permissions(guild, permissions)

    def dm_channel(self, user: Any) -> Channel:
        """The DM channel between a user and the bot."""
        return self.world.dm_channel(user)

    def close_dms(self, user: Any) -> None:
        """The user does not accept DMs: sending to them is 403 code 50007."""
        self.backend.closed_dms.add(self.world.user(user).id)

    def set_portal_intents(
        self, *, message_content: bool = True, members: bool = True, presences: bool = True
    ) -> None:
        """The Developer Portal's privileged-intent switches; asking for one that is off: 4014."""
        allowed = 0
        for enabled, intent in (
            (message_content, Intent.MESSAGE_CONTENT),
            (members, Intent.GUILD_MEMBERS),
            (presences, Intent.GUILD_PRESENCES),
        ):
            if enabled:
                allowed |= intent
        self.gateway.allowed_privileged_intents = allowed

    @property
    def interaction_ack_deadline(self) -> float | None:
        """Seconds an interaction stays answerable (Discord's 3 by default). None = no deadline.

        Past it the callback is refused (10062 Unknown interaction) and the token is dead.
        """
        return self.backend.interaction_ack_deadline

    @interaction_ack_deadline.setter
    def interaction_ack_deadline(self, seconds: float | None) -> None:
        self.backend.interaction_ack_deadline = seconds

    @property
    def refusals(self) -> list[dict[str, Any]]:
        """Every body refused as Discord would (400 50035 and the like), with its route."""
        return self.backend.refusals

    @property
    def interaction_token_lifetime(self) -> float:
        """Seconds the interaction webhook (follow-ups, @original) works: Discord's 15 minutes.

        Past it every webhook call answers 401 50027 "Invalid Webhook Token".
        """
        return self.backend.interaction_token_lifetime

    @interaction_token_lifetime.setter
    def interaction_token_lifetime(self, seconds: float) -> None:
        self.backend.interaction_token_lifetime = seconds

    # ------------------------------------------------------------ faults, gateway

    def fail_next(
        self,
        method: str,
        path_pattern: str | re.Pattern[str],
        status: int,
        *,
        times: int = 1,
        json: dict[str, Any] | None = None,
        retry_after: float | None = None,
        global_: bool = False,
        scope: str = "user",
    ) -> FaultRule:
        """Answer the next ``times`` matching requests with ``status`` instead of handling them.

        ``path_pattern`` is a glob on the path after /api/v10 ("/channels/*/messages") or on CDN
        paths ("/attachments/*"), or a compiled regex. Bodies default to Discord's: 403 Missing
        Permissions (50013), 404 Unknown Message (10008), 429 with ``retry_after`` (and the
        X-RateLimit-*/Retry-After/Via headers discord.py needs to retry), 5xx.
        """
        rule = make_fault(
            method,
            path_pattern,
            status,
            times=times,
            json=json,
            retry_after=retry_after,
            global_=global_,
            scope=scope,
        )
        self.recorder.faults.append(rule)
        return rule

    async def disconnect_gateway(self, *, resume: bool = True) -> None:
        """Drop the bot's gateway connection: it RESUMEs (``resume=True``) or re-IDENTIFYs."""
        await self.gateway.disconnect(resume=resume)

    @contextlib.asynccontextmanager
    async def gateway_outage(self) -> AsyncIterator[None]:
        """Disconnect and hold reconnects until the block ends: events inside it are missed."""
        self.gateway.admitting.clear()
        try:
            await self.gateway.disconnect(resume=True)
            yield
        finally:
            self.gateway.admitting.set()

    async def wait_until_connected(self, *, timeout: float = 10.0) -> None:
        """Wait until a session is connected and has been sent everything queued for it."""
        await self.wait_for(
            lambda: any(s.connected for s in self.gateway.live_sessions()),
            timeout=timeout,
            describe="a gateway connection",
        )
        await self.gateway.flush()
