"""The bot as members meet it: automatic scans, /check, the context menu, failures.

Real discord.py against the Discord emulator; provider stand-ins; real ffmpeg and SQLite.
"""

from __future__ import annotations

import logging

import pytest

from bot.storage import ScanStatus
from testkit.discord_emulator.models import Message
from testkit.e2e import Harness, MakeSpoofwatch
from testkit.media_factory import MediaFiles
from testkit.standins.behavioral_signals import utterance
from testkit.standins.resemble import metrics, video_metrics


def footer(embed: dict) -> str:
    return embed.get("footer", {}).get("text", "")


def field(embed: dict, name: str) -> str | None:
    return next((f["value"] for f in embed.get("fields", []) if f["name"] == name), None)


def text_of(embed: dict) -> str:
    parts = [embed.get("title", ""), embed.get("description", ""), footer(embed)]
    parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
    return "\n".join(parts)


async def test_voice_message_gets_a_verdict_reply(
    make_spoofwatch: MakeSpoofwatch, media: MediaFiles
) -> None:
    """A voice message is answered once, pinging nobody, with probability and transcript."""
    async with make_spoofwatch(provider="behavioral_signals") as sw:
        # Behavioral Signals receives the transcoded WAV, whose bytes we cannot script ahead;
        # script every upload instead through the default result.
        sw.bs.default_results = [
            *utterance(0, 0.0, 1.5, spoofed="0.93", text=" send me the code now"),
            *utterance(1, 1.5, 3.0, spoofed="1e-04", text=" please"),
        ]
        message = await sw.post(media.voice_ogg, voice=True)
        reply = await sw.reply_to(message)
    [embed] = reply.embeds
    assert "93%" in text_of(embed)
    assert "send me the code now please" in text_of(embed)
    assert "Case #1" in footer(embed)
    assert reply.allowed_mentions is not None and reply.allowed_mentions["parse"] == []
    assert reply.mention_user_ids == []
    assert reply.reply_to_id == message.id
    assert message.reaction_history == []  # a quick verdict needs no 🔍 (see test_autoscan_pacing)


async def test_video_gets_a_verdict(spoofwatch: Harness, media: MediaFiles) -> None:
    """A video's verdict takes the higher of the audio and frame scores (Resemble)."""
    spoofwatch.resemble.script_result(
        media.video_mp4,
        metrics=metrics([0.1, 0.2], label="real"),
        video_metrics=video_metrics(0.88),
    )
    reply = await spoofwatch.reply_to(await spoofwatch.post(media.video_mp4))
    [embed] = reply.embeds
    assert "88%" in text_of(embed)


async def test_audio_file_gets_a_verdict(spoofwatch: Harness, media: MediaFiles) -> None:
    """An MP3 posted as a file (not a voice message) is scanned too."""
    spoofwatch.resemble.script_result(media.tone_mp3, metrics=metrics([0.7, 0.8], label="fake"))
    reply = await spoofwatch.reply_to(await spoofwatch.post(media.tone_mp3))
    assert "75%" in text_of(reply.embeds[0]) or "80%" in text_of(reply.embeds[0])


async def test_two_attachments_one_reply_two_embeds(spoofwatch: Harness, media: MediaFiles) -> None:
    """A message with two media files gets exactly one reply carrying two embeds."""
    message = await spoofwatch.post(media.tone_wav, media.video_mp4)
    reply = await spoofwatch.reply_to(message)
    assert len(reply.embeds) == 2
    assert len(spoofwatch.emu.replies_to(message)) == 1
    assert "Case #1" in footer(reply.embeds[0]) and "Case #2" in footer(reply.embeds[1])


async def test_forwarded_voice_message_is_scanned(spoofwatch: Harness, media: MediaFiles) -> None:
    """Files inside a forwarded message (message_snapshots) are scanned."""
    emu = spoofwatch.emu
    voice = emu.attachment(media.voice_ogg, voice=True, duration_secs=3.0)
    forward = await emu.forward_message(emu.text_channel, emu.member, attachments=[voice])
    reply = await spoofwatch.reply_to(forward)
    assert len(reply.embeds) == 1


