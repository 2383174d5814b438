"""The emulator's Discord rate limits: buckets, headers, 429 bodies, the global limit, the edge.

Raw HTTP where the exact headers and bodies are the point; the real discord.py client where
what matters is that it reads them as Discord's (a 429 with `Via` is retried, not a ban).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import discord
import pytest

from testkit.discord_emulator import DiscordEmulator
from testkit.discord_emulator.ratelimits import MESSAGE_CREATE, REACTIONS


class Rest:
    """Bot-authenticated raw requests to the emulator."""

    def __init__(self, emu: DiscordEmulator, session: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.session = session

    async def __call__(
        self, method: str, path: str, body: Any = None
    ) -> tuple[int, dict[str, str], Any]:
        async with self.session.request(
            method,
            f"{self.emu.url}/api/v10{path}",
            json=body,
            headers={"Authorization": f"Bot {self.emu.token}"},
        ) as response:
            text = await response.text()
            is_json = response.content_type == "application/json"
            data = None if not text else (await response.json() if is_json else text)
            return response.status, dict(response.headers), data

    async def post(self, channel: Any, content: str = "hi") -> tuple[int, dict[str, str], Any]:
        return await self("POST", f"/channels/{channel.id}/messages", {"content": content})


@pytest.fixture
async def rest(emulator: DiscordEmulator) -> Any:
    emulator.ratelimits.enabled = True
    async with aiohttp.ClientSession() as session:
        yield Rest(emulator, session)


async def test_sixth_message_in_five_seconds_is_refused(
    emulator: DiscordEmulator, rest: Rest
) -> None:
    """Fails if message create is not limited to 5 per 5 s per channel."""
    statuses = [(await rest.post(emulator.text_channel))[0] for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    assert emulator.ratelimits.sent_429s == 1


async def test_message_bucket_is_per_channel(emulator: DiscordEmulator, rest: Rest) -> None:
    """Fails if the message bucket is not keyed by channel (the major parameter)."""
    for _ in range(5):
        await rest.post(emulator.text_channel)
    status, _, _ = await rest.post(emulator.voice_channel)
    assert status == 200


async def test_success_headers_count_down(emulator: DiscordEmulator, rest: Rest) -> None:
    """Fails if a response lacks Discord's X-RateLimit-* headers or Remaining does not fall."""
    _, first, _ = await rest.post(emulator.text_channel)
    _, second, _ = await rest.post(emulator.text_channel)
    assert first["X-RateLimit-Limit"] == "5"
    assert (first["X-RateLimit-Remaining"], second["X-RateLimit-Remaining"]) == ("4", "3")
    assert 4.9 < float(first["X-RateLimit-Reset-After"]) <= 5.0
    assert abs(float(first["X-RateLimit-Reset"]) - (time.time() + 5)) < 1
    assert first["X-RateLimit-Bucket"] == second["X-RateLimit-Bucket"] == MESSAGE_CREATE.hash
    assert first["Via"] == "1.1 google"


async def test_route_429_has_discords_body_and_headers(
    emulator: DiscordEmulator, rest: Rest
) -> None:
    """Fails if a bucket's 429 differs from the docs' "Exceeded User Rate Limit Response"."""
    for _ in range(5):
        await rest.post(emulator.text_channel)
    status, headers, body = await rest.post(emulator.text_channel)
    assert status == 429
    assert set(body) == {"message", "retry_after", "global"} and body["global"] is False
    assert 4.5 < body["retry_after"] <= 5.0
    assert headers["Retry-After"] == "5"
    assert headers["X-RateLimit-Scope"] == "user"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["Via"] == "1.1 google"
    assert "X-RateLimit-Global" not in headers


