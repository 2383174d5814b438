"""What the bot does when Discord refuses a verdict reply: say what was refused, and why.

The real bot against the Discord emulator and the Resemble stand-in, real ffmpeg and SQLite.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from testkit.e2e import Harness
from testkit.moderation import wav


def _invalid_form_body(path: list[str], code: str, message: str) -> dict[str, object]:
    """Discord's 400 body: errors nested along the field's path (rest_app.FormErrors)."""
    node: dict[str, object] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        node = {key: node}
    return {"code": 50035, "message": "Invalid Form Body", "errors": node}


async def _reply_refused(sw: Harness, tmp_path: Path, body: dict[str, object]) -> None:
    sw.emu.fail_next("POST", f"/channels/{sw.emu.text_channel.id}/messages", 400, json=body)
    await sw.post(wav(tmp_path, 1))
    await sw.settle()


def _refused(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR and "refused" in r.message]


async def test_refused_reply_names_the_refused_field(
    spoofwatch: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Fails if a reply Discord refuses (50035) is logged as a deleted message."""
    body = _invalid_form_body(
        ["embeds", "0", "fields", "2", "value"], "BASE_TYPE_REQUIRED", "This field is required"
    )
    with caplog.at_level(logging.INFO):
        await _reply_refused(spoofwatch, tmp_path, body)
        # Waited for, not assumed: on a busy machine the reply can be refused after settling.
        await spoofwatch.emu.wait_for(lambda: _refused(caplog) or None)
    assert "deleted before its verdict" not in caplog.text
    refused = _refused(caplog)
    assert refused and "embeds.0.fields.2.value: This field is required" in refused[0].message


async def test_reply_to_a_deleted_message_is_still_recognised(
    spoofwatch: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Fails if the 50035 Discord gives for a deleted reply target is reported as a bug."""
    body = _invalid_form_body(["message_reference"], "REPLIES_UNKNOWN_MESSAGE", "Unknown message")
    with caplog.at_level(logging.INFO):
        await _reply_refused(spoofwatch, tmp_path, body)
        await spoofwatch.emu.wait_for(lambda: "deleted before its verdict" in caplog.text or None)
    assert not [r for r in caplog.records if r.levelno == logging.ERROR]
