"""Device model (2.0.1 functional block B, reporting and variables): the proxy asks a booted station for
its full inventory (GetBaseReport → NotifyReport parts, cached), and the legacy's 1.6 configuration keys
(GetConfiguration / ChangeConfiguration) are answered through that cache and GetVariables / SetVariables.

Keys with a 2.0.1 variable (config-keys.md §1) are read and written on the station; keys that 1.6 derives
from the station's build (NumberOfConnectors, SupportedFeatureProfiles, the *MaxLength keys, ...) are
answered from the cache; keys with no 2.0.1 home are reported unknown, never invented.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, NamedTuple

from translators.bridge import Context, Disposition, Request
from translators.state import DeviceModel, StationState


class Variable(NamedTuple):
    component: str
    variable: str
    instance: str | None
    kind: str  # the 1.6 value type: "boolean", "integer", "csl", "rate_units", "string"
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
    "ChargingScheduleAllowedChargingRateUnit": Variable("SmartChargingCtrlr", "RateUnit", None, "rate_units", True),
    "AdditionalRootCertificateCheck": Variable("SecurityCtrlr", "AdditionalRootCertificateCheck", None, "boolean", True),
    "CertificateSignedMaxChainSize": Variable("SecurityCtrlr", "MaxCertificateChainSize", None, "integer", True),
    "CpoName": Variable("SecurityCtrlr", "OrganizationName", None, "string", False),
    "CentralContractValidationAllowed": Variable("ISO15118Ctrlr", "CentralContractValidationAllowed", None, "boolean", False),
    "CertSigningWaitMinimum": Variable("SecurityCtrlr", "CertSigningWaitMinimum", None, "integer", False),
    "CertSigningRepeatTimes": Variable("SecurityCtrlr", "CertSigningRepeatTimes", None, "integer", False),
    "ContractValidationOffline": Variable("ISO15118Ctrlr", "ContractValidationOffline", None, "boolean", False),
    "ISO15118PnCEnabled": Variable("ISO15118Ctrlr", "PnCEnabled", None, "boolean", False),
    "PublicKeyWithSignedMeterValue": Variable("OCPPCommCtrlr", "PublicKeyWithSignedMeterValue", None, "string", False),
    "SampledDataSignReadings": Variable("SampledDataCtrlr", "SignReadings", None, "boolean", False),
    "StartTxnSampledData": Variable("SampledDataCtrlr", "TxStartedMeasurands", None, "csl", False),
    "AlignedDataSignReadings": Variable("AlignedDataCtrlr", "SignReadings", None, "boolean", False),
}  # fmt: skip
VARIABLE_TO_CONFIG_KEY = {(v.component, v.variable, v.instance): key for key, v in CONFIG_KEY_TO_VARIABLE.items()}
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
BOOLEAN_VALUES = {"true": "true", "false": "false"}


# 1.6 keys derived from the device model (read-only in 1.6), config-keys.md §1 and §1.1.
MAX_LIMIT_KEYS = {
    "MeterValuesAlignedDataMaxLength": ("AlignedDataCtrlr", "Measurands", None),
    "MeterValuesSampledDataMaxLength": ("SampledDataCtrlr", "TxUpdatedMeasurands", None),
    "StopTxnAlignedDataMaxLength": ("AlignedDataCtrlr", "TxEndedMeasurands", None),
    "StopTxnSampledDataMaxLength": ("SampledDataCtrlr", "TxEndedMeasurands", None),
    "LocalAuthListMaxLength": ("LocalAuthListCtrlr", "Entries", None),
    "MaxChargingProfilesInstalled": ("SmartChargingCtrlr", "Entries", "ChargingProfiles"),
}
# OCPP 1.6 §9.1.29 feature profiles → the 2.0.1 controller whose Available/Enabled variable announces it.
FEATURE_PROFILE_CONTROLLERS = {
    "LocalAuthListManagement": "LocalAuthListCtrlr",
    "Reservation": "ReservationCtrlr",
    "SmartCharging": "SmartChargingCtrlr",
}
# Always there in 2.0.1: Core; firmware update (L01) and TriggerMessage (F06) are not optional blocks.
BASE_FEATURE_PROFILES = ("Core", "FirmwareManagement", "RemoteTrigger")
# config-keys.md §1.1: the 2.0.1 variables paired with a 1.6 interval (1.6 uses one value for both).
PAIRED_VARIABLES = {
    "ClockAlignedDataInterval": Variable("AlignedDataCtrlr", "TxEndedInterval", None, "integer", False),
    "MeterValueSampleInterval": Variable("SampledDataCtrlr", "TxEndedInterval", None, "integer", False),
}
# S16 errata §3.86: 1.6 ChargingScheduleAllowedChargingRateUnit says Current/Power where 2.0.1 says A/W.
RATE_UNIT_201_TO_16 = {"A": "Current", "W": "Power"}
# The station's limit on GetVariables items per message (2.0.1 DeviceDataCtrlr.ItemsPerMessage).
ITEMS_PER_MESSAGE = ("DeviceDataCtrlr", "ItemsPerMessage", "GetVariables")
DEFAULT_ITEMS_PER_MESSAGE = 16
# What the proxy can answer in one GetConfiguration, whatever the station's own per-message limit.
MAX_KEYS = len(CONFIG_KEY_TO_VARIABLE) + len(MAX_LIMIT_KEYS) + 3


def request_base_report(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """The proxy's own GetBaseReport(FullInventory) after a boot; NotifyReport parts fill the cache."""
    request_id = ctx.state.new_request_id()  # remembered by the device model, not in `requests`
    ctx.touch()
    ctx.device_model.on_report_requested(request_id)
    ctx.device_model_changed = True
    answer = yield Request("GetBaseReport", {"requestId": request_id, "reportBase": "FullInventory"})
    if answer["status"] != "Accepted":
        ctx.lossy("GetBaseReport", f"station answered {answer['status']}: configuration keys use the static table")
    return {}


