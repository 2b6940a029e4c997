"""The live conformance lint: every frame a 2.0.1 charger sends, checked for the failures that most often fail
OCPP 2.0.1 certification.

`Lint` is sans-I/O: the caller hands it each frame of the charger leg (both directions: the lint judges only
what the charger sends, but reads the answers it gets) with the time, and gets the violations back; it keeps
per-station counts and the last violations of each station. The work per frame is a walk over that frame's
payload, guided by tables built from the OCA schemas at import; nothing is validated and no history is
rescanned. `cutover lint FILE` runs the same rules over a capture file (`lint_capture`).
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from translators.iso15118 import PNC_VENDOR_ID
from translators.rpc import CALL, CALLERROR, CALLRESULT
from translators.schemas import ocpp_package_dir

OCPP201, OCPP16 = "ocpp2.0.1", "ocpp1.6"
CHARGER_TO_CSMS, CSMS_TO_CHARGER = "charger_to_csms", "csms_to_charger"
UNKNOWN = "unknown"
VIOLATIONS_KEPT = 100  # per station
OPEN_REPORTS_KEPT = 4  # full-inventory report requests per station awaiting their last NotifyReport part
OPEN_CALLS_KEPT = 16  # CSMS CALLs per station awaiting the charger's answer (OCPP-J allows one)

RULES = {
    "ocpp16_action_on_201": "a 1.6-only action (StartTransaction, StopTransaction, ...) on an ocpp2.0.1 connection",
    "id_token_bare_string": "idToken sent as a string instead of an IdTokenType object",
    "flat_boot_notification": "BootNotification with 1.6's flat chargePointVendor/chargePointModel fields",
    "missing_mandatory_variable": "a full-inventory NotifyReport missing device-model variables all stations must have",
    "data_transfer_json": "proprietary structured JSON pushed through DataTransfer instead of device-model variables",
    "heartbeat_gap": "the station stayed silent for more than twice its heartbeat interval",
    "missed_pong": "the station did not answer a WebSocket ping with a pong",
    "optional_field_required": 'an optional field sent as an empty placeholder (null, "", {}, []) instead of omitted',
}

# config-keys.md §2: "Required? = yes" in dm_components_vars.csv (OCPP 2.0.1 Part 2 Appendices v1.4), for the
# components every station has; DisplayMessage, TariffCost, ISO15118, LocalAuthList, SmartCharging and
# Monitoring controllers are required only where their functional block is implemented, and EVSE/Connector
# variables are required per EVSE and connector, so neither is judged. (P4 §8 also calls the RetryBackOff*
# and WebSocketPingInterval variables required; the CSV says no, so they are left out.)
MANDATORY_VARIABLES: frozenset[tuple[str, str, str | None]] = frozenset(
    {
        ("AlignedDataCtrlr", "Interval", None),
        ("AlignedDataCtrlr", "Measurands", None),
        ("AlignedDataCtrlr", "TxEndedInterval", None),
        ("AlignedDataCtrlr", "TxEndedMeasurands", None),
        ("AuthCtrlr", "AuthorizeRemoteStart", None),
        ("AuthCtrlr", "LocalAuthorizeOffline", None),
        ("AuthCtrlr", "LocalPreAuthorize", None),
        ("ChargingStation", "AvailabilityState", None),
        ("ChargingStation", "Available", None),
        ("ChargingStation", "SupplyPhases", None),
        ("ClockCtrlr", "DateTime", None),
        ("ClockCtrlr", "TimeSource", None),
        ("DeviceDataCtrlr", "BytesPerMessage", "GetReport"),
        ("DeviceDataCtrlr", "BytesPerMessage", "GetVariables"),
        ("DeviceDataCtrlr", "BytesPerMessage", "SetVariables"),
        ("DeviceDataCtrlr", "ItemsPerMessage", "GetReport"),
        ("DeviceDataCtrlr", "ItemsPerMessage", "GetVariables"),
        ("DeviceDataCtrlr", "ItemsPerMessage", "SetVariables"),
        ("OCPPCommCtrlr", "FileTransferProtocols", None),
        ("OCPPCommCtrlr", "MessageTimeout", "Default"),
        ("OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent"),
        ("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent"),
        ("OCPPCommCtrlr", "NetworkConfigurationPriority", None),
        ("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", None),
        ("OCPPCommCtrlr", "OfflineThreshold", None),
        ("OCPPCommCtrlr", "ResetRetries", None),
        ("OCPPCommCtrlr", "UnlockOnEVSideDisconnect", None),
        ("SampledDataCtrlr", "TxEndedInterval", None),
        ("SampledDataCtrlr", "TxEndedMeasurands", None),
        ("SampledDataCtrlr", "TxStartedMeasurands", None),
        ("SampledDataCtrlr", "TxUpdatedInterval", None),
        ("SampledDataCtrlr", "TxUpdatedMeasurands", None),
        ("SecurityCtrlr", "CertificateEntries", None),
        ("SecurityCtrlr", "OrganizationName", None),
        ("SecurityCtrlr", "SecurityProfile", None),
        ("TxCtrlr", "EVConnectionTimeOut", None),
        ("TxCtrlr", "StopTxOnEVSideDisconnect", None),
        ("TxCtrlr", "StopTxOnInvalidId", None),
        ("TxCtrlr", "TxStartPoint", None),
        ("TxCtrlr", "TxStopPoint", None),
    }
)

# messages.md §1.1: what a 2.0.1 station sends instead of each 1.6-only action.
REPLACEMENT_201 = {
    "StartTransaction": "TransactionEvent (eventType Started)",
    "StopTransaction": "TransactionEvent (eventType Ended)",
    "DiagnosticsStatusNotification": "LogStatusNotification",
    "SignedFirmwareStatusNotification": "FirmwareStatusNotification",
    "ChangeConfiguration": "SetVariables",
    "GetConfiguration": "GetVariables or GetBaseReport",
    "GetDiagnostics": "GetLog",
    "RemoteStartTransaction": "RequestStartTransaction",
    "RemoteStopTransaction": "RequestStopTransaction",
    "ExtendedTriggerMessage": "TriggerMessage",
    "SignedUpdateFirmware": "UpdateFirmware",
}

# Optional fields whose empty string is a device-model value (an empty MemberList, an unset string), not a
# placeholder: (schema definition, field).
DEVICE_MODEL_VALUES = frozenset({("GetVariableResultType", "attributeValue"), ("VariableAttributeType", "value")})

Kind = Literal["request", "response"]
Flag = Callable[[str, str, str], None]  # (rule, action, detail): record a violation of the frame being judged


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    station_id: str
    action: str
    detail: str
    model: str
    firmware: str


@dataclass(frozen=True, slots=True)
class Field:
    """What the 2.0.1 schema says of one field of one object type."""

    required: bool
    shape: dict[str, Field] | None  # the fields of the value (or of each array item) when it is an object
    id_token: bool  # the value is an IdTokenType object
    free_text: bool  # an empty string is a value here, not a placeholder


Shape = dict[str, Field]


def schema_actions(folder: str) -> frozenset[str]:
    """The actions of one version of the OCA schemas shipped in the `ocpp` package (v16 or v201)."""
    stems = (path.stem for path in (ocpp_package_dir() / folder / "schemas").glob("*.json"))
    return frozenset(re.sub(r"(Request|Response)$", "", stem) for stem in stems)


def compile_shapes() -> dict[tuple[str, Kind], Shape]:
    """The field table of every 2.0.1 request and response, keyed by (action, kind)."""
    shapes: dict[tuple[str, Kind], Shape] = {}
    for path in sorted((ocpp_package_dir() / "v201" / "schemas").glob("*.json")):
        kind: Kind = "response" if path.stem.endswith("Response") else "request"
        action = path.stem.removesuffix("Request").removesuffix("Response")
        schema = json.loads(path.read_text(encoding="utf-8"))
        shapes[(action, kind)] = object_shape(schema, path.stem, schema.get("definitions", {}), {})
    return shapes


def object_shape(node: dict[str, Any], name: str, definitions: dict[str, Any], done: dict[str, Shape]) -> Shape:
    if name in done:
        return done[name]
    shape: Shape = {}
    done[name] = shape
    required = set(node.get("required", ()))
    for key, prop in node.get("properties", {}).items():
        target, target_name = resolve(prop, definitions)
        if target.get("type") == "array":
            target, target_name = resolve(target.get("items", {}), definitions)
        child = object_shape(target, target_name, definitions, done) if "properties" in target else None
        shape[key] = Field(
            required=key in required,
            shape=child,
            id_token=target_name == "IdTokenType",
            free_text=(name, key) in DEVICE_MODEL_VALUES,
        )
    return shape


def resolve(node: dict[str, Any], definitions: dict[str, Any]) -> tuple[dict[str, Any], str]:
    ref = node.get("$ref")
    if ref is None:
        return node, ""
    name = ref.rsplit("/", 1)[-1]
    return definitions[name], name


ACTIONS_16, ACTIONS_201 = schema_actions("v16"), schema_actions("v201")
OCPP16_ONLY_ACTIONS = ACTIONS_16 - ACTIONS_201
SHAPES = compile_shapes()


@dataclass(slots=True)
class FullReport:
    """A GetBaseReport(FullInventory) whose NotifyReport parts are arriving."""

    parts: int = 0
    seen: set[tuple[str, str, str | None]] = field(default_factory=set)


@dataclass(slots=True)
class Station:
    """What the lint knows of one station: identity from its boot, heartbeat clock, exchanges in flight."""

    protocol: str = OCPP201
    model: str = UNKNOWN
    firmware: str = UNKNOWN
    heartbeat_interval: float | None = None
    interval_source: str = ""
    last_heard: float | None = None  # when the station last sent a frame (or had its boot accepted)
    boot_call_id: str | None = None
    csms_calls: dict[str, tuple[str, Any]] = field(default_factory=dict)  # message id → (action, payload)
    full_reports: dict[Any, FullReport] = field(default_factory=dict)  # by requestId
    violations: deque[Violation] = field(default_factory=lambda: deque(maxlen=VIOLATIONS_KEPT))


class Lint:
    """The conformance rules over the charger leg of every station; one instance for a whole fleet."""

    def __init__(self) -> None:
        self._stations: dict[str, Station] = {}
        self._counts: Counter[tuple[str, str]] = Counter()

    def observe(
        self, station_id: str, protocol: str, direction: str, frame: list[Any] | bytes | str, now: float
    ) -> list[Violation]:
        """Read one frame of the charger leg; return what it shows the charger doing wrong (2.0.1 only)."""
        if direction not in (CHARGER_TO_CSMS, CSMS_TO_CHARGER):
            raise ValueError(f"direction must be {CHARGER_TO_CSMS!r} or {CSMS_TO_CHARGER!r}, not {direction!r}")
        station = self._stations.get(station_id)
        if station is None:
            station = self._stations[station_id] = Station()
        station.protocol = protocol
        if protocol != OCPP201:
            return []
        if not isinstance(frame, list):
            try:
                frame = orjson.loads(frame)
            except orjson.JSONDecodeError:
                return []
        if not isinstance(frame, list) or len(frame) < 3 or not isinstance(frame[1], str):
            return []
        if direction == CSMS_TO_CHARGER:
            self._csms_frame(station, frame, now)
            return []
        found = self._charger_frame(station, station_id, frame, now)
        for violation in found:
            station.violations.append(violation)
            self._counts[(violation.rule, violation.model)] += 1
        return found

    def on_connect(self, station_id: str) -> None:
        """A new WebSocket connection of the station: the silence before it is not a heartbeat gap."""
        station = self._stations.get(station_id)
        if station is not None:
            station.last_heard = None
            station.boot_call_id = None
            station.csms_calls.clear()

    def on_missed_pong(self, station_id: str, protocol: str | None = None) -> list[Violation]:
        """Record that the station did not answer a WebSocket ping (ignored for a 1.6 station)."""
        station = self._stations.get(station_id)
        if station is None:
            station = self._stations[station_id] = Station()
        if protocol is not None:
            station.protocol = protocol
        if station.protocol != OCPP201:
            return []
        # RFC 6455 §5.5.2: an endpoint that receives a Ping MUST send a Pong in response.
        violation = Violation(
            "missed_pong",
            station_id,
            "",
            "the station did not answer a WebSocket ping with a pong in time",
            station.model,
            station.firmware,
        )
        station.violations.append(violation)
        self._counts[("missed_pong", station.model)] += 1
        return [violation]

    def counts(self) -> dict[tuple[str, str], int]:
        """Violations so far by (rule, station model)."""
        return dict(self._counts)

    def violations_of(self, station_id: str) -> list[Violation]:
        """The station's last violations (at most 100), oldest first."""
        station = self._stations.get(station_id)
        return list(station.violations) if station else []

    def _csms_frame(self, station: Station, frame: list[Any], now: float) -> None:
        message_id = frame[1]
        if frame[0] == CALL and len(frame) == 4 and isinstance(frame[2], str):
            action, payload = frame[2], frame[3]
            if len(station.csms_calls) >= OPEN_CALLS_KEPT:
                del station.csms_calls[next(iter(station.csms_calls))]
            station.csms_calls[message_id] = (action, payload)
            if action == "GetBaseReport" and isinstance(payload, dict) and payload.get("reportBase") == "FullInventory":
                if len(station.full_reports) >= OPEN_REPORTS_KEPT:
                    del station.full_reports[next(iter(station.full_reports))]
                station.full_reports[payload.get("requestId")] = FullReport()
        elif frame[0] == CALLRESULT and message_id == station.boot_call_id:
            station.boot_call_id = None
            payload = frame[2]
            # OCPP 2.0.1 BootNotificationResponse: interval is the heartbeat interval only when Accepted.
            if isinstance(payload, dict) and payload.get("status") == "Accepted":
                interval = payload.get("interval")
                if isinstance(interval, int | float) and interval > 0:
                    station.heartbeat_interval = float(interval)
                    station.interval_source = "the BootNotification response"
                station.last_heard = now

    def _charger_frame(self, station: Station, station_id: str, frame: list[Any], now: float) -> list[Violation]:
        found: list[Violation] = []

        def flag(rule: str, action: str, detail: str) -> None:
            found.append(Violation(rule, station_id, action, detail, station.model, station.firmware))

        action, payload = "", None
        kind: Kind = "request"
        if frame[0] == CALL and len(frame) == 4 and isinstance(frame[2], str):
            action, payload = frame[2], frame[3]
        elif frame[0] in (CALLRESULT, CALLERROR):
            action, request = station.csms_calls.pop(frame[1], ("", None))
            if frame[0] == CALLRESULT:
                kind, payload = "response", frame[2]
                self._charger_answer(station, action, request, payload)

        # OCPP 2.0.1 Part 2 G02 (and OCPPCommCtrlr.HeartbeatInterval): a Heartbeat is due after an interval
        # without other traffic, so the gap judged is the station's silence, not the time between Heartbeats.
        gap = None if station.last_heard is None else now - station.last_heard
        station.last_heard = now
        interval = station.heartbeat_interval
        if gap is not None and interval is not None and gap > 2 * interval:
            flag(
                "heartbeat_gap",
                action,
                f"no frame from the station for {gap:.0f} s, more than twice its heartbeat interval of "
                f"{interval:g} s (from {station.interval_source})",
            )

        if not isinstance(payload, dict):
            return found
        if kind == "request":
            if action == "BootNotification":
                self._boot(station, frame[1], payload, flag)
            elif action in OCPP16_ONLY_ACTIONS:
                replacement = REPLACEMENT_201.get(action)
                flag(
                    "ocpp16_action_on_201",
                    action,
                    f"{action} is an OCPP 1.6 action, sent on an ocpp2.0.1 connection"
                    + (f"; a 2.0.1 station sends {replacement}" if replacement else ""),
                )
            elif action == "DataTransfer":
                data_transfer(action, payload, flag)
            elif action == "NotifyReport":
                self._notify_report(station, payload, flag)
        shape = SHAPES.get((action, kind))
        if shape is not None:
            bare: list[tuple[str, int]] = []
            empty: list[str] = []
            walk(payload, shape, "", bare, empty)
            for path, length in bare:
                flag(
                    "id_token_bare_string",
                    action,
                    f"{action}: {path} is a string ({length} characters), not an IdTokenType object {{idToken, type}}",
                )
            if empty:
                listed = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
                flag(
                    "optional_field_required",
                    action,
                    f"{action}{'Response' if kind == 'response' else ''}: optional "
                    f"{'field' if len(empty) == 1 else 'fields'} sent empty instead of omitted: {listed}",
                )
        return found

    def _charger_answer(self, station: Station, action: str, request: Any, payload: Any) -> None:
        """Learn from the charger's CALLRESULT: a HeartbeatInterval it accepted, a report it will not send."""
        if not isinstance(payload, dict) or not isinstance(request, dict):
            return
        if action == "GetBaseReport" and payload.get("status") != "Accepted":
            station.full_reports.pop(request.get("requestId"), None)
        elif action == "SetVariables":
            for result in payload.get("setVariableResult") or ():
                if is_heartbeat_interval(result) and result.get("attributeStatus") == "Accepted":
                    for data in request.get("setVariableData") or ():
                        if is_heartbeat_interval(data) and data.get("attributeType", "Actual") == "Actual":
                            try:
                                station.heartbeat_interval = float(data["attributeValue"])
                            except (KeyError, TypeError, ValueError):
                                continue
                            station.interval_source = "SetVariables OCPPCommCtrlr.HeartbeatInterval"

    def _boot(self, station: Station, message_id: str, payload: dict[str, Any], flag: Flag) -> None:
        station.boot_call_id = message_id
        charging_station = payload.get("chargingStation")
        if isinstance(charging_station, dict):
            station.model = text_or_unknown(charging_station.get("model"))
            station.firmware = text_or_unknown(charging_station.get("firmwareVersion"))
        if "chargePointVendor" in payload or "chargePointModel" in payload:
            if not isinstance(charging_station, dict):
                station.model = text_or_unknown(payload.get("chargePointModel"))
                station.firmware = text_or_unknown(payload.get("firmwareVersion"))
            flag(
                "flat_boot_notification",
                "BootNotification",
                f"BootNotification has 1.6's flat chargePointVendor {display(payload.get('chargePointVendor'))} and "
                f"chargePointModel {display(payload.get('chargePointModel'))} instead of the chargingStation "
                "object {model, vendorName}",
            )

    def _notify_report(self, station: Station, payload: dict[str, Any], flag: Flag) -> None:
        request_id = payload.get("requestId")
        report = station.full_reports.get(request_id)
        if report is None:
            return  # a partial report (GetReport, Summary/ConfigurationInventory) or one whose request was missed
        report.parts += 1
        for entry in payload.get("reportData") or ():
            if not isinstance(entry, dict):
                continue
            component, variable = entry.get("component"), entry.get("variable")
            if isinstance(component, dict) and isinstance(variable, dict):
                key = (component.get("name"), variable.get("name"), variable.get("instance"))
                if key in MANDATORY_VARIABLES:
                    report.seen.add(key)
        if payload.get("tbc", False):
            return
        del station.full_reports[request_id]
        missing = sorted(MANDATORY_VARIABLES - report.seen, key=lambda key: (key[0], key[1], key[2] or ""))
        if missing:
            names = [f"{c}.{v}" + (f"[{i}]" if i else "") for c, v, i in missing]
            flag(
                "missing_mandatory_variable",
                "NotifyReport",
                f"NotifyReport requestId {request_id} (FullInventory, {report.parts} "
                f"{'part' if report.parts == 1 else 'parts'}) lacks {len(missing)} required "
                f"{'variable' if len(missing) == 1 else 'variables'}: {', '.join(names)}",
            )


