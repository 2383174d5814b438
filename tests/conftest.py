"""Shared fixtures. Sections are owned by features; add yours in a section of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from bot.detectors import PollPolicy, RetryPolicy, Upload
from bot.detectors.behavioral_signals import BehavioralSignalsClient
from bot.detectors.resemble import ResembleClient
from bot.verdict import MediaKind
from testkit.media_factory import media, media_dir  # noqa: F401  (media fixtures)
from testkit.standins import BehavioralSignalsStandIn, ResembleStandIn, write_wav
from testkit.standins import behavioral_signals as bs_standin_module
from testkit.standins import resemble as resemble_standin_module

# --- parallel runs (pytest-xdist) ----------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `serial` are skipped on xdist workers: the README's test command runs them
    afterwards, alone (`-m serial -n 0`)."""
    if not hasattr(config, "workerinput"):
        return
    alone = pytest.mark.skip(reason="needs the machine to itself: run by `pytest -m serial -n 0`")
    for item in items:
        if item.get_closest_marker("serial"):
            item.add_marker(alone)


# --- provider stand-ins and clients -------------------------------------------------------

#: Retries and polls measured in milliseconds, so fault tests stay fast.
FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.001, max_delay_s=0.02)
FAST_POLL = PollPolicy(initial_s=0.001, factor=2.0, max_interval_s=0.01, deadline_s=5.0)


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    """One aiohttp session, as the bot shares one."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def bs_standin() -> AsyncIterator[BehavioralSignalsStandIn]:
    """Behavioral Signals on 127.0.0.1: jobs answer 0, 1, then 2 on the third poll."""
    async with BehavioralSignalsStandIn(processing_polls=2) as standin:
        yield standin


@pytest.fixture
async def resemble_standin() -> AsyncIterator[ResembleStandIn]:
    """Resemble on 127.0.0.1: detects finish at once (the first status read finds them done)."""
    async with ResembleStandIn() as standin:
        yield standin


@pytest.fixture
def make_bs_client(
    http_session: aiohttp.ClientSession, bs_standin: BehavioralSignalsStandIn
) -> Callable[..., BehavioralSignalsClient]:
    """Build a client of `bs_standin`; keyword arguments override the fast defaults."""

    def make(**overrides: Any) -> BehavioralSignalsClient:
        options: dict[str, Any] = {
            "cid": bs_standin.cid,
            "api_key": SecretStr(bs_standin_module.API_KEY),
            "base_url": bs_standin.url,
            "retry": FAST_RETRY,
            "poll": FAST_POLL,
            "request_timeout_s": 5.0,
            **overrides,
        }
        return BehavioralSignalsClient(http_session, **options)

    return make


@pytest.fixture
def make_resemble_client(
    http_session: aiohttp.ClientSession, resemble_standin: ResembleStandIn
) -> Callable[..., ResembleClient]:
    """Build a client of `resemble_standin`; keyword arguments override the fast defaults."""

    def make(**overrides: Any) -> ResembleClient:
        options: dict[str, Any] = {
            "api_key": SecretStr(resemble_standin_module.API_KEY),
            "base_url": resemble_standin.url,
            "retry": FAST_RETRY,
            "poll": FAST_POLL,
            "request_timeout_s": 5.0,
            **overrides,
        }
        return ResembleClient(http_session, **options)

    return make


@pytest.fixture
def bs_client(make_bs_client: Callable[..., BehavioralSignalsClient]) -> BehavioralSignalsClient:
    return make_bs_client()


@pytest.fixture
def resemble_client(make_resemble_client: Callable[..., ResembleClient]) -> ResembleClient:
    return make_resemble_client()


@pytest.fixture
def make_wav_upload(tmp_path: Path) -> Callable[..., Upload]:
    """A real WAV file in tmp_path, wrapped as an `Upload` (distinct tones → distinct bytes)."""

    def make(name: str = "voice.wav", seconds: float = 1.0, tone_hz: float = 440.0) -> Upload:
        path = write_wav(tmp_path / name, seconds, tone_hz=tone_hz)
        return Upload(
            path=path,
            filename=name,
            content_type="audio/wav",
            kind=MediaKind.AUDIO,
            format_name="wav",
        )

    return make


# --- Discord emulator (testkit/discord_emulator) ----------------------------------------------

# --- the SQLite audit log on a test clock (testkit/audit_log.py) -------------------------
from testkit.audit_log import clock, log, sqlite_log  # noqa: E402, F401
from testkit.discord_emulator.fixtures import bare_emulator, emulator  # noqa: E402, F401

# --- the whole bot, end to end (testkit/e2e.py) -----------------------------------------------
from testkit.e2e import make_spoofwatch, spoofwatch  # noqa: E402, F401
from testkit.postgres_server import postgres_server, postgres_url  # noqa: E402, F401

# --- the scan service without Discord (testkit/scan_support.py) -----------------------------
from testkit.scan_support import audit  # noqa: E402, F401
