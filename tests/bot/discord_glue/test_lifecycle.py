"""Starting the bot: command sync, extensions, shutdown, and operator errors."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import discord
import pytest

from bot.discord_glue.client import extension_names
from bot.settings import Settings
from testkit.discord_emulator.emulator import DiscordEmulator
from testkit.e2e import MakeSpoofwatch

REPO = Path(__file__).resolve().parents[3]


def test_every_feature_package_is_an_extension() -> None:
    """Extensions are discovered by walking cogs/ (private names skipped)."""
    names = extension_names()
    assert {"cogs.autoscan", "cogs.check", "cogs.audit", "cogs.admin", "cogs.alerts"} <= set(names)
    assert all(not n.rsplit(".", 1)[-1].startswith("_") for n in names)


async def test_commands_sync_once_then_only_when_changed(
    make_spoofwatch: MakeSpoofwatch, emulator: DiscordEmulator
) -> None:
    """The first start syncs global commands; a restart with the same definitions does not."""
    async with make_spoofwatch():
        pass
    assert [s.guild_id for s in emulator.command_syncs] == [None]
    names = {c["name"] for c in emulator.commands()}
    assert {"check", "audit", "spoofwatch", "Check for deepfake"} <= names
    async with make_spoofwatch():
        pass
    assert len(emulator.command_syncs) == 1


async def test_dev_guild_syncs_to_that_guild(
    make_spoofwatch: MakeSpoofwatch, emulator: DiscordEmulator
) -> None:
    """With SPOOFWATCH_DEV_GUILD the commands go to that guild, not globally."""
    async with make_spoofwatch(dev_guild=emulator.guild.id):
        pass
    assert [s.guild_id for s in emulator.command_syncs] == [emulator.guild.id]
    assert "check" in {c["name"] for c in emulator.commands(emulator.guild)}


async def _run_module(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SPOOFWATCH", "DISCORD", "RESEMBLE", "BEHAVIORALSIGNALS"))
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args,
        cwd=cwd, env={**base, "PYTHONPATH": str(REPO), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_missing_token_is_named(tmp_path: Path) -> None:
    """`python -m bot` without DISCORD_TOKEN exits 2 naming it, without a traceback."""
    code, err = await _run_module(
        env={"SPOOFWATCH_PROVIDER": "resemble", "RESEMBLE_API_KEY": "k"}, cwd=tmp_path
    )
    assert code == 2
    assert "DISCORD_TOKEN" in err and "Traceback" not in err


async def test_invalid_setting_is_named(tmp_path: Path) -> None:
    """A malformed variable stops start-up with its name, not a pydantic traceback."""
    code, err = await _run_module(
        env={"SPOOFWATCH_PROVIDER": "openai", "DISCORD_TOKEN": "x"}, cwd=tmp_path
    )
    assert code == 2
    assert "SPOOFWATCH_PROVIDER" in err and "Traceback" not in err


async def test_sigterm_stops_the_bot_cleanly(emulator: DiscordEmulator, tmp_path: Path) -> None:
    """A bot process connected to Discord exits 0 on SIGTERM."""
    from testkit.standins import ResembleStandIn
    from testkit.standins import resemble as resemble_module

    async with ResembleStandIn() as resemble:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SPOOFWATCH", "DISCORD", "RESEMBLE", "BEHAVIORALSIGNALS"))
        }
        env = {
            **base,
            "PYTHONPATH": str(REPO),
            "DISCORD_TOKEN": emulator.token,
            "SPOOFWATCH_DISCORD_API_URL": f"{emulator.url}/api/v10",
            "SPOOFWATCH_DISCORD_GATEWAY_URL": emulator.gateway_url,
            "SPOOFWATCH_PROVIDER": "resemble",
            "RESEMBLE_API_KEY": resemble_module.API_KEY,
            "RESEMBLE_API_URL": resemble.url,
            "SPOOFWATCH_DB": str(tmp_path / "sw.db"),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await emulator.wait_for(lambda: bool(emulator.command_syncs), timeout=60)
            # Connected, as the docstring says: a SIGTERM while the shard is still
            # connecting has discord.py log the cancelled connect attempt.
            await emulator.wait_until_connected(timeout=60)
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()


@pytest.mark.parametrize("cid", ["myproject", "1234 5678", "sk-12345678"])
async def test_non_numeric_project_id_is_refused(tmp_path: Path, cid: str) -> None:
    """Fails if a project name is taken for BEHAVIORALSIGNALS_CID (every scan would fail)."""
    code, err = await _run_module(
        env={"DISCORD_TOKEN": "x", "BEHAVIORALSIGNALS_CID": cid, "BEHAVIORALSIGNALS_API_KEY": "k"},
        cwd=tmp_path,
    )
    assert code == 2
    assert "BEHAVIORALSIGNALS_CID" in err and "numeric" in err and "Traceback" not in err


def test_numeric_project_id_is_kept() -> None:
    """Fails if a numeric project id (with stray spaces) is refused or altered."""
    assert Settings(_env_file=None, behavioralsignals_cid=" 10000001 ").behavioralsignals_cid == (
        "10000001"
    )


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_no_network_at_start_is_one_line_and_retried(tmp_path: Path) -> None:
    """Fails if Discord being unreachable at start prints a traceback, exits, or is not
    retried; SIGTERM while waiting still exits cleanly."""
    port = _closed_port()
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SPOOFWATCH", "DISCORD", "RESEMBLE", "BEHAVIORALSIGNALS"))
    }
    env = {
        **base,
        "PYTHONPATH": str(REPO),
        "DISCORD_TOKEN": "unreachable.token.value",
        "SPOOFWATCH_DISCORD_API_URL": f"http://127.0.0.1:{port}/api/v10",
        "SPOOFWATCH_PROVIDER": "resemble",
        "RESEMBLE_API_KEY": "k",
        "RESEMBLE_API_URL": f"http://127.0.0.1:{port}/api/v2",
        "SPOOFWATCH_DB": str(tmp_path / "sw.db"),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        while sum("cannot reach Discord" in line for line in seen) < 2:
            line = await asyncio.wait_for(proc.stderr.readline(), timeout=60)
            assert line, "the bot exited instead of retrying:\n" + "".join(seen)
            seen.append(line.decode())
        proc.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = "".join(seen) + rest.decode()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    retries = [line for line in err.splitlines() if "cannot reach Discord" in line]
    assert all("ClientConnectorError" in line for line in retries), retries


async def test_invite_url_with_the_needed_permissions_is_logged(
    emulator: DiscordEmulator,
    resemble_standin: Any,
    bs_standin: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fails if start-up does not log an invite URL asking for what the bot needs."""
    from bot.discord_glue.client import Spoofwatch
    from bot.discord_glue.invite import needed_permissions
    from bot.discord_glue.lifecycle import serve
    from bot.resources import open_runtime
    from testkit.e2e import e2e_settings

    settings = e2e_settings(tmp_path, resemble_standin, bs_standin)
    with caplog.at_level(logging.INFO, logger="bot.discord_glue.lifecycle"):
        async with open_runtime(settings) as runtime:
            bot = Spoofwatch(runtime)
            running = asyncio.create_task(serve(bot, emulator.token))
            await emulator.wait_until_connected()
            await bot.close()
            assert await running == 0
    [line] = [r.getMessage() for r in caplog.records if "invite Spoofwatch" in r.getMessage()]
    url = line.split(": ", 1)[1]
    query = parse_qs(urlparse(url).query)
    assert query["client_id"] == [str(emulator.application_id)]
    assert set(query["scope"][0].split()) == {"bot", "applications.commands"}
    granted = discord.Permissions(int(query["permissions"][0]))
    assert granted == needed_permissions()
    assert granted.send_messages and granted.moderate_members and granted.manage_messages


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RESEMBLE_API_URL", "app.resemble.ai/api/v2"),
        ("BEHAVIORALSIGNALS_API_URL", "ftp://api.behavioralsignals.com/v5"),
        ("SPOOFWATCH_DISCORD_GATEWAY_URL", "https://gateway.discord.gg"),
    ],
)
async def test_malformed_urls_are_named(tmp_path: Path, variable: str, value: str) -> None:
    """Fails if a URL without scheme or host is accepted (it would fail at the first scan)."""
    code, err = await _run_module(
        env={"DISCORD_TOKEN": "x", "SPOOFWATCH_PROVIDER": "resemble", "RESEMBLE_API_KEY": "k",
             variable: value},
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 2
    assert variable in err and "URL" in err and "Traceback" not in err
