"""Cost controls: the per-user cooldown on `/check` and the menu, kept in the audit log's
database so that every process (shard) counts the same uses."""

from __future__ import annotations

from bot.errors import CooldownActive
from bot.storage import Cooldowns


class Cooldown:
    """At most `rate` uses per `per_s` seconds per key (a sliding window), in `store`."""

    def __init__(self, store: Cooldowns, *, bucket: str, rate: int, per_s: float) -> None:
        self._store = store
        self._bucket = bucket
        self._rate = rate
        self._per_s = per_s

    async def hit(self, key: int) -> None:
        """Count one use, or raise CooldownActive saying when the next use is allowed."""
        resets_at = await self._store.hit(self._bucket, key, rate=self._rate, per_s=self._per_s)
        if resets_at is not None:
            raise CooldownActive(
                f"You can ask for {self._rate} checks every {self._per_s / 60:.0f} minutes; "
                f"try again <t:{int(resets_at) + 1}:R>.",
                resets_at=resets_at,
            )
