"""Two Spoofwatch processes, one shard each, on one Discord (the emulator, two shards) and one
PostgreSQL database: each answers its own guilds, settings and case numbers are shared, each
resumes only its own shards' scans, and they take turns identifying.

Each "process" is a Spoofwatch client with a runtime of its own (its own pool, LISTEN
connection and identify gate) in this test's event loop, as
`tests/bot/storage/test_storage_shared.py` does for the storage layer; `bench/crash_test.py
--shards 2` runs real processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.discord_glue.client import Spoofwatch
from bot.discord_glue.lifecycle import serve
from bot.guild_config import GuildConfig
from bot.resources import open_runtime
from bot.settings import load_settings
from bot.storage import ScanStatus
from testkit.discord_emulator import DiscordEmulator
from testkit.discord_emulator.models import Channel, Guild, Member, Message
from testkit.e2e import Harness, MakeSpoofwatch, e2e_settings
from testkit.media_factory import MediaFiles
from testkit.moderation import wav
from testkit.standins import BehavioralSignalsStandIn, ResembleStandIn


class Scene:
    """Guild `on[0]` belongs to shard 0 and `on[1]` to shard 1 of two."""

    def __init__(self, emu: DiscordEmulator) -> None:
        emu.gateway.shard_count = 2
        emu.gateway.max_concurrency = 2  # one key per shard: no waiting unless a test asks
        emu.gateway.enforce_identify_limit = True
        self.on: list[Guild] = []
        self.channel: list[Channel] = []
        self.member: list[Member] = []
        self.admin: list[Member] = []
        for shard in (0, 1):
            guild = emu.create_guild(f"Shard {shard}", shard=(shard, 2))
            self.on.append(guild)
            self.channel.append(emu.create_text_channel(guild, "general"))
            self.member.append(emu.add_member(guild, f"member{shard}"))
            self.admin.append(emu.add_admin(guild, f"admin{shard}"))


@pytest.fixture
def scene(bare_emulator: DiscordEmulator) -> Scene:
    return Scene(bare_emulator)


RunShard = Callable[..., AbstractAsyncContextManager[Harness]]


@pytest.fixture
def run_shard(
    bare_emulator: DiscordEmulator,
    resemble_standin: ResembleStandIn,
    bs_standin: BehavioralSignalsStandIn,
    tmp_path: Path,
    postgres_url: str,
) -> RunShard:
    """`async with run_shard(0) as sw:` runs the process that owns shard 0 of 2."""
    now = [datetime(2026, 11, 21, 12, 0, tzinfo=UTC)]

    @asynccontextmanager
    async def run(shard: int, **overrides: Any) -> AsyncIterator[Harness]:
        home = tmp_path / f"shard-{shard}"
        home.mkdir(exist_ok=True)
        settings = e2e_settings(
            home,
            resemble_standin,
            bs_standin,
            database_url=postgres_url,
            shard_count=2,
            shard_ids=(shard,),
            **overrides,
        )
        async with open_runtime(settings, clock=lambda: now[0]) as runtime:
            bot = Spoofwatch(runtime, clock=lambda: now[0])
            bot.shutdown_grace_s = 0.2
            async with bare_emulator.run(bot):
                harness = Harness(bare_emulator, bot, runtime, resemble_standin, bs_standin, now)
                yield harness
                await harness.settle()

    return run


def seen_by(bot: Spoofwatch) -> list[discord.Message]:
    seen: list[discord.Message] = []

    async def on_message(message: discord.Message) -> None:
        if not message.author.bot:
            seen.append(message)

    bot.add_listener(on_message)
    return seen


async def post_voice(emu: DiscordEmulator, scene: Scene, shard: int, ogg: Path) -> Message:
    voice = emu.attachment(ogg, voice=True, duration_secs=3.0)
    return await emu.send_message(scene.channel[shard], scene.member[shard], attachments=[voice])


async def post_wav(emu: DiscordEmulator, scene: Scene, shard: int, path: Path) -> Message:
    audio = emu.attachment(path, content_type="audio/wav")
    return await emu.send_message(scene.channel[shard], scene.member[shard], attachments=[audio])


def bot_replies(emu: DiscordEmulator, message: Message) -> list[Message]:
    return [m for m in emu.replies_to(message) if m.author.id == emu.bot_user.id]


async def test_each_process_answers_only_its_own_guilds(
    run_shard: RunShard, scene: Scene, bare_emulator: DiscordEmulator, media: MediaFiles
) -> None:
    """Fails if a process receives or answers a message of a guild another process owns, or a
    message is answered other than once."""
    emu = bare_emulator
    async with run_shard(0) as first, run_shard(1) as second:
        seen = [seen_by(first.bot), seen_by(second.bot)]
        assert [[g.id for g in h.bot.guilds] for h in (first, second)] == [
            [scene.on[0].id],
            [scene.on[1].id],
        ]
        posted = [await post_voice(emu, scene, shard, media.voice_ogg) for shard in (0, 1)]
        for message in posted:
            await emu.wait_for_reply(message)
        await asyncio.gather(first.settle(), second.settle())

    assert [[m.guild.id for m in s if m.guild] for s in seen] == [[g.id] for g in scene.on]
    assert [len(bot_replies(emu, m)) for m in posted] == [1, 1]


async def test_case_numbers_stay_per_guild_across_processes(
    run_shard: RunShard, scene: Scene, bare_emulator: DiscordEmulator, media: MediaFiles
) -> None:
    """Fails if two processes writing one database give a guild a repeated or skipped case
    number, or number one guild's cases after another's."""
    emu = bare_emulator
    async with run_shard(0) as first, run_shard(1) as second:
        posted = await asyncio.gather(
            *(post_voice(emu, scene, shard, media.voice_ogg) for shard in (0, 1, 0, 1, 0, 1))
        )
        for message in posted:
            await emu.wait_for_reply(message)
        await asyncio.gather(first.settle(), second.settle())
        numbers = [
            sorted(c.case_number for c in await first.bot.audit.cases.recent(g.id, limit=10))
            for g in scene.on
        ]
    assert numbers == [[1, 2, 3], [1, 2, 3]]


async def test_a_settings_change_through_one_process_reaches_the_other(
    run_shard: RunShard, scene: Scene, bare_emulator: DiscordEmulator
) -> None:
    """Fails if another process keeps using a guild's cached settings after an admin changed
    them through the process that owns the guild."""
    emu = bare_emulator
    guild_id = scene.on[0].id
    async with run_shard(0), run_shard(1) as second:
        before = await second.bot.guild_configs.get(guild_id)  # now cached in process 2
        ix = await emu.invoke_slash(
            scene.channel[0], scene.admin[0], "spoofwatch settings threshold", {"value": 0.9}
        )
        answer = await ix.wait_for_reply()
        assert answer.content.startswith("Saved"), answer.content
        after = await asyncio.wait_for(settled_threshold(second.bot, guild_id, 0.9), 10)
    assert (before.alert_threshold, after) == (GuildConfig().alert_threshold, 0.9)


async def settled_threshold(bot: Spoofwatch, guild_id: int, wanted: float) -> float:
    """The guild's threshold as `bot` sees it, once it is `wanted` (the NOTIFY is async)."""
    while (config := await bot.guild_configs.get(guild_id)).alert_threshold != wanted:
        await asyncio.sleep(0.02)
    return config.alert_threshold


