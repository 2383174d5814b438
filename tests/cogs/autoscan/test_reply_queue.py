"""The reply queue of a flooded channel: when verdicts are combined, how, and in what order.

A stand-in pacer says how much room the channel's message bucket has; the messages are
stand-ins with what the queue reads (id, channel, author, jump URL) whose `reply` and
`channel.send` record the post and use up the room: nothing is sent.
The end-to-end raid against the emulator with Discord's limits is in test_autoscan_pacing.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import discord
import pytest

from bot.discord_glue.embeds import MESSAGE_CHAR_LIMIT, MESSAGE_EMBED_LIMIT, verdict_embed
from cogs.autoscan._reply_queue import Answer, ReplyQueue, answered_ids, combined_embeds
from tests.bot.discord_glue.test_embeds import make_verdict

GUILD, CHANNEL = 1000, 2000


class FakePacing:
    """Room in the channel's message bucket, handed out by the test."""

    def __init__(self, room: int, *, known: bool = True) -> None:
        self.room = room
        self.known = known
        self.changed = asyncio.Event()

    def message_room(self, channel_id: int) -> int:
        return self.room

    def message_window_known(self, channel_id: int) -> bool:
        return self.known

    async def wait_for_message_room(self, channel_id: int) -> None:
        while self.room == 0:
            self.changed.clear()
            await self.changed.wait()

    def give(self, room: int) -> None:
        self.room = room
        self.changed.set()

    @contextlib.contextmanager
    def priority(self, snowflake: int) -> Iterator[None]:
        yield


class Sent:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.next_id = 9000


def make_message(message_id: int, sent: Sent, pacing: FakePacing) -> discord.Message:
    """A message stand-in whose reply/send record the post and use up the room."""
    channel: Any = type("Channel", (), {})()
    channel.id = CHANNEL
    channel.guild = type("G", (), {"id": GUILD})()

    async def send(**kwargs: Any) -> Any:
        pacing.room -= 1
        sent.next_id += 1
        post = {"id": sent.next_id, **kwargs}
        sent.posts.append(post)
        return type("Posted", (), {"id": post["id"]})()

    channel.send = send
    author: Any = type("Author", (), {"id": 500 + message_id})()
    message: Any = type("Msg", (), {})()
    message.id = message_id
    message.channel = channel
    message.author = author
    message.guild = channel.guild
    message.jump_url = f"https://discord.com/channels/{GUILD}/{CHANNEL}/{message_id}"
    message.reference = None
    message.embeds = []

    async def reply(**kwargs: Any) -> Any:
        return await send(reply_to=message_id, **kwargs)

    message.reply = reply
    return message


def card(case: int) -> discord.Embed:
    return verdict_embed(make_verdict(transcript="word " * 400), filename="v.ogg", case_number=case)


async def _answer_all(
    queue: ReplyQueue, messages: list[discord.Message]
) -> list[asyncio.Task[Any]]:
    tasks = [asyncio.create_task(queue.reply(m, Answer([card(m.id)], [], []))) for m in messages]
    await asyncio.sleep(0)
    return tasks


async def test_verdicts_that_fit_the_room_are_replies_of_their_own() -> None:
    """Fails if verdicts are combined although the bucket has room for each."""
    pacing, sent = FakePacing(room=5), Sent()
    queue = ReplyQueue(pacing, combine=True)  # type: ignore[arg-type]
    messages = [make_message(i, sent, pacing) for i in (3, 1, 2)]
    results = await asyncio.gather(*await _answer_all(queue, messages))
    assert [p.get("reply_to") for p in sent.posts] == [1, 2, 3]
    assert len({r.id for r in results}) == 3


async def test_verdicts_waiting_on_a_full_bucket_are_combined_oldest_first() -> None:
    """Fails if verdicts that waited for room are not posted together, oldest first, five
    cards at most per message (one row of buttons each), within the room that came back, or
    if one is dropped."""
    pacing, sent = FakePacing(room=0), Sent()
    queue = ReplyQueue(pacing, combine=True)  # type: ignore[arg-type]
    ids = list(range(100, 125))[::-1]  # 25 waiting, finished newest first
    messages = [make_message(i, sent, pacing) for i in ids]
    tasks = await _answer_all(queue, messages)
    pacing.give(2)  # room for two messages: 10 answered now, 15 wait for the next window
    await asyncio.sleep(0.05)
    assert [len(p["embeds"]) for p in sent.posts] == [5, 5]
    assert sum(t.done() for t in tasks) == 10
    pacing.give(3)  # fifteen waiting, room for three
    results = await asyncio.gather(*tasks)
    assert [len(p["embeds"]) for p in sent.posts] == [5, 5, 5, 5, 5]
    linked = [int(e.url.rsplit("/", 1)[1]) for p in sent.posts for e in p["embeds"]]
    assert linked == sorted(ids)
    # Each caller gets the message that carries its verdict.
    carrying = {int(e.url.rsplit("/", 1)[1]): p["id"] for p in sent.posts for e in p["embeds"]}
    assert {m.id: r.id for m, r in zip(messages, results, strict=True)} == carrying
    assert all("reply_to" not in p for p in sent.posts)


