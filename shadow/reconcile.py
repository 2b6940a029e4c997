"""Transaction reconciliation: each transaction as the legacy CSMS saw it (the 1.6 StartTransaction and
StopTransaction on the legacy leg) against the same transaction in the charger's 2.0.1 event stream.

Pure code. `LegacyView` follows the legacy leg's frames of one station; `reconcile()` compares one ended
2.0.1 transaction with its legacy counterpart: energy (Wh), start and stop times, id token, stop reason,
or reports it missing; `orphans()` lists legacy transactions no 2.0.1 transaction accounts for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from shadow.divergence import DEFAULT_TIME_TOLERANCE, Divergence, same_moment
from translators.transactions import STOP_REASON_201_TO_16


class ChargerTransaction(Protocol):
    """A transaction rebuilt from the charger's TransactionEvents (the shadow backend's view)."""

    transaction_id: str
    id_token: str | None
    started: str | None
    ended: str | None
    meter_start_wh: int | None
    meter_stop_wh: int | None
    stopped_reason: str | None


@dataclass
class LegacyTransaction:
    transaction_id: int
    connector_id: int
    id_tag: str
    meter_start: int
    start_timestamp: str
    meter_stop: int | None = None
    stop_timestamp: str | None = None
    stop_reason: str | None = None
    matched: bool = False
    start_seen: bool = True  # False: only its stop was seen (it started before this view did)


@dataclass
class LegacyView:
    """The 1.6 transactions of one station as its legacy leg shows them."""

    transactions: dict[int, LegacyTransaction] = field(default_factory=dict)
    pending_starts: dict[str, dict[str, Any]] = field(default_factory=dict)  # message id → StartTransaction.req

    def on_frame(self, direction: str, frame: list[Any]) -> None:
        """A frame of the legacy leg: `out` is what the proxy sent the legacy, `in` what the legacy sent."""
        if direction == "out" and frame[0] == 2 and frame[2] == "StartTransaction":
            self.pending_starts[frame[1]] = frame[3]
        elif direction == "in" and frame[0] == 3 and frame[1] in self.pending_starts:
            start = self.pending_starts.pop(frame[1])
            legacy_id = frame[2]["transactionId"]
            self.transactions[legacy_id] = LegacyTransaction(
                legacy_id, start["connectorId"], start["idTag"], start["meterStart"], start["timestamp"]
            )
        elif direction == "out" and frame[0] == 2 and frame[2] == "StopTransaction":
            stop = frame[3]
            tx = self.transactions.get(stop["transactionId"])
            if tx is None:  # a stop for a start this view never saw (e.g. before the shadow ran)
                tx = self.transactions[stop["transactionId"]] = LegacyTransaction(
                    stop["transactionId"], 0, stop.get("idTag", ""), 0, "", start_seen=False
                )
            tx.meter_stop, tx.stop_timestamp = stop["meterStop"], stop["timestamp"]
            tx.stop_reason = stop.get("reason", "Local")  # OCPP 1.6 §6.49: absent means Local

    def counterpart(self, tx: ChargerTransaction) -> LegacyTransaction | None:
        """The legacy transaction the proxy started for `tx` (it starts it with the 2.0.1 start time)."""
        for legacy in self.transactions.values():
            if not legacy.matched and legacy.start_timestamp == tx.started:
                return legacy
        return None


def reconcile(
    view: LegacyView, tx: ChargerTransaction, tolerance: float = DEFAULT_TIME_TOLERANCE
) -> list[Divergence]:
    """How an ended 2.0.1 transaction and what the legacy recorded of it differ (empty: they agree)."""
    legacy = view.counterpart(tx)
    if legacy is None:
        if tx.id_token is None:
            return []  # never authorized: rightly no 1.6 transaction
        return [Divergence("missing_transaction", "transaction", None, transaction_record(tx))]
    legacy.matched = True
    found = []
    expected_reason = STOP_REASON_201_TO_16.get(tx.stopped_reason or "Local", "Other")
    pairs = (
        ("meterStart", legacy.meter_start, tx.meter_start_wh),
        ("meterStop", legacy.meter_stop, tx.meter_stop_wh),
        ("idTag", legacy.id_tag, tx.id_token),
    )
    for path, live, shadow in pairs:
        if shadow is not None and live != shadow:
            found.append(Divergence("transaction_mismatch", path, live, shadow))
    if legacy.stop_timestamp is None or not same_moment(legacy.stop_timestamp, tx.ended, tolerance):
        found.append(Divergence("transaction_mismatch", "stopTimestamp", legacy.stop_timestamp, tx.ended))
    reset_reasons = {"HardReset", "SoftReset"} if tx.stopped_reason == "ImmediateReset" else set()
    if legacy.stop_reason not in {expected_reason, "UnlockCommand", *reset_reasons}:
        found.append(Divergence("transaction_mismatch", "reason", legacy.stop_reason, tx.stopped_reason))
    return found


def orphans(view: LegacyView) -> list[Divergence]:
    """Ended legacy transactions no 2.0.1 transaction was matched with (and forgets them)."""
    found = []
    for legacy_id, legacy in list(view.transactions.items()):
        if legacy.stop_timestamp is not None:
            if not legacy.matched and legacy.start_seen:
                found.append(Divergence("orphaned_transaction", "transaction", legacy.__dict__, None))
            del view.transactions[legacy_id]
    return found


def transaction_record(tx: ChargerTransaction) -> dict[str, Any]:
    return {
        "transactionId": tx.transaction_id,
        "idToken": tx.id_token,
        "started": tx.started,
        "ended": tx.ended,
        "meterStartWh": tx.meter_start_wh,
        "meterStopWh": tx.meter_stop_wh,
        "stoppedReason": tx.stopped_reason,
    }
