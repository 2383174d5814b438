"""The gateway: HELLO, heartbeats, IDENTIFY/READY/GUILD_CREATE, RESUME with replay, dispatch.

Every dispatch is appended to each matching session's event log with its sequence number and a
per-connection writer sends the log in order, so events queued while a bot is disconnected are
replayed on RESUME and an event emitted by a synchronous builder can never overtake a later one.
Frames are plain-text JSON, which discord.py accepts even when it asked for zlib-stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from . import payloads
from .bits import PRIVILEGED_INTENTS, Intent
from .state import World

log = logging.getLogger(__name__)
JSON = dict[str, Any]

OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME = 0, 1, 2, 6
OP_RECONNECT, OP_REQUEST_MEMBERS, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 7, 8, 9, 10, 11
#: max_concurrency counts IDENTIFYs per this many seconds (docs: gateway.mdx, "Max Concurrency").
IDENTIFY_WINDOW_S = 5.0


@dataclass(eq=False)
class GatewaySession:
    """One IDENTIFY'd session: its intents, shard and the ordered log of dispatched events."""

    session_id: str
    intents: int
    shard: tuple[int, int]
    identify: JSON
    events: list[JSON] = field(default_factory=list)
    sent: int = 0
    ws: web.WebSocketResponse | None = None
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    live: bool = True

    @property
    def seq(self) -> int:
        return len(self.events)

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.ws.closed


@dataclass
class ConnectionRecord:
    """One websocket connection the bot opened (for assertions about reconnect behaviour)."""

    path: str
    query: dict[str, str]
    opcodes: list[int] = field(default_factory=list)
    close_code: int | None = None  # the code the emulator closed with, else the bot's


