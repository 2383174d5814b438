"""Verdicts in a flooded channel: posted as Discord allows, oldest first, none dropped.

Discord lets a bot post 5 messages per 5 s in a channel. In a raid (30 voice messages in
3 s) one reply per message takes 25 s for the last verdict, and the channel fills with
thirty near-identical cards. The rule (README, "Raids"):

- a verdict is posted as its own reply, under the message it answers, whenever the channel's
  message bucket has room for it: the normal case, and the first five of a raid;
- otherwise it waits, oldest message first. When room comes back and more verdicts are
  waiting than there is room for, they are posted together: one message per up to five
  waiting verdicts, each the usual verdict card (with its timeline picture) whose title links
  to the message it answers, the member named in it and the case number in its footer, and
  each verdict's own row of buttons. Five, not Discord's ten embeds per message, because a
  message holds five rows of buttons: every verdict keeps "What does this mean?" and "This
  is wrong". What does not fit the room now waits for the next window;
- in a channel this process has not posted in yet, the room is unknown (the pacer sends one
  request alone first): the oldest verdict goes alone and the rest wait for Discord's answer,
  so two verdicts that happen to finish together are not combined as if it were a raid.

Members find their verdict through the link on its card, with the same buttons as under a
reply, and a raid of 30 is answered in 5 s instead of 25 s, in ten messages instead of thirty.
"""

from __future__ import annotations

import asyncio
import heapq
import io
import itertools
import logging
from dataclasses import dataclass, field
from typing import Final

import discord

from bot.discord_glue.embeds import fit_embed, message_embeds
from bot.discord_glue.pacing import DiscordPacing
from bot.scanning import ScanOutcome
from cogs.autoscan._views import MAX_ROWS, verdict_view

log = logging.getLogger(__name__)

#: Verdict cards per combined message: one row of buttons each (Discord: 5 rows).
COMBINED_MAX: Final = MAX_ROWS


@dataclass(frozen=True)
class Answer:
    """What the reply to one message carries."""

    embeds: list[discord.Embed]
    #: (file name, PNG) of the timeline pictures the embeds show (`attachment://name`).
    pictures: list[tuple[str, bytes]]
    #: The outcomes answered, for the buttons under the verdicts.
    outcomes: list[ScanOutcome]


@dataclass(order=True)
class _Waiting:
    message_id: int
    sequence: int
    message: discord.Message = field(compare=False)
    answer: Answer = field(compare=False)
    answered: asyncio.Future[discord.Message] = field(compare=False)


class ReplyQueue:
    """Every automatic verdict reply goes through here, one queue per channel."""

    def __init__(self, pacing: DiscordPacing, *, combine: bool) -> None:
        self._pacing = pacing
        #: Off (`SPOOFWATCH_COMBINE_REPLIES=false`): one reply per message, however long
        #: the channel's queue.
        self._combine = combine
        self._channels: dict[int, _ChannelQueue] = {}

    async def reply(self, message: discord.Message, answer: Answer) -> discord.Message:
        """Post `answer` as the answer to `message`; the message that carries them (a reply,
        or a combined message that answers others too). Raises what `message.reply` raises.

        The caller hands its scan worker on first: from here it only waits on Discord.
        """
        if not self._combine:
            return await _reply_alone(self._pacing, message, answer)
        channel_id = message.channel.id
        queue = self._channels.get(channel_id)
        if queue is None:
            queue = self._channels[channel_id] = _ChannelQueue(self, channel_id)
        return await queue.put(message, answer)

    def close(self) -> None:
        """Stop posting (the cog unloads): whoever still waits is cancelled."""
        for queue in list(self._channels.values()):
            queue.close()
        self._channels.clear()

    def _done(self, queue: _ChannelQueue) -> None:
        if self._channels.get(queue.channel_id) is queue:
            del self._channels[queue.channel_id]


