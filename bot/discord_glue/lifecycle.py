"""Start the bot with its runtime, stop it cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import sys

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl

from bot import metrics
from bot.discord_glue.client import Spoofwatch
from bot.discord_glue.invite import invite_url
from bot.health import serve_health
from bot.logging_setup import setup_logging
from bot.resources import open_runtime
from bot.settings import Settings

log = logging.getLogger(__name__)

INTENT_HELP = (
    "Discord refused the Message Content intent (gateway close code 4014).\n"
    "Turn it on: https://discord.com/developers/applications → your application → Bot → "
    'Privileged Gateway Intents → enable "MESSAGE CONTENT INTENT" → Save Changes, '
    "then start Spoofwatch again."
)

SHARDING_HELP = (
    "Discord refused a shard with too many guilds (gateway close code 4011, Sharding Required).\n"
    "Raise SPOOFWATCH_SHARD_COUNT (in every process, keeping each process's SPOOFWATCH_SHARD_IDS "
    "in range), or unset SPOOFWATCH_SHARD_COUNT and SPOOFWATCH_SHARD_IDS to let one process "
    "run the shards Discord recommends."
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


#: Logging in again after a network failure: first wait, doubling up to the cap, with jitter.
LOGIN_RETRY_FIRST_S = 1.0
LOGIN_RETRY_MAX_S = 300.0
#: Failures that say "Discord cannot be reached right now", not "Discord said no".
NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


async def serve(bot: Spoofwatch, token: str) -> int:
    """Run the bot until it closes; explain the two start-up refusals an operator can fix."""
    try:
        if not await login_with_retry(bot, token):
            return 0  # stopped while waiting for the network
        _announce_invite(bot)
        await bot.connect()
    except discord.PrivilegedIntentsRequired:
        print(INTENT_HELP, file=sys.stderr)
        return 3
    except discord.ConnectionClosed as exc:
        if exc.code != 4011:
            raise
        print(SHARDING_HELP, file=sys.stderr)
        return 4
    except discord.LoginFailure:
        print(
            "Discord refused DISCORD_TOKEN. Copy a fresh token from the Developer Portal "
            "(Bot → Reset Token).",
            file=sys.stderr,
        )
        return 2
    return 0


async def login_with_retry(bot: Spoofwatch, token: str) -> bool:
    """Log in, waiting out network failures; False if the bot was closed meanwhile.

    No network at start (DNS, refused connection, Discord's 5xx) is one line in the log per
    try, not a traceback and not an exit: a container started before its network, or a
    laptop on a train, gets there by itself. A refused token is not retried.
    """
    delay = LOGIN_RETRY_FIRST_S
    while True:
        try:
            await bot.login(token)
            return True
        except discord.LoginFailure:
            raise
        except discord.HTTPException as exc:
            if exc.status < 500:
                raise
            reason = f"Discord answered HTTP {exc.status}"
        except NETWORK_ERRORS as exc:
            reason = _one_line(exc)
        log.error("cannot reach Discord (%s); logging in again in %.0f s", reason, delay)
        await _drop_http_session(bot)
        if await _closed_within(bot, delay):
            return False
        delay = min(LOGIN_RETRY_MAX_S, delay * 2) * random.uniform(0.9, 1.1)


def _one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its text."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def _drop_http_session(bot: Spoofwatch) -> None:
    """Close the session a failed login opened, so that the next login starts clean.

    discord.py opens a fresh session at each login over one shared connector; closing the
    session closes that connector too, so the next login must be given a new one.
    """
    await bot.http.close()
    bot.http.connector = discord.utils.MISSING


async def _closed_within(bot: Spoofwatch, seconds: float) -> bool:
    """Wait up to `seconds`; True as soon as the bot is closed (SIGTERM while waiting)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not bot.is_closed():
        left = deadline - loop.time()
        if left <= 0:
            return False
        await asyncio.sleep(min(left, 0.2))
    return True


def _announce_invite(bot: Spoofwatch) -> None:
    """Log the invite URL, with the permissions Spoofwatch needs, once logged in."""
    application_id = bot.application_id
    if application_id is None:
        return
    log.info("invite Spoofwatch to a server: %s", invite_url(application_id))


def _stop(bot: Spoofwatch, sig: signal.Signals) -> None:
    log.info("received %s; closing", sig.name)
    asyncio.get_running_loop().create_task(bot.close())


async def _sync_and_exit(bot: Spoofwatch, token: str) -> int:
    bot.auto_sync = False
    # runs setup_hook: loads every extension
    if not await login_with_retry(bot, token):
        return 0
    synced = await bot.sync_commands(force=True)
    print("Slash commands synced." if synced else "Nothing to sync.")
    return 0