@pytest.mark.parametrize("where", ["thread", "voice_channel"])
async def test_threads_and_voice_chat_are_watched(
    spoofwatch: Harness, media: MediaFiles, where: str
) -> None:
    """Voice messages in threads and in a voice channel's chat get verdicts."""
    channel = getattr(spoofwatch.emu, where)
    message = await spoofwatch.post(media.voice_ogg, voice=True, channel=channel)
    reply = await spoofwatch.reply_to(message)
    assert reply.channel_id == channel.id


async def test_non_media_bot_and_webhook_messages_get_nothing(
    spoofwatch: Harness, media: MediaFiles
) -> None:
    """Text, an image, another bot's and a webhook's voice messages: no scan, no reply."""
    emu = spoofwatch.emu
    other_bot = emu.create_user("otherbot", bot=True)
    emu.add_member(emu.guild, other_bot)
    sent = [
        await emu.send_message(emu.text_channel, emu.member, "just text"),
        await emu.send_message(
            emu.text_channel,
            emu.member,
            attachments=[emu.attachment(media.image_png, content_type="image/png")],
        ),
        await spoofwatch.post(media.voice_ogg, voice=True, author=other_bot),
        await emu.send_message(
            emu.text_channel,
            emu.member,
            attachments=[emu.attachment(media.voice_ogg, voice=True, duration_secs=3.0)],
            webhook_id=4242,
        ),
    ]
    # A member's message afterwards proves the bot has processed everything before it.
    await spoofwatch.reply_to(await spoofwatch.post(media.voice_ogg, voice=True))
    for message in sent:
        assert spoofwatch.emu.replies_to(message) == []
    assert spoofwatch.resemble.submissions == 1


async def test_check_with_a_file_answers_privately(spoofwatch: Harness, media: MediaFiles) -> None:
    """/check file defers ephemerally and answers with the verdict embed."""
    emu = spoofwatch.emu
    spoofwatch.resemble.script_result(media.voice_ogg, metrics=metrics([0.9, 0.9], label="fake"))
    ix = await emu.invoke_slash(
        emu.text_channel,
        emu.member,
        "check",
        {"file": emu.attachment(media.voice_ogg, "v.ogg", "audio/ogg")},
    )
    answer = await ix.wait_for_reply()
    assert ix.callback_type == 5 and ix.deferred_ephemeral
    assert answer.ephemeral
    assert "90%" in text_of(answer.embeds[0])


async def test_check_public_is_visible(spoofwatch: Harness, media: MediaFiles) -> None:
    """/check public:true answers in the channel for everyone."""
    emu = spoofwatch.emu
    ix = await emu.invoke_slash(
        emu.text_channel,
        emu.member,
        "check",
        {"file": emu.attachment(media.tone_wav, "t.wav", "audio/wav"), "public": True},
    )
    answer = await ix.wait_for_reply()
    assert not answer.ephemeral


async def test_check_by_message_link(spoofwatch: Harness, media: MediaFiles) -> None:
    """/check message:<link> scans that message's media."""
    emu = spoofwatch.emu
    spoofwatch.bot.guild_configs._cache[emu.guild.id] = (
        await spoofwatch.bot.guild_configs.get(emu.guild.id)
    ).model_copy(update={"auto_scan": False})
    target = await spoofwatch.post(media.tone_mp3)
    link = f"https://discord.com/channels/{emu.guild.id}/{emu.text_channel.id}/{target.id}"
    ix = await emu.invoke_slash(emu.text_channel, emu.member, "check", {"message": link})
    answer = await ix.wait_for_reply()
    assert len(answer.embeds) == 1 and "Case #1" in footer(answer.embeds[0])