def notify_report(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    ctx.device_model.on_report_data(payload.get("reportData", []), last_part=not payload.get("tbc", False))
    ctx.device_model_changed = True
    return {}
    yield  # pragma: no cover - makes this a handler generator


def is_readonly(model: DeviceModel, variable: Variable) -> bool:
    reported = model.get(variable.component, variable.variable, variable.instance)
    if reported is not None and "mutability" in reported:
        return bool(reported["mutability"] == "ReadOnly")
    return variable.readonly


def station_has(model: DeviceModel, variable: Variable) -> bool:
    """False only when a complete report did not list the variable."""
    return not model.complete or model.get(variable.component, variable.variable, variable.instance) is not None


def derived_value(model: DeviceModel, state: StationState, key: str) -> str | None:
    """The value of a 1.6 key derived from the device model, or None when it cannot be known."""
    if key in MAX_LIMIT_KEYS:
        reported = model.get(*MAX_LIMIT_KEYS[key])
        return None if reported is None or "maxLimit" not in reported else str(int(reported["maxLimit"]))
    if key == "NumberOfConnectors":
        connectors = model.count("Connector") or len(state.connectors)
        return str(connectors) if connectors else None
    if key == "SupportedFeatureProfiles":
        profiles = list(BASE_FEATURE_PROFILES)
        for profile, controller in FEATURE_PROFILE_CONTROLLERS.items():
            for flag in ("Available", "Enabled"):
                reported = model.get(controller, flag)
                if reported is not None and reported.get("value") == "true":
                    profiles.append(profile)
                    break
        return ",".join(profiles)
    if key == "GetConfigurationMaxKeys":
        return str(MAX_KEYS)
    return None


DERIVED_KEYS = ("GetConfigurationMaxKeys", "NumberOfConnectors", "SupportedFeatureProfiles", *MAX_LIMIT_KEYS)


def variable_ref(variable: Variable) -> dict[str, Any]:
    ref: dict[str, Any] = {"component": {"name": variable.component}, "variable": {"name": variable.variable}}
    if variable.instance is not None:
        ref["variable"]["instance"] = variable.instance
    return ref


def items_per_message(model: DeviceModel) -> int:
    reported = model.get(*ITEMS_PER_MESSAGE) or model.get(*ITEMS_PER_MESSAGE[:2])
    try:
        return max(int(reported["value"]), 1) if reported else DEFAULT_ITEMS_PER_MESSAGE
    except (KeyError, ValueError):
        return DEFAULT_ITEMS_PER_MESSAGE


def get_configuration(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    model = ctx.device_model
    if payload.get("key"):
        keys = list(dict.fromkeys(payload["key"]))
    else:  # OCPP 1.6 §6.11: no keys means every key the charge point has
        keys = [k for k, v in CONFIG_KEY_TO_VARIABLE.items() if station_has(model, v)] + list(DERIVED_KEYS)
    configuration: list[dict[str, Any]] = []
    unknown: list[str] = []
    mapped = [key for key in keys if key in CONFIG_KEY_TO_VARIABLE and station_has(model, CONFIG_KEY_TO_VARIABLE[key])]
    batch = items_per_message(model)
    for start in range(0, len(mapped), batch):
        chunk = mapped[start : start + batch]
        answer = yield Request(
            "GetVariables", {"getVariableData": [variable_ref(CONFIG_KEY_TO_VARIABLE[key]) for key in chunk]}
        )
        by_key = {}
        for result in answer["getVariableResult"]:
            ref = (result["component"]["name"], result["variable"]["name"], result["variable"].get("instance"))
            if ref in VARIABLE_TO_CONFIG_KEY:
                by_key[VARIABLE_TO_CONFIG_KEY[ref]] = result
        for key in chunk:
            result = by_key.get(key)
            if result is None or result["attributeStatus"] != "Accepted":
                unknown.append(key)
                continue
            configuration.append(key_value(ctx, key, result.get("attributeValue")))
    for key in keys:
        if key in CONFIG_KEY_TO_VARIABLE:
            if key not in mapped:
                unknown.append(key)
            continue
        value = derived_value(model, ctx.state, key)
        if value is None:
            if payload.get("key"):  # asked for by name: unknown; in "everything", simply not there
                unknown.append(key)
        else:
            configuration.append({"key": key, "readonly": True, "value": value})
    response: dict[str, Any] = {}
    if configuration:
        response["configurationKey"] = configuration
    if unknown:
        response["unknownKey"] = unknown
    return response


def key_value(ctx: Context, key: str, value: str | None) -> dict[str, Any]:
    """A 1.6 KeyValue for a variable's value (1.6 spelling; a value over 500 characters is left out)."""
    variable = CONFIG_KEY_TO_VARIABLE[key]
    entry: dict[str, Any] = {"key": key, "readonly": is_readonly(ctx.device_model, variable)}
    if value is not None and variable.kind == "rate_units":
        value = ",".join(RATE_UNIT_201_TO_16.get(unit.strip(), unit.strip()) for unit in value.split(","))
    if value is not None and len(value) <= MAX_CONFIG_VALUE:
        entry["value"] = value
    elif value is not None:
        ctx.lossy("GetConfiguration", f"{key}: value of {len(value)} characters exceeds 1.6's 500")
    return entry


def change_configuration(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    key = payload["key"]
    variable = CONFIG_KEY_TO_VARIABLE.get(key)
    if variable is None:
        return {"status": "Rejected" if key in DERIVED_KEYS else "NotSupported"}
    if not station_has(ctx.device_model, variable):
        return {"status": "NotSupported"}
    if is_readonly(ctx.device_model, variable):
        return {"status": "Rejected"}
    value = VALUE_PARSERS[variable.kind](payload["value"])
    if value is None:
        return {"status": "Rejected"}  # OCPP 1.6 §6.9: a value that is not valid for the key
    data = [{**variable_ref(variable), "attributeValue": value}]
    paired = PAIRED_VARIABLES.get(key)
    if paired is not None and ctx.device_model.get(paired.component, paired.variable) is not None:
        data.append({**variable_ref(paired), "attributeValue": value})
    answer = yield Request("SetVariables", {"setVariableData": data})
    statuses = [result["attributeStatus"] for result in answer["setVariableResult"]]
    status = SET_VARIABLE_STATUS_TO_16[statuses[0]]
    if status == "Accepted" and "RebootRequired" in statuses[1:]:
        status = "RebootRequired"
    if any(s not in ("Accepted", "RebootRequired") for s in statuses[1:]):
        ctx.lossy("ChangeConfiguration", f"{key}: the paired 2.0.1 variable was not set ({statuses[1]})")
    return {"status": status}


def parse_boolean(value: str) -> str | None:
    return BOOLEAN_VALUES.get(value.strip().lower())


def parse_integer(value: str) -> str | None:
    text = value.strip()
    return text if text.lstrip("-").isdigit() else None


def parse_list(value: str) -> str | None:
    return ",".join(item.strip() for item in value.split(",") if item.strip())


# How a 1.6 configuration value of each kind becomes a 2.0.1 attribute value (None: not valid).
VALUE_PARSERS: dict[str, Callable[[str], str | None]] = {
    "boolean": parse_boolean,
    "integer": parse_integer,
    "csl": parse_list,
    "rate_units": parse_list,
    "string": lambda value: value,
}

CHARGER_CALLS = {
    "NotifyReport": Disposition("local", (), notify_report, "feeds the device-model cache of the station"),
}
LEGACY_CALLS = {
    "GetConfiguration": Disposition(
        "translated",
        ("GetVariables",),
        get_configuration,
        lossy=(
            "keys with no 2.0.1 variable are reported unknown",
            "a value over 1.6's 500 characters is left out of its KeyValue",
        ),
    ),
    "ChangeConfiguration": Disposition(
        "translated",
        ("SetVariables",),
        change_configuration,
        lossy=("UnknownComponent, UnknownVariable and NotSupportedAttributeType all become NotSupported",),
    ),
}
