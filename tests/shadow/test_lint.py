"""The conformance lint: each rule on a crafted frame and its clean counterpart, silence on real 2.0.1 captures,
and `cutover lint` over a capture file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from shadow import lint
from shadow.lint import CHARGER_TO_CSMS as UP
from shadow.lint import CSMS_TO_CHARGER as DOWN
from shadow.lint import OCPP16, OCPP201, Lint, Violation

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "captures"
STATION = "CS-LINT-1"
MODEL, FIRMWARE = "KC-P30-ESS400C2-E0R", "1.10.1"
BOOT = [
    (0.0, UP, [2, "boot", "BootNotification", {"chargingStation": {"model": MODEL, "vendorName": "Keba AG",
                                                                   "firmwareVersion": FIRMWARE}, "reason": "PowerUp"}]),
    (0.0, DOWN, [3, "boot", {"status": "Accepted", "currentTime": "2026-11-24T19:43:22.853Z", "interval": 30}]),
]  # fmt: skip
Exchange = list[tuple[float, str, list[Any]]]


def report_data(variables: set[tuple[str, str, str | None]]) -> list[dict[str, Any]]:
    return [
        {
            "component": {"name": component},
            "variable": {"name": name} | ({"instance": instance} if instance else {}),
            "variableAttribute": [{"value": "1"}],
        }
        for component, name, instance in sorted(variables, key=str)
    ]


def full_report(variables: set[tuple[str, str, str | None]], base: str = "FullInventory") -> Exchange:
    """A GetBaseReport the station accepts and answers in two NotifyReport parts."""
    data = report_data(variables)
    parts = [data[: len(data) // 2], data[len(data) // 2 :]]
    notify = [
        {"requestId": 7, "generatedAt": "2026-11-24T19:43:23Z", "seqNo": seq_no, "tbc": seq_no == 0}
        | ({"reportData": part} if part else {})
        for seq_no, part in enumerate(parts)
    ]
    return [
        (1.0, DOWN, [2, "gbr", "GetBaseReport", {"requestId": 7, "reportBase": base}]),
        (1.0, UP, [3, "gbr", {"status": "Accepted"}]),
        (2.0, UP, [2, "nr1", "NotifyReport", notify[0]]),
        (2.0, DOWN, [3, "nr1", {}]),
        (3.0, UP, [2, "nr2", "NotifyReport", notify[1]]),
    ]


def call(action: str, payload: dict[str, Any], at: float = 1.0) -> Exchange:
    return [(at, UP, [2, "m1", action, payload])]


ID_TOKEN = {"idToken": "TAG0001", "type": "ISO14443"}
TRANSACTION_STARTED = {
    "eventType": "Started", "timestamp": "2026-11-24T19:43:27.920Z", "triggerReason": "Authorized", "seqNo": 0,
    "transactionInfo": {"transactionId": "fa6342cc", "chargingState": "EVConnected"}, "evse": {"id": 1},
    "idToken": ID_TOKEN,
}  # fmt: skip
HEARTBEAT = [2, "h", "Heartbeat", {}]
HEARTBEAT_INTERVAL = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}


def set_heartbeat_interval(value: str, status: str) -> Exchange:
    return [
        (5.0, DOWN, [2, "sv", "SetVariables", {"setVariableData": [HEARTBEAT_INTERVAL | {"attributeValue": value}]}]),
        (5.0, UP, [3, "sv", {"setVariableResult": [HEARTBEAT_INTERVAL | {"attributeStatus": status}]}]),
    ]


# (case, frames after the boot, expected (rule, detail) of every violation); each flagged case has a clean
# counterpart beside it.
CASES: list[tuple[str, Exchange, list[tuple[str, str]]]] = [
    ("StartTransaction on 2.0.1", call("StartTransaction", {"connectorId": 1, "idTag": "TAG0001", "meterStart": 0,
                                                            "timestamp": "2026-11-24T19:43:27Z"}),
     [("ocpp16_action_on_201", "StartTransaction is an OCPP 1.6 action, sent on an ocpp2.0.1 connection; "
                               "a 2.0.1 station sends TransactionEvent (eventType Started)")]),
    ("DiagnosticsStatusNotification on 2.0.1", call("DiagnosticsStatusNotification", {"status": "Uploaded"}),
     [("ocpp16_action_on_201", "DiagnosticsStatusNotification is an OCPP 1.6 action, sent on an ocpp2.0.1 "
                               "connection; a 2.0.1 station sends LogStatusNotification")]),
    ("TransactionEvent instead", call("TransactionEvent", TRANSACTION_STARTED), []),
    ("LogStatusNotification instead", call("LogStatusNotification", {"status": "Uploaded", "requestId": 3}), []),

    ("bare idToken in Authorize", call("Authorize", {"idToken": "TAG0001"}),
     [("id_token_bare_string", "Authorize: idToken is a string (7 characters), not an IdTokenType object "
                               "{idToken, type}")]),
    ("bare idToken in TransactionEvent", call("TransactionEvent", TRANSACTION_STARTED | {"idToken": "04A2B3C4D5"}),
     [("id_token_bare_string", "TransactionEvent: idToken is a string (10 characters), not an IdTokenType "
                               "object {idToken, type}")]),
    ("IdTokenType in Authorize", call("Authorize", {"idToken": ID_TOKEN}), []),

    ("flat BootNotification", call("BootNotification", {"chargePointVendor": "Keba AG", "chargePointModel": "P30"}),
     [("flat_boot_notification", 'BootNotification has 1.6\'s flat chargePointVendor "Keba AG" and '
                                 'chargePointModel "P30" instead of the chargingStation object {model, vendorName}')]),
    ("chargingStation BootNotification", BOOT[:1], []),

    ("full inventory without a DeviceDataCtrlr variable",
     full_report(set(lint.MANDATORY_VARIABLES) - {("DeviceDataCtrlr", "BytesPerMessage", "GetReport")}),
     [("missing_mandatory_variable", "NotifyReport requestId 7 (FullInventory, 2 parts) lacks 1 required "
                                     "variable: DeviceDataCtrlr.BytesPerMessage[GetReport]")]),
    ("full inventory without two OCPPCommCtrlr variables",
     full_report(set(lint.MANDATORY_VARIABLES) - {("OCPPCommCtrlr", "MessageTimeout", "Default"),
                                                  ("OCPPCommCtrlr", "ResetRetries", None)}),
     [("missing_mandatory_variable", "NotifyReport requestId 7 (FullInventory, 2 parts) lacks 2 required "
                                     "variables: OCPPCommCtrlr.MessageTimeout[Default], OCPPCommCtrlr.ResetRetries")]),
    ("complete full inventory", full_report(set(lint.MANDATORY_VARIABLES)), []),
    ("summary inventory is partial by design", full_report({("ChargingStation", "Available", None)},
                                                           base="SummaryInventory"), []),
    ("report of a request the lint did not see", full_report(set())[2:], []),

    ("JSON object in DataTransfer",
     call("DataTransfer", {"vendorId": "com.acme", "messageId": "Stats", "data": {"temp": 41, "fan": "on"}}),
     [("data_transfer_json", 'DataTransfer vendorId "com.acme" messageId "Stats" carries a JSON object '
                             "(keys temp, fan) in data: report proprietary values as device-model variables")]),
    ("JSON array in a DataTransfer string",
     call("DataTransfer", {"vendorId": "com.acme", "data": ' [{"temp": 41}]'}),
     [("data_transfer_json", 'DataTransfer vendorId "com.acme" messageId (absent) carries a string holding '
                             "a JSON array in data: report proprietary values as device-model variables")]),
    ("plain DataTransfer string", call("DataTransfer", {"vendorId": "com.acme", "messageId": "T", "data": "41.5"}),
     []),
    ("Plug & Charge JSON in DataTransfer",
     call("DataTransfer", {"vendorId": "org.openchargealliance.iso15118pnc", "messageId": "Authorize",
                           "data": '{"idToken": {"idToken": "EMAID1", "type": "eMAID"}}'}), []),

    ("silent for more than twice the interval",
     [(25.0, UP, [2, "h1", "Heartbeat", {}]), (90.0, UP, [2, "h2", "Heartbeat", {}])],
     [("heartbeat_gap", "no frame from the station for 65 s, more than twice its heartbeat interval of 30 s "
                        "(from the BootNotification response)")]),
    ("heartbeats on time", [(30.0, UP, [2, "h1", "Heartbeat", {}]), (60.0, UP, [2, "h2", "Heartbeat", {}])], []),
    # OCPP 2.0.1 Part 2 G02: a Heartbeat is due after a time without activity; other messages count.
    ("other messages in between",
     [(50.0, UP, [2, "s1", "StatusNotification", {"timestamp": "2026-11-24T19:44:00Z", "connectorStatus": "Available",
                                                  "evseId": 1, "connectorId": 1}]),
      (100.0, UP, [2, "h1", "Heartbeat", {}])], []),
    ("interval raised by SetVariables", [*set_heartbeat_interval("300", "Accepted"), (300.0, UP, HEARTBEAT)], []),
    ("interval raise the station rejected", [*set_heartbeat_interval("300", "Rejected"), (300.0, UP, HEARTBEAT)],
     [("heartbeat_gap", "no frame from the station for 295 s, more than twice its heartbeat interval of 30 s "
                        "(from the BootNotification response)")]),

    ("empty placeholders in BootNotification",
     call("BootNotification", {"chargingStation": {"model": MODEL, "vendorName": "Keba AG", "serialNumber": "",
                                                   "modem": {}}, "reason": "PowerUp"}),
     [("optional_field_required", 'BootNotification: optional fields sent empty instead of omitted: '
                                  'chargingStation.serialNumber: "", chargingStation.modem: {}')]),
    ("null evse in TransactionEvent", call("TransactionEvent", TRANSACTION_STARTED | {"evse": None}),
     [("optional_field_required", "TransactionEvent: optional field sent empty instead of omitted: evse: null")]),
    ("empty statusInfo in the station's answer",
     [(1.0, DOWN, [2, "rs", "RequestStartTransaction", {"idToken": ID_TOKEN, "remoteStartId": 1}]),
      (1.0, UP, [3, "rs", {"status": "Accepted", "statusInfo": {}, "transactionId": ""}])],
     [("optional_field_required", "RequestStartTransactionResponse: optional fields sent empty instead of omitted: "
                                  'statusInfo: {}, transactionId: ""')]),
    ("optional fields omitted", call("TransactionEvent", TRANSACTION_STARTED), []),
    ("an empty device-model value is a value",
     [(1.0, DOWN, [2, "gv", "GetVariables", {"getVariableData": [
         {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "OrganizationName"}}]}]),
      (1.0, UP, [3, "gv", {"getVariableResult": [
          {"attributeStatus": "Accepted", "attributeValue": "", "component": {"name": "SecurityCtrlr"},
           "variable": {"name": "OrganizationName"}}]}])], []),
]  # fmt: skip


def run(exchange: Exchange, engine: Lint | None = None) -> list[Violation]:
    engine = engine or Lint()
    found: list[Violation] = []
    for at, direction, frame in BOOT + exchange:
        found += engine.observe(STATION, OCPP201, direction, frame, at)
    return found


@pytest.mark.parametrize(("exchange", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_rule(exchange: Exchange, expected: list[tuple[str, str]]) -> None:
    found = run(exchange)
    assert [(v.rule, v.detail) for v in found] == expected
    assert all(v.station_id == STATION for v in found)


def test_every_rule_has_a_case() -> None:
    flagged = {rule for _, _, expected in CASES for rule, _ in expected}
    assert flagged | {"missed_pong"} == set(lint.RULES)


def test_ocpp16_only_actions_come_from_the_schemas() -> None:
    assert lint.OCPP16_ONLY_ACTIONS == {
        "ChangeConfiguration", "DiagnosticsStatusNotification", "ExtendedTriggerMessage", "GetConfiguration",
        "GetDiagnostics", "RemoteStartTransaction", "RemoteStopTransaction", "SignedFirmwareStatusNotification",
        "SignedUpdateFirmware", "StartTransaction", "StopTransaction",
    }  # fmt: skip
    assert set(lint.REPLACEMENT_201) == lint.OCPP16_ONLY_ACTIONS


def test_violations_carry_the_model_and_firmware_from_the_boot() -> None:
    engine = Lint()
    assert engine.observe(STATION, OCPP201, UP, [2, "a", "Authorize", {"idToken": "X"}], 0.0)[0].model == "unknown"
    (violation,) = run(call("Authorize", {"idToken": "TAG0001"}), engine)
    assert (violation.action, violation.model, violation.firmware) == ("Authorize", MODEL, FIRMWARE)
    (flat,) = Lint().observe(
        STATION, OCPP201, UP, [2, "b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "P30"}], 0.0
    )
    assert (flat.model, flat.firmware) == ("P30", "unknown")
    assert engine.counts() == {("id_token_bare_string", "unknown"): 1, ("id_token_bare_string", MODEL): 1}


def test_frames_as_bytes_are_read_the_same() -> None:
    engine = Lint()
    for at, direction, frame in BOOT:
        engine.observe(STATION, OCPP201, direction, orjson.dumps(frame), at)
    (violation,) = engine.observe(STATION, OCPP201, UP, b'[2, "a", "Authorize", {"idToken": "TAG0001"}]', 1.0)
    assert (violation.rule, violation.model) == ("id_token_bare_string", MODEL)
    assert engine.observe(STATION, OCPP201, UP, b"not json", 1.0) == []


def test_nothing_is_judged_on_16_traffic() -> None:
    engine = Lint()
    start = [2, "s", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "x"}]
    assert engine.observe("CS-16", OCPP16, UP, start, 0.0) == []
    assert engine.on_missed_pong("CS-16") == []
    assert engine.counts() == {}


def test_missed_pong_is_recorded() -> None:
    engine = Lint()
    run([], engine)
    (violation,) = engine.on_missed_pong(STATION)
    assert violation == Violation(
        "missed_pong", STATION, "", "the station did not answer a WebSocket ping with a pong in time", MODEL, FIRMWARE
    )
    assert engine.violations_of(STATION) == [violation]
    assert engine.counts() == {("missed_pong", MODEL): 1}


def test_a_reconnection_is_not_a_heartbeat_gap() -> None:
    engine = Lint()
    run([(25.0, UP, [2, "h1", "Heartbeat", {}])], engine)
    engine.on_connect(STATION)
    assert engine.observe(STATION, OCPP201, UP, [2, "h2", "Heartbeat", {}], 600.0) == []
    (gap,) = engine.observe(STATION, OCPP201, UP, [2, "h3", "Heartbeat", {}], 700.0)
    assert gap.rule == "heartbeat_gap"


def test_violations_of_keeps_the_last_100() -> None:
    engine = Lint()
    for n in range(150):
        engine.observe(STATION, OCPP201, UP, [2, str(n), "Authorize", {"idToken": "x" * (n % 20 + 1)}], 0.0)
    kept = engine.violations_of(STATION)
    assert len(kept) == 100 and kept[0].detail.startswith("Authorize: idToken is a string (11 characters)")
    assert engine.counts() == {("id_token_bare_string", "unknown"): 150}
    assert engine.violations_of("CS-NEVER-SEEN") == []


@pytest.mark.parametrize("capture", sorted(path.name for path in CAPTURES.glob("*.jsonl")))
def test_real_captures_are_clean(capture: str) -> None:
    report = lint.lint_capture(CAPTURES / capture)
    assert report.found == []
    expected = OCPP201 if "ocpp201" in capture else OCPP16
    assert set(report.stations.values()) == {expected}


def test_the_rules_fire_on_real_16_traffic_taken_for_201() -> None:
    engine = Lint()
    for line in lint.read_capture(CAPTURES / "sap-ocpp16.jsonl"):
        if line.direction != "handshake":
            engine.observe(line.station_id, OCPP201, line.direction, line.frame, line.at)
    assert engine.counts() == {
        ("flat_boot_notification", MODEL): 3,
        ("ocpp16_action_on_201", MODEL): 17,  # 9 StartTransaction, 8 StopTransaction
    }


def capture_line(ts: str, direction: str, frame: Any, station: str = STATION) -> bytes:
    return orjson.dumps({"ts": ts, "cp": station, "dir": direction, "frame": frame})


def test_the_protocol_comes_from_proto_handshake_file_name_then_frames(tmp_path: Path) -> None:
    flat = [2, "b", "BootNotification", {"chargePointVendor": "Keba AG", "chargePointModel": "P30"}]
    lines = [
        capture_line("2026-11-24T19:43:22Z", "handshake", {"subprotocol": OCPP201}, "A"),
        capture_line("2026-11-24T19:43:23Z", "cp->csms", flat, "A"),
        capture_line("2026-11-24T19:43:23Z", "cp->csms", flat, "B"),
        orjson.dumps({"ts": 1.0, "cp": "C", "proto": OCPP201, "dir": "cp->csms", "frame": flat}),
    ]
    unnamed = tmp_path / "capture.jsonl"
    unnamed.write_bytes(b"\n".join(lines))
    report = lint.lint_capture(unnamed)
    assert report.stations == {"A": OCPP201, "B": OCPP16, "C": OCPP201}
    assert [(number, v.station_id, v.rule) for number, v in report.found] == [
        (2, "A", "flat_boot_notification"),
        (4, "C", "flat_boot_notification"),
    ]
    named = tmp_path / "fleet-ocpp201.jsonl"
    named.write_bytes(b"\n".join(lines))
    assert lint.lint_capture(named).stations == {"A": OCPP201, "B": OCPP201, "C": OCPP201}


def cutover_lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", "lint", *args], capture_output=True, text=True, timeout=60)


def test_cutover_lint_exit_codes(tmp_path: Path) -> None:
    boot = [capture_line("2026-11-24T19:43:22.000Z", "handshake", {"subprotocol": OCPP201})] + [
        capture_line("2026-11-24T19:43:22.500Z", "cp->csms" if d == UP else "csms->cp", frame) for _, d, frame in BOOT
    ]
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(b"\n".join([*boot, capture_line("2026-11-24T19:43:40Z", "cp->csms", [2, "h", "Heartbeat", {}])]))
    dirty = tmp_path / "dirty.jsonl"
    dirty.write_bytes(
        b"\n".join([*boot, capture_line("2026-11-24T19:43:40Z", "cp->csms", [2, "a", "Authorize", {"idToken": "T1"}])])
    )
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b"\n".join([*boot[:2], b'{"ts": "2026-11-24T19:43:40Z", "cp": "X", "dir": "cp->csms", "fr']))

    result = cutover_lint(str(clean))
    assert (result.returncode, result.stderr) == (0, "")
    assert "0 violations" in result.stdout

    result = cutover_lint(str(dirty), "--format", "json")
    assert result.returncode == 1
    output = orjson.loads(result.stdout)
    assert output["counts"]["id_token_bare_string"] == 1 and sum(output["counts"].values()) == 1
    assert output["violations"] == [
        {"line": 4, "station_id": STATION, "rule": "id_token_bare_string", "action": "Authorize",
         "detail": "Authorize: idToken is a string (2 characters), not an IdTokenType object {idToken, type}",
         "model": MODEL, "firmware": FIRMWARE},
    ]  # fmt: skip

    result = cutover_lint(str(broken))
    assert result.returncode == 2 and result.stdout == ""
    assert f"{broken}:3: not JSON" in result.stderr

    result = cutover_lint("--rules")
    assert result.returncode == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == list(lint.RULES)


def test_text_output_names_station_rule_and_detail(tmp_path: Path) -> None:
    capture = tmp_path / "x-ocpp201.jsonl"
    capture.write_bytes(capture_line("2026-11-24T19:43:40Z", "cp->csms", [2, "a", "StopTransaction", {}]))
    text = lint.as_text(lint.lint_capture(capture))
    assert "  ocpp16_action_on_201         1" in text.splitlines()
    assert text.splitlines()[-1] == (
        f"line 1: {STATION} ocpp16_action_on_201: StopTransaction is an OCPP 1.6 action, sent on an ocpp2.0.1 "
        "connection; a 2.0.1 station sends TransactionEvent (eventType Ended)"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[1, 2]", ":1: not a JSON object"),
        (b'{"ts": "2026-11-24T19:43:40Z", "cp": "A", "frame": []}', ":1: missing dir"),
        (b'{"ts": "yesterday", "cp": "A", "dir": "cp->csms", "frame": []}', ':1: ts "yesterday" is not an ISO 8601'),
        (b'{"ts": 1, "cp": "A", "dir": "up", "frame": []}', ':1: dir is "up", not "cp->csms"'),
    ],
)
def test_unreadable_lines_are_named(tmp_path: Path, content: bytes, message: str) -> None:
    capture = tmp_path / "bad.jsonl"
    capture.write_bytes(content)
    with pytest.raises(lint.CaptureError, match=message.replace("[", r"\[")):
        lint.lint_capture(capture)


def test_the_engine_imports_no_io_library() -> None:
    code = (
        "import sys, shadow.lint\n"
        "print(','.join(m for m in ('asyncio', 'websockets', 'redis', 'prometheus_client', 'aiohttp') "
        "if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
