"""Issue 5 through Discord: each `/spoofwatch settings …` changes what the bot does.

The real bot against the Discord emulator, the Resemble stand-in and a real SQLite file. Every
setting is changed the way an admin would change it: by running the command.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.guild_config import ActionPolicy, GuildConfig
from cogs.admin import _cog as admin_cog
from testkit.alerts import moderation
from testkit.discord_emulator.bits import DEFAULT_BOT_PERMISSIONS, Permission
from testkit.discord_emulator.models import Channel, Message, iter_components
from testkit.e2e import Harness, MakeSpoofwatch
from testkit.moderation import (
    FAKE,
    MANAGE_GUILD,
    configure,
    field,
    listeners_done,
    not_scanned,
    run,
    scan,
    text_of,
    wav,
)
from testkit.standins.resemble import metrics


async def _config(sw: Harness) -> GuildConfig:
    return await sw.bot.guild_configs.get(sw.emu.guild.id)


async def _new_channel(sw: Harness, name: str, *, category: Channel | None = None) -> Channel:
    """A text channel created while the bot runs, once the bot has it in its cache."""
    channel = sw.emu.create_text_channel(sw.emu.guild, name, category=category)
    await sw.emu.wait_for(lambda: sw.bot.get_channel(channel.id))
    return channel


# --- where and what is scanned ---------------------------------------------------------------

# (mode, listed places, where the file is posted, a place that is scanned for the probe)
SCOPES = [
    ("all_except_listed", ["text_channel"], "text_channel", "voice_channel"),
    ("all_except_listed", ["text_channel"], "thread", "voice_channel"),
    ("all_except_listed", ["category"], "voice_channel", "outside"),
    ("only_listed", ["category"], "outside", "text_channel"),
    ("only_listed", ["voice_channel"], "text_channel", "voice_channel"),
]


@pytest.mark.parametrize(
    ("mode", "listed", "posted_in", "probe_in"),
    SCOPES,
    ids=[f"{m}-{'+'.join(ls)}-{p}" for m, ls, p, _ in SCOPES],
)
async def test_scope_leaves_out_channels(
    spoofwatch: Harness,
    tmp_path: Path,
    mode: str,
    listed: list[str],
    posted_in: str,
    probe_in: str,
) -> None:
    """A file posted outside the configured scope gets no scan and no reply."""
    emu = spoofwatch.emu
    places = {
        "text_channel": emu.text_channel,
        "voice_channel": emu.voice_channel,
        "thread": emu.thread,
        "category": emu.category,
        "outside": await _new_channel(spoofwatch, "outside"),
    }
    await configure(spoofwatch, "scope", {"mode": mode})
    for name in listed:
        await configure(spoofwatch, "channel-add", {"channel": places[name]})
    message = await spoofwatch.post(wav(tmp_path, 1), channel=places[posted_in])
    assert await not_scanned(spoofwatch, message, wav(tmp_path, 2), channel=places[probe_in])


INSIDE = ["text_channel", "thread", "voice_channel"]


@pytest.mark.parametrize("posted_in", INSIDE)
async def test_only_listed_category_scans_what_is_inside(
    spoofwatch: Harness, tmp_path: Path, posted_in: str
) -> None:
    """With only a category listed, its channels and their threads are still scanned."""
    emu = spoofwatch.emu
    await configure(spoofwatch, "scope", {"mode": "only_listed"})
    await configure(spoofwatch, "channel-add", {"channel": emu.category})
    reply = await scan(spoofwatch, wav(tmp_path, 1), channel=getattr(emu, posted_in))
    assert "Case #1" in text_of(reply)


async def test_removing_a_channel_from_the_list_scans_it_again(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """channel-remove takes a channel off the exclusion list: its files are scanned again."""
    emu = spoofwatch.emu
    await configure(spoofwatch, "scope", {"mode": "all_except_listed"})
    await configure(spoofwatch, "channel-add", {"channel": emu.text_channel})
    await configure(spoofwatch, "channel-remove", {"channel": emu.text_channel})
    assert (await _config(spoofwatch)).scope_channels == frozenset()
    assert "Case #1" in text_of(await scan(spoofwatch, wav(tmp_path, 1)))


async def test_automatic_scans_off(spoofwatch: Harness, tmp_path: Path) -> None:
    """With automatic scans off, a posted file is left alone until they are turned on."""
    await configure(spoofwatch, "autoscan", {"enabled": False})
    message = await spoofwatch.post(wav(tmp_path, 1))
    await configure(spoofwatch, "autoscan", {"enabled": True})
    assert await not_scanned(spoofwatch, message, wav(tmp_path, 2))


# (kind switched off, the file of that kind, a file of a kind still scanned)
KINDS = [
    ("videos", "video_mp4", "tone_mp3"),
    ("audio_files", "tone_mp3", "video_mp4"),
    ("voice_messages", "voice", "tone_mp3"),
]


@pytest.mark.parametrize(("off", "posted", "probe"), KINDS, ids=[k for k, _, _ in KINDS])
async def test_media_kind_switched_off_is_not_scanned(
    spoofwatch: Harness, media: Any, off: str, posted: str, probe: str
) -> None:
    """A kind of media switched off (videos, audio files, voice messages) is not scanned."""
    kinds = {"voice_messages": True, "audio_files": True, "videos": True, off: False}
    await configure(spoofwatch, "kinds", kinds)
    if posted == "voice":
        message = await spoofwatch.post(media.voice_ogg, voice=True)
    else:
        message = await spoofwatch.post(getattr(media, posted))
    assert await not_scanned(spoofwatch, message, getattr(media, probe))


# --- threshold and action policy --------------------------------------------------------------


@pytest.fixture
async def modlog(spoofwatch: Harness) -> Channel:
    """A #mod-log channel, configured as the guild's mod-log."""
    channel = await _new_channel(spoofwatch, "mod-log")
    await configure(spoofwatch, "modlog", {"channel": channel})
    return channel


