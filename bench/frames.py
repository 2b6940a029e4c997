"""The workload's wire payloads: 2.0.1 CALLs a charger sends (and the same fleet's 1.6 chargers', for the
proxy's passthrough), and the stub CSMS's canned answers.

Payloads are built once (per charger, or per session where the transactionId changes) and serialised with
orjson; a frame is then only its message id spliced into prebuilt bytes.
"""

from __future__ import annotations

from typing import Any

import orjson

TIMESTAMP = "2025-01-01T00:00:00.000Z"
ID_TOKEN = {"idToken": "TAG0001", "type": "ISO14443"}
EVSE = {"id": 1, "connectorId": 1}
PERIODIC_UPDATES = 4  # TransactionEvent Updated (MeterValuePeriodic) per session, after the Charging one

# What the stub answers per action, by the subprotocol the connection negotiated (1.6 from the proxy,
# 2.0.1 from a charger directly or through the bare relay).
ANSWERS_16: dict[str, dict[str, Any]] = {
    "BootNotification": {"status": "Accepted", "currentTime": TIMESTAMP, "interval": 300},
    "Heartbeat": {"currentTime": TIMESTAMP},
    "StatusNotification": {},
    "Authorize": {"idTagInfo": {"status": "Accepted"}},
    "StartTransaction": {"transactionId": 0, "idTagInfo": {"status": "Accepted"}},  # id filled per call
    "MeterValues": {},
    "StopTransaction": {"idTagInfo": {"status": "Accepted"}},
    "DataTransfer": {"status": "Accepted"},
}
ANSWERS_201: dict[str, dict[str, Any]] = {
    "BootNotification": {"status": "Accepted", "currentTime": TIMESTAMP, "interval": 300},
    "Heartbeat": {"currentTime": TIMESTAMP},
    "StatusNotification": {},
    "Authorize": {"idTokenInfo": {"status": "Accepted"}},
    "TransactionEvent": {},
    "MeterValues": {},
    "DataTransfer": {"status": "Accepted"},
}
# What the charger answers when the proxy asks it something (the proxy's GetBaseReport after a boot).
CHARGER_ANSWERS: dict[str, dict[str, Any]] = {"GetBaseReport": {"status": "NotSupported"}}


def call_template(action: str, payload: dict[str, Any]) -> tuple[bytes, bytes]:
    """The bytes before and after the message id of a CALL frame."""
    return b'[2,"', b'","' + action.encode() + b'",' + orjson.dumps(payload) + b"]"


def _sampled(value: float, measurand: str, unit: str, phase: str | None = None, **extra: Any) -> dict[str, Any]:
    sampled: dict[str, Any] = {"value": value, "measurand": measurand, "unitOfMeasure": {"unit": unit}}
    if phase is not None:
        sampled["phase"] = phase
    sampled.update(extra)
    return sampled


def meter_value(wh: int, context: str, full: bool) -> list[dict[str, Any]]:
    """One MeterValue: the energy register alone, or (full) a three-phase sample of about 1 KB."""
    sampled = [_sampled(wh, "Energy.Active.Import.Register", "Wh", context=context)]
    if full:
        sampled += [_sampled(11040.5, "Power.Active.Import", "W", context=context)]
        sampled += [_sampled(16.02, "Current.Import", "A", phase, context=context) for phase in ("L1", "L2", "L3")]
        sampled += [_sampled(230.1, "Voltage", "V", phase, context=context) for phase in ("L1-N", "L2-N", "L3-N")]
        sampled += [_sampled(54, "SoC", "Percent", context=context, location="EV")]
    return [{"timestamp": TIMESTAMP, "sampledValue": sampled}]


def boot_calls() -> list[tuple[bytes, bytes]]:
    """A charger's start: BootNotification, then its connector Available."""
    return [
        call_template(
            "BootNotification",
            {"chargingStation": {"vendorName": "ocpp-cutover", "model": "BENCH-201"}, "reason": "PowerUp"},
        ),
        call_template("StatusNotification", status("Available")),
    ]


def status(connector_status: str) -> dict[str, Any]:
    return {"timestamp": TIMESTAMP, "connectorStatus": connector_status, "evseId": 1, "connectorId": 1}


