"""Remote control (2.0.1 functional block F, less transactions): UnlockConnector, TriggerMessage,
and DataTransfer in both directions."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import orjson

from translators.availability import evse_ref
from translators.bridge import Context, Disposition, Request

# messages.md §2.10: 2.0.1 UnlockStatusEnumType → 1.6 UnlockStatus.
UNLOCK_STATUS_TO_16 = {
    "Unlocked": "Unlocked",
    "UnlockFailed": "UnlockFailed",
    "OngoingAuthorizedTransaction": "UnlockFailed",
    "UnknownConnector": "NotSupported",
}
# messages.md §2.10: 1.6 MessageTrigger → 2.0.1 MessageTriggerEnumType.
TRIGGER_16_TO_201 = {
    "BootNotification": "BootNotification",
    "DiagnosticsStatusNotification": "LogStatusNotification",
    "FirmwareStatusNotification": "FirmwareStatusNotification",
    "Heartbeat": "Heartbeat",
    "MeterValues": "MeterValues",
    "StatusNotification": "StatusNotification",
}
TRIGGER_STATUS = {"Accepted": "Accepted", "Rejected": "Rejected", "NotImplemented": "NotImplemented"}
DATA_TRANSFER_STATUS = {s: s for s in ("Accepted", "Rejected", "UnknownMessageId", "UnknownVendorId")}


def unlock_connector(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    evse = ctx.state.evse_for(payload["connectorId"])
    if evse is None:
        return {"status": "NotSupported"}  # OCPP 1.6 errata §3.85: an unknown connectorId
    answer = yield Request("UnlockConnector", {"evseId": evse[0], "connectorId": evse[1]})
    return {"status": UNLOCK_STATUS_TO_16[answer["status"]]}


def trigger_message(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    request: dict[str, Any] = {"requestedMessage": TRIGGER_16_TO_201[payload["requestedMessage"]]}
    if payload.get("connectorId"):
        evse = evse_ref(ctx.state, payload["connectorId"])
        if evse is None:
            return {"status": "Rejected"}
        request["evse"] = evse
    answer = yield Request("TriggerMessage", request)
    return {"status": TRIGGER_STATUS[answer["status"]]}


def data_string(data: Any) -> str:
    """1.6 DataTransfer data is a string; 2.0.1 data is any JSON, serialised when it is not a string."""
    return data if isinstance(data, str) else orjson.dumps(data).decode()


def data_transfer_up(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """A charger's 2.0.1 DataTransfer to the legacy."""
    request: dict[str, Any] = {key: payload[key] for key in ("vendorId", "messageId") if key in payload}
    if "data" in payload:
        request["data"] = data_string(payload["data"])
    answer = yield Request("DataTransfer", request)
    response: dict[str, Any] = {"status": DATA_TRANSFER_STATUS[answer["status"]]}
    if "data" in answer:
        response["data"] = answer["data"]
    return response


def data_transfer_down(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """The legacy's 1.6 DataTransfer to the charger (a 1.6 string stays a string)."""
    answer = yield Request("DataTransfer", dict(payload))
    response: dict[str, Any] = {"status": DATA_TRANSFER_STATUS[answer["status"]]}
    if "data" in answer:
        response["data"] = data_string(answer["data"])
    return response


CHARGER_CALLS = {
    "DataTransfer": Disposition("translated", ("DataTransfer",), data_transfer_up),
}
LEGACY_CALLS = {
    "UnlockConnector": Disposition("translated", ("UnlockConnector",), unlock_connector),
    "TriggerMessage": Disposition("translated", ("TriggerMessage",), trigger_message),
    "DataTransfer": Disposition("translated", ("DataTransfer",), data_transfer_down),
}
