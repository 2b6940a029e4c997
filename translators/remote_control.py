"""Remote control (2.0.1 functional block F, less transactions): UnlockConnector, TriggerMessage."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

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


def unlock_connector(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    evse = ctx.state.evse_for(payload["connectorId"])
    if evse is None:
        return {"status": "NotSupported"}  # OCPP 1.6 errata §3.85: an unknown connectorId
    tx = ctx.state.transaction_on(payload["connectorId"])
    if tx is not None and tx.started_at_legacy:
        # OCPP 1.6 §7.36: unlocking during a transaction stops it first (reason UnlockCommand); a 2.0.1
        # station refuses to unlock under an authorized transaction (F05.FR.02), so the proxy stops it.
        tx.stop_reason_16 = "UnlockCommand"
        ctx.touch()
        stopped = {"status": "Rejected"}
        try:
            stopped = yield Request("RequestStopTransaction", {"transactionId": tx.transaction_id})
        finally:
            if stopped["status"] != "Accepted":  # not stopped (refused, CALLERROR, timeout): no UnlockCommand
                tx.stop_reason_16 = None
                ctx.touch()
        if stopped["status"] != "Accepted":
            return {"status": "UnlockFailed"}
    answer = yield Request("UnlockConnector", {"evseId": evse[0], "connectorId": evse[1]})
    return {"status": UNLOCK_STATUS_TO_16[answer["status"]]}


def trigger_message(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    return (yield from trigger(ctx, payload, TRIGGER_16_TO_201))


def trigger(
    ctx: Context, payload: dict[str, Any], requested: dict[str, str]
) -> Generator[Request, Any, dict[str, Any]]:
    """A 1.6 TriggerMessage or ExtendedTriggerMessage (`requested`: its message names in 2.0.1) as 2.0.1's."""
    request: dict[str, Any] = {"requestedMessage": requested[payload["requestedMessage"]]}
    if payload.get("connectorId"):
        evse = evse_ref(ctx.state, payload["connectorId"])
        if evse is None:
            return {"status": "Rejected"}
        request["evse"] = evse
    answer = yield Request("TriggerMessage", request)
    return {"status": TRIGGER_STATUS[answer["status"]]}


CHARGER_CALLS: dict[str, Disposition] = {}
LEGACY_CALLS = {
    "UnlockConnector": Disposition(
        "translated",
        ("RequestStopTransaction", "UnlockConnector"),
        unlock_connector,
        lossy=(
            "during a transaction the proxy first sends RequestStopTransaction (the legacy then gets reason "
            "UnlockCommand); a station still ending it may answer the unlock with UnlockFailed",
            "OngoingAuthorizedTransaction becomes UnlockFailed, UnknownConnector NotSupported",
        ),
    ),
    "TriggerMessage": Disposition(
        "translated",
        ("TriggerMessage",),
        trigger_message,
        lossy=("DiagnosticsStatusNotification is requested as LogStatusNotification",),
    ),
}