class Gateway:
    """The websocket side of the emulator."""

    def __init__(self, world: World, notify: Callable[[], None]) -> None:
        self.world = world
        self.notify = notify
        self.sessions: list[GatewaySession] = []
        self.connections: list[ConnectionRecord] = []
        self.heartbeat_interval_ms = 41250
        self.shard_count = 1
        #: GET /gateway/bot `session_start_limit.max_concurrency`: IDENTIFYs per 5 s per
        #: rate-limit key `shard_id % max_concurrency` (docs: gateway.mdx, "Max Concurrency").
        self.max_concurrency = 1
        #: Refuse an IDENTIFY that comes sooner than that with op 9 Invalid Session (docs:
        #: gateway.mdx, "Identifying"). Off unless a test asks: a test that restarts its bot
        #: would otherwise wait 5 s at each restart, as against Discord.
        self.enforce_identify_limit = False
        self.refused_identifies = 0
        #: Discord closes with 4011 Sharding Required when one session would hold more
        #: guilds than this (docs: gateway.mdx "Sharding"; opcodes-and-status-codes.mdx 4011).
        self.max_guilds_per_shard = 2500
        self._last_identify: dict[int, float] = {}
        self.allowed_privileged_intents = int(PRIVILEGED_INTENTS)
        self.identifies = 0
        self.resumes = 0
        self.heartbeats = 0
        self.resume_url = ""
        self.admitting = asyncio.Event()  # cleared during an emulated outage: new sockets wait
        self.admitting.set()
        self._connections: dict[web.WebSocketResponse, ConnectionRecord] = {}

    # ------------------------------------------------------------- dispatching

    def dispatch(
        self,
        event: str,
        data: JSON | Callable[[int], JSON | None],
        *,
        guild_id: int | None = None,
        intent: Intent | None = None,
    ) -> None:
        """Queue an event for every live session whose shard and intents want it."""
        for session in self.sessions:
            if not session.live or not self._wants(session, guild_id, intent):
                continue
            payload = data(session.intents) if callable(data) else data
            if payload is not None:
                self._append(session, event, payload)
        self.notify()

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every connected session has been sent everything queued for it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(s.live and s.connected and s.sent < s.seq for s in self.sessions):
            if loop.time() > deadline:
                raise TimeoutError("gateway events were not written to the bot's socket")
            await asyncio.sleep(0.002)

    def live_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions if s.live]

    async def disconnect(self, *, resume: bool = True) -> None:
        """Drop every connection: close 4000 (the bot RESUMEs) or INVALID_SESSION (re-IDENTIFY)."""
        for session in self.live_sessions():
            ws = session.ws
            if ws is None or ws.closed:
                continue
            if resume:
                session.ws = None
                await self._close(ws, 4000, b"Unknown error (emulated disconnect)")
            else:
                session.live = False
                await self._send(ws, {"op": OP_INVALID_SESSION, "d": False})
        self.notify()

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT, as Discord does before moving a session."""
        for session in self.live_sessions():
            if session.connected and session.ws is not None:
                await self._send(session.ws, {"op": OP_RECONNECT, "d": None})

    async def close(self) -> None:
        for ws in list(self._connections):
            with contextlib.suppress(Exception):
                await self._close(ws, 1001, b"emulator shutting down")

    # --------------------------------------------------------------- handling

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """aiohttp handler for both the gateway URL and the resume URL."""
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        record = ConnectionRecord(path=request.path, query=dict(request.query))
        self._connections[ws] = record
        self.connections.append(record)
        session: GatewaySession | None = None
        writer: asyncio.Task[None] | None = None
        try:
            await self.admitting.wait()
            await self._send(
                ws, {"op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}
            )
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    frame = json.loads(msg.data)
                    op = frame["op"]
                except (ValueError, KeyError, TypeError):
                    await self._close(ws, 4002, b"Error while decoding payload.")
                    break
                record.opcodes.append(op)
                if op == OP_HEARTBEAT:
                    self.heartbeats += 1
                    await self._send(ws, {"op": OP_HEARTBEAT_ACK})
                elif op in (OP_IDENTIFY, OP_RESUME) and session is None:
                    start = self._identify if op == OP_IDENTIFY else self._resume
                    session = await start(ws, frame.get("d") or {})
                    if session is not None:
                        writer = asyncio.create_task(self._writer(session, ws))
                elif op in (OP_IDENTIFY, OP_RESUME):
                    await self._close(ws, 4005, b"Already authenticated.")
                elif session is None:
                    await self._close(ws, 4003, b"Not authenticated.")
                elif op == OP_REQUEST_MEMBERS:
                    self._members_chunk(session, frame.get("d") or {})
                elif op not in (3, 4):  # presence and voice-state updates are accepted and ignored
                    await self._close(ws, 4001, b"Unknown opcode.")
        finally:
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            if record.close_code is None:
                record.close_code = ws.close_code
            if session is not None and session.ws is ws:
                session.ws = None
                if ws.close_code in (1000, 1001):
                    session.live = False  # a clean close ends the session: no RESUME
            self._connections.pop(ws, None)
            self.notify()
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: JSON) -> GatewaySession | None:
        if data.get("token") != self.world.token:
            await self._close(ws, 4004, b"Authentication failed.")
            return None
        intents = int(data.get("intents", 0))
        if intents & PRIVILEGED_INTENTS & ~self.allowed_privileged_intents:
            await self._close(ws, 4014, b"Disallowed intent(s).")
            return None
        shard_id, shard_count = data.get("shard") or [0, 1]
        if shard_count != self.shard_count or not 0 <= shard_id < shard_count:
            await self._close(ws, 4010, b"Invalid shard.")
            return None
        if not self._identify_allowed(shard_id):
            self.refused_identifies += 1
            await self._send(ws, {"op": OP_INVALID_SESSION, "d": False})
            return None
        guilds = [g for g in self.world.guilds.values() if self._shard_of(g.id) == shard_id]
        if len(guilds) > self.max_guilds_per_shard:
            await self._close(ws, 4011, b"Sharding required.")
            return None
        for old in self.sessions:
            if old.shard == (shard_id, shard_count):
                old.live = False
        self.identifies += 1
        session = GatewaySession(secrets.token_hex(16), intents, (shard_id, shard_count), data)
        self.sessions.append(session)
        ready: JSON = {
            "v": 10,
            "user": payloads.user_payload(self.world.bot_user)
            | {"verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_url,
            "application": {
                "id": str(self.world.application_id),
                "flags": self.application_flags(),
            },
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ['["spoofwatch-emulator"]'],
        }
        if "shard" in data:
            ready["shard"] = [shard_id, shard_count]
        self._append(session, "READY", ready)
        if intents & Intent.GUILDS:
            for guild in guilds:
                self._append(
                    session, "GUILD_CREATE", payloads.guild_payload(self.world, guild, gateway=True)
                )
        session.ws = ws
        self.notify()
        return session

    def _identify_allowed(self, shard_id: int) -> bool:
        """At most one IDENTIFY per rate-limit key per 5 s (a refused one does not count)."""
        key = shard_id % self.max_concurrency
        now = asyncio.get_running_loop().time()
        last = self._last_identify.get(key)
        if self.enforce_identify_limit and last is not None and now - last < IDENTIFY_WINDOW_S:
            return False
        self._last_identify[key] = now
        return True

    def sessions_of(self, shard_id: int) -> list[GatewaySession]:
        """The sessions ever IDENTIFY'd for one shard, oldest first."""
        return [s for s in self.sessions if s.shard[0] == shard_id]

    async def _resume(self, ws: web.WebSocketResponse, data: JSON) -> GatewaySession | None:
        session = next((s for s in self.sessions if s.session_id == data.get("session_id")), None)
        if session is None or not session.live or data.get("token") != self.world.token:
            await self._send(ws, {"op": OP_INVALID_SESSION, "d": False})
            return None
        seq = int(data.get("seq") or 0)
        self.resumes += 1
        session.sent = min(seq, session.seq)  # replay everything after the client's last seq
        self._append(session, "RESUMED", {"_trace": ['["spoofwatch-emulator"]']})
        session.ws = ws
        self.notify()
        return session

    async def _writer(self, session: GatewaySession, ws: web.WebSocketResponse) -> None:
        while not ws.closed and session.ws is ws:
            while session.sent < session.seq and session.ws is ws:
                frame = session.events[session.sent]
                try:
                    await self._send(ws, frame)
                except (ConnectionError, RuntimeError):  # the socket closed under us
                    return
                session.sent += 1
            session.wakeup.clear()
            if session.sent >= session.seq:
                await session.wakeup.wait()

    def _append(self, session: GatewaySession, event: str, data: JSON) -> None:
        session.events.append({"op": OP_DISPATCH, "t": event, "s": session.seq + 1, "d": data})
        session.wakeup.set()

    def _members_chunk(self, session: GatewaySession, data: JSON) -> None:
        guild = self.world.guilds.get(int(data.get("guild_id", 0)))
        if guild is None:
            return
        members = [payloads.member_payload(m) for m in guild.members.values()]
        chunk: JSON = {
            "guild_id": str(guild.id),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        self._append(session, "GUILD_MEMBERS_CHUNK", chunk)

    def _wants(self, session: GatewaySession, guild_id: int | None, intent: Intent | None) -> bool:
        if intent is not None and not session.intents & intent:
            return False
        return self._shard_of(guild_id) == session.shard[0]

    def _shard_of(self, guild_id: int | None) -> int:
        return 0 if guild_id is None else (guild_id >> 22) % self.shard_count

    def application_flags(self) -> int:
        """GATEWAY_*_LIMITED flags for the privileged intents the app has switched on."""
        flags = 1 << 23  # APPLICATION_COMMAND_BADGE
        allowed = self.allowed_privileged_intents
        if allowed & Intent.GUILD_PRESENCES:
            flags |= 1 << 13
        if allowed & Intent.GUILD_MEMBERS:
            flags |= 1 << 15
        if allowed & Intent.MESSAGE_CONTENT:
            flags |= 1 << 19
        return flags

    async def _close(self, ws: web.WebSocketResponse, code: int, message: bytes) -> None:
        record = self._connections.get(ws)
        if record is not None and record.close_code is None:
            record.close_code = code
        await ws.close(code=code, message=message)

    @staticmethod
    async def _send(ws: web.WebSocketResponse, frame: JSON) -> None:
        await ws.send_str(json.dumps(frame))