def _alerts(sw: Harness, modlog: Channel) -> list[Message]:
    return [m for m in sw.emu.bot_messages(modlog) if m.embeds]


# (policy, threshold, scores, label, alerted, deleted)
POLICIES = [
    ("reply", 0.5, [0.9, 0.9], "fake", False, False),
    ("alert", 0.5, [0.9, 0.9], "fake", True, False),
    ("delete_and_alert", 0.5, [0.9, 0.9], "fake", True, True),
    ("alert", 0.95, [0.9, 0.9], "fake", False, False),
    ("alert", 0.5, [0.1, 0.1], "real", False, False),
    ("alert", 0.3, [0.4, 0.4], "real", True, False),
    ("delete_and_alert", 0.95, [0.9, 0.9], "fake", False, False),
]


@pytest.mark.parametrize(
    ("policy", "threshold", "scores", "label", "alerted", "deleted"),
    POLICIES,
    ids=[f"{p}-{t}-{s[0]}" for p, t, s, *_ in POLICIES],
)
async def test_threshold_and_action_policy(
    spoofwatch: Harness,
    modlog: Channel,
    tmp_path: Path,
    policy: str,
    threshold: float,
    scores: list[float],
    label: str,
    alerted: bool,
    deleted: bool,
) -> None:
    """The verdict's probability against the threshold, then the policy, decide the outcome."""
    emu = spoofwatch.emu
    await configure(spoofwatch, "action", {"policy": policy})
    await configure(spoofwatch, "threshold", {"value": threshold})
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=metrics(scores, label=label))
    message = await spoofwatch.post(path)
    reply = await emu.wait_for_message(
        emu.text_channel, predicate=lambda m: m.reply_to_id == message.id
    )
    await listeners_done(spoofwatch)
    alerts = _alerts(spoofwatch, modlog)
    assert "Case #1" in text_of(reply)
    assert (len(alerts), emu.message(message).deleted) == (int(alerted), deleted)
    if alerted:
        [alert] = alerts
        assert "case #1" in text_of(alert).lower()
        # Reviews, second opinion (both providers are set up here), delete, three time-outs.
        assert len(_buttons(alert)) == 7
        assert ("deleted" in text_of(alert).lower()) == deleted


async def test_policy_deletion_is_recorded_on_the_case(
    spoofwatch: Harness, modlog: Channel, tmp_path: Path
) -> None:
    """A deletion by the delete-and-alert policy is recorded on the case, by the bot."""
    emu = spoofwatch.emu
    await configure(spoofwatch, "action", {"policy": "delete_and_alert"})
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    await spoofwatch.reply_to(await spoofwatch.post(path))
    await listeners_done(spoofwatch)
    events = moderation(await spoofwatch.bot.audit.cases.case_events(emu.guild.id, 1))
    # Then the alert carrying the file says where it is, for the retention purge.
    assert [(e.action, e.actor) for e in events] == [
        ("delete", str(emu.bot_user.id)),
        ("evidence_kept", "spoofwatch"),
    ]


