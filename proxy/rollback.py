"""Automatic rollback rules for stations cut over to the new 2.0.1 CSMS.

Each rule watches what a proxy sees of a cut-over station and, when it fires, moves the station back to
`legacy` — immediately when the station cannot charge on the new CSMS anyway, drained otherwise — with the
rule as the audited reason and `cutover_rollbacks_total{rule}` counted.

- `native_unreachable`: the new CSMS could not be reached for `unreachable_seconds` (immediate);
- `boot_rejected`: the new CSMS answered the station's BootNotification with Rejected (immediate);
- `callerror_rate`: more than `max_error_rate` of the station's last `window` CALLs were answered with a
  CALLERROR by the new CSMS (drained: transactions finish where they started).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import redis.asyncio as redis

from proxy import metrics, routing

log = logging.getLogger("cutover.rollback")


@dataclass
class RollbackRules:
    unreachable_seconds: float = 30.0
    max_error_rate: float = 0.2
    window: int = 20
    enabled: bool = True
    _down_since: dict[str, float] = field(default_factory=dict)
    _answers: dict[str, deque[bool]] = field(default_factory=dict)  # per station: was each answer an error

    def native_unreachable(self, station_id: str, now: float) -> bool:
        """Record a failed connection; True when the rule fires."""
        since = self._down_since.setdefault(station_id, now)
        return self.enabled and now - since >= self.unreachable_seconds

    def native_reached(self, station_id: str) -> None:
        self._down_since.pop(station_id, None)

    def answered(self, station_id: str, error: bool) -> bool:
        """Record one answer of the new CSMS to the station; True when the error-rate rule fires."""
        answers = self._answers.setdefault(station_id, deque(maxlen=self.window))
        answers.append(error)
        fired = len(answers) == self.window and sum(answers) / self.window > self.max_error_rate
        if fired:
            answers.clear()
        return self.enabled and fired

    def forget(self, station_id: str) -> None:
        self._down_since.pop(station_id, None)
        self._answers.pop(station_id, None)


async def roll_back(client: redis.Redis | None, station_id: str, rule: str, *, immediate: bool) -> None:
    """Move one station back to legacy because `rule` fired (audited, counted)."""
    metrics.ROLLBACKS.labels(rule).inc()
    log.warning("rollback station_id=%s rule=%s immediate=%s", station_id, rule, immediate)
    if client is None:
        return
    await routing.switch(
        client, [station_id], "legacy", force=immediate, reason=f"automatic rollback: {rule}", actor=f"rule:{rule}",
        dry_run=False,
    )  # fmt: skip
