"""Reservations through the proxy over real sockets: the legacy 1.6 CSMS reserves a connector of a 2.0.1
charger, and the transaction started on the reservation reaches it with the reservation's id."""

from __future__ import annotations

import dataclasses
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms
from proxy.app import RunningProxy
from tests.conftest import proxy_url

EXPIRY = "2030-01-01T00:00:00.000Z"


class ReservingCharger(Charger201):
    """A 2.0.1 charger that keeps reservations per EVSE and starts its next transaction there on it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reservations: dict[int, int | None] = {}  # reservation id → EVSE id (None: any EVSE)

    @on(Action.reserve_now)
    def on_reserve_now(self, id: int, evse_id: int | None = None, **_: Any) -> call_result.ReserveNow:
        if evse_id is not None and evse_id not in self.registers_wh:
            return call_result.ReserveNow(status="Rejected")
        self.reservations[id] = evse_id
        return call_result.ReserveNow(status="Accepted")

    @after(Action.reserve_now)
    async def after_reserve_now(self, id: int, evse_id: int | None = None, **_: Any) -> None:
        if evse_id is not None and self.reservations.get(id) == evse_id:
            await self.status(evse_id, 1, "Reserved")

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int, **_: Any) -> call_result.CancelReservation:
        known = self.reservations.pop(reservation_id, "unknown") != "unknown"
        return call_result.CancelReservation(status="Accepted" if known else "Rejected")

    def _event(self, tx: Any, event_type: str, *args: Any, **kwargs: Any) -> Any:
        event = super()._event(tx, event_type, *args, **kwargs)
        if event_type == "Started":
            for reservation_id, evse_id in list(self.reservations.items()):
                if evse_id == tx.evse_id:
                    del self.reservations[reservation_id]
                    return dataclasses.replace(event, reservation_id=reservation_id)
        return event


async def test_transaction_on_a_reservation_reaches_the_legacy_with_its_id(
    proxy: RunningProxy, legacy: LegacyCsms
) -> None:
    charger = ReservingCharger("CP-RES1", proxy_url(proxy))
    await charger.connect()
    assert (await charger.boot())["status"] == "Accepted"
    await charger.authorize("TAG0001")  # the station shows the token's type once
    await charger.status(1, 1, "Available")

    answer = await legacy._call(
        "CP-RES1",
        call16.ReserveNow(
            connector_id=1, expiry_date=EXPIRY, id_tag="TAG0001", reservation_id=42, parent_id_tag="FLEET-7"
        ),
    )
    assert answer == {"status": "Accepted"}
    (reserve,) = [p for action, p in charger.received_calls if action == "ReserveNow"]
    assert reserve == {
        "id": 42,
        "expiryDateTime": EXPIRY,
        "evseId": 1,
        "idToken": {"idToken": "TAG0001", "type": "ISO14443"},
        "groupIdToken": {"idToken": "FLEET-7", "type": "Central"},
    }
    await legacy.wait_for(lambda: legacy.statuses["CP-RES1"][-1]["status"] == "Reserved")

    tx_id = await charger.start_transaction(1, "TAG0001")
    await legacy.wait_for(lambda: len(legacy.open_transactions("CP-RES1")) == 1)
    (legacy_tx,) = legacy.open_transactions("CP-RES1")
    assert legacy_tx.reservation_id == 42
    assert legacy_tx.id_tag == "TAG0001"
    await charger.stop_transaction(1)
    assert charger.transactions[tx_id]["ended"] is not None
    await charger.close()


async def test_cancel_reservation_and_status_updates(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = ReservingCharger("CP-RES2", proxy_url(proxy))
    await charger.connect()
    assert (await charger.boot())["status"] == "Accepted"
    await charger.status(1, 1, "Available")

    reserve_any = call16.ReserveNow(connector_id=0, expiry_date=EXPIRY, id_tag="TAG0002", reservation_id=7)
    assert await legacy._call("CP-RES2", reserve_any) == {"status": "Accepted"}
    (reserve,) = [p for action, p in charger.received_calls if action == "ReserveNow"]
    assert "evseId" not in reserve  # 1.6 connector 0: no particular EVSE
    assert reserve["idToken"] == {"idToken": "TAG0002", "type": "Central"}
    assert await legacy._call("CP-RES2", call16.CancelReservation(reservation_id=7)) == {"status": "Accepted"}
    assert await legacy._call("CP-RES2", call16.CancelReservation(reservation_id=7)) == {"status": "Rejected"}
    # a connector the station never showed is refused by the proxy itself
    reserve_unknown = call16.ReserveNow(connector_id=4, expiry_date=EXPIRY, id_tag="TAG0002", reservation_id=8)
    assert await legacy._call("CP-RES2", reserve_unknown) == {"status": "Rejected"}
    assert len([action for action, _ in charger.received_calls if action == "ReserveNow"]) == 1

    # the station's own notice of an expired reservation stays with the proxy (and the tee)
    expired = call201.ReservationStatusUpdate(reservation_id=7, reservation_update_status="Expired")
    assert await charger._call(expired) == {}
    await charger.close()
    actions_at_legacy = {frame[2] for station, frame in legacy.received if station == "CP-RES2" and frame[0] == 2}
    assert "ReservationStatusUpdate" not in actions_at_legacy