async def test_alert_policy_without_modlog_says_alerts_need_one(spoofwatch: Harness) -> None:
    """Choosing an alerting policy with no mod-log channel set tells the admin to set one."""
    answer = await configure(spoofwatch, "action", {"policy": "alert"})
    assert "/spoofwatch settings modlog" in answer.content


async def test_saved_settings_are_echoed_in_the_embeds_words(spoofwatch: Harness) -> None:
    """Fails if the confirmation shows internal field names or raw values to the admin."""
    answer = await configure(spoofwatch, "threshold", {"value": 0.8})
    assert "Alert threshold: 80%" in answer.content
    assert "alert_threshold" not in answer.content


def test_every_guild_setting_has_words_for_the_echo() -> None:
    """Fails if a new guild setting would be echoed under its internal field name."""
    assert set(GuildConfig.model_fields) <= set(admin_cog.LABELS)


def _buttons(message: Message) -> list[dict[str, Any]]:
    return [c for c in iter_components(message.components) if c.get("type") == 2]


async def test_no_alerts_without_a_modlog_channel(spoofwatch: Harness, tmp_path: Path) -> None:
    """With the default policy (alert) but no mod-log channel, a deepfake gets a reply only."""
    emu = spoofwatch.emu
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    await scan(spoofwatch, path)
    await listeners_done(spoofwatch)
    bot_posts = [m for m in emu.bot_messages() if not m.ephemeral]
    assert [m.reply_to_id is not None for m in bot_posts] == [True]


# --- replies and transcripts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "scores", "label", "replied"),
    [
        ("flagged", [0.05], "real", False),
        ("flagged", [0.4], "real", False),
        ("flagged", [0.9], "fake", True),
        ("never", [0.9], "fake", False),
        ("all", [0.05], "real", True),
    ],
)
async def test_public_replies_setting(
    spoofwatch: Harness,
    tmp_path: Path,
    mode: str,
    scores: list[float],
    label: str,
    replied: bool,
) -> None:
    """`flagged` answers only files at or above the threshold (an unclear 40 % stays quiet),
    `never` none, `all` every one; every file is still scanned and recorded."""
    await configure(spoofwatch, "replies", {"mode": mode})
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=metrics(scores, label=label))
    message = await spoofwatch.post(path)
    probe = wav(tmp_path, 2)
    spoofwatch.resemble.script_result(probe, metrics=FAKE)
    if mode == "never":
        await spoofwatch.post(probe)
        await spoofwatch.settle()
    else:
        await scan(spoofwatch, probe)
    record = await spoofwatch.bot.audit.cases.case(spoofwatch.emu.guild.id, 1)
    assert record is not None and record.message_id == message.id
    assert bool(spoofwatch.emu.replies_to(message)) is replied


async def test_fewer_public_replies_without_a_modlog_prompts_for_one(spoofwatch: Harness) -> None:
    """Fails if an admin quietens the channel without being told flagged files then need a
    mod-log to reach anyone."""
    answer = await run(spoofwatch, spoofwatch.emu.admin, "spoofwatch settings replies",
                       {"mode": "never"})  # fmt: skip
    assert "/spoofwatch settings modlog" in answer.content
    assert field(answer.embeds[0], "Public replies") == "none (moderators only)"


async def test_no_public_replies_and_no_alerts_is_called_out(spoofwatch: Harness) -> None:
    """Fails if an admin can silence the channel while the action only replies, without being
    told that flagged files then reach nobody."""
    await configure(spoofwatch, "action", {"policy": "reply"})
    answer = await run(spoofwatch, spoofwatch.emu.admin, "spoofwatch settings replies",
                       {"mode": "never"})  # fmt: skip
    assert "reach nobody" in answer.content


