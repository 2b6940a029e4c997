"""Station state: serialisable, restorable, and the connector map stable."""

from __future__ import annotations

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
