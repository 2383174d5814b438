"""Helpers shared by the moderators' end-to-end tests (audit, settings, alerts, meta).

Small on purpose: reading embeds, running a command and awaiting its answer, and making files
whose bytes differ (identical bytes would reuse a verdict instead of calling the provider).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from bot.discord_glue.embeds import ERROR_CODE
from testkit.discord_emulator.models import Message
from testkit.e2e import Harness
from testkit.standins import write_wav
from testkit.standins.resemble import metrics

#: What the Resemble stand-in says about a file scripted as a deepfake.
FAKE = metrics([0.9, 0.9], label="fake")
#: A clearly genuine recording (the stand-in's default is 5 %).
REAL = metrics([0.05, 0.05], label="real")

MANAGE_MESSAGES = 1 << 13
MANAGE_GUILD = 1 << 5


def footer(embed: dict[str, Any]) -> str:
    return str((embed.get("footer") or {}).get("text", ""))


def embed_kind(embed: dict[str, Any]) -> tuple[str, str | None]:
    """("verdict", None) or ("failure", error kind) for one answer's card: the kind is in
    the failure card's footer (`bot.discord_glue.embeds.failure_embed`:
    "Case #3 · error code: …")."""
    if embed.get("title", "").startswith("Could not check"):
        found = re.search(re.escape(ERROR_CODE) + r"\s*([\w.-]+)", footer(embed))
        return "failure", found[1] if found else "?"
    return "verdict", None


def field(embed: dict[str, Any], name: str) -> str | None:
    return next((f["value"] for f in embed.get("fields", []) if f["name"] == name), None)


def text_of(message_or_embed: Message | dict[str, Any]) -> str:
    """Everything a person reads in a message (content and every embed) or in one embed."""
    if isinstance(message_or_embed, Message):
        return "\n".join([message_or_embed.content, *map(text_of, message_or_embed.embeds)])
    embed = message_or_embed
    parts = [embed.get("title", ""), embed.get("description", ""), footer(embed)]
    parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
    return "\n".join(parts)


def wav(directory: Path, n: int, seconds: float = 1.0) -> Path:
    """A WAV whose bytes differ from every other `n` (a distinct tone per number)."""
    return write_wav(directory / f"clip-{n}.wav", seconds, tone_hz=200.0 + 7.0 * n)


async def run(
    sw: Harness,
    user: Any,
    command: str,
    options: dict[str, Any] | None = None,
    *,
    channel: Any = None,
) -> Message:
    """Run a slash command as `user` (in #general unless told) and return the answer."""
    where = sw.emu.text_channel if channel is None else channel
    ix = await sw.emu.invoke_slash(where, user, command, options or {})
    return await ix.wait_for_reply()


async def scan(sw: Harness, path: Path, *, channel: Any = None, author: Any = None) -> Message:
    """A member posts `path`; returns the bot's verdict reply once the scan has settled."""
    kwargs: dict[str, Any] = {}
    if channel is not None:
        kwargs["channel"] = channel
    if author is not None:
        kwargs["author"] = author
    return await sw.reply_to(await sw.post(path, **kwargs))


async def not_scanned(sw: Harness, message: Message, probe: Path, *, channel: Any = None) -> bool:
    """Whether the bot let `message` pass, proved by a later message it does answer.

    Gateway events reach the bot in order, so once the probe (posted after `message`, in a
    channel that is scanned) has its reply and every scan has settled, the bot has handled
    `message` too: no reply and no case for it means it was not scanned.
    """
    await scan(sw, probe, channel=channel)
    cases = await sw.bot.audit.cases.recent(message.guild_id or 0, limit=100)
    return sw.emu.replies_to(message) == [] and message.id not in {c.message_id for c in cases}


async def configure(sw: Harness, command: str, options: dict[str, Any] | None = None) -> Message:
    """An admin runs `/spoofwatch settings <command>`; the answer must say it was saved."""
    answer = await run(sw, sw.emu.admin, f"spoofwatch settings {command}", options)
    assert answer.content.startswith("Saved"), answer.content
    return answer


async def listeners_done(sw: Harness, event: str = "scan_finished") -> None:
    """Wait for every running listener of a custom event (the alerts cog's, say) to finish.

    The autoscan cog dispatches `scan_finished` before its worker job ends, so once the scan
    pool has settled the listener tasks exist; discord.py names them after the event.
    """
    await sw.settle()
    prefix = f"discord.py: on_{event}"
    tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith(prefix)]
    await asyncio.gather(*tasks)