@pytest.mark.parametrize(("show", "store"), [(False, True), (True, False)])
async def test_transcripts_shown_and_stored(
    make_spoofwatch: MakeSpoofwatch, tmp_path: Path, show: bool, store: bool
) -> None:
    """Hidden transcripts stay out of the reply; unstored ones stay out of the audit log."""
    async with make_spoofwatch(resemble_intelligence=True) as sw:
        path = wav(tmp_path, 1)
        sw.resemble.script_result(path, metrics=FAKE, transcription="the secret words")
        await configure(sw, "transcripts", {"show": show, "store": store})
        reply = await scan(sw, path)
        record = await sw.bot.audit.cases.case(sw.emu.guild.id, 1)
    assert record is not None
    assert ("the secret words" in text_of(reply)) is show
    assert (record.transcript is not None and "the secret words" in record.transcript) is store


# --- limits, provider, persistence ------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [({"max_seconds": 1.0}, "1 s limit"), ({"max_mb": 0.1}, "limit")],
    ids=["duration", "size"],
)
async def test_guild_limits_refuse_bigger_files(
    spoofwatch: Harness, tmp_path: Path, options: dict[str, float], expected: str
) -> None:
    """A guild's own size or duration limit refuses a larger file before the provider sees it."""
    await configure(spoofwatch, "limits", options)
    reply = await scan(spoofwatch, wav(tmp_path, 1, seconds=4.0))
    assert expected in text_of(reply).lower()
    assert spoofwatch.resemble.submissions == 0


async def test_provider_setting_picks_the_service(spoofwatch: Harness, tmp_path: Path) -> None:
    """With the provider set to Behavioral Signals, scans go there instead of to Resemble."""
    await configure(spoofwatch, "provider", {"provider": "behavioral_signals"})
    await scan(spoofwatch, wav(tmp_path, 1))
    assert (spoofwatch.bs.submissions, spoofwatch.resemble.submissions) == (1, 0)


async def test_settings_survive_a_restart(make_spoofwatch: MakeSpoofwatch) -> None:
    """Settings are kept in the database: after a restart `show` reports the saved values."""
    async with make_spoofwatch() as first:
        await configure(first, "threshold", {"value": 0.8})
        await configure(first, "quota", {"per_day": 25})
    async with make_spoofwatch() as second:
        shown = await run(second, second.emu.admin, "spoofwatch settings show")
    [embed] = shown.embeds
    assert (field(embed, "Alert threshold"), field(embed, "Daily quota")) == ("80%", "25")


async def test_settings_changes_are_logged(spoofwatch: Harness) -> None:
    """Each change is an audit event naming the admin and what changed."""
    emu = spoofwatch.emu
    await configure(spoofwatch, "threshold", {"value": 0.8})
    [event] = await spoofwatch.bot.audit.cases.events(emu.guild.id, limit=10)
    assert (event.actor, event.action) == (str(emu.admin.id), "settings")
    assert "alert_threshold=0.8" in event.reason


# --- who may configure -------------------------------------------------------------------------

SETTINGS_COMMANDS: list[tuple[str, dict[str, Any]]] = [
    ("settings show", {}),
    ("settings autoscan", {"enabled": False}),
    ("settings scope", {"mode": "only_listed"}),
    ("settings channel-add", {"channel": "text_channel"}),
    ("settings channel-remove", {"channel": "text_channel"}),
    ("settings kinds", {"voice_messages": False, "audio_files": False, "videos": False}),
    ("settings threshold", {"value": 0.9}),
    ("settings action", {"policy": "reply"}),
    ("settings modlog", {"channel": "text_channel"}),
    ("settings replies", {"mode": "never"}),
    ("settings transcripts", {"show": False, "store": False}),
    ("settings retention", {"days": 1}),
    ("settings provider", {"provider": "resemble"}),
    ("settings quota", {"per_day": 1}),
    ("settings limits", {"max_mb": 1.0}),
    ("settings alert-ping", {"role": "role"}),
    ("settings exempt-add", {"role": "role"}),
    ("settings exempt-remove", {"role": "role"}),
    ("settings generators", {"enabled": False}),
    ("settings faces", {"enabled": False}),
    ("settings feedback", {"enabled": True}),
    ("forget", {"member": "member"}),
    ("setup", {}),
]


