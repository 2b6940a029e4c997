"""Provisioning (2.0.1 functional block B): BootNotification, Heartbeat, Reset, and the 1.6 configuration
keys (GetConfiguration / ChangeConfiguration) ⇄ device-model variables (GetVariables / SetVariables)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NamedTuple

from translators.bridge import Context, Disposition, Request


class Variable(NamedTuple):
    component: str
    variable: str
    instance: str | None
    kind: str  # the 1.6 value type: "boolean", "integer", "csl", "string"
    readonly: bool  # 1.6 §9 access, until the device model says otherwise


# config-keys.md §1 (EVerest known_keys / OCPP 1.6 §9.1): core 1.6 keys with an Actual 2.0.1 variable.
CONFIG_KEY_TO_VARIABLE = {
    "AllowOfflineTxForUnknownId": Variable("AuthCtrlr", "OfflineTxForUnknownIdEnabled", None, "boolean", False),
    "AuthorizationCacheEnabled": Variable("AuthCacheCtrlr", "Enabled", None, "boolean", False),
    "AuthorizeRemoteTxRequests": Variable("AuthCtrlr", "AuthorizeRemoteStart", None, "boolean", False),
    "ClockAlignedDataInterval": Variable("AlignedDataCtrlr", "Interval", None, "integer", False),
    "ConnectionTimeOut": Variable("TxCtrlr", "EVConnectionTimeOut", None, "integer", False),
    "HeartbeatInterval": Variable("OCPPCommCtrlr", "HeartbeatInterval", None, "integer", False),
    "LocalAuthorizeOffline": Variable("AuthCtrlr", "LocalAuthorizeOffline", None, "boolean", False),
    "LocalPreAuthorize": Variable("AuthCtrlr", "LocalPreAuthorize", None, "boolean", False),
    "MaxEnergyOnInvalidId": Variable("TxCtrlr", "MaxEnergyOnInvalidId", None, "integer", False),
    "MeterValuesAlignedData": Variable("AlignedDataCtrlr", "Measurands", None, "csl", False),
    "MeterValuesSampledData": Variable("SampledDataCtrlr", "TxUpdatedMeasurands", None, "csl", False),
    "MeterValueSampleInterval": Variable("SampledDataCtrlr", "TxUpdatedInterval", None, "integer", False),
    "ResetRetries": Variable("OCPPCommCtrlr", "ResetRetries", None, "integer", False),
    "StopTransactionOnEVSideDisconnect": Variable("TxCtrlr", "StopTxOnEVSideDisconnect", None, "boolean", False),
    "StopTransactionOnInvalidId": Variable("TxCtrlr", "StopTxOnInvalidId", None, "boolean", False),
    "StopTxnAlignedData": Variable("AlignedDataCtrlr", "TxEndedMeasurands", None, "csl", False),
    "StopTxnSampledData": Variable("SampledDataCtrlr", "TxEndedMeasurands", None, "csl", False),
    "TransactionMessageAttempts": Variable("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent", "integer", False),
    "TransactionMessageRetryInterval": Variable(
        "OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent", "integer", False
    ),
    "UnlockConnectorOnEVSideDisconnect": Variable(
        "OCPPCommCtrlr", "UnlockOnEVSideDisconnect", None, "boolean", False
    ),
    "WebSocketPingInterval": Variable("OCPPCommCtrlr", "WebSocketPingInterval", None, "integer", False),
    "SupportedFileTransferProtocols": Variable("OCPPCommCtrlr", "FileTransferProtocols", None, "csl", True),
    "LocalAuthListEnabled": Variable("LocalAuthListCtrlr", "Enabled", None, "boolean", False),
    "SendLocalListMaxLength": Variable("LocalAuthListCtrlr", "ItemsPerMessage", None, "integer", True),
    "ReserveConnectorZeroSupported": Variable("ReservationCtrlr", "NonEvseSpecific", None, "boolean", True),
    "ChargeProfileMaxStackLevel": Variable("SmartChargingCtrlr", "ProfileStackLevel", None, "integer", True),
    "ChargingScheduleMaxPeriods": Variable("SmartChargingCtrlr", "PeriodsPerSchedule", None, "integer", True),
    "ConnectorSwitch3to1PhaseSupported": Variable("SmartChargingCtrlr", "Phases3to1", None, "boolean", True),
}  # fmt: skip
VARIABLE_TO_CONFIG_KEY = {
    (v.component, v.variable, v.instance): key for key, v in CONFIG_KEY_TO_VARIABLE.items()
}
# OCPP 1.6 §6.13 / §7.22: GetConfiguration KeyValue.value is at most 500 characters.
MAX_CONFIG_VALUE = 500
# 2.0.1 SetVariableStatusEnumType → 1.6 ConfigurationStatus (messages.md §2.18).
SET_VARIABLE_STATUS_TO_16 = {
    "Accepted": "Accepted",
    "Rejected": "Rejected",
    "RebootRequired": "RebootRequired",
    "UnknownComponent": "NotSupported",
    "UnknownVariable": "NotSupported",
    "NotSupportedAttributeType": "NotSupported",
}
# 2.0.1 ResetStatusEnumType → 1.6 ResetStatus: a scheduled reset is an accepted one.
RESET_STATUS_TO_16 = {"Accepted": "Accepted", "Rejected": "Rejected", "Scheduled": "Accepted"}
BOOLEAN_VALUES = {"true": "true", "false": "false"}


def boot_notification(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    station = payload["chargingStation"]
    request = {
        "chargePointVendor": fit(ctx, station["vendorName"], 20, "chargingStation.vendorName"),
        "chargePointModel": station["model"],
    }
    for source, target in (
        ("serialNumber", "chargePointSerialNumber"),
        ("firmwareVersion", "firmwareVersion"),
    ):
        if source in station:
            request[target] = station[source]
    modem = station.get("modem", {})
    for key in ("iccid", "imsi"):
        if key in modem:
            request[key] = modem[key]
    answer = yield Request("BootNotification", request)
    return {"status": answer["status"], "currentTime": answer["currentTime"], "interval": answer["interval"]}


def fit(ctx: Context, value: str, limit: int, field: str) -> str:
    """`value` cut to a 1.6 field's limit, reported as lossy (a vendor name is not worth refusing a boot)."""
    if len(value) <= limit:
        return value
    ctx.lossy("BootNotification", f"{field}: {len(value)} characters cut to {limit}")
    return value[:limit]