async def test_each_process_resumes_only_its_own_shards_scans(
    run_shard: RunShard, scene: Scene, bare_emulator: DiscordEmulator, tmp_path: Path
) -> None:
    """Fails if a process restarted alone resumes a scan of a guild another process owns, or
    if a resumed scan sends its file to the provider again."""
    emu = bare_emulator
    # Restarting a shard within Discord's 5 s window is refused; not what this test is about.
    emu.gateway.enforce_identify_limit = False
    async with (
        run_shard(0, provider="behavioral_signals") as first,
        run_shard(1, provider="behavioral_signals") as second,
    ):
        first.bs.processing_polls = 10**6  # both jobs stay pending until the restart
        posted = [await post_wav(emu, scene, shard, wav(tmp_path, shard)) for shard in (0, 1)]
        await emu.wait_for(lambda: first.bs.submissions == 2 and first.bs.status_polls >= 2)
        await asyncio.gather(first.bot.close(), second.bot.close())
    first.bs.processing_polls = 0

    async with run_shard(1, provider="behavioral_signals") as second:
        await emu.wait_for(lambda: bot_replies(emu, posted[1]))
        await second.settle()
        case_0 = await second.bot.audit.cases.case(scene.on[0].id, 1)
        assert case_0 is not None and case_0.status is ScanStatus.SUBMITTED
        assert bot_replies(emu, posted[0]) == []
    async with run_shard(0, provider="behavioral_signals") as first:
        await emu.wait_for(lambda: bot_replies(emu, posted[0]))
        await first.settle()
    assert [len(bot_replies(emu, m)) for m in posted] == [1, 1]
    assert first.bs.submissions == 2