@pytest.mark.parametrize("who", ["member", "moderator"])
@pytest.mark.parametrize(
    ("command", "options"), SETTINGS_COMMANDS, ids=[c for c, _ in SETTINGS_COMMANDS]
)
async def test_settings_refuse_without_manage_server(
    spoofwatch: Harness, who: str, command: str, options: dict[str, Any]
) -> None:
    """Every /spoofwatch command refuses members without Manage Server and changes nothing.

    The emulator delivers the interaction whatever the defaults say, as Discord does once a
    server admin overrides them: the runtime check must refuse.
    """
    emu = spoofwatch.emu
    before = await _config(spoofwatch)
    options = {
        k: getattr(emu, v)
        if v in ("text_channel", "member")
        else emu.guild.everyone_role
        if v == "role"
        else v
        for k, v in options.items()
    }
    answer = await run(spoofwatch, getattr(emu, who), f"spoofwatch {command}", options)
    assert answer.ephemeral
    assert "Manage Server" in answer.content
    assert not answer.embeds
    assert await _config(spoofwatch) == before
    # Settings changes and forgets are logged: nothing logged means nothing was done.
    assert await spoofwatch.bot.audit.cases.events(emu.guild.id, limit=10) == []


def test_settings_matrix_covers_every_command(spoofwatch_commands: dict[str, Any]) -> None:
    """The refusal matrix above names every /spoofwatch command the bot registers, but the
    help, which answers anyone who reaches it (tests/test_help_e2e.py)."""
    group = spoofwatch_commands["spoofwatch"]
    registered = set()
    for option in group["options"]:
        if option["type"] == 2:
            registered |= {f"{option['name']} {o['name']}" for o in option["options"]}
        else:
            registered.add(option["name"])
    assert registered == {c for c, _ in SETTINGS_COMMANDS} | {"help"}
    assert int(group["default_member_permissions"]) == MANAGE_GUILD


@pytest.fixture
async def spoofwatch_commands(spoofwatch: Harness) -> dict[str, Any]:
    """The command definitions the bot synced to the emulator, by name."""
    return {c["name"]: c for c in spoofwatch.emu.commands()}


# --- what the bot itself may do ------------------------------------------------------------------


@pytest.mark.parametrize("denied", ["view_channel", "send_messages", "embed_links"])
async def test_modlog_the_bot_cannot_post_in_is_refused(spoofwatch: Harness, denied: str) -> None:
    """Setting a mod-log channel the bot cannot post embeds in is refused, naming what lacks."""
    channel = await _new_channel(spoofwatch, "mod-log")
    spoofwatch.emu.deny_bot(channel, denied)
    await spoofwatch.emu.wait_for(
        lambda: not getattr(channel_perms(spoofwatch, channel.id), denied)
    )
    answer = await run(
        spoofwatch, spoofwatch.emu.admin, "spoofwatch settings modlog", {"channel": channel}
    )
    assert "cannot post" in answer.content
    assert denied.replace("_", " ").title() in answer.content
    assert (await _config(spoofwatch)).modlog_channel_id is None


def channel_perms(sw: Harness, channel_id: int) -> Any:
    channel = sw.bot.get_channel(channel_id)
    assert channel is not None and hasattr(channel, "guild")
    return channel.permissions_for(channel.guild.me)  # type: ignore[union-attr]


async def _without_manage_messages(sw: Harness) -> None:
    perms = DEFAULT_BOT_PERMISSIONS & ~Permission.MANAGE_MESSAGES
    sw.emu.set_bot_permissions(sw.emu.guild, perms)
    guild = sw.bot.get_guild(sw.emu.guild.id)
    assert guild is not None
    await sw.emu.wait_for(lambda: not guild.me.guild_permissions.manage_messages)


async def test_delete_policy_without_manage_messages_falls_back_to_alert(
    spoofwatch: Harness, modlog: Channel, tmp_path: Path
) -> None:
    """Choosing delete-and-alert when the bot cannot delete says so and saves alert instead."""
    await _without_manage_messages(spoofwatch)
    answer = await configure(spoofwatch, "action", {"policy": "delete_and_alert"})
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    message = await spoofwatch.post(path)
    await spoofwatch.reply_to(message)
    await listeners_done(spoofwatch)
    assert "Manage Messages" in answer.content
    assert (await _config(spoofwatch)).action is ActionPolicy.ALERT
    assert len(_alerts(spoofwatch, modlog)) == 1
    assert not spoofwatch.emu.message(message).deleted


