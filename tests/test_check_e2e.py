"""`/check` and the context menu as Discord delivers them: privacy, per-file answers, the token.

The real bot against the Discord emulator and the Resemble stand-in, real ffmpeg and SQLite.
"""

from __future__ import annotations

from tests.e2e import Harness


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
