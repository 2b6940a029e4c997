"""One shard's tee envelopes, in order, turned into comparisons: pure code, no Redis.

A charger's 2.0.1 CALL is answered by the shadow backend when it is read; when the answer the charger
really got arrives (later in the same shard), the two are compared. Legacy-leg frames build the legacy's
view of each transaction, reconciled with the 2.0.1 event stream when the transaction's Ended event has
been answered. Each envelope is acknowledged only once everything it takes part in has been decided.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from shadow.divergence import DEFAULT_TIME_TOLERANCE, Answer, Divergence, compare
from shadow.lint import CHARGER_TO_CSMS, CSMS_TO_CHARGER, Lint, Violation
from shadow.reconcile import ChargerTransaction, LegacyView, orphans, reconcile
from shadow.records import Record
from shadow.reference_csms import ReferenceCsms
from translators import schemas
from translators.rpc import OcppError

OCPP201 = "ocpp2.0.1"
# A charger CALL whose live answer never reached the tee (the charger dropped its socket with the CALL in flight,
# and never came back) is forgotten after this long: the proxy answers every CALL within its call timeout (30 s,
# once per sequential 1.6 CALL a 2.0.1 CALL fans out into), so by then no answer is coming.
UNANSWERED_SECONDS = 300.0


class ShadowBackend(Protocol):
    """A 2.0.1 CSMS the shadow asks: answers a charger CALL (None: it did not answer in time) and keeps
    the charger's transactions as its event stream tells them."""

    async def answer(self, station_id: str, action: str, payload: dict[str, Any], now: str) -> Answer | None: ...

    def transactions(self, station_id: str) -> list[Any]: ...


class ReferenceBackend:
    """The built-in reference 2.0.1 CSMS as a shadow backend."""

    local = True  # asking it again has no effect outside this process: a new shard owner may replay

    def __init__(self, csms: ReferenceCsms) -> None:
        self.csms = csms

    async def answer(self, station_id: str, action: str, payload: dict[str, Any], now: str) -> Answer | None:
        try:
            return Answer(payload=self.csms.handle(station_id, action, payload, now))
        except OcppError as error:
            return Answer(error=error.code_for("2.0.1"), description=error.description)

    def transactions(self, station_id: str) -> list[Any]:
        return list(self.csms.transactions(station_id))


class RoutedBackend:
    """A station group's backend: stations matching one of `patterns` (shell-style, e.g. `KEBA-*`) go to
    `chosen`, every other station to `others`."""

    def __init__(self, patterns: list[str], chosen: ShadowBackend, others: ShadowBackend) -> None:
        self.patterns = patterns
        self.chosen = chosen
        self.others = others

    def backend_for(self, station_id: str) -> ShadowBackend:
        return self.chosen if any(fnmatch.fnmatchcase(station_id, p) for p in self.patterns) else self.others

    async def answer(self, station_id: str, action: str, payload: dict[str, Any], now: str) -> Answer | None:
        return await self.backend_for(station_id).answer(station_id, action, payload, now)

    def transactions(self, station_id: str) -> list[Any]:
        return self.backend_for(station_id).transactions(station_id)


@dataclass
class Comparison:
    comparison_id: str
    station: str
    action: str
    records: list[Record]


@dataclass
class Step:
    acks: list[str] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)


@dataclass
class PendingCall:
    entry_id: str
    station: str
    action: str
    payload: dict[str, Any]
    shadow: Answer | None  # None: the shadow backend did not answer in time
    at: float