def walk(payload: dict[str, Any], shape: Shape, prefix: str, bare: list[tuple[str, int]], empty: list[str]) -> None:
    """Collect IdTokenType fields given as strings and optional fields given as empty placeholders.

    OCPP 2.0.1 Part 4 §4.1: a field that is optional and has no value SHALL be omitted (`null`, `{}` and `[]`
    are not allowed); an empty string in an optional field is the same placeholder, except where it is a
    device-model value (`DEVICE_MODEL_VALUES`). Fields the schema does not define (vendor keys of
    customData) are not judged. This is the reading of the issue's "optional fields treated as required":
    what a charger that treats them so puts on the wire. Its example, eventNotificationType in
    NotifyMonitoringReport, is a 2.1 field (required there) that the 2.0.1 schema does not have, and a
    charger rejecting a CSMS answer that omits an optional field cannot be seen in 2.0.1 OCPP-J frames.
    """
    for key, value in payload.items():
        spec = shape.get(key)
        if spec is None:
            continue
        if isinstance(value, dict):
            if value and spec.shape is not None:
                walk(value, spec.shape, f"{prefix}{key}.", bare, empty)
            elif not value and not spec.required:
                empty.append(f"{prefix}{key}: {{}}")
        elif isinstance(value, list):
            if value and spec.shape is not None:
                for index, item in enumerate(value):
                    if isinstance(item, dict):
                        walk(item, spec.shape, f"{prefix}{key}[{index}].", bare, empty)
            elif not value and not spec.required:
                empty.append(f"{prefix}{key}: []")
        elif isinstance(value, str):
            if spec.id_token:
                bare.append((f"{prefix}{key}", len(value)))
            elif not value and not spec.required and not spec.free_text:
                empty.append(f'{prefix}{key}: ""')
        elif value is None and not spec.required:
            empty.append(f"{prefix}{key}: null")


