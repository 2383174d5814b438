"""The `commands.Bot` subclass: shared services hang off it; features live in `cogs/`."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import pkgutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.ext import commands

import cogs
from bot import metrics
from bot.alert_ledger import AlertLedger
from bot.discord_glue.kept_evidence import KeptEvidence
from bot.discord_glue.pacing import DiscordPacing
from bot.errors import LimitReached, SpoofwatchError
from bot.guild_config import GuildConfig
from bot.limits import Cooldown
from bot.opinions import SecondOpinions
from bot.provider_copies import ProviderCopies
from bot.provider_health import ProviderHealth
from bot.resources import Runtime
from bot.scanning import Clock, utc_now
from bot.sharding import IdentifyGate, KeyLock, MemoryKeyLock, PostgresKeyLock
from bot.storage.postgres import PostgresAuditLog
from bot.worker_pool import WorkerPool

log = logging.getLogger(__name__)

#: On SIGTERM, how long scans waiting on their provider get to finish before they are
#: cancelled (to be resumed, or recorded as interrupted, at the next start). Well inside
#: `docker stop`'s default 10 s before SIGKILL.
SHUTDOWN_GRACE_S = 5.0


def intents() -> discord.Intents:
    """Guilds, guild messages and the privileged message content (attachments live there)."""
    value = discord.Intents.none()
    value.guilds = True
    value.guild_messages = True
    value.dm_messages = True
    value.message_content = True
    return value


class GuildConfigs:
    """Per-guild settings with a small cache in front of the database."""

    def __init__(self, runtime: Runtime) -> None:
        self._audit = runtime.audit
        self._cache: dict[int, GuildConfig] = {}
        # Saved by another process (PostgreSQL) or by this one: read afresh next time.
        runtime.audit.settings.subscribe(self.forget)

    def forget(self, guild_id: int) -> None:
        """Drop the cached settings of a guild whose settings changed."""
        self._cache.pop(guild_id, None)

    async def get(self, guild_id: int) -> GuildConfig:
        config = self._cache.get(guild_id)
        if config is None:
            config = await self._audit.settings.guild_config(guild_id)
            self._cache[guild_id] = config
        return config

    async def save(self, guild_id: int, config: GuildConfig) -> None:
        await self._audit.settings.save_guild_config(guild_id, config)
        self._cache[guild_id] = config


class SpoofwatchTree(app_commands.CommandTree["Spoofwatch"]):
    """Turns every command failure into a short, private answer instead of a traceback."""

    async def on_error(
        self, interaction: discord.Interaction[Spoofwatch], error: app_commands.AppCommandError
    ) -> None:
        original = getattr(error, "original", error)
        if isinstance(original, SpoofwatchError):
            text = original.message + (f"\n-# {original.hint}" if original.hint else "")
            if isinstance(original, LimitReached) and original.resets_at:
                text += f"\n-# Resets <t:{int(original.resets_at)}:R>."
        elif isinstance(error, app_commands.MissingPermissions):
            text = (
                "You need the "
                + ", ".join(permission_name(p) for p in error.missing_permissions)
                + " permission to use this."
            )
        elif isinstance(error, app_commands.NoPrivateMessage):
            text = "This command works only in a server."
        elif isinstance(error, app_commands.CheckFailure):
            text = "You are not allowed to use this command."
        else:
            log.error(
                "command %s failed for user %s",
                interaction.command.qualified_name if interaction.command else "?",
                interaction.user.id,
                exc_info=original,
            )
            text = "Something went wrong inside Spoofwatch; the operator can find it in the log."
        await reply_privately(interaction, text)


#: Where Discord's settings screens name a permission differently from the API.
_PERMISSION_NAMES = {"manage_guild": "Manage Server"}


def permission_name(permission: str) -> str:
    """A permission as a server admin finds it in Discord ("manage_guild" → "Manage Server")."""
    return _PERMISSION_NAMES.get(permission, permission.replace("_", " ").title())


async def reply_privately(interaction: discord.Interaction[Spoofwatch], text: str) -> None:
    """Answer an interaction ephemerally whether or not it was deferred."""
    try:
        if interaction.response.is_done():
            await _clear_public_thinking(interaction)
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not answer interaction %s", interaction.id, exc_info=True)


async def _clear_public_thinking(interaction: discord.Interaction[Spoofwatch]) -> None:
    """Delete a public defer's "thinking…" message, so that a private answer can follow.

    The first follow-up after a public defer fills in that message and Discord ignores its
    ephemeral flag (docs: interactions/receiving-and-responding.mdx, "Create Followup
    Message"): without this an error meant for one member is shown to the whole channel.
    """
    if interaction.response.type is not discord.InteractionResponseType.deferred_channel_message:
        return
    try:
        original = await interaction.original_response()
        if original.flags.loading and not original.flags.ephemeral:
            await interaction.delete_original_response()
    except discord.HTTPException:
        log.info("could not clear the deferred answer of interaction %s", interaction.id)


class Spoofwatch(commands.AutoShardedBot):
    """Spoofwatch's Discord client. Built once with the shared runtime; cogs find services here.

    Always sharded (Discord refuses an unsharded bot in 2,500 guilds or more): with nothing
    set one process runs every shard Discord recommends; SPOOFWATCH_SHARD_COUNT and
    SPOOFWATCH_SHARD_IDS give this process its part of a deployment.
    """

    def __init__(self, runtime: Runtime, *, clock: Clock = utc_now) -> None:
        # Spoofwatch never joins voice channels; discord.py's voice-library warnings are noise.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        #: Every request to Discord goes through it: no 429s from the bot's own traffic.
        self.pacing = DiscordPacing()
        super().__init__(
            http_trace=self.pacing.trace_config(),
            command_prefix=commands.when_mentioned,
            intents=intents(),
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            tree_cls=SpoofwatchTree,
            max_messages=1000,
            shard_count=runtime.settings.shard_count,
            # None (every shard) is what discord.py defaults to; its stub only spells the list.
            shard_ids=list(ids) if (ids := runtime.settings.shard_ids) else None,  # type: ignore[arg-type]
        )
        self.pacing.install(self.http)
        self.identify_gate = IdentifyGate(self._max_concurrency, lock=_identify_lock(runtime))
        if runtime.settings.shard_filter is not None and runtime.settings.database_url is None:
            log.warning(
                "this process runs only shards %s but the audit log is a SQLite file: the "
                "other processes need the same database (SPOOFWATCH_DATABASE_URL)",
                ",".join(map(str, runtime.settings.shard_ids or ())),
            )
        self.runtime = runtime
        self.settings = runtime.settings
        self.http_session = runtime.http_session
        self.audit = runtime.audit
        self.scans = runtime.scans
        self.second_opinions = SecondOpinions(
            runtime.scans, runtime.audit.cases, wait_s=runtime.settings.poll_deadline_s
        )
        self.clock = clock
        self.scan_pool = WorkerPool(runtime.settings.workers)
        metrics.watch_bot(self)
        self.guild_configs = GuildConfigs(runtime)
        #: Account problems of the providers (refused key, no credits), for the mod-logs.
        self.provider_health = ProviderHealth(runtime.detectors)
        shards = runtime.settings.shard_filter
        self.provider_copies = ProviderCopies(
            runtime.detectors, runtime.audit, self.guild_configs.get, shards=shards
        )
        #: Which flagged cases are owed a mod-log alert (recorded before each reply).
        self.alert_ledger = AlertLedger(runtime.audit)
        #: Files kept on mod-log alerts, taken off when their case is deleted.
        self.kept_evidence = KeptEvidence(runtime.audit, shards=shards)
        self.check_cooldown = Cooldown(runtime.audit.cooldowns, bucket="check", rate=5, per_s=600)
        self.shutdown_grace_s = SHUTDOWN_GRACE_S
        #: Sync slash commands at start-up when they changed (off for `python -m bot sync`).
        self.auto_sync = True

    async def setup_hook(self) -> None:
        self.scan_pool.start()
        for name in extension_names():
            await self.load_extension(name)
            log.info("loaded extension %s", name)
        if self.auto_sync:
            await self.sync_commands(force=False)

    async def close(self) -> None:
        log.info("shutting down: stopping scan workers")
        await self.scan_pool.stop(grace_s=self.shutdown_grace_s)
        await self.provider_copies.drain()
        await super().close()
        await self.identify_gate.close()

    async def launch_shard(
        self, gateway: yarl.URL, shard_id: int, *, initial: bool = False
    ) -> None:
        # discord.py retries a shard that failed to connect every 5 s, even once the bot is
        # closing (a SIGTERM during start-up would never end): stop when closed.
        if self.is_closed():
            return
        await super().launch_shard(gateway, shard_id, initial=initial)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Wait for this shard's turn within Discord's max_concurrency (`bot.sharding`)."""
        await self.identify_gate.wait(shard_id)

    async def _max_concurrency(self) -> int:
        """`session_start_limit.max_concurrency` from GET /gateway/bot (1 if it cannot be read)."""
        try:
            recommended, _url, limit = await self.http.get_bot_gateway()
        except (discord.GatewayNotFound, discord.HTTPException):
            log.warning("could not read max_concurrency from Discord; identifying one at a time")
            return 1
        if self.shard_count is not None and recommended > self.shard_count:
            log.warning(
                "Discord recommends %d shards and SPOOFWATCH_SHARD_COUNT is %d: a shard over "
                "2,500 guilds is refused (close code 4011)",
                recommended,
                self.shard_count,
            )
        if limit["remaining"] == 0:
            log.warning(
                "no session starts left today; Discord allows more in %.0f s",
                limit["reset_after"] / 1000,
            )
        log.info(
            "shards %s of %s; identifying up to %d at a time",
            ",".join(map(str, self.shard_ids)) if self.shard_ids else "all",
            self.shard_count if self.shard_count is not None else recommended,
            limit["max_concurrency"],
        )
        return int(limit["max_concurrency"])

    async def sync_commands(self, *, force: bool) -> bool:
        """Sync slash commands when their definitions changed (or `force`); True if synced."""
        dev_guild = self.settings.dev_guild
        if dev_guild is not None:
            guild = discord.Object(id=dev_guild)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
            log.info("synced commands to development guild %s", dev_guild)
            return True
        digest = commands_digest(self.tree)
        marker = _digest_path(self.settings.db_path)
        previous = await asyncio.to_thread(_read_marker, marker)
        if not force and previous == digest:
            log.info("slash commands unchanged; not syncing")
            return False
        await self.tree.sync()
        await asyncio.to_thread(_write_marker, marker, digest)
        log.info("synced %d global commands", len(self.tree.get_commands()))
        return True

    async def on_guild_available(self, guild: discord.Guild) -> None:
        # Before any reply is posted there (automatic scans wait for on_ready): where the
        # newest message is seconds old, this bot's previous life may have used the window.
        self.pacing.note_guild(guild.id, _last_messages(guild))

    async def on_ready(self) -> None:
        user = self.user
        log.info(
            "connected as %s (%s) to %d guilds", user, user.id if user else "?", len(self.guilds)
        )


def _last_messages(guild: discord.Guild) -> Iterator[tuple[int, int]]:
    """(channel, newest message) of each channel and active thread of the guild that has one;
    lazily, so a guild the pacer has noted already costs no walk over its channels."""
    places: Iterable[Any] = itertools.chain(guild.channels, guild.threads)
    for place in places:
        last = getattr(place, "last_message_id", None)
        if last is not None:
            yield place.id, last


def _identify_lock(runtime: Runtime) -> KeyLock:
    """Processes sharing a PostgreSQL database take turns there; alone, memory is enough."""
    if isinstance(runtime.audit, PostgresAuditLog):
        return PostgresKeyLock(runtime.audit.db.pool)
    return MemoryKeyLock()


def extension_names() -> list[str]:
    """Every feature package in `cogs/` (names starting with `_` are private)."""
    return sorted(
        module.name
        for module in pkgutil.iter_modules(cogs.__path__, f"{cogs.__name__}.")
        if module.ispkg and not module.name.rsplit(".", 1)[-1].startswith("_")
    )


def commands_digest(tree: app_commands.CommandTree[Spoofwatch]) -> str:
    payload = [
        command.to_dict(tree)
        for command in sorted(tree.get_commands(), key=lambda c: (c.name, type(c).__name__))
    ]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _digest_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".commands.sha256")


def _read_marker(path: Path) -> str | None:
    return path.read_text().strip() if path.exists() else None


def _write_marker(path: Path, digest: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(digest)