async def test_reaction_add_and_remove_share_one_bucket(
    emulator: DiscordEmulator, rest: Rest
) -> None:
    """Fails if a removal right after an add in the same channel is not refused (shared
    bucket, 1 per 0.25 s), or if the reaction bucket does not reopen after 0.25 s."""
    _, _, posted = await rest.post(emulator.text_channel)
    reaction = (
        f"/channels/{emulator.text_channel.id}/messages/{posted['id']}/reactions/%F0%9F%94%8D/@me"
    )
    added, headers, _ = await rest("PUT", reaction)
    removed, _, body = await rest("DELETE", reaction)
    assert (added, removed) == (204, 429)
    assert headers["X-RateLimit-Bucket"] == REACTIONS.hash
    await asyncio.sleep(body["retry_after"] + 0.01)
    assert (await rest("DELETE", reaction))[0] == 204


async def test_global_limit_refuses_the_51st_request(emulator: DiscordEmulator, rest: Rest) -> None:
    """Fails if more than 50 requests in a second are answered, or the global 429 is not
    shaped like the docs' "Exceeded Global Rate Limit Response"."""
    emulator.ratelimits.clock = lambda: 100.0  # one instant: all 51 in one window
    statuses = [(await rest("GET", f"/channels/{emulator.text_channel.id}"))[0] for _ in range(50)]
    status, headers, body = await rest("GET", f"/channels/{emulator.text_channel.id}")
    assert statuses == [200] * 50 and status == 429
    assert body["global"] is True and body["retry_after"] > 0
    assert headers["X-RateLimit-Global"] == "true" and headers["X-RateLimit-Scope"] == "global"
    assert "X-RateLimit-Bucket" not in headers
    assert emulator.ratelimits.count("global") == 1


async def test_interaction_endpoints_are_exempt_from_the_global_limit(
    emulator: DiscordEmulator, rest: Rest
) -> None:
    """Fails if an interaction callback is refused once the global window is full."""
    emulator.ratelimits.clock = lambda: 100.0
    for _ in range(50):
        await rest("GET", f"/channels/{emulator.text_channel.id}")
    status, _, _ = await rest("POST", "/interactions/1/token/callback", {"type": 1})
    assert status != 429  # 404 Unknown interaction: it reached the route


async def test_invalid_requests_get_an_edge_ban_without_via(
    emulator: DiscordEmulator, rest: Rest
) -> None:
    """Fails if too many 403/429s do not end in the edge's 429 (text body, no Via header),
    which discord.py must treat as a ban and not retry."""
    emulator.ratelimits.invalid_limit = 3
    emulator.deny_bot(emulator.text_channel, "send_messages")
    for _ in range(3):
        assert (await rest.post(emulator.text_channel))[0] == 403
    status, headers, body = await rest("GET", f"/channels/{emulator.voice_channel.id}")
    assert status == 429 and isinstance(body, str) and "Via" not in headers
    assert emulator.ratelimits.count("edge") == 1


async def test_discord_py_retries_a_route_429_and_counts_it(emulator: DiscordEmulator) -> None:
    """Fails if discord.py reads the emulator's 429 as a ban (an exception) instead of
    waiting `retry_after` and retrying, or if the emulator does not count the 429."""
    emulator.ratelimits.enabled = True
    target = await emulator.send_message(emulator.text_channel, emulator.member, content="hi")
    client = discord.Client(intents=discord.Intents.none())
    async with emulator.run(client):
        message = client.get_partial_messageable(emulator.text_channel.id).get_partial_message(
            target.id
        )
        # Add and remove at once: discord.py does not know yet that they share a bucket.
        me = discord.Object(emulator.bot_user.id)
        await asyncio.gather(message.add_reaction("🔍"), message.remove_reaction("👀", me))
    assert set(emulator.reactions_on(target)) == {"🔍"}
    assert len(emulator.requests_to("*", "/channels/*/reactions/*")) == 3
    assert emulator.ratelimits.count("user") == 1


def test_emulator_rate_limits_are_off_unless_asked() -> None:
    """Fails if a plain emulator enforces limits (every other test would slow down)."""
    assert DiscordEmulator().ratelimits.enabled is False
    assert DiscordEmulator(rate_limits=True).ratelimits.enabled is True