def heartbeat(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    answer = yield Request("Heartbeat", {})
    return {"currentTime": answer["currentTime"]}


def reset(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    ctx.state.last_reset_type = payload["type"]
    ctx.touch()
    answer = yield Request("Reset", {"type": ctx.config.reset_types[payload["type"]]})
    return {"status": RESET_STATUS_TO_16[answer["status"]]}


def variable_ref(variable: Variable) -> dict[str, Any]:
    ref: dict[str, Any] = {
        "component": {"name": variable.component},
        "variable": {"name": variable.variable},
    }
    if variable.instance is not None:
        ref["variable"]["instance"] = variable.instance
    return ref


def get_configuration(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    keys = payload.get("key") or list(CONFIG_KEY_TO_VARIABLE)
    mapped = [key for key in keys if key in CONFIG_KEY_TO_VARIABLE]
    unknown = [key for key in keys if key not in CONFIG_KEY_TO_VARIABLE]
    configuration: list[dict[str, Any]] = []
    if mapped:
        answer = yield Request(
            "GetVariables", {"getVariableData": [variable_ref(CONFIG_KEY_TO_VARIABLE[key]) for key in mapped]}
        )
        for result in answer["getVariableResult"]:
            ref = (
                result["component"]["name"],
                result["variable"]["name"],
                result["variable"].get("instance"),
            )
            key = VARIABLE_TO_CONFIG_KEY.get(ref)
            if key is None or key not in mapped:
                continue
            if result["attributeStatus"] != "Accepted":
                unknown.append(key)
                continue
            entry: dict[str, Any] = {"key": key, "readonly": CONFIG_KEY_TO_VARIABLE[key].readonly}
            value = result.get("attributeValue")
            if value is not None and len(value) <= MAX_CONFIG_VALUE:
                entry["value"] = value
            elif value is not None:
                ctx.lossy("GetConfiguration", f"{key}: value of {len(value)} characters exceeds 1.6's 500")
            configuration.append(entry)
    response: dict[str, Any] = {}
    if configuration:
        response["configurationKey"] = configuration
    if unknown:
        response["unknownKey"] = unknown
    return response


def change_configuration(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    variable = CONFIG_KEY_TO_VARIABLE.get(payload["key"])
    if variable is None:
        return {"status": "NotSupported"}
    if variable.readonly:
        return {"status": "Rejected"}
    value = value_201(variable, payload["value"])
    if value is None:
        return {"status": "Rejected"}  # OCPP 1.6 §6.9: a value that is not valid for the key
    answer = yield Request(
        "SetVariables", {"setVariableData": [{**variable_ref(variable), "attributeValue": value}]}
    )
    return {"status": SET_VARIABLE_STATUS_TO_16[answer["setVariableResult"][0]["attributeStatus"]]}


def value_201(variable: Variable, value: str) -> str | None:
    """The 2.0.1 attribute value for a 1.6 configuration value, or None if it is not valid for its type."""
    if variable.kind == "boolean":
        return BOOLEAN_VALUES.get(value.strip().lower())
    if variable.kind == "integer":
        text = value.strip()
        return text if text.lstrip("-").isdigit() else None
    if variable.kind == "csl":
        return ",".join(item.strip() for item in value.split(",") if item.strip())
    return value


CHARGER_CALLS = {
    "BootNotification": Disposition("translated", ("BootNotification",), boot_notification),
    "Heartbeat": Disposition("translated", ("Heartbeat",), heartbeat),
}
LEGACY_CALLS = {
    "Reset": Disposition("translated", ("Reset",), reset),
    "GetConfiguration": Disposition("translated", ("GetVariables",), get_configuration),
    "ChangeConfiguration": Disposition("translated", ("SetVariables",), change_configuration),
}
