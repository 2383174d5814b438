"""What the alert tests share: a deepfake alerted in #mod-log, and clicking its buttons."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.storage import AuditEvent
from testkit.discord_emulator.interactions import MODAL, InteractionHandle
from testkit.discord_emulator.models import Channel, Message, iter_components
from testkit.e2e import Harness
from testkit.moderation import FAKE, configure, field, listeners_done, wav


@dataclass
class Alerted:
    """A deepfake posted by the plain member, its verdict reply and its mod-log alert."""

    sw: Harness
    modlog: Channel
    message: Message
    alert: Message


async def make_modlog(sw: Harness) -> Channel:
    channel = sw.emu.create_text_channel(sw.emu.guild, "mod-log")
    await sw.emu.wait_for(lambda: sw.bot.get_channel(channel.id))
    await configure(sw, "modlog", {"channel": channel})
    return channel


async def post_fake(sw: Harness, modlog: Channel, path: Path) -> Alerted:
    sw.resemble.script_result(path, metrics=FAKE)
    message = await sw.post(path)
    await sw.reply_to(message)
    alert = await sw.emu.wait_for_message(modlog, predicate=lambda m: bool(m.embeds))
    await listeners_done(sw)
    return Alerted(sw, modlog, message, alert)


async def make_alerted(spoofwatch: Harness, tmp_path: Path) -> Alerted:
    """Case #1: a deepfake by the plain member, alerted in #mod-log."""
    return await post_fake(spoofwatch, await make_modlog(spoofwatch), wav(tmp_path, 1))


async def click(a: Alerted, label: str, user: Any = None, *, reason: str = "") -> Message:
    """Click an alert button (as the moderator unless told), fill in the reason modal when
    the button asks for one, and return the updated alert."""
    ix = await a.sw.emu.click_button(a.alert, user or a.sw.emu.moderator, label=label)
    if await ix.wait_for_ack() == MODAL:
        ix = await a.sw.emu.submit_modal(ix, {reason_input(ix): reason} if reason else {})
    return await ix.wait_for_reply()


def reason_input(ix: InteractionHandle) -> str:
    assert ix.modal is not None
    [row] = ix.modal["components"]
    return str(row["components"][0]["custom_id"])


def actions(alert: Message) -> str:
    return field(alert.embeds[0], "Actions") or ""


def buttons(alert: Message) -> list[dict[str, Any]]:
    return [c for c in iter_components(alert.components) if c.get("type") == 2]


def moderation(events: list[AuditEvent]) -> list[AuditEvent]:
    """A case's events without its alert's own bookkeeping (due, then posted)."""
    return [e for e in events if e.action not in {"alert_due", "alert_posted"}]
