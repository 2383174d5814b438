"""`/check` and the context menu as Discord delivers them: privacy, per-file answers, the token.

The real bot against the Discord emulator and the Resemble stand-in, real ffmpeg and SQLite.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from testkit.discord_emulator import DiscordEmulator
from testkit.discord_emulator.models import Channel, Message
from testkit.e2e import Harness
from testkit.moderation import configure, wav


async def test_error_after_a_public_defer_stays_private(spoofwatch: Harness) -> None:
    """Fails if an error answer to /check public:True is shown to the whole channel."""
    emu = spoofwatch.emu
    ix = await emu.invoke_slash(
        emu.text_channel, emu.member, "check", {"message": "not a link", "public": True}
    )
    answer = await ix.wait_for_reply()
    assert "neither a message link" in answer.content
    assert answer.ephemeral
    assert not any(m.content for m in emu.bot_messages(emu.text_channel) if not m.ephemeral)


def _footers(message: Message) -> list[str]:
    return [str(e.get("footer", {}).get("text", "")) for e in message.embeds]


async def _post_three(sw: Harness, tmp_path: Path) -> Message:
    """Three distinct recordings in one message, posted while automatic scans are off."""
    await configure(sw, "autoscan", {"enabled": False})
    files = [sw.emu.attachment(wav(tmp_path, n), f"clip-{n}.wav", "audio/wav") for n in range(3)]
    return await sw.emu.send_message(sw.emu.text_channel, sw.emu.member, attachments=files)


async def test_each_file_is_answered_as_it_finishes(spoofwatch: Harness, tmp_path: Path) -> None:
    """Fails if /check waits for every file before answering (one message per file instead)."""
    emu = spoofwatch.emu
    target = await _post_three(spoofwatch, tmp_path)
    ix = await emu.invoke_slash(emu.text_channel, emu.member, "check", {"message": str(target.id)})
    answers = [await ix.wait_for_followup(n) for n in range(3)]
    assert [_footers(a) for a in answers] == [
        [f"Case #{n} · checked by Resemble AI · automated, may be wrong"] for n in (1, 2, 3)
    ]
    assert all(a.ephemeral for a in answers)


@pytest.mark.parametrize("public", [False, True])
async def test_answer_after_the_token_expired_still_arrives(
    spoofwatch: Harness, tmp_path: Path, public: bool
) -> None:
    """Fails if a check outliving the 15-minute token loses its answer (channel or DM instead)."""
    emu = spoofwatch.emu
    emu.interaction_token_lifetime = 0.5
    spoofwatch.resemble.processing_s = 1.0
    upload = emu.attachment(wav(tmp_path, 1), "clip.wav", "audio/wav")
    await emu.invoke_slash(
        emu.text_channel, emu.member, "check", {"file": upload, "public": public}
    )
    where = emu.text_channel if public else emu.dm_channel(emu.member)
    late = await emu.wait_for_message(where, predicate=lambda m: bool(m.embeds))
    assert _footers(late) == ["Case #1 · checked by Resemble AI · automated, may be wrong"]
    assert late.mention_user_ids == []
    if not public:  # a private answer never reaches the channel
        assert [m for m in emu.bot_messages(emu.text_channel) if m.embeds] == []


async def test_context_menu_answer_after_the_token_expired_is_a_dm(
    spoofwatch: Harness, tmp_path: Path
) -> None:
    """Fails if the context menu's private answer is lost (or made public) past the token."""
    emu = spoofwatch.emu
    target = await _post_three(spoofwatch, tmp_path)
    emu.interaction_token_lifetime = 0.5
    spoofwatch.resemble.processing_s = 0.3
    ix = await emu.invoke_message_command(
        emu.text_channel, emu.member, "Check for deepfake", target
    )
    dm = emu.dm_channel(emu.member)
    await emu.wait_for(lambda: spoofwatch.resemble.submissions == 3 or None)
    await emu.wait_for(lambda: _delivered(ix.followups, dm, emu) == 3 or None)
    by_dm = [f for m in emu.bot_messages(dm) for f in _footers(m)]
    in_time = [f for m in ix.followups for f in _footers(m)]
    assert sorted(in_time + by_dm) == [
        f"Case #{n} · checked by Resemble AI · automated, may be wrong" for n in (1, 2, 3)
    ]
    assert by_dm and all(m.ephemeral for m in ix.followups)


def _delivered(followups: list[Message], dm: Channel, emu: DiscordEmulator) -> int:
    return sum(len(m.embeds) for m in [*followups, *emu.bot_messages(dm)])


async def test_answer_skips_the_token_once_it_is_about_to_expire(
    spoofwatch: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if the bot keeps using a token it knows is expiring (a follow-up that may be lost)."""
    emu = spoofwatch.emu
    # The module the running bot loaded (discord.py re-imports an extension's modules).
    delivery = importlib.import_module("cogs.check._delivery")
    monkeypatch.setattr(delivery, "TOKEN_LIFETIME_S", 0.5)
    monkeypatch.setattr(delivery, "TOKEN_MARGIN_S", 0.0)
    spoofwatch.resemble.processing_s = 1.0
    upload = emu.attachment(wav(tmp_path, 1), "clip.wav", "audio/wav")
    ix = await emu.invoke_slash(emu.text_channel, emu.member, "check", {"file": upload})
    late = await emu.wait_for_message(
        emu.dm_channel(emu.member), predicate=lambda m: bool(m.embeds)
    )
    assert _footers(late) == ["Case #1 · checked by Resemble AI · automated, may be wrong"]
    assert emu.requests_to("POST", f"/webhooks/*/{ix.token}") == []
