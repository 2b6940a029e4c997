"""Transaction reconciliation between the legacy's 1.6 view and the 2.0.1 event stream."""

from __future__ import annotations

from dataclasses import dataclass

from shadow.reconcile import LegacyView, orphans, reconcile

T0, T1 = "2026-11-24T19:43:27.000Z", "2026-11-24T19:50:00.000Z"


@dataclass
class Tx:
    transaction_id: str = "tx-1"
    id_token: str | None = "TAG0001"
    started: str | None = T0
    ended: str | None = T1
    meter_start_wh: int | None = 100
    meter_stop_wh: int | None = 4100
    stopped_reason: str | None = "EVDisconnected"


def legacy_view(meter_stop: int = 4100, reason: str | None = "EVDisconnected") -> LegacyView:
    view = LegacyView()
    view.on_frame(
        "out", [2, "p1", "StartTransaction", {"connectorId": 1, "idTag": "TAG0001", "meterStart": 100, "timestamp": T0}]
    )
    view.on_frame("in", [3, "p1", {"transactionId": 7, "idTagInfo": {"status": "Accepted"}}])
    stop = {"transactionId": 7, "meterStop": meter_stop, "timestamp": T1}
    if reason:
        stop["reason"] = reason
    view.on_frame("out", [2, "p2", "StopTransaction", stop])
    return view


def test_agreeing_views() -> None:
    view = legacy_view()
    assert reconcile(view, Tx()) == [] and orphans(view) == []


def test_energy_and_reason_differences_carry_both_values() -> None:
    found = reconcile(legacy_view(meter_stop=3900, reason=None), Tx())
    assert [(d.kind, d.path, d.live, d.shadow) for d in found] == [
        ("transaction_mismatch", "meterStop", 3900, 4100),
        ("transaction_mismatch", "reason", "Local", "EVDisconnected"),
    ]


def test_missing_and_orphaned_transactions() -> None:
    view = legacy_view()
    assert [d.kind for d in reconcile(view, Tx(started="2026-11-24T18:00:00.000Z"))] == ["missing_transaction"]
    assert [d.kind for d in orphans(view)] == ["orphaned_transaction"]
    assert reconcile(LegacyView(), Tx(id_token=None)) == []  # never authorized: rightly no 1.6 transaction