def data_transfer(action: str, payload: dict[str, Any], flag: Flag) -> None:
    """Flag a DataTransfer whose data is structured JSON (empty containers are placeholders, judged elsewhere)."""
    vendor_id = payload.get("vendorId")
    if vendor_id == PNC_VENDOR_ID:
        return  # SPNC §2.2: Plug & Charge messages travel as JSON in DataTransfer by design
    data = payload.get("data")
    what = ""
    if isinstance(data, dict | list) and data:
        value: Any = data
        what = "a JSON object" if isinstance(data, dict) else "a JSON array"
    elif isinstance(data, str) and data.lstrip()[:1] in ("{", "["):
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if isinstance(value, dict | list):
            what = f"a string holding {'a JSON object' if isinstance(value, dict) else 'a JSON array'}"
    if not what:
        return
    keys = f" (keys {', '.join(list(value)[:5])}{', ...' if len(value) > 5 else ''})" if isinstance(value, dict) else ""
    flag(
        "data_transfer_json",
        action,
        f"DataTransfer vendorId {display(vendor_id)} messageId {display(payload.get('messageId'))} carries "
        f"{what}{keys} in data: report proprietary values as device-model variables",
    )


def is_heartbeat_interval(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    component, variable = entry.get("component"), entry.get("variable")
    return (
        isinstance(component, dict)
        and isinstance(variable, dict)
        and component.get("name") == "OCPPCommCtrlr"
        and variable.get("name") == "HeartbeatInterval"
    )


def text_or_unknown(value: Any) -> str:
    return value if isinstance(value, str) and value else UNKNOWN


def display(value: Any) -> str:
    return "(absent)" if value is None else orjson.dumps(value).decode()


# --- `cutover lint FILE`: the same rules over a capture file -------------------------------------------------

CAPTURE_DIRECTIONS = {"cp->csms": CHARGER_TO_CSMS, "csms->cp": CSMS_TO_CHARGER}
PROTOCOL_IN_NAME = re.compile(r"ocpp[-_.]?(2\.?0\.?1|1\.?6)", re.IGNORECASE)


class CaptureError(Exception):
    """A capture file that cannot be read; the message names the line."""


@dataclass(frozen=True, slots=True)
class CaptureLine:
    number: int
    station_id: str
    protocol: str | None
    direction: str  # CHARGER_TO_CSMS, CSMS_TO_CHARGER or "handshake"
    frame: Any
    at: float


@dataclass
class CaptureReport:
    path: str
    lines: int
    stations: dict[str, str | None]  # station → protocol it was judged as (None: unknown, not judged)
    found: list[tuple[int, Violation]]  # (line number, violation)


def read_capture(path: Path) -> list[CaptureLine]:
    """The lines of a capture (JSON lines with ts, cp, dir, frame and maybe proto), or CaptureError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptureError(f"{path}: cannot read: {exc}") from None
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise CaptureError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise CaptureError(f"{path}:{number}: not a JSON object")
        missing = [key for key in ("ts", "cp", "dir", "frame") if key not in record]
        if missing:
            raise CaptureError(f"{path}:{number}: missing {', '.join(missing)}")
        direction = record["dir"] if isinstance(record["dir"], str) else ""
        direction = CAPTURE_DIRECTIONS.get(direction, direction)
        if direction not in (CHARGER_TO_CSMS, CSMS_TO_CHARGER, "handshake"):
            raise CaptureError(
                f'{path}:{number}: dir is {display(record["dir"])}, not "cp->csms", "csms->cp" or "handshake"'
            )
        if not isinstance(record["cp"], str):
            raise CaptureError(f"{path}:{number}: cp is {display(record['cp'])}, not a station id")
        protocol = record.get("proto")
        if direction == "handshake" and protocol is None and isinstance(record["frame"], dict):
            protocol = record["frame"].get("subprotocol") or record["frame"].get("chosen")
        lines.append(
            CaptureLine(
                number, record["cp"], protocol, direction, record["frame"], timestamp(record["ts"], path, number)
            )
        )
    return lines


def timestamp(value: Any, path: Path, number: int) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return datetime.fromisoformat(value).timestamp()
    except (TypeError, ValueError):
        raise CaptureError(f"{path}:{number}: ts {display(value)} is not an ISO 8601 time or a number") from None


def station_protocols(lines: list[CaptureLine], file_name: str) -> dict[str, str | None]:
    """Each station's protocol: its handshake (or lines' proto), else the file name, else its first frames."""
    from_name = PROTOCOL_IN_NAME.search(file_name)
    default = None if from_name is None else (OCPP201 if from_name.group(1).startswith("2") else OCPP16)
    declared: dict[str, str] = {}
    guessed: dict[str, str] = {}
    for line in lines:
        if line.protocol is not None:
            declared.setdefault(line.station_id, line.protocol)
        elif line.station_id not in guessed and line.direction == CHARGER_TO_CSMS:
            guess = protocol_of_frame(line.frame)
            if guess is not None:
                guessed[line.station_id] = guess
    stations = sorted({line.station_id for line in lines})
    return {station: declared.get(station) or default or guessed.get(station) for station in stations}


def protocol_of_frame(frame: Any) -> str | None:
    """The version a charger CALL gives away: a BootNotification's shape, or an action of one version only."""
    if not (isinstance(frame, list) and len(frame) == 4 and frame[0] == CALL and isinstance(frame[3], dict)):
        return None
    action, payload = frame[2], frame[3]
    if action == "BootNotification":
        return OCPP201 if "chargingStation" in payload else OCPP16 if "chargePointVendor" in payload else None
    if action in OCPP16_ONLY_ACTIONS:
        return OCPP16
    if action in ACTIONS_201 and action not in ACTIONS_16:
        return OCPP201
    return None