async def test_check_refuses_a_message_without_media(spoofwatch: Harness) -> None:
    """/check on a text message says clearly there is nothing to check."""
    emu = spoofwatch.emu
    target = await emu.send_message(emu.text_channel, emu.member, "hello")
    ix = await emu.invoke_slash(emu.text_channel, emu.member, "check", {"message": str(target.id)})
    answer = await ix.wait_for_reply()
    assert "no voice message" in answer.content


async def test_context_menu_checks_the_message(spoofwatch: Harness, media: MediaFiles) -> None:
    """Apps → Check for deepfake answers privately with the verdict."""
    emu = spoofwatch.emu
    target = await spoofwatch.post(media.voice_ogg, voice=True)
    await spoofwatch.reply_to(target)
    ix = await emu.invoke_message_command(
        emu.text_channel, emu.member, "Check for deepfake", target
    )
    answer = await ix.wait_for_reply()
    assert answer.ephemeral and len(answer.embeds) == 1


async def test_check_works_in_direct_messages(spoofwatch: Harness, media: MediaFiles) -> None:
    """/check file in a DM with the bot gets a verdict."""
    emu = spoofwatch.emu
    dm = emu.dm_channel(emu.member)
    ix = await emu.invoke_slash(
        dm, emu.member, "check", {"file": emu.attachment(media.tone_wav, "t.wav", "audio/wav")}
    )
    answer = await ix.wait_for_reply()
    assert len(answer.embeds) == 1


async def test_same_file_twice_makes_one_provider_call(
    spoofwatch: Harness, media: MediaFiles
) -> None:
    """The second post of identical bytes reuses the verdict and says so."""
    await spoofwatch.reply_to(await spoofwatch.post(media.voice_ogg, voice=True))
    second = await spoofwatch.reply_to(await spoofwatch.post(media.voice_ogg, voice=True))
    assert spoofwatch.resemble.submissions == 1
    assert "Reused" in text_of(second.embeds[0]) or "reused" in text_of(second.embeds[0])


async def test_provider_down_answers_and_keeps_serving(
    spoofwatch: Harness, media: MediaFiles
) -> None:
    """503 forever → an error embed; the next message still gets a verdict."""
    spoofwatch.resemble.fail_next("submit", 503, times=None)
    failed = await spoofwatch.reply_to(await spoofwatch.post(media.voice_ogg, voice=True))
    assert "unavailable" in text_of(failed.embeds[0]).lower()
    spoofwatch.resemble.clear_faults()
    ok = await spoofwatch.reply_to(await spoofwatch.post(media.tone_wav))
    assert "Case #2" in footer(ok.embeds[0])


async def test_out_of_credits_is_not_shown_to_members(
    spoofwatch: Harness, media: MediaFiles
) -> None:
    """Fails if a 402 from the provider puts billing details under a member's message
    (the operator's log and the mod-log are told instead: test_faults_e2e)."""
    emu = spoofwatch.emu
    spoofwatch.resemble.out_of_credits()
    message = await spoofwatch.post(media.voice_ogg, voice=True)
    await emu.wait_for(lambda: spoofwatch.resemble.submissions or None)
    await spoofwatch.settle()
    case = await spoofwatch.bot.audit.cases.case(emu.guild.id, 1)
    assert case is not None and case.error_kind == "provider_credits"
    # Gateway events arrive in order: once a later message is answered, the first was too.
    probe = await spoofwatch.reply_to(await spoofwatch.post(media.tone_wav))
    assert "Case #2" in footer(probe.embeds[0])
    assert emu.replies_to(message) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [("random_ogg", "not audio or video"), ("silent_mp4", "no sound"), ("long_ogg", "limit")],
)
async def test_bad_media_is_answered(
    spoofwatch: Harness, media: MediaFiles, name: str, expected: str
) -> None:
    """Not media, no audio track, too long: each an embed that says what happened."""
    path = getattr(media, name)
    reply = await spoofwatch.reply_to(await spoofwatch.post(path))
    assert expected in text_of(reply.embeds[0]).lower()
    assert spoofwatch.resemble.submissions == 0


