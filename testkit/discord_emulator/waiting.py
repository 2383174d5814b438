"""Waiting on conditions: woken by every emulator state change, re-checked periodically too.

The periodic re-check lets predicates look at things the emulator cannot see change (the bot's
database, its caches); the timeout only stops a broken test from hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How long a test waits for something the bot should do. Generous: with the suite spread
#: over every core (pytest-xdist), a test that starts bot processes shares the CPU with
#: another worker's, and a slow machine must not fail a correct bot; a wait that succeeds
#: returns as soon as the condition holds, so this costs time only when a test fails.
DEFAULT_TIMEOUT = 30.0
POLL_INTERVAL = 0.05


class Waiter:
    """Wakes waiting coroutines whenever ``notify`` is called."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Something changed: wake every waiter so it re-checks its predicate."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait_for(
        self,
        predicate: Callable[[], T | None],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        describe: str | Callable[[], str] = "condition",
    ) -> T:
        """Return the predicate's first truthy result; TimeoutError (with context) if none comes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                what = describe() if callable(describe) else describe
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
            event = self._event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, POLL_INTERVAL))
