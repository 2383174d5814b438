"""The mod-log alerts' ledger: which flagged cases are owed an alert, and which are settled.

An alert is recorded as due on its case (`alert_due`) before the message's public reply is
posted, and settled by `alert_posted` (where) or `alert_not_posted` (why) once the alerts cog
has dealt with it. The order matters: a restart's catch-up revisits only messages with no
reply on Discord, so an alert's debt must be on record before its reply goes out. A process
that stops in between leaves the alert due, and the next start posts it late (`cogs/alerts`).

The ledger also knows which of the alerts due were recorded by this process and are still on
their way, so that the pass posting alerts left due never takes one of them over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Final

from bot.guild_config import ActionPolicy, GuildConfig
from bot.opinions import combined
from bot.scanning import ScanOutcome
from bot.storage import AuditLog, ScanRecord
from bot.verdict import Finding, verdict_finding

log = logging.getLogger(__name__)

ALERT_DUE: Final = "alert_due"
ALERT_POSTED: Final = "alert_posted"
ALERT_NOT_POSTED: Final = "alert_not_posted"
#: What settles an alert due.
ALERT_SETTLED: Final = (ALERT_POSTED, ALERT_NOT_POSTED)
#: How long an alert this process recorded as due counts as on its way; past that it is
#: taken for abandoned (its task failed) and posted late like one a stopped process left.
ON_ITS_WAY_S: Final = 600.0

#: A case: (guild id, case number).
CaseKey = tuple[int, int]


def is_suspicious(outcome: ScanOutcome, threshold: float) -> bool:
    """Flagged at the guild's threshold: the same decision as the public reply's colour and
    title (`bot.verdict.verdict_finding`), so the two can never disagree. With a second
    opinion, the combined outcome decides (`bot.verdict.combine`: disputed is flagged)."""
    if outcome.second is not None:
        return combined(outcome, threshold).finding is Finding.FLAGGED
    verdict = outcome.verdict
    return verdict is not None and verdict_finding(verdict, threshold) is Finding.FLAGGED


def alerted(outcome: ScanOutcome, config: GuildConfig) -> bool:
    """Whether the guild's policy alerts its mod-log about this outcome (a guild with no
    mod-log channel set is owed no alert: its setup checklist says so, not a failed alert)."""
    return (
        config.action is not ActionPolicy.REPLY
        and config.modlog_channel_id is not None
        and is_suspicious(outcome, config.alert_threshold)
    )


def key_of(record: ScanRecord) -> CaseKey:
    return record.guild_id, record.case_number


class AlertLedger:
    """Records alerts as due, and remembers those of this process still on their way."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit
        #: Alerts this process recorded as due (an earlier run's are another matter).
        self._recorded_here: set[CaseKey] = set()
        #: Alerts this process is on and has not settled: since when (monotonic).
        self._on_its_way: dict[CaseKey, float] = {}

    async def record_due(
        self, outcomes: Iterable[ScanOutcome], config: GuildConfig, *, actor_id: int
    ) -> None:
        """Record as due the alert of each outcome the guild's policy alerts about, unless an
        earlier run already did. Never raises: the alert still goes out, only unrecorded."""
        for outcome in outcomes:
            if not alerted(outcome, config):
                continue
            record = outcome.record
            try:
                if outcome.replayed and await self.due_before(record):
                    continue  # an earlier run owes it: the pass for alerts left due posts it
                await self._audit.admin.record_action(
                    record.guild_id,
                    record.case_number,
                    action=ALERT_DUE,
                    actor_id=actor_id,
                    outcome=f"message {record.channel_id}/{record.message_id}",
                )
            except Exception:
                log.exception("alert of case %s/#%s not recorded as due", *key_of(record))
                continue
            self.recorded(key_of(record))

    def recorded(self, key: CaseKey) -> None:
        """This process recorded the case's alert as due, and is on it."""
        self._recorded_here.add(key)
        self.taken(key)

    def owes_here(self, record: ScanRecord) -> bool:
        """Whether this process recorded the case's alert as due."""
        return key_of(record) in self._recorded_here

    async def due_before(self, record: ScanRecord) -> bool:
        """Whether an earlier run recorded the case's alert as due (settled or not: if not,
        the pass for alerts left due posts it, and nothing else may)."""
        if self.owes_here(record):
            return False
        events = await self._audit.cases.case_events(record.guild_id, record.case_number)
        return any(e.action == ALERT_DUE for e in events)

    def taken(self, key: CaseKey) -> None:
        """This process is on the case's alert now."""
        self._on_its_way[key] = time.monotonic()

    def on_its_way(self, key: CaseKey) -> bool:
        """Whether this process is still on the case's alert (and not for too long)."""
        since = self._on_its_way.get(key)
        return since is not None and time.monotonic() - since < ON_ITS_WAY_S

    def settled(self, key: CaseKey) -> None:
        """This process is done with the case's alert (posted, found not postable, or its
        try failed: then it stays due, for a later pass)."""
        self._on_its_way.pop(key, None)
        self._recorded_here.discard(key)


__all__ = [
    "ALERT_DUE",
    "ALERT_NOT_POSTED",
    "ALERT_POSTED",
    "ALERT_SETTLED",
    "AlertLedger",
    "alerted",
    "is_suspicious",
]