async def test_too_large_is_refused_before_download(spoofwatch: Harness, media: MediaFiles) -> None:
    """An attachment whose size is over the cap is refused without downloading it."""
    emu = spoofwatch.emu
    huge = emu.attachment(media.video_mp4, content_type="video/mp4", size=600 * 1024 * 1024)
    message = await emu.send_message(emu.text_channel, emu.member, attachments=[huge])
    reply = await spoofwatch.reply_to(message)
    assert "limit" in text_of(reply.embeds[0]).lower()
    assert emu.downloads(huge) == 0


async def test_reply_forbidden_is_logged_and_recorded(
    spoofwatch: Harness, media: MediaFiles, caplog: pytest.LogCaptureFixture
) -> None:
    """With Send Messages denied, the bot logs it, records the case, and keeps serving."""
    emu = spoofwatch.emu
    emu.deny_bot(emu.voice_channel, "send_messages")
    caplog.set_level(logging.WARNING, logger="cogs.autoscan._cog")
    message = await spoofwatch.post(media.voice_ogg, voice=True, channel=emu.voice_channel)
    await emu.wait_for(lambda: any("cannot reply" in r.message for r in caplog.records))
    await spoofwatch.settle()
    record = await spoofwatch.bot.audit.cases.case(emu.guild.id, 1)
    assert record is not None and record.status is ScanStatus.DONE
    assert emu.replies_to(message) == []
    ok = await spoofwatch.reply_to(await spoofwatch.post(media.tone_wav))
    assert "Case #2" in footer(ok.embeds[0])


async def test_message_deleted_before_verdict_is_silent(
    spoofwatch: Harness, media: MediaFiles, caplog: pytest.LogCaptureFixture
) -> None:
    """If the message is gone when the verdict is ready, nothing errors and the case is kept."""
    emu = spoofwatch.emu
    spoofwatch.resemble.wait_hold_s = 0  # the job finishes by polling, giving us time
    spoofwatch.resemble.processing_polls = 3
    message = await spoofwatch.post(media.voice_ogg, voice=True)
    await emu.wait_for(lambda: spoofwatch.resemble.submissions == 1)
    await emu.delete_message(message)
    await spoofwatch.settle()
    assert emu.replies_to(message) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    record = await spoofwatch.bot.audit.cases.case(emu.guild.id, 1)
    assert record is not None and record.status.finished


async def test_sixth_check_is_refused_but_moderators_pass(
    spoofwatch: Harness, media: MediaFiles
) -> None:
    """The per-user cooldown refuses the 6th /check in 10 minutes; moderators are exempt."""
    emu = spoofwatch.emu

    async def check(user: object) -> Message:
        ix = await emu.invoke_slash(
            emu.text_channel,
            user,
            "check",
            {"file": emu.attachment(media.tone_wav, "t.wav", "audio/wav")},
        )
        return await ix.wait_for_reply()

    for _ in range(5):
        assert (await check(emu.member)).embeds
    refused = await check(emu.member)
    assert "try again" in refused.content
    for _ in range(6):
        assert (await check(emu.moderator)).embeds


async def test_refused_message_content_intent_says_which_switch(
    emulator, resemble_standin, bs_standin, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Close code 4014 ends the bot with exit 3 and the exact Developer Portal switch."""
    from bot.discord_glue.client import Spoofwatch
    from bot.discord_glue.lifecycle import serve
    from bot.resources import open_runtime
    from testkit.e2e import e2e_settings

    emulator.set_portal_intents(message_content=False)
    settings = e2e_settings(tmp_path, resemble_standin, bs_standin)
    async with open_runtime(settings) as runtime:
        bot = Spoofwatch(runtime)
        code = await serve(bot, emulator.token)
        await bot.close()
    assert code == 3
    assert "MESSAGE CONTENT INTENT" in capsys.readouterr().err