async def test_delete_policy_shows_a_failed_delete_on_the_alert(
    spoofwatch: Harness, modlog: Channel, tmp_path: Path
) -> None:
    """When the policy's delete fails in one channel, the alert says so instead of losing it."""
    emu = spoofwatch.emu
    await configure(spoofwatch, "action", {"policy": "delete_and_alert"})
    emu.deny_bot(emu.text_channel, "manage_messages")
    await emu.wait_for(lambda: not channel_perms(spoofwatch, emu.text_channel.id).manage_messages)
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    message = await spoofwatch.post(path)
    await spoofwatch.reply_to(message)
    await listeners_done(spoofwatch)
    [alert] = _alerts(spoofwatch, modlog)
    assert "Could not delete" in (field(alert.embeds[0], "Actions") or "")
    assert not emu.message(message).deleted


# --- cost controls --------------------------------------------------------------------------------


async def test_quota_stops_scans_and_resets_the_next_day(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """At the daily quota a scan is refused saying when it resets; the next day scans resume."""
    await configure(spoofwatch, "quota", {"per_day": 2})
    await scan(spoofwatch, wav(tmp_path, 1))
    await scan(spoofwatch, wav(tmp_path, 2))
    refused = await scan(spoofwatch, wav(tmp_path, 3))
    spoofwatch.now[0] += timedelta(days=1)
    next_day = await scan(spoofwatch, wav(tmp_path, 4))
    assert "quota" in text_of(refused).lower() and "resets" in text_of(refused).lower()
    assert spoofwatch.resemble.submissions == 3
    assert "Case #4" in text_of(next_day) and "quota" not in text_of(next_day).lower()


async def test_reused_verdicts_do_not_count_against_the_quota(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """A file already checked is answered from the log even when the quota is used up."""
    await configure(spoofwatch, "quota", {"per_day": 1})
    await scan(spoofwatch, wav(tmp_path, 1))
    again = await scan(spoofwatch, wav(tmp_path, 1))
    assert "quota" not in text_of(again).lower()
    assert "reused" in text_of(again).lower()


# --- a freshly invited bot -----------------------------------------------------------------------


async def test_fresh_server_defaults(spoofwatch: Harness, tmp_path: Path) -> None:
    """In a server that just invited the bot, scans and replies are on and alerts are off."""
    emu = spoofwatch.emu
    guild = emu.create_guild("New Server")
    channel = emu.create_text_channel(guild, "chat")
    author = emu.add_member(guild, "newcomer")
    admin = emu.add_admin(guild, "new-admin")
    await emu.wait_for(lambda: spoofwatch.bot.get_channel(channel.id))
    path = wav(tmp_path, 1)
    spoofwatch.resemble.script_result(path, metrics=FAKE)
    reply = await scan(spoofwatch, path, channel=channel, author=author)
    await listeners_done(spoofwatch)
    shown = await run(spoofwatch, admin, "spoofwatch settings show", channel=channel)
    [embed] = shown.embeds
    assert "Case #1" in text_of(reply)
    assert [m.id for m in emu.bot_messages() if m.guild_id == guild.id and not m.ephemeral] == [
        reply.id
    ]
    assert field(embed, "Automatic scans") == "on"
    assert field(embed, "Scope") == "every channel"
    assert field(embed, "Public replies") == "every file (genuine in one line)"
    assert field(embed, "Mod-log") == "not set"
    assert "/spoofwatch settings modlog" in (embed.get("description") or "")
    assert field(embed, "Largest file") == "100 MiB (bot default)"
    assert field(embed, "Provider") == "Resemble AI (bot default)"


# --- replies that fit Discord ----------------------------------------------------------------


@pytest.mark.parametrize("command", ["channel-add", "channel-remove"])
async def test_long_channel_list_still_gets_a_saved_reply(
    spoofwatch: Harness, command: str
) -> None:
    """Fails if a scope list of 90 channels makes the reply too long for Discord (2,000)."""
    emu = spoofwatch.emu
    many = frozenset(1_100_000_000_000_000_000 + i for i in range(90))
    config = await _config(spoofwatch)
    await spoofwatch.bot.guild_configs.save(
        emu.guild.id, config.model_copy(update={"scope_channels": many | {emu.text_channel.id}})
    )
    answer = await configure(spoofwatch, command, {"channel": emu.text_channel})
    assert len(answer.content) <= 2000
    assert f"<#{emu.text_channel.id}>;" in answer.content
    saved = (await _config(spoofwatch)).scope_channels
    assert (emu.text_channel.id in saved) is (command == "channel-add")