class _ChannelQueue:
    def __init__(self, owner: ReplyQueue, channel_id: int) -> None:
        self.owner = owner
        self.channel_id = channel_id
        self._pacing = owner._pacing
        self._waiting: list[_Waiting] = []
        self._sequence = itertools.count()
        self._task: asyncio.Task[None] | None = None

    async def put(self, message: discord.Message, answer: Answer) -> discord.Message:
        answered: asyncio.Future[discord.Message] = asyncio.get_running_loop().create_future()
        item = _Waiting(message.id, next(self._sequence), message, answer, answered)
        heapq.heappush(self._waiting, item)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name=f"replies-{self.channel_id}")
        # Cancelling the caller (a shutdown) cancels the future: the drain skips it.
        return await answered

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for item in self._waiting:
            item.answered.cancel()
        self._waiting.clear()

    async def _drain(self) -> None:
        try:
            while True:
                await self._pacing.wait_for_message_room(self.channel_id)
                groups = self._take(
                    self._pacing.message_room(self.channel_id),
                    known=self._pacing.message_window_known(self.channel_id),
                )
                if not groups:
                    if not self._waiting:
                        return
                    continue
                # Each post waits its turn in the pacer (oldest first); a combined one
                # answers every message in it.
                await asyncio.gather(*(self._post(group) for group in groups))
        except Exception as exc:
            # A bug here must not leave scans waiting forever: each caller logs it.
            log.exception("reply queue of channel %s stopped", self.channel_id)
            for item in self._waiting:
                if not item.answered.done():
                    item.answered.set_exception(exc)
            self._waiting.clear()
        finally:
            # Cancelled (unload): nobody will post these.
            for item in self._waiting:
                item.answered.cancel()
            self._waiting.clear()
            self.owner._done(self)

    def _take(self, room: int, *, known: bool = True) -> list[list[_Waiting]]:
        """What to post now with `room` messages: one reply each when they all fit, else
        combined messages, oldest first; the rest stays queued.

        While the channel's window is not `known` (nothing posted there yet by this process)
        the room is only the pacer's lone first request: the oldest verdict goes alone, and
        the rest wait for what Discord's answer says is left, rather than being combined as
        if the channel were flooded."""
        live: list[_Waiting] = []
        while self._waiting:
            item = heapq.heappop(self._waiting)
            if not item.answered.done():
                live.append(item)
        if len(live) <= room:
            return [[item] for item in live]
        if not known and room > 0:
            for rest in live[1:]:
                heapq.heappush(self._waiting, rest)
            return [[live[0]]]
        groups: list[list[_Waiting]] = []
        embeds = 0
        for index, item in enumerate(live):
            size = max(1, len(item.answer.embeds))
            if groups and embeds + size <= COMBINED_MAX:
                groups[-1].append(item)
                embeds += size
            elif len(groups) < room:
                groups.append([item])
                embeds = size
            else:
                for rest in live[index:]:
                    heapq.heappush(self._waiting, rest)
                break
        log.info(
            "channel %s: %d verdict(s) waiting, %d message(s) of room: posting %d combined",
            self.channel_id,
            len(live),
            room,
            len(groups),
        )
        return groups

    async def _post(self, group: list[_Waiting]) -> None:
        try:
            if len(group) == 1:
                sent = await _reply_alone(self._pacing, group[0].message, group[0].answer)
            else:
                sent = await _post_combined(self._pacing, group)
        except Exception as exc:  # each waiting caller reports it as its own reply would
            for item in group:
                if not item.answered.done():
                    item.answered.set_exception(exc)
            return
        for item in group:
            if not item.answered.done():
                item.answered.set_result(sent)


async def _reply_alone(
    pacing: DiscordPacing, message: discord.Message, answer: Answer
) -> discord.Message:
    view = verdict_view(answer.outcomes)
    # When replies queue on the channel's message bucket, the oldest message first.
    with pacing.priority(message.id):
        return await message.reply(
            embeds=answer.embeds,
            files=_files(answer.pictures),
            mention_author=False,
            allowed_mentions=discord.AllowedMentions.none(),
            view=view if view is not None else discord.utils.MISSING,
        )


async def _post_combined(pacing: DiscordPacing, group: list[_Waiting]) -> discord.Message:
    channel = group[0].message.channel
    view = verdict_view([o for item in group for o in item.answer.outcomes])
    with pacing.priority(group[0].message_id):
        return await channel.send(
            content=combined_content(len(group)),
            embeds=combined_embeds([(item.message, item.answer.embeds) for item in group]),
            files=_files([p for item in group for p in item.answer.pictures]),
            allowed_mentions=discord.AllowedMentions.none(),
            view=view if view is not None else discord.utils.MISSING,
        )


def _files(pictures: list[tuple[str, bytes]]) -> list[discord.File]:
    # Built for each post: a discord.File is read once.
    return [discord.File(io.BytesIO(data), filename=name) for name, data in pictures]


def combined_content(count: int) -> str:
    """The line above a combined answer."""
    return (
        f"Verdicts for {count} messages posted in quick succession, oldest first. "
        "Each title links to the message it answers."
    )


def combined_embeds(
    answers: list[tuple[discord.Message, list[discord.Embed]]],
) -> list[discord.Embed]:
    """The verdict cards of several messages in one message: each card's title links to its
    message and its description names the member (a mention in an embed pings nobody).

    The link is the title's URL, which no trimming can cut: when the cards must shrink to
    share 6,000 characters, the transcripts and timelines shrink first (`message_embeds`),
    and the sender line is shorter than any text `fit_embed` cuts.
    """
    cards = []
    for message, embeds in answers:
        sender = f"Sent by <@{message.author.id}>"
        for original in embeds:
            card = original.copy()
            card.url = message.jump_url
            card.description = f"{sender}\n{card.description}" if card.description else sender
            cards.append(fit_embed(card))
    return message_embeds(cards)


def answered_ids(posted: discord.Message) -> set[int]:
    """The messages a message of the bot answers: the one it replies to, and every message a
    combined answer's cards link to (Discord keeps the embeds, so a restart can tell)."""
    ids = set()
    if posted.reference is not None and posted.reference.message_id:
        ids.add(posted.reference.message_id)
    for embed in posted.embeds:
        prefix, _, tail = (embed.url or "").rpartition("/")
        if prefix.startswith("https://discord.com/channels/") and tail.isdigit():
            ids.add(int(tail))
    return ids