async def test_two_waiting_verdicts_and_room_for_one_share_a_message() -> None:
    """Fails if the rule needs more than two waiting verdicts to combine them."""
    pacing, sent = FakePacing(room=0), Sent()
    queue = ReplyQueue(pacing, combine=True)  # type: ignore[arg-type]
    tasks = await _answer_all(queue, [make_message(i, sent, pacing) for i in (7, 8)])
    pacing.give(1)
    await asyncio.gather(*tasks)
    assert len(sent.posts) == 1 and len(sent.posts[0]["embeds"]) == 2


async def test_a_channel_not_posted_in_yet_answers_the_oldest_alone_first() -> None:
    """Fails if two verdicts finished together in a channel the bot has not posted in yet
    are combined: the room there is only the pacer's lone first request, not a full window,
    so the oldest goes alone and the other follows as its own reply once Discord has said
    what is left."""
    pacing, sent = FakePacing(room=1, known=False), Sent()
    queue = ReplyQueue(pacing, combine=True)  # type: ignore[arg-type]
    tasks = await _answer_all(queue, [make_message(i, sent, pacing) for i in (8, 7)])
    await asyncio.sleep(0.05)
    assert [p["reply_to"] for p in sent.posts] == [7]
    pacing.known = True
    pacing.give(4)  # Discord's answer: four more this window
    await asyncio.gather(*tasks)
    assert [p["reply_to"] for p in sent.posts] == [7, 8]


async def test_without_combining_every_verdict_is_a_reply() -> None:
    """Fails if the switch for one reply per message still combines."""
    pacing, sent = FakePacing(room=0), Sent()
    queue = ReplyQueue(pacing, combine=False)  # type: ignore[arg-type]
    tasks = await _answer_all(queue, [make_message(i, sent, pacing) for i in (4, 5, 6)])
    await asyncio.gather(*tasks)
    assert [p["reply_to"] for p in sent.posts] == [4, 5, 6]


async def test_a_failed_combined_post_is_reported_to_every_message_in_it() -> None:
    """Fails if a refused combined post leaves its callers waiting or hides the error."""
    pacing, sent = FakePacing(room=0), Sent()
    queue = ReplyQueue(pacing, combine=True)  # type: ignore[arg-type]
    messages = [make_message(i, sent, pacing) for i in (1, 2, 3)]

    async def refuse(**kwargs: Any) -> Any:
        pacing.room -= 1
        raise discord.Forbidden(type("R", (), {"status": 403, "reason": "Forbidden"})(), "no")

    for m in messages:
        m.channel.send = refuse  # type: ignore[method-assign]
    tasks = await _answer_all(queue, messages)
    pacing.give(1)
    for task in tasks:
        with pytest.raises(discord.Forbidden):
            await task


def test_combined_cards_fit_one_message_and_keep_link_sender_and_case() -> None:
    """Fails if ten long verdict cards break Discord's 6,000 characters, or a card loses
    the link to its message, the member who sent it, or its case number."""
    sent, pacing = Sent(), FakePacing(0)
    answers = [(make_message(i, sent, pacing), [card(40 + i)]) for i in range(10)]
    embeds = combined_embeds(answers)
    assert len(embeds) == MESSAGE_EMBED_LIMIT
    assert sum(len(e) for e in embeds) <= MESSAGE_CHAR_LIMIT
    for i, embed in enumerate(embeds):
        assert embed.url == f"https://discord.com/channels/{GUILD}/{CHANNEL}/{i}"
        assert (embed.description or "").startswith(f"Sent by <@{500 + i}>")
        assert embed.footer.text and f"Case #{40 + i}" in embed.footer.text


def test_answered_ids_reads_replies_and_combined_cards() -> None:
    """Fails if a restart could not tell which messages a combined answer answered."""
    sent, pacing = Sent(), FakePacing(0)
    posted = make_message(99, sent, pacing)
    posted.embeds = combined_embeds(  # type: ignore[misc]
        [(make_message(i, sent, pacing), [card(i)]) for i in (5, 6)]
    )
    posted.reference = discord.MessageReference(message_id=4, channel_id=CHANNEL)  # type: ignore[misc]
    assert answered_ids(posted) == {4, 5, 6}