def iso(t_ns: int) -> str:
    return datetime.fromtimestamp(t_ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ShardProcessor:
    """Comparisons for the stations of one tee shard (one owner at a time keeps their order)."""

    def __init__(self, backend: ShadowBackend, tolerance: float = DEFAULT_TIME_TOLERANCE) -> None:
        self.backend = backend
        self.tolerance = tolerance
        self.schemas = schemas.load()
        self.pending: dict[tuple[str, str], PendingCall] = {}
        self.views: dict[str, LegacyView] = {}
        self.lint = Lint()
        self.connections: dict[str, str] = {}  # station → its current connection id (for the lint)
        self._swept_at = 0.0

    async def process(self, entry_id: str, envelope: dict[str, Any]) -> Step:
        step = Step()
        try:
            frame = orjson.loads(envelope["frame"])
        except orjson.JSONDecodeError:
            frame = None
        if envelope["dir"] == "event":  # something the proxy observed on the charger leg, not a frame
            if frame == ["missed_pong"]:
                step.violations = self.lint.on_missed_pong(envelope["station"], envelope["proto"])
            elif isinstance(frame, list) and len(frame) == 3 and frame[0] == "uncertain":
                step.comparisons.append(self.uncertain(entry_id, envelope, frame[1], frame[2]))
            step.acks.append(entry_id)
            return step
        if not isinstance(frame, list) or len(frame) < 3 or not isinstance(frame[1], str):
            step.acks.append(entry_id)  # unreadable: the proxy refused it, nothing to compare
            return step
        station, leg, direction = envelope["station"], envelope["leg"], envelope["dir"]
        if leg == "charger":
            if self.connections.get(station) != envelope["conn"]:
                previous = self.connections.get(station)
                self.connections[station] = envelope["conn"]
                self.lint.on_connect(station)
                if previous is not None:
                    step.acks += self.forget(lambda call: call[0] == previous)
            lint_direction = CHARGER_TO_CSMS if direction == "in" else CSMS_TO_CHARGER
            at = envelope["t_ns"] / 1e9
            step.violations = self.lint.observe(station, envelope["proto"], lint_direction, frame, at)
        now = envelope["t_ns"] / 1e9
        if now - self._swept_at >= UNANSWERED_SECONDS / 10:
            self._swept_at = now
            step.acks += self.forget(lambda call: now - self.pending[call].at > UNANSWERED_SECONDS)
        if leg == "legacy":
            self.views.setdefault(station, LegacyView()).on_frame(direction, frame)
            step.acks.append(entry_id)
        elif envelope["proto"] != OCPP201:
            step.acks.append(entry_id)  # a 1.6 charger in passthrough: nothing for a 2.0.1 shadow
        elif direction == "in" and frame[0] == 2 and len(frame) == 4 and isinstance(frame[3], dict):
            at = envelope["t_ns"] / 1e9
            shadow = await self.shadow_answer(station, frame[2], frame[3], envelope)
            self.pending[(envelope["conn"], frame[1])] = PendingCall(entry_id, station, frame[2], frame[3], shadow, at)
        elif direction == "out" and frame[0] in (3, 4) and (envelope["conn"], frame[1]) in self.pending:
            call = self.pending.pop((envelope["conn"], frame[1]))
            live = Answer(payload=frame[2]) if frame[0] == 3 else Answer(error=frame[2], description=frame[3])
            comparison_id = f"{envelope['conn']}:{frame[1]}"
            found = compare(live, call.shadow, self.tolerance)
            records = self.records(call, call.action, comparison_id, found)
            step.comparisons.append(Comparison(comparison_id, station, call.action, records))
            if call.action == "TransactionEvent" and call.payload.get("eventType") == "Ended":
                step.comparisons.append(self.reconciliation(call, comparison_id))
            step.acks += [call.entry_id, entry_id]
        else:
            step.acks.append(entry_id)  # the proxy's own CALLs to the charger and their answers
        return step

    def forget(self, unanswerable: Callable[[tuple[str, str]], bool]) -> list[str]:
        """Drop the charger CALLs whose live answer can no longer come (their connection was replaced, or they
        are too old); return their entries to acknowledge: with no live answer there is nothing to compare."""
        gone = [call for call in self.pending if unanswerable(call)]
        return [self.pending.pop(call).entry_id for call in gone]

    async def shadow_answer(
        self, station: str, action: str, payload: dict[str, Any], envelope: dict[str, Any]
    ) -> Answer | None:
        """What the shadow backend answers (a schema-invalid CALL gets the CALLERROR a 2.0.1 CSMS owes it)."""
        try:
            self.schemas.validate("2.0.1", "request", action, payload)
        except OcppError as error:
            return Answer(error=error.code_for("2.0.1"), description=error.description)
        return await self.backend.answer(station, action, payload, iso(envelope["t_ns"]))

    @staticmethod
    def uncertain(entry_id: str, envelope: dict[str, Any], action: str, detail: str) -> Comparison:
        """A CALL the proxy had to send the legacy again (its first answer was lost): a possible duplicate."""
        comparison_id = f"{envelope['conn']}:uncertain:{entry_id}"
        record = Record(envelope["station"], action, "possible_duplicate", "", detail, None, comparison_id,
                        envelope["t_ns"] / 1e9)  # fmt: skip
        return Comparison(comparison_id, envelope["station"], action, [record])

    @staticmethod
    def records(call: PendingCall, action: str, comparison_id: str, found: list[Divergence]) -> list[Record]:
        return [Record(call.station, action, d.kind, d.path, d.live, d.shadow, comparison_id, call.at) for d in found]

    def reconciliation(self, call: PendingCall, comparison_id: str) -> Comparison:
        """The ended transaction's legacy view against the 2.0.1 stream."""
        tx_id = call.payload["transactionInfo"]["transactionId"]
        view = self.views.setdefault(call.station, LegacyView())
        charger_tx: ChargerTransaction | None = next(
            (tx for tx in self.backend.transactions(call.station) if tx.transaction_id == tx_id), None
        )
        found: list[Divergence] = []
        if charger_tx is not None and getattr(charger_tx, "started_seen", True):
            found = reconcile(view, charger_tx, self.tolerance)
        found += orphans(view)
        records = self.records(call, "Transaction", f"{comparison_id}:transaction", found)
        return Comparison(f"{comparison_id}:transaction", call.station, "Transaction", records)
