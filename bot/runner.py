"""Start the bot with its runtime, stop it cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import discord
import discord.gateway
import discord.http
import yarl

from bot import metrics
from bot.client import Spoofwatch
from bot.health import serve_health
from bot.logging_setup import setup_logging
from bot.runtime import open_runtime
from bot.settings import Settings

log = logging.getLogger(__name__)

INTENT_HELP = (
    "Discord refused the Message Content intent (gateway close code 4014).\n"
    "Turn it on: https://discord.com/developers/applications → your application → Bot → "
    'Privileged Gateway Intents → enable "MESSAGE CONTENT INTENT" → Save Changes, '
    "then start Spoofwatch again."
)


def run_bot(settings: Settings, *, sync_only: bool = False) -> int:
    """Run until stopped; the exit status says how it ended."""
    token = settings.require_discord_token()
    settings.require_provider()
    secrets = [token.get_secret_value()]
    for key in (
        settings.behavioralsignals_api_key,
        settings.resemble_api_key,
        settings.database_url,
    ):
        if key is not None:
            secrets.append(key.get_secret_value())
    setup_logging(settings.log_level, secrets, settings.log_format)
    return asyncio.run(_main(settings, token.get_secret_value(), sync_only=sync_only))


def _use_proxies(settings: Settings) -> None:
    """Point discord.py at a REST and/or gateway proxy (or, in tests, the Discord emulator)."""
    if settings.discord_api_url:
        discord.http.Route.BASE = settings.discord_api_url.rstrip("/")
        log.info("Discord REST through %s", discord.http.Route.BASE)
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)
        log.info("Discord gateway through %s", settings.discord_gateway_url)


async def _main(settings: Settings, token: str, *, sync_only: bool) -> int:
    _use_proxies(settings)
    ops = metrics.start(enabled=settings.metrics_port is not None and not sync_only)
    async with (
        open_runtime(settings) as runtime,
        Spoofwatch(runtime) as bot,
        serve_health(ops, runtime.audit, host=settings.metrics_host, port=settings.metrics_port),
    ):
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _stop, bot, sig)
        if sync_only:
            return await _sync_and_exit(bot, token)
        return await serve(bot, token)


async def serve(bot: Spoofwatch, token: str) -> int:
    """Run the bot until it closes; explain the two start-up refusals an operator can fix."""
    try:
        await bot.start(token)
    except discord.PrivilegedIntentsRequired:
        print(INTENT_HELP, file=sys.stderr)
        return 3
    except discord.LoginFailure:
        print(
            "Discord refused DISCORD_TOKEN. Copy a fresh token from the Developer Portal "
            "(Bot → Reset Token).",
            file=sys.stderr,
        )
        return 2
    return 0


def _stop(bot: Spoofwatch, sig: signal.Signals) -> None:
    log.info("received %s; closing", sig.name)
    asyncio.get_running_loop().create_task(bot.close())


async def _sync_and_exit(bot: Spoofwatch, token: str) -> int:
    bot.auto_sync = False
    await bot.login(token)  # runs setup_hook: loads every extension
    synced = await bot.sync_commands(force=True)
    print("Slash commands synced." if synced else "Nothing to sync.")
    return 0
