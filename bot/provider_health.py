"""Whether each detection service still takes the bot's credentials and has credits.

Account problems (a refused key, an empty balance) are the operator's to fix, not a member's
to read: this service notices them (a periodic credential check, and the outcome of every
automatic scan), logs each change once, and tells its subscribers (the mod-log notices).
Discord-free, like the rest of the core.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from bot.detectors import Detector
from bot.errors import ProviderAuthError, ProviderError, ProviderOutOfCredits
from bot.verdict import ProviderName

log = logging.getLogger(__name__)


class AccountProblem(StrEnum):
    REFUSED = "refused"
    NO_CREDITS = "no_credits"


@dataclass(frozen=True, slots=True)
class ProviderState:
    provider: ProviderName
    #: None when the account works (as far as the last check or scan showed).
    problem: AccountProblem | None
    #: The service's answer, secrets redacted: for the operator and the mod-log only.
    detail: str = ""


HealthListener = Callable[[ProviderState], Awaitable[None]]


def account_problem(error: BaseException | None) -> AccountProblem | None:
    """The account problem an error reveals, if it is one."""
    if isinstance(error, ProviderAuthError):
        return AccountProblem.REFUSED
    if isinstance(error, ProviderOutOfCredits):
        return AccountProblem.NO_CREDITS
    return None


class ProviderHealth:
    """The account state of each configured provider, and who to tell when it changes."""

    def __init__(self, detectors: Mapping[ProviderName, Detector]) -> None:
        self._detectors = dict(detectors)
        self._states: dict[ProviderName, ProviderState] = {}
        self._listeners: list[HealthListener] = []

    def subscribe(self, listener: HealthListener) -> None:
        self._listeners.append(listener)

    def problem(self, provider: ProviderName) -> ProviderState | None:
        """The provider's current account problem, or None."""
        state = self._states.get(provider)
        return state if state is not None and state.problem is not None else None

    async def check(self) -> None:
        """Ask every provider whether it takes the credentials (billing nothing).

        A refusal is a problem; an accepted check clears a refusal but not an empty
        balance (no service tells its balance without a billed scan). A service that
        cannot be asked right now changes nothing.
        """
        for provider, detector in self._detectors.items():
            try:
                await detector.check_credentials()
            except ProviderError as exc:
                problem = account_problem(exc)
                if problem is None:
                    log.warning("could not check the %s credentials: %s", provider.value, exc)
                    continue
                await self._set(ProviderState(provider, problem, str(exc)))
            else:
                current = self.problem(provider)
                if current is not None and current.problem is AccountProblem.REFUSED:
                    await self._set(ProviderState(provider, None))

    async def observe(self, provider: ProviderName, error: BaseException | None) -> None:
        """Learn from a scan: an account error is a problem, a verdict clears any."""
        problem = account_problem(error)
        if problem is not None:
            await self._set(ProviderState(provider, problem, str(error)))
        elif error is None and self.problem(provider) is not None:
            await self._set(ProviderState(provider, None))

    async def _set(self, state: ProviderState) -> None:
        previous = self._states.get(state.provider)
        self._states[state.provider] = state
        if previous is not None and previous.problem is state.problem:
            return
        if previous is None and state.problem is None:
            return
        if state.problem is None:
            log.info("%s works again: actor=provider target=account", state.provider.value)
        else:
            # The operator's log is where this is fixed: one line per change, not per scan.
            log.error(
                "%s account problem (%s): %s",
                state.provider.value,
                state.problem.value,
                state.detail,
            )
        for listener in self._listeners:
            try:
                await listener(state)
            except Exception:
                log.exception("a provider health listener failed")
