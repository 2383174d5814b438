"""The Discord emulator, exercised by the real discord.py client (a minimal bot defined here).

These tests pin the emulator's contract with discord.py 2.7: if one fails, end-to-end tests of
Spoofwatch built on the emulator cannot be trusted either.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import re
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from testkit.discord_emulator import DiscordEmulator

OGG_BYTES = b"OggS\x00\x02" + bytes(range(256)) * 8
AnyBot = commands.Bot | commands.AutoShardedBot


def make_bot(*, message_content: bool = True, sharded: bool = False) -> AnyBot:
    """A bare commands.Bot with the intents Spoofwatch asks for."""
    intents = discord.Intents.default()
    intents.message_content = message_content
    cls = commands.AutoShardedBot if sharded else commands.Bot
    return cls(command_prefix="!", intents=intents)


def record_messages(bot: AnyBot) -> list[discord.Message]:
    """Collect every non-bot message the bot receives."""
    received: list[discord.Message] = []

    async def on_message(message: discord.Message) -> None:
        if not message.author.bot:
            received.append(message)

    bot.add_listener(on_message)
    return received


async def first_received(
    emulator: DiscordEmulator, received: list[discord.Message]
) -> discord.Message:
    """Wait for the bot to receive a message, and return the first one."""
    return await emulator.wait_for(
        lambda: received[0] if received else None, describe="the bot to receive a message"
    )


class ConfirmCase(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"case:(?P<id>\d+):confirm"
):
    """A persistent button carrying its case number, like Spoofwatch's mod-log alerts."""

    def __init__(self, case_id: int) -> None:
        super().__init__(discord.ui.Button(label="Confirm", custom_id=f"case:{case_id}:confirm"))
        self.case_id = case_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ConfirmCase:
        return cls(int(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(
            content=f"Case {self.case_id} confirmed by {interaction.user.name}", view=None
        )


async def test_bot_logs_in_and_sees_the_default_guild(emulator: DiscordEmulator) -> None:
    """Fails if READY/GUILD_CREATE do not build discord.py's guild, channels and members."""
    bot = make_bot()
    async with emulator.run(bot):
        guild = bot.get_guild(emulator.guild.id)
        assert bot.user is not None and bot.user.id == emulator.bot_user.id
        assert guild is not None and guild.name == "Test Guild"
        assert {c.name for c in guild.channels} == {"Community", "general", "Lounge"}
        assert [t.name for t in guild.threads] == ["general-thread"]
        assert guild.me.guild_permissions.manage_messages
        assert emulator.gateway.sessions[0].intents == bot.intents.value


async def test_voice_message_is_parsed_and_its_bytes_downloaded(emulator: DiscordEmulator) -> None:
    """Fails if a voice message's flag, duration, waveform or CDN bytes reach the bot altered."""
    bot = make_bot()
    received = record_messages(bot)
    async with emulator.run(bot):
        voice = emulator.attachment(
            OGG_BYTES, voice=True, duration_secs=3.2, waveform=b"\x01\x02\x03"
        )
        await emulator.send_message(emulator.text_channel, emulator.member, attachments=[voice])
        message = await first_received(emulator, received)
        attachment = message.attachments[0]

        assert message.flags.voice and attachment.is_voice_message()
        assert (attachment.duration, attachment.waveform, attachment.size) == (
            3.2,
            b"\x01\x02\x03",
            len(OGG_BYTES),
        )
        assert await attachment.read() == OGG_BYTES
        assert emulator.downloads(voice) == 1


async def test_reply_with_embed_and_no_mentions_is_recorded(emulator: DiscordEmulator) -> None:
    """Fails if a reply's embed, message_reference or allowed_mentions are not recorded as sent."""
    bot = make_bot()

    @bot.listen()
    async def on_message(message: discord.Message) -> None:
        if not message.author.bot:
            embed = discord.Embed(title="Verdict", description=f"for <@{message.author.id}>")
            await message.reply(embed=embed, allowed_mentions=discord.AllowedMentions.none())

    async with emulator.run(bot):
        original = await emulator.send_message(
            emulator.text_channel, emulator.member, "listen to this"
        )
        reply = await emulator.wait_for_reply(original)

    assert reply.embeds[0]["title"] == "Verdict"
    assert reply.allowed_mentions == {"parse": []}
    assert reply.mention_user_ids == []
    assert reply.type == 19 and reply.author.id == emulator.bot_user.id


@pytest.mark.parametrize("delete_first", [False, True])
async def test_first_followup_after_a_public_defer_ignores_the_ephemeral_flag(
    emulator: DiscordEmulator, delete_first: bool
) -> None:
    """Fails if the first follow-up after a public defer can turn private (Discord ignores it)."""
    bot = make_bot()

    @bot.tree.command(name="ask", description="Ask")
    async def ask(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        if delete_first:
            await interaction.delete_original_response()
        await interaction.followup.send("private?", ephemeral=True)

    async with emulator.run(bot):
        await bot.tree.sync()
        ix = await emulator.invoke_slash(emulator.text_channel, emulator.member, "ask", {})
        reply = await ix.wait_for_reply()

    # Filling in the public "thinking…" message keeps it public; a new message may be private.
    assert reply.ephemeral is delete_first
    assert (reply.id == ix.original_id) is not delete_first


async def test_slash_command_with_attachment_defers_then_follows_up_ephemerally(
    emulator: DiscordEmulator,
) -> None:
    """Fails if /check's attachment option, ephemeral defer or follow-up are mis-modelled."""
    bot = make_bot()

    @bot.tree.command(name="check", description="Check a file")
    async def check(interaction: discord.Interaction, file: discord.Attachment) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        data = await file.read()
        await interaction.followup.send(
            embed=discord.Embed(title=f"{len(data)} bytes"), ephemeral=True
        )

    async with emulator.run(bot):
        await bot.tree.sync()
        upload = emulator.attachment(OGG_BYTES, "clip.ogg", "audio/ogg")
        interaction = await emulator.invoke_slash(
            emulator.text_channel, emulator.moderator, "check", {"file": upload}
        )
        reply = await interaction.wait_for_reply()

    assert interaction.callback_type == 5 and interaction.deferred_ephemeral
    assert reply.flags & 64 and reply.embeds[0]["title"] == f"{len(OGG_BYTES)} bytes"
    assert emulator.downloads(upload) == 1


async def test_subcommand_group_options_reach_the_callback(emulator: DiscordEmulator) -> None:
    """Fails if "group subcommand" paths are not nested as Discord nests them."""
    bot = make_bot()
    audit = app_commands.Group(name="audit", description="Audit log")
    seen: list[int] = []

    @audit.command(name="recent", description="Recent cases")
    async def recent(interaction: discord.Interaction, limit: int) -> None:
        seen.append(limit)
        await interaction.response.send_message("ok", ephemeral=True)

    bot.tree.add_command(audit)
    async with emulator.run(bot):
        interaction = await emulator.invoke_slash(
            emulator.guild, emulator.moderator, "audit recent", {"limit": 5}
        )
        await interaction.wait_for_reply()

    assert seen == [5]


async def test_message_context_menu_receives_the_target_message(emulator: DiscordEmulator) -> None:
    """Fails if a message command's target_id/resolved.messages do not resolve to the message."""
    bot = make_bot(message_content=False)

    async def check_message(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_message(
            f"{len(message.attachments)} file(s)", ephemeral=True
        )

    bot.tree.add_command(
        app_commands.ContextMenu(name="Check for deepfake", callback=check_message)
    )
    async with emulator.run(bot):
        video = emulator.attachment(b"\x00\x00\x00\x18ftypmp42", "clip.mp4", "video/mp4")
        target = await emulator.send_message(
            emulator.text_channel, emulator.member, attachments=[video]
        )
        interaction = await emulator.invoke_message_command(
            emulator.text_channel, emulator.moderator, "Check for deepfake", target
        )
        reply = await interaction.wait_for_reply()

    assert reply.content == "1 file(s)" and reply.ephemeral


async def test_persistent_button_works_after_the_bot_restarts(emulator: DiscordEmulator) -> None:
    """Fails if a DynamicItem click is not routed to a fresh bot process, or the edit is lost."""
    first = make_bot()
    async with emulator.run(first):
        channel = first.get_channel(emulator.text_channel.id)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send(
            "Spoof alert", view=discord.ui.View(timeout=None).add_item(ConfirmCase(7))
        )

    second = make_bot()
    second.add_dynamic_items(ConfirmCase)
    async with emulator.run(second):
        interaction = await emulator.click_button(sent.id, emulator.moderator, "case:7:confirm")
        updated = await interaction.wait_for_reply()

    assert interaction.callback_type == 7
    assert updated.content == "Case 7 confirmed by mod" and updated.components == []
    assert emulator.gateway.identifies == 2


async def test_command_sync_is_recorded_with_stable_ids(emulator: DiscordEmulator) -> None:
    """Fails if PUT /applications/{id}/commands is not recorded or a re-sync changes ids."""
    bot = make_bot()

    @bot.tree.command(name="check", description="Check a file")
    async def check(interaction: discord.Interaction, file: discord.Attachment) -> None: ...

    async with emulator.run(bot):
        first = await bot.tree.sync()
        second = await bot.tree.sync(guild=discord.Object(emulator.guild.id))
        third = await bot.tree.sync()

    assert [len(s.commands) for s in emulator.command_syncs] == [1, 0, 1]
    assert emulator.command_syncs[1].guild_id == emulator.guild.id and second == []
    assert first[0].id == third[0].id and emulator.commands()[0]["options"][0]["type"] == 11


async def test_missing_send_messages_raises_forbidden(emulator: DiscordEmulator) -> None:
    """Fails if a channel overwrite denying the bot Send Messages does not yield 403 code 50013."""
    emulator.deny_bot(emulator.text_channel, "send_messages")
    bot = make_bot()
    async with emulator.run(bot):
        channel = bot.get_channel(emulator.text_channel.id)
        assert isinstance(channel, discord.TextChannel)
        assert not channel.permissions_for(channel.guild.me).send_messages
        with pytest.raises(discord.Forbidden) as raised:
            await channel.send("hello")

    assert raised.value.code == 50013 and emulator.messages_in(emulator.text_channel) == []


async def test_rate_limited_request_is_retried_by_discord_py(emulator: DiscordEmulator) -> None:
    """Fails if a 429 with retry_after is not one discord.py honours and retries."""
    rule = emulator.fail_next("POST", "/channels/*/messages", 429, retry_after=0.05)
    bot = make_bot()
    async with emulator.run(bot):
        channel = bot.get_channel(emulator.text_channel.id)
        assert isinstance(channel, discord.TextChannel)
        await channel.send("after the rate limit")

    statuses = [r.status for r in emulator.requests_to("POST", "/channels/*/messages")]
    assert rule.hits == 1 and statuses == [429, 200]
    assert [m.content for m in emulator.messages_in(emulator.text_channel)] == [
        "after the rate limit"
    ]


async def test_reply_to_a_deleted_message_fails_like_discord(emulator: DiscordEmulator) -> None:
    """Fails if replying to a deleted message does not give 400 code 50035 (fail_if_not_exists)."""
    bot = make_bot()
    received = record_messages(bot)
    async with emulator.run(bot):
        original = await emulator.send_message(emulator.text_channel, emulator.member, "soon gone")
        message = await first_received(emulator, received)
        await emulator.delete_message(emulator.text_channel, original)
        with pytest.raises(discord.HTTPException) as raised:
            await message.reply("too late")

    assert (raised.value.status, raised.value.code) == (400, 50035)


async def test_missed_event_is_replayed_on_resume(emulator: DiscordEmulator) -> None:
    """Fails if an event dispatched while the bot is disconnected is not replayed on RESUME."""
    bot = make_bot()
    received = record_messages(bot)
    async with emulator.run(bot):
        async with emulator.gateway_outage():
            await emulator.send_message(
                emulator.text_channel, emulator.member, "while you were away"
            )
        message = await first_received(emulator, received)

    assert message.content == "while you were away"
    assert (emulator.gateway.identifies, emulator.gateway.resumes) == (1, 1)
    assert emulator.gateway.connections[-1].path == "/resume-ws/"


async def test_refused_message_content_intent_raises_privileged_intents_required(
    emulator: DiscordEmulator,
) -> None:
    """Fails if asking for a privileged intent the portal has off does not close with 4014."""
    emulator.set_portal_intents(message_content=False)
    bot = make_bot(message_content=True)
    with pytest.raises(discord.PrivilegedIntentsRequired):
        async with emulator.run(bot):
            pass

    assert emulator.gateway.connections[0].close_code == 4014


async def test_without_message_content_intent_attachments_are_blanked(
    emulator: DiscordEmulator,
) -> None:
    """Fails if a bot without the Message Content intent still sees other users' attachments."""
    bot = make_bot(message_content=False)
    received = record_messages(bot)
    async with emulator.run(bot):
        voice = emulator.attachment(OGG_BYTES, voice=True)
        await emulator.send_message(emulator.text_channel, emulator.member, attachments=[voice])
        message = await first_received(emulator, received)

    assert message.attachments == [] and message.flags.voice


async def test_forwarded_voice_message_arrives_as_a_snapshot(emulator: DiscordEmulator) -> None:
    """Fails if a forward's message_snapshots attachments do not reach discord.py."""
    bot = make_bot()
    received = record_messages(bot)
    async with emulator.run(bot):
        voice = emulator.attachment(OGG_BYTES, voice=True)
        await emulator.forward_message(emulator.voice_channel, emulator.member, attachments=[voice])
        message = await first_received(emulator, received)
        snapshot_file = message.message_snapshots[0].attachments[0]
        data = await snapshot_file.read()

    assert message.attachments == [] and snapshot_file.is_voice_message() and data == OGG_BYTES


async def test_auto_sharded_bot_connects_through_gateway_bot(emulator: DiscordEmulator) -> None:
    """Fails if AutoShardedBot cannot discover the gateway through GET /gateway/bot."""
    bot = make_bot(sharded=True)
    async with emulator.run(bot):
        assert bot.get_guild(emulator.guild.id) is not None

    assert emulator.requests_to("GET", "/gateway/bot")
    assert emulator.gateway.sessions[0].identify["shard"] == [0, 1]


async def test_cdn_refuses_tampered_and_deleted_attachment_urls(emulator: DiscordEmulator) -> None:
    """Fails if the CDN serves a URL with a bad signature or the file of a deleted message."""
    bot = make_bot()
    received = record_messages(bot)
    async with emulator.run(bot):
        video = emulator.attachment(b"video", "clip.mp4", "video/mp4")
        sent = await emulator.send_message(
            emulator.text_channel, emulator.member, attachments=[video]
        )
        attachment = (await first_received(emulator, received)).attachments[0]
        assert bot.http.get_from_cdn is not None
        with pytest.raises(discord.NotFound):
            await bot.http.get_from_cdn(attachment.url.replace("hm=", "hm=0"))
        await emulator.delete_message(sent)
        with pytest.raises(discord.NotFound):
            await attachment.read()

    assert emulator.downloads(video) == 0
    assert not any(r.had_authorization for r in emulator.cdn_requests)


async def test_burst_of_messages_arrives_in_order(emulator: DiscordEmulator) -> None:
    """Fails if dispatched events can overtake one another."""
    count = 20
    bot = make_bot()
    received = record_messages(bot)
    async with emulator.run(bot):
        await asyncio.gather(
            *(
                emulator.send_message(emulator.text_channel, emulator.member, str(i))
                for i in range(count)
            )
        )
        await emulator.wait_for(lambda: len(received) == count)

    assert [m.content for m in received] == [str(i) for i in range(count)]


async def test_reaction_add_and_remove_are_both_recorded(emulator: DiscordEmulator) -> None:
    """Fails if the bot's reaction history or current reaction set is not tracked."""
    bot = make_bot()
    async with emulator.run(bot):
        target = await emulator.send_message(emulator.text_channel, emulator.member, "scan me")
        message = await bot.get_partial_messageable(emulator.text_channel.id).fetch_message(
            target.id
        )
        await message.add_reaction("🔍")
        await message.remove_reaction("🔍", discord.Object(emulator.bot_user.id))

    history = [(e.action, e.emoji) for e in emulator.reaction_history(target)]
    assert history == [("add", "🔍"), ("remove", "🔍")] and emulator.reactions_on(target) == {}


@pytest.mark.parametrize(
    ("bot_permissions", "timed_out"), [("moderate_members", True), ("view_channel", False)]
)
async def test_timeout_needs_moderate_members(
    emulator: DiscordEmulator, bot_permissions: str, timed_out: bool
) -> None:
    """Fails if PATCH member with communication_disabled_until ignores Moderate Members."""
    emulator.set_bot_permissions(emulator.guild, [bot_permissions])
    bot = make_bot()
    async with emulator.run(bot):
        guild = bot.get_guild(emulator.guild.id)
        assert guild is not None
        member = await guild.fetch_member(emulator.member.id)
        try:
            await member.timeout(datetime.timedelta(minutes=10), reason="spoofed voice")
        except discord.Forbidden as error:
            assert error.code == 50013

    assert emulator.member.timed_out is timed_out


async def test_interaction_file_upload_is_parsed_from_multipart(emulator: DiscordEmulator) -> None:
    """Fails if files[n] parts of a multipart follow-up are not recorded and served back."""
    bot = make_bot()

    @bot.tree.command(name="export", description="Export cases")
    async def export(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        csv = discord.File(io.BytesIO(b"case,verdict\n1,spoofed\n"), "cases.csv")
        await interaction.followup.send("Export", file=csv, ephemeral=True)

    async with emulator.run(bot):
        interaction = await emulator.invoke_slash(emulator.text_channel, emulator.admin, "export")
        reply = await interaction.wait_for_reply()

    assert [(f.filename, f.data) for f in reply.files] == [
        ("cases.csv", b"case,verdict\n1,spoofed\n")
    ]
    assert reply.attachments[0].read_bytes() == b"case,verdict\n1,spoofed\n"


@pytest.mark.parametrize(
    ("status", "error", "code"), [(403, discord.Forbidden, 50013), (404, discord.NotFound, 10008)]
)
async def test_injected_faults_surface_as_discord_py_errors(
    emulator: DiscordEmulator, status: int, error: type[discord.HTTPException], code: int
) -> None:
    """Fails if an injected fault's status and Discord error code do not reach the bot."""
    emulator.fail_next("POST", "/channels/*/messages", status)
    bot = make_bot()
    async with emulator.run(bot):
        channel = bot.get_partial_messageable(emulator.text_channel.id)
        with pytest.raises(error) as raised:
            await channel.send("hello")

    assert raised.value.code == code


async def test_cdn_answers_plain_and_ranged_downloads_alike(emulator: DiscordEmulator) -> None:
    """Fails if a plain GET of a small file (answered from one read) differs from what
    aiohttp's FileResponse answers (bytes, ETag, Last-Modified, Accept-Ranges), or a Range
    request no longer gets its 206."""
    data = bytes(range(256)) * 300
    voice = emulator.attachment(data, "voice-message.ogg", "audio/ogg")
    await emulator.send_message(emulator.text_channel, emulator.member, attachments=[voice])
    async with aiohttp.ClientSession() as session:
        async with session.get(voice.url, headers={"Accept-Encoding": "identity"}) as plain:
            body, plain_headers = await plain.read(), plain.headers
        async with session.get(voice.url, headers={"Range": "bytes=10-19"}) as ranged:
            part, ranged_headers = await ranged.read(), ranged.headers
    assert (plain.status, body) == (200, data)
    assert (ranged.status, part) == (206, data[10:20])
    assert plain_headers["Content-Type"] == "audio/ogg"
    assert plain_headers["Content-Length"] == str(len(data))
    assert plain_headers["Accept-Ranges"] == ranged_headers["Accept-Ranges"] == "bytes"
    assert plain_headers["ETag"] == ranged_headers["ETag"]
    assert plain_headers["Last-Modified"] == ranged_headers["Last-Modified"]
    assert emulator.downloads(voice) == 2


async def test_a_late_first_response_is_refused_by_default(emulator: DiscordEmulator) -> None:
    """Fails if the emulator accepts a first response after Discord's 3 s (10062), by default."""
    bot = make_bot()
    errors: list[discord.HTTPException] = []
    assert emulator.interaction_ack_deadline == 3.0
    emulator.interaction_ack_deadline = 0.2  # the same rule, without waiting 3 s

    @bot.tree.command(name="slow", description="Answers late")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.3)
        try:
            await interaction.response.send_message("late")
        except discord.HTTPException as exc:
            errors.append(exc)

    async with emulator.run(bot):
        await bot.tree.sync()
        await emulator.invoke_slash(emulator.text_channel, emulator.member, "slow", {})
        await emulator.wait_for(lambda: errors)
    assert errors[0].code == 10062


async def test_the_token_expires_after_its_lifetime(emulator: DiscordEmulator) -> None:
    """Fails if follow-ups still work after the token's life (Discord: 15 min, then 50027)."""
    bot = make_bot()
    errors: list[discord.HTTPException] = []
    assert emulator.interaction_token_lifetime == 15 * 60
    emulator.interaction_token_lifetime = 0.2

    @bot.tree.command(name="slow", description="Follows up late")
    async def slow(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await asyncio.sleep(0.3)
        try:
            await interaction.followup.send("late")
        except discord.HTTPException as exc:
            errors.append(exc)

    async with emulator.run(bot):
        await bot.tree.sync()
        await emulator.invoke_slash(emulator.text_channel, emulator.member, "slow", {})
        await emulator.wait_for(lambda: errors)
    assert (errors[0].status, errors[0].code) == (401, 50027)
