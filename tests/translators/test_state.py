"""Station state: serialisable, restorable, and the connector map stable."""

from __future__ import annotations

import orjson

from tests.translators.conversation import new_bridge
from translators.bridge import CHARGER, LEGACY
from translators.state import StationState, Transaction


def test_state_round_trips_through_msgpack() -> None:
    state = StationState("CP1")
    state.connector_for(1, 1)
    tx = Transaction("tx", 1, 1, "2026-01-01T00:00:00Z", meter_start_wh=5, buffered_meter_values=[{"a": 1}])
    state.on_transaction_seen(tx)
    state.on_transaction_started(tx, 42, {"status": "Accepted"})
    state.on_remote_start_requested("TAG", 1)
    state.on_token_seen("TAG", "ISO14443")
    state.on_connector_status(1, "Occupied")
    restored = StationState.loads(state.dumps())
    assert restored == state
    assert restored.by_legacy_id(42) is not None and restored.by_legacy_id(42).transaction_id == "tx"  # type: ignore[union-attr]


def test_connector_map_keeps_evse_ids_and_allocates_extra_connectors() -> None:
    state = StationState("CP1")
    assert state.connector_for(1, 1) == 1
    assert state.connector_for(1, 2) == 2
    assert state.connector_for(2, 1) == 3  # 2 is taken by EVSE 1's second connector
    assert state.connector_for(0, None) == 0
    assert state.connector_for(1, None) == 1
    assert state.evse_for(3) == (2, 1)
    assert state.evse_for(9) is None


def test_remembered_token_types_are_bounded() -> None:
    state = StationState("CP1")
    for n in range(100):
        state.on_token_seen(f"T{n}", "ISO14443")
    assert len(state.token_types) == 64 and "T99" in state.token_types and "T0" not in state.token_types


def test_the_proxys_own_base_reports_take_fresh_request_ids_without_filling_the_request_map() -> None:
    """GetBaseReport after every boot: its NotifyReports are matched by the device model, so `requests` (the
    ids that status notifications trace back to a 1.6 operation) stays for the operations that need it."""
    bridge = new_bridge()
    report_ids = []
    for boot in range(40):  # more boots than `requests` holds
        boot_call = [
            2,
            f"b{boot}",
            "BootNotification",
            {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"},
        ]
        outcome = bridge.receive(CHARGER, orjson.dumps(boot_call), boot * 10.0)
        (legacy_boot,) = [orjson.loads(frame) for frame in outcome.to_legacy]
        answer = [3, legacy_boot[1], {"status": "Accepted", "currentTime": "2026-12-02T10:00:00Z", "interval": 60}]
        outcome = bridge.receive(LEGACY, orjson.dumps(answer), boot * 10.0 + 1)
        (report,) = [orjson.loads(frame) for frame in outcome.to_charger if orjson.loads(frame)[0] == 2]
        assert report[2] == "GetBaseReport"
        report_ids.append(report[3]["requestId"])
        bridge.receive(CHARGER, orjson.dumps([3, report[1], {"status": "NotSupported"}]), boot * 10.0 + 2)
    assert len(set(report_ids)) == 40 and bridge.device_model.report_request_id == report_ids[-1]
    assert bridge.state.requests == {}
    assert bridge.state.on_request_issued("GetDiagnostics") not in report_ids  # ids stay unique across both kinds
