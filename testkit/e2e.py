"""The whole bot, end to end: the real Spoofwatch client against the Discord emulator, with
both provider stand-ins behind it, real SQLite and real media workers (PyAV).

Fixtures: `spoofwatch` (a running bot; Resemble by default) and `make_spoofwatch` for tests
that need their own settings or a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.discord_glue.client import Spoofwatch
from bot.resources import Runtime, open_runtime
from bot.settings import Settings
from bot.verdict import ProviderName
from testkit.discord_emulator.emulator import DiscordEmulator
from testkit.discord_emulator.models import Message
from testkit.standins import BehavioralSignalsStandIn, ResembleStandIn
from testkit.standins import behavioral_signals as bs_module
from testkit.standins import resemble as resemble_module


@dataclass
class Harness:
    emu: DiscordEmulator
    bot: Spoofwatch
    runtime: Runtime
    resemble: ResembleStandIn
    bs: BehavioralSignalsStandIn
    now: list[datetime]

    async def settle(self) -> None:
        """Wait until every queued automatic scan has finished and answered.

        First until the bot has read every gateway event sent so far and its `on_message`
        listeners have run: a scan is queued only then, and on a busy machine a message the
        emulator has written to the socket may not have been read yet, leaving an empty pool
        to join.
        """
        await self.emu.gateway.flush()
        await self._gateway_read()
        await asyncio.sleep(0)  # the listener tasks the last events scheduled start
        running = [t for t in asyncio.all_tasks() if t.get_name() == "discord.py: on_message"]
        await asyncio.gather(*running)
        await self.bot.scan_pool.join()

    async def _gateway_read(self, timeout: float = 10.0) -> None:
        """Wait until each of this bot's sessions has read up to the emulator's last event."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # discord.py sets a shard's `sequence` as it reads an event, before dispatching it.
            read = {
                ws.session_id: ws.sequence or 0
                for info in self.bot.shards.values()
                if (ws := info._parent.ws) is not None
            }
            behind = [
                s
                for s in self.emu.gateway.sessions
                if s.live and s.connected and s.session_id in read and read[s.session_id] < s.seq
            ]
            if not behind:
                return
            if loop.time() > deadline:
                raise TimeoutError("the bot did not read the gateway events sent to it")
            await asyncio.sleep(0.002)

    async def post(self, *files: Path | bytes, voice: bool = False, **kwargs: Any) -> Message:
        """A member posts files (one voice message when `voice`) in #general."""
        emu = self.emu
        attachments = [
            emu.attachment(f, voice=True, duration_secs=3.0)
            if voice
            else emu.attachment(f, **_type_of(f))
            for f in files
        ]
        channel = kwargs.pop("channel", emu.text_channel)
        author = kwargs.pop("author", emu.member)
        return await emu.send_message(channel, author, attachments=attachments, **kwargs)

    async def reply_to(self, message: Message) -> Message:
        reply = await self.emu.wait_for_reply(message)
        await self.settle()
        return reply


def _type_of(path: Path | bytes) -> dict[str, Any]:
    if isinstance(path, bytes):
        return {"filename": "file.bin"}
    types = {".ogg": "audio/ogg", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".mp4": "video/mp4"}
    content_type = types.get(path.suffix.lower())
    return {"content_type": content_type} if content_type else {}


def e2e_settings(
    tmp_path: Path,
    resemble: ResembleStandIn,
    bs: BehavioralSignalsStandIn,
    **overrides: Any,
) -> Settings:
    values: dict[str, Any] = {
        "discord_token": SecretStr("unused-the-emulator-hands-its-own"),
        "provider": ProviderName.RESEMBLE,
        "resemble_api_key": SecretStr(resemble_module.API_KEY),
        "resemble_api_url": resemble.url,
        "behavioralsignals_cid": bs.cid,
        "behavioralsignals_api_key": SecretStr(bs_module.API_KEY),
        "behavioralsignals_api_url": bs.url,
        "db_path": tmp_path / "spoofwatch.db",
        "allowed_media_hosts": ("127.0.0.1",),
        "poll_initial_s": 0.01,
        "poll_max_interval_s": 0.05,
        "poll_deadline_s": 20,
        "request_timeout_s": 10,
        "workers": 2,
        # One media worker process per bot: each costs a Python start and PyAV's import, and
        # the suite starts hundreds of bots (a test of the pool itself asks for more).
        "decoder_processes": 1,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


MakeSpoofwatch = Callable[..., AbstractAsyncContextManager[Harness]]


@pytest.fixture
def make_spoofwatch(
    emulator: DiscordEmulator,
    resemble_standin: ResembleStandIn,
    bs_standin: BehavioralSignalsStandIn,
    tmp_path: Path,
) -> MakeSpoofwatch:
    """`async with make_spoofwatch(**settings) as sw:` runs the bot; again = a restart."""
    now = [datetime(2026, 11, 21, 12, 0, tzinfo=UTC)]

    @asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[Harness]:
        settings = e2e_settings(tmp_path, resemble_standin, bs_standin, **overrides)
        async with open_runtime(settings, clock=lambda: now[0]) as runtime:
            bot = Spoofwatch(runtime, clock=lambda: now[0])
            # Closing mid-scan is part of many tests; the grace path runs, just briefly.
            bot.shutdown_grace_s = 0.2
            async with emulator.run(bot):
                harness = Harness(emulator, bot, runtime, resemble_standin, bs_standin, now)
                yield harness
                await harness.settle()

    return run


@pytest.fixture
async def spoofwatch(make_spoofwatch: MakeSpoofwatch) -> AsyncIterator[Harness]:
    async with make_spoofwatch() as harness:
        yield harness
