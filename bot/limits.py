"""Cost controls that live in memory: the per-user cooldown on `/check` and the menu."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime

from bot.errors import CooldownActive


class Cooldown:
    """At most `rate` uses per `per_s` seconds per key (a sliding window)."""

    def __init__(self, rate: int, per_s: float, clock: Callable[[], datetime]) -> None:
        self._rate = rate
        self._per_s = per_s
        self._clock = clock
        self._uses: dict[int, deque[float]] = {}

    def hit(self, key: int) -> None:
        """Count one use, or raise CooldownActive saying when the next use is allowed."""
        now = self._clock().timestamp()
        uses = self._uses.setdefault(key, deque())
        while uses and uses[0] <= now - self._per_s:
            uses.popleft()
        if len(uses) >= self._rate:
            resets_at = uses[0] + self._per_s
            raise CooldownActive(
                f"You can ask for {self._rate} checks every {self._per_s / 60:.0f} minutes; "
                f"try again <t:{int(resets_at) + 1}:R>.",
                resets_at=resets_at,
            )
        uses.append(now)