def session_calls(transaction_id: str) -> list[tuple[bytes, bytes]]:
    """One charging session: Authorize, Started, Updated (Charging, then periodic ~1 KB samples), Ended."""

    def event(event_type: str, trigger: str, seq_no: int, info: dict[str, Any], **rest: Any) -> dict[str, Any]:
        payload = {
            "eventType": event_type,
            "timestamp": TIMESTAMP,
            "triggerReason": trigger,
            "seqNo": seq_no,
            "transactionInfo": {"transactionId": transaction_id, **info},
            "evse": EVSE,
        }
        payload.update(rest)
        return payload

    wh = 1000
    calls = [
        call_template("Authorize", {"idToken": ID_TOKEN}),
        call_template("StatusNotification", status("Occupied")),
        call_template(
            "TransactionEvent",
            event(
                "Started", "Authorized", 0, {"chargingState": "EVConnected"},
                idToken=ID_TOKEN, meterValue=meter_value(wh, "Transaction.Begin", full=False),
            ),
        ),
        call_template(
            "TransactionEvent", event("Updated", "ChargingStateChanged", 1, {"chargingState": "Charging"})
        ),
    ]  # fmt: skip
    for seq_no in range(2, 2 + PERIODIC_UPDATES):
        wh += 1500
        calls.append(
            call_template(
                "TransactionEvent",
                event(
                    "Updated", "MeterValuePeriodic", seq_no, {"chargingState": "Charging"},
                    meterValue=meter_value(wh, "Sample.Periodic", full=True),
                ),
            )
        )  # fmt: skip
    calls += [
        call_template(
            "TransactionEvent",
            event(
                "Ended", "StopAuthorized", 2 + PERIODIC_UPDATES, {"stoppedReason": "Local"},
                idToken=ID_TOKEN, meterValue=meter_value(wh, "Transaction.End", full=False),
            ),
        ),
        call_template("StatusNotification", status("Available")),
        call_template("Heartbeat", {}),
    ]  # fmt: skip
    return calls


# -- OCPP 1.6 chargers (the proxy's passthrough): the same session shape, in 1.6's messages -----------------------
TRANSACTION_ID_16 = 1  # the stub's StartTransaction answers are not read back: a closed loop of prebuilt frames


def status_16(status_16: str) -> dict[str, Any]:
    return {"connectorId": 1, "errorCode": "NoError", "status": status_16, "timestamp": TIMESTAMP}


def meter_value_16(wh: int, context: str, full: bool) -> list[dict[str, Any]]:
    """`meter_value` in 1.6's form: values are strings, the unit and phase beside them."""
    (entry,) = meter_value(wh, context, full)
    sampled = [
        {"value": str(value["value"]), "context": context, "measurand": value["measurand"],
         "unit": value["unitOfMeasure"]["unit"], **{key: value[key] for key in ("phase", "location") if key in value}}
        for value in entry["sampledValue"]
    ]  # fmt: skip
    return [{"timestamp": TIMESTAMP, "sampledValue": sampled}]


def boot_calls_16() -> list[tuple[bytes, bytes]]:
    return [
        call_template("BootNotification", {"chargePointVendor": "ocpp-cutover", "chargePointModel": "BENCH-16"}),
        call_template("StatusNotification", status_16("Available")),
    ]


def session_calls_16(transaction_id: str) -> list[tuple[bytes, bytes]]:
    """One 1.6 charging session of 11 CALLs, as `session_calls`: Authorize, Preparing, StartTransaction,
    Charging, four periodic ~1 KB MeterValues, StopTransaction, Available, Heartbeat (`transaction_id` unused:
    1.6 numbers transactions at the CSMS)."""
    wh = 1000
    calls = [
        call_template("Authorize", {"idTag": "TAG0001"}),
        call_template("StatusNotification", status_16("Preparing")),
        call_template(
            "StartTransaction", {"connectorId": 1, "idTag": "TAG0001", "meterStart": wh, "timestamp": TIMESTAMP}
        ),
        call_template("StatusNotification", status_16("Charging")),
    ]
    for _ in range(PERIODIC_UPDATES):
        wh += 1500
        calls.append(
            call_template(
                "MeterValues",
                {"connectorId": 1, "transactionId": TRANSACTION_ID_16,
                 "meterValue": meter_value_16(wh, "Sample.Periodic", full=True)},
            )
        )  # fmt: skip
    calls += [
        call_template(
            "StopTransaction",
            {"transactionId": TRANSACTION_ID_16, "meterStop": wh, "timestamp": TIMESTAMP, "idTag": "TAG0001",
             "reason": "Local", "transactionData": meter_value_16(wh, "Transaction.End", full=False)},
        ),
        call_template("StatusNotification", status_16("Available")),
        call_template("Heartbeat", {}),
    ]  # fmt: skip
    return calls
