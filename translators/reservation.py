"""Reservation (2.0.1 functional block H): ReserveNow, CancelReservation, ReservationStatusUpdate.

The reservation id is the legacy's own in both versions, so a transaction the charger starts on a
reservation (TransactionEvent.reservationId) reaches the legacy as StartTransaction.reservationId unchanged
(translators/transactions.py).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from translators.authorization import to_id_token
from translators.availability import evse_ref
from translators.bridge import Context, Disposition, Request

# messages.md §3: ReservationStatus, the same set in both versions.
RESERVE_NOW_STATUS_TO_16 = {s: s for s in ("Accepted", "Faulted", "Occupied", "Rejected", "Unavailable")}
# messages.md §3: CancelReservationStatus, the same set in both versions.
CANCEL_RESERVATION_STATUS_TO_16 = {"Accepted": "Accepted", "Rejected": "Rejected"}


def reserve_now(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """The legacy's reservation, under the legacy's own id, on the EVSE of its connector (or on none)."""
    request: dict[str, Any] = {
        "id": payload["reservationId"],
        "expiryDateTime": payload["expiryDate"],
        "idToken": to_id_token(ctx, payload["idTag"]),
    }
    # messages.md §2.12: 1.6 connector 0 reserves no particular connector; 2.0.1 then omits evseId.
    if payload["connectorId"] != 0:
        evse = evse_ref(ctx.state, payload["connectorId"])
        if evse is None:
            return {"status": "Rejected"}  # a connector this station never showed
        request["evseId"] = evse["id"]
    if "parentIdTag" in payload:
        # 1.6 parentIdTag has no type; 2.0.1 groupIdToken requires one: a group id is CSMS-issued.
        request["groupIdToken"] = {"idToken": payload["parentIdTag"], "type": "Central"}
    answer = yield Request("ReserveNow", request)
    return {"status": RESERVE_NOW_STATUS_TO_16[answer["status"]]}


def cancel_reservation(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """The legacy's cancellation, 1:1."""
    answer = yield Request("CancelReservation", {"reservationId": payload["reservationId"]})
    return {"status": CANCEL_RESERVATION_STATUS_TO_16[answer["status"]]}


def reservation_status_update(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """A reservation expired or was removed at the station: answered `{}`, the legacy never sees it."""
    return {}
    yield  # pragma: no cover - makes this a handler that sends nothing


CHARGER_CALLS = {
    "ReservationStatusUpdate": Disposition(
        "mirror-only",
        (),
        reservation_status_update,
        reason=(
            "OCPP 1.6 has no message for a reservation that expired or was removed; a 1.6 CSMS learns it from "
            "the StatusNotification Reserved → Available that follows (translated as usual), so this is "
            "answered by the proxy and the legacy never sees it"
        ),
    ),
}
LEGACY_CALLS = {
    "ReserveNow": Disposition(
        "translated",
        ("ReserveNow",),
        reserve_now,
        lossy=(
            "a reserved connector becomes its whole EVSE (2.0.1 ReserveNow names an EVSE; connectorType unknown)",
            "idTag has no type: the type the station last showed for it, else the configured default",
            "the 2.0.1 answer's statusInfo is dropped",
        ),
    ),
    "CancelReservation": Disposition(
        "translated",
        ("CancelReservation",),
        cancel_reservation,
        lossy=("the 2.0.1 answer's statusInfo is dropped",),
    ),
}
