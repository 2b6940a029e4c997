"""Availability (2.0.1 functional block G): StatusNotification, ChangeAvailability, and the 1.6 status model.

2.0.1 reports a connector as Occupied and the transaction's chargingState separately; 1.6 folds both into
one ChargePointStatus (OCPP 1.6 §7.7). `status_16` derives it from what the station state knows.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from translators.bridge import Context, Disposition, Request
from translators.state import StationState

# messages.md §2.3: an Occupied connector's 1.6 status follows the open transaction's chargingState.
CHARGING_STATE_TO_STATUS_16 = {
    "Charging": "Charging",
    "SuspendedEV": "SuspendedEV",
    "SuspendedEVSE": "SuspendedEVSE",
    "EVConnected": "SuspendedEVSE",
    "Idle": "Preparing",
}
# ConnectorStatusEnumType values with the same meaning in 1.6.
CONNECTOR_STATUS_TO_16 = {
    "Available": "Available",
    "Reserved": "Reserved",
    "Unavailable": "Unavailable",
    "Faulted": "Faulted",
}
AVAILABILITY_STATUS = {"Accepted": "Accepted", "Rejected": "Rejected", "Scheduled": "Scheduled"}


def flat_connector(ctx: Context, evse_id: int, connector_id: int | None) -> int:
    """The 1.6 connectorId of a 2.0.1 EVSE/connector (allocated and persisted on first sight)."""
    known = len(ctx.state.connectors)
    flat = ctx.state.connector_for(evse_id, connector_id)
    if len(ctx.state.connectors) != known:
        ctx.touch()
    return flat


def evse_ref(state: StationState, connector_id: int) -> dict[str, int] | None:
    """The 2.0.1 EVSEType of a flat 1.6 connector id, or None if the station never showed that connector."""
    evse = state.evse_for(connector_id)
    return None if evse is None else {"id": evse[0], "connectorId": evse[1]}


def status_16(state: StationState, connector_id: int) -> str:
    """The 1.6 ChargePointStatus of a connector from its 2.0.1 status and its transaction."""
    reported = state.connector_status.get(connector_id)
    tx = state.transaction_on(connector_id)
    # A station may report a transaction without reporting the plug-in (or never report the connector).
    in_use = tx is not None or (reported is None and connector_id in state.finishing)
    connector_status = "Occupied" if in_use and reported in (None, "Available") else reported or "Available"
    if connector_status != "Occupied":
        return CONNECTOR_STATUS_TO_16[connector_status]
    if tx is not None and tx.started_at_legacy:
        return CHARGING_STATE_TO_STATUS_16.get(tx.charging_state or "Charging", "Charging")
    if connector_id in state.finishing:
        return "Finishing"
    return "Preparing"


def status_notification_16(state: StationState, connector_id: int, timestamp: str) -> dict[str, Any]:
    status = status_16(state, connector_id)
    # 1.6 requires an errorCode; 2.0.1 reports faults through NotifyEvent, so only Faulted gets one.
    return {
        "connectorId": connector_id,
        "errorCode": "OtherError" if status == "Faulted" else "NoError",
        "status": status,
        "timestamp": timestamp,
    }


def status_changes(ctx: Context, connector_id: int, timestamp: str) -> Generator[Request, Any, None]:
    """Send the legacy a StatusNotification if the connector's 1.6 status differs from what it last got."""
    notification = status_notification_16(ctx.state, connector_id, timestamp)
    if ctx.state.legacy_status.get(connector_id) == notification["status"]:
        return
    yield Request("StatusNotification", notification)
    ctx.state.legacy_status[connector_id] = notification["status"]
    ctx.touch()


def status_notification(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    connector_id = flat_connector(ctx, payload["evseId"], payload["connectorId"])
    ctx.state.on_connector_status(connector_id, payload["connectorStatus"])
    ctx.touch()
    notification = status_notification_16(ctx.state, connector_id, payload["timestamp"])
    # Forwarded even when unchanged: a legacy CSMS expects the statuses again after every boot.
    yield Request("StatusNotification", notification)
    ctx.state.legacy_status[connector_id] = notification["status"]
    ctx.touch()
    return {}


def change_availability(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    request: dict[str, Any] = {"operationalStatus": payload["type"]}
    if payload["connectorId"] != 0:  # 1.6 connector 0 is the whole charge point: 2.0.1 omits evse
        evse = evse_ref(ctx.state, payload["connectorId"])
        if evse is None:
            return {"status": "Rejected"}
        request["evse"] = evse
    answer = yield Request("ChangeAvailability", request)
    return {"status": AVAILABILITY_STATUS[answer["status"]]}


CHARGER_CALLS = {
    "StatusNotification": Disposition(
        "translated",
        ("StatusNotification",),
        status_notification,
        lossy=(
            "Occupied becomes Preparing, Charging, SuspendedEV, SuspendedEVSE or Finishing from the transaction's "
            "state (EVConnected is SuspendedEVSE)",
            "errorCode is NoError, or OtherError when Faulted (2.0.1 reports faults through NotifyEvent)",
        ),
    ),
}
LEGACY_CALLS = {
    "ChangeAvailability": Disposition(
        "translated",
        ("ChangeAvailability",),
        change_availability,
        lossy=("a connector the station never reported is answered Rejected by the proxy",),
    ),
}