async def test_processes_starting_together_identify_within_max_concurrency(
    run_shard: RunShard, scene: Scene, bare_emulator: DiscordEmulator
) -> None:
    """Fails if two processes whose shards share a rate-limit key identify inside one 5 s
    window (Discord answers op 9); they take turns through the database. Takes ~5 s."""
    emu = bare_emulator
    emu.gateway.max_concurrency = 1
    async with run_shard(0) as first, run_shard(1) as second:
        assert first.bot.is_ready() and second.bot.is_ready()
    assert (emu.gateway.identifies, emu.gateway.refused_identifies) == (2, 0)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"SPOOFWATCH_SHARD_IDS": "0"}, "needs SPOOFWATCH_SHARD_COUNT"),
        ({"SPOOFWATCH_SHARD_COUNT": "2", "SPOOFWATCH_SHARD_IDS": "2"}, "shard 2 does not exist"),
        ({"SPOOFWATCH_SHARD_COUNT": "0"}, "SPOOFWATCH_SHARD_COUNT"),
        ({"SPOOFWATCH_SHARD_COUNT": "2", "SPOOFWATCH_SHARD_IDS": "0,x"}, "separated by commas"),
        ({"SPOOFWATCH_SHARD_COUNT": "2", "SPOOFWATCH_SHARD_IDS": "1,1"}, "named twice"),
    ],
)
def test_impossible_shard_settings_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problem: str
) -> None:
    """Fails if a shard setting Discord would refuse starts the bot, or the error does not
    say which setting is wrong."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(Exception, match=problem):
        load_settings(None)


def test_shard_settings_give_the_processs_guilds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails if SPOOFWATCH_SHARD_COUNT/IDS from the environment do not become the filter the
    process resumes scans with (or a process running every shard is filtered at all)."""
    monkeypatch.setenv("SPOOFWATCH_SHARD_COUNT", "4")
    monkeypatch.setenv("SPOOFWATCH_SHARD_IDS", " 1, 3 ")
    shard_filter = load_settings(None).shard_filter
    assert shard_filter is not None and (shard_filter.count, shard_filter.ids) == (4, {1, 3})
    monkeypatch.setenv("SPOOFWATCH_SHARD_IDS", "0,1,2,3")
    assert load_settings(None).shard_filter is None
    monkeypatch.delenv("SPOOFWATCH_SHARD_IDS")
    monkeypatch.delenv("SPOOFWATCH_SHARD_COUNT")
    assert load_settings(None).shard_filter is None


async def test_with_nothing_set_one_process_runs_every_recommended_shard(
    make_spoofwatch: MakeSpoofwatch, emulator: DiscordEmulator, media: MediaFiles
) -> None:
    """Fails if Spoofwatch without shard settings does not take Discord's recommended count
    (a bot past 2,500 guilds would be refused, 4011), identifies two shards that share a
    rate-limit key inside one window, or misses a guild. Takes ~5 s."""
    second = emulator.create_guild("Elsewhere", shard=(1, 2))
    emulator.create_guild("Here", shard=(0, 2))
    emulator.gateway.shard_count = 2
    emulator.gateway.max_guilds_per_shard = 2  # one shard alone would hold all three
    emulator.gateway.enforce_identify_limit = True
    async with make_spoofwatch() as sw:
        assert (sw.bot.shard_count, len(sw.bot.guilds)) == (2, 3)
        assert sw.bot.get_guild(second.id) is not None
        await sw.reply_to(await sw.post(media.voice_ogg, voice=True))
    assert (emulator.gateway.identifies, emulator.gateway.refused_identifies) == (2, 0)


async def test_too_few_shards_stop_start_up_with_the_setting_named(
    bare_emulator: DiscordEmulator,
    resemble_standin: ResembleStandIn,
    bs_standin: BehavioralSignalsStandIn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Fails if Discord's 4011 (a shard over the guild limit) leaves the operator with a
    traceback or a zero exit status instead of the setting to change."""
    emu = bare_emulator
    emu.create_guild("One")
    emu.create_guild("Two")
    emu.gateway.max_guilds_per_shard = 1
    settings = e2e_settings(tmp_path, resemble_standin, bs_standin, shard_count=1)
    async with open_runtime(settings) as runtime, Spoofwatch(runtime) as bot:
        status = await asyncio.wait_for(serve(bot, emu.token), 30)
    assert status == 4 and "SPOOFWATCH_SHARD_COUNT" in capsys.readouterr().err