def lint_capture(path: Path) -> CaptureReport:
    """Every violation in a capture file, with the line it was found on; CaptureError if it cannot be read."""
    lines = read_capture(path)
    protocols = station_protocols(lines, path.name)
    lint = Lint()
    found: list[tuple[int, Violation]] = []
    for line in lines:
        protocol = line.protocol or protocols[line.station_id]
        if line.direction == "handshake":
            lint.on_connect(line.station_id)
        elif protocol is not None:
            found.extend(
                (line.number, v) for v in lint.observe(line.station_id, protocol, line.direction, line.frame, line.at)
            )
    return CaptureReport(str(path), len(lines), protocols, found)


def as_json(report: CaptureReport) -> str:
    counts = Counter(violation.rule for _, violation in report.found)
    return orjson.dumps(
        {
            "file": report.path,
            "lines": report.lines,
            "stations": report.stations,
            "counts": {rule: counts[rule] for rule in RULES},
            "violations": [
                {
                    "line": number,
                    "station_id": v.station_id,
                    "rule": v.rule,
                    "action": v.action,
                    "detail": v.detail,
                    "model": v.model,
                    "firmware": v.firmware,
                }
                for number, v in report.found
            ],
        },
        option=orjson.OPT_INDENT_2,
    ).decode()


def as_text(report: CaptureReport) -> str:
    counts = Counter(violation.rule for _, violation in report.found)
    judged = sorted(station for station, protocol in report.stations.items() if protocol == OCPP201)
    unknown = sorted(station for station, protocol in report.stations.items() if protocol is None)
    out = [
        f"{report.path}: {report.lines} lines, {len(report.stations)} stations, {len(judged)} of them on {OCPP201} "
        f"and judged: {len(report.found)} {'violation' if len(report.found) == 1 else 'violations'}"
    ]
    if unknown:
        out.append(f"not judged, protocol unknown (no proto, handshake or telling frame): {', '.join(unknown)}")
    out += [f"  {rule:<28} {counts[rule]}" for rule in RULES]
    out += [f"line {number}: {v.station_id} {v.rule}: {v.detail}" for number, v in report.found]
    return "\n".join(out)


def rules_text() -> str:
    return "\n".join(f"{rule:<28} {description}" for rule, description in RULES.items())


def command(path: Path | None, output_format: str, list_rules: bool) -> int:
    """`cutover lint`: 0 when the capture is clean, 1 when it shows violations, 2 when it cannot be read."""
    if list_rules:
        print(rules_text())
        return 0
    if path is None:
        print("cutover lint: give a capture FILE (JSON lines: ts, cp, dir, frame), or --rules", file=sys.stderr)
        return 2
    try:
        report = lint_capture(path)
    except CaptureError as exc:
        print(f"cutover lint: {exc}", file=sys.stderr)
        return 2
    print(as_json(report) if output_format == "json" else as_text(report))
    return 1 if report.found else 0
