"""The reference OCPP 2.0.1 CSMS: every charger action answered schema-valid (real captured traffic, crafted
minimal payloads, payloads generated from the OCA schemas), authorization, boot policies, transaction
reconstruction from the TransactionEvent stream, device-model findings, and state that survives msgpack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadow.reference_csms import MANDATORY_VARIABLES, MAX_ENDED_TRANSACTIONS, MAX_TRANSACTIONS, ReferenceCsms
from tests.schema_strategies import payloads
from translators import schemas
from translators.dispatch import STATION_ACTIONS_201
from translators.rpc import (
    NotImplementedAction,
    NotSupported,
    OccurrenceConstraintViolation,
    SecurityError,
)

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "captures"
TOKENS = {"TAG0001", "TAG0002", "TAG0003"}
NOW = "2026-11-24T20:00:00.000Z"
T = "2026-11-24T19:43:27.918Z"

MINIMAL_REQUESTS: dict[str, dict[str, Any]] = {
    "Authorize": {"idToken": {"idToken": "TAG0001", "type": "ISO14443"}},
    "BootNotification": {"chargingStation": {"model": "KC-P30", "vendorName": "Keba AG"}, "reason": "PowerUp"},
    "ClearedChargingLimit": {"chargingLimitSource": "EMS"},
    "DataTransfer": {"vendorId": "com.example.vendor", "messageId": "Hello", "data": {"a": 1}},
    "FirmwareStatusNotification": {"status": "Installed"},
    "Get15118EVCertificate": {
        "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef",
        "action": "Install",
        "exiRequest": "gAAAAA==",
    },
    "GetCertificateStatus": {
        "ocspRequestData": {
            "hashAlgorithm": "SHA256",
            "issuerNameHash": "0f1e",
            "issuerKeyHash": "2d3c",
            "serialNumber": "4b5a",
            "responderURL": "http://ocsp.example.com",
        }
    },
    "Heartbeat": {},
    "LogStatusNotification": {"status": "Uploaded", "requestId": 3},
    "MeterValues": {"evseId": 0, "meterValue": [{"timestamp": T, "sampledValue": [{"value": 1234.5}]}]},
    "NotifyChargingLimit": {"chargingLimit": {"chargingLimitSource": "EMS"}},
    "NotifyCustomerInformation": {"data": "no data", "seqNo": 0, "generatedAt": T, "requestId": 4},
    "NotifyDisplayMessages": {"requestId": 5},
    "NotifyEVChargingNeeds": {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "AC_three_phase"}},
    "NotifyEVChargingSchedule": {
        "timeBase": T,
        "evseId": 1,
        "chargingSchedule": {
            "id": 1,
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000.0}],
        },
    },
    "NotifyEvent": {
        "generatedAt": T,
        "seqNo": 0,
        "eventData": [
            {
                "eventId": 1,
                "timestamp": T,
                "trigger": "Delta",
                "actualValue": "Faulted",
                "eventNotificationType": "HardWiredNotification",
                "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                "variable": {"name": "AvailabilityState"},
            }
        ],
    },
    "NotifyMonitoringReport": {"requestId": 6, "seqNo": 0, "generatedAt": T},
    "NotifyReport": {"requestId": 7, "seqNo": 0, "generatedAt": T},
    "PublishFirmwareStatusNotification": {"status": "Published", "location": ["http://lc.local/fw.bin"]},
    "ReportChargingProfiles": {
        "requestId": 8,
        "chargingLimitSource": "CSO",
        "evseId": 1,
        "chargingProfile": [
            {
                "id": 1,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Absolute",
                "chargingSchedule": [
                    {
                        "id": 1,
                        "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
                    }
                ],
            }
        ],
    },
    "ReservationStatusUpdate": {"reservationId": 9, "reservationUpdateStatus": "Expired"},
    "SecurityEventNotification": {"type": "StartupOfTheDevice", "timestamp": T},
    "SignCertificate": {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----"},
    "StatusNotification": {"timestamp": T, "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
    "TransactionEvent": {
        "eventType": "Started",
        "timestamp": T,
        "triggerReason": "CablePluggedIn",
        "seqNo": 0,
        "transactionInfo": {"transactionId": "tx-minimal"},
        "evse": {"id": 1, "connectorId": 1},
    },
}


def new_csms(**options: Any) -> ReferenceCsms:
    return ReferenceCsms(set(TOKENS), **options)


def answer(csms: ReferenceCsms, action: str, payload: dict[str, Any], station: str = "CS1") -> dict[str, Any]:
    """The CSMS's answer, checked against the OCA response schema."""
    response = csms.handle(station, action, payload, NOW)
    schemas.load().validate("2.0.1", "response", action, response)
    return response


def tx_event(
    event_type: str,
    seq_no: int,
    at: str,
    *,
    transaction_id: str = "tx-1",
    meter: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    info = {"transactionId": transaction_id} | fields.pop("info", {})
    event = {
        "eventType": event_type,
        "timestamp": at,
        "triggerReason": fields.pop("trigger", "MeterValuePeriodic"),
        "seqNo": seq_no,
        "transactionInfo": info,
    } | fields
    if meter is not None:
        event["meterValue"] = meter
    return event


def register(at: str, value: float, context: str | None = None, **unit: Any) -> dict[str, Any]:
    sampled: dict[str, Any] = {"value": value, "measurand": "Energy.Active.Import.Register"}
    if context is not None:
        sampled["context"] = context
    if unit:
        sampled["unitOfMeasure"] = unit
    return {"timestamp": at, "sampledValue": [sampled]}


def at(minute: int) -> str:
    return f"2026-11-24T10:{minute:02d}:00.000Z"


# -- every action ---------------------------------------------------------------------------------------


def test_every_charger_initiated_action_is_handled_and_covered_here() -> None:
    assert set(new_csms().handlers) == STATION_ACTIONS_201
    assert set(MINIMAL_REQUESTS) == STATION_ACTIONS_201


@pytest.mark.parametrize("action", sorted(MINIMAL_REQUESTS))
def test_minimal_request_gets_a_schema_valid_answer(action: str) -> None:
    schemas.load().validate("2.0.1", "request", action, MINIMAL_REQUESTS[action])
    answer(new_csms(), action, MINIMAL_REQUESTS[action])


def captured_calls(capture: str) -> list[tuple[str, list[Any]]]:
    """(station, CALL) for every cp->csms CALL in a capture of real traffic."""
    calls = []
    for line in (CAPTURES / capture).read_text().splitlines():
        record = orjson.loads(line)
        frame = record["frame"]
        if record["dir"] == "cp->csms" and isinstance(frame, list) and frame[0] == 2:
            calls.append((record["cp"], frame))
    return calls


@pytest.mark.parametrize("capture", ["sap-ocpp201.jsonl", "citrineos-ocpp201.jsonl"])
def test_every_captured_charger_call_gets_a_schema_valid_answer(capture: str) -> None:
    csms = new_csms()
    calls = captured_calls(capture)
    assert len(calls) > 10
    for station, (_, _, action, payload) in calls:
        response = answer(csms, action, payload, station)
        if action in ("Authorize", "TransactionEvent") and "idToken" in payload:
            assert response["idTokenInfo"] == {"status": "Accepted"}, (station, payload)
        if action == "BootNotification":
            assert response == {"status": "Accepted", "currentTime": NOW, "interval": 300}
        if action == "StatusNotification":
            assert response == {}  # CitrineOS once answered RpcFrameworkError "Call already in progress"


def test_captured_sap_transactions_are_rebuilt() -> None:
    csms = new_csms()
    for station, (_, _, action, payload) in captured_calls("sap-ocpp201.jsonl"):
        csms.handle(station, action, payload, NOW)
    by_id = {tx.transaction_id: tx for tx in csms.transactions("CS-PEER201-00002")}
    charged = by_id["69c05c28-1674-427f-ae02-7c49d22a8cbd"]
    assert (charged.meter_start_wh, charged.meter_stop_wh) == (0, 169)  # 168.59 Wh
    assert (charged.started, charged.ended) == ("2026-11-24T19:44:04.929Z", "2026-11-24T19:44:34.936Z")
    assert (charged.id_token, charged.id_token_type, charged.evse_id) == ("TAG0002", "ISO14443", 1)
    assert (charged.stopped_reason, charged.event_count, charged.missing_seq_nos) == ("Local", 3, [])
    # This station sent two Ended events (seqNo 1 and 2) for one transaction.
    twice = next(tx for tx in csms.transactions("CS-PEER201-00001") if tx.transaction_id.startswith("b19729e5"))
    assert twice.event_after_ended and twice.event_count == 3
    assert twice.ended == "2026-11-24T19:44:43.704Z"


def test_captured_remote_start_without_id_token() -> None:
    csms = new_csms()
    for station, (_, _, action, payload) in captured_calls("citrineos-ocpp201.jsonl"):
        csms.handle(station, action, payload, NOW)
    (remote,) = (tx for tx in csms.transactions("CS-PEER201-MANUAL-00001"))
    assert (remote.remote_start_id, remote.id_token, remote.stopped_reason) == (77, None, "Remote")
    assert (remote.meter_start_wh, remote.meter_stop_wh, remote.event_count) == (0, 94, 4)  # 93.51 Wh


@pytest.mark.parametrize("action", sorted(STATION_ACTIONS_201))
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_generated_requests_get_schema_valid_deterministic_answers(action: str, data: st.DataObject) -> None:
    requests = data.draw(st.lists(payloads("2.0.1", action, "request"), min_size=1, max_size=3))
    first, second = new_csms(), new_csms()
    for request in requests:
        assert answer(first, action, request) == second.handle("CS1", action, request, NOW)
    assert first.dumps() == second.dumps()
    restored = new_csms()
    restored.loads(first.dumps())
    assert restored.dumps() == first.dumps()


# -- authorization --------------------------------------------------------------------------------------


def test_authorize_accepts_listed_tokens_case_insensitively_and_no_authorization() -> None:
    csms = new_csms()

    def status(token: str, token_type: str = "ISO14443") -> str:
        return answer(csms, "Authorize", {"idToken": {"idToken": token, "type": token_type}})["idTokenInfo"]["status"]

    assert status("TAG0001") == "Accepted"
    assert status("tag0001") == "Accepted"  # IdTokenType: "IdToken is case insensitive"
    assert status("TAG9999") == "Invalid"
    assert status("", "NoAuthorization") == "Accepted"


def test_token_source_callable_is_read_at_every_authorization() -> None:
    tokens: set[str] = set()
    csms = ReferenceCsms(lambda: tokens)
    request = {"idToken": {"idToken": "NEWCARD", "type": "ISO14443"}}
    assert answer(csms, "Authorize", request)["idTokenInfo"]["status"] == "Invalid"
    tokens.add("NEWCARD")
    assert answer(csms, "Authorize", request)["idTokenInfo"]["status"] == "Accepted"


def test_transaction_event_answers_id_token_info_only_when_it_carries_an_id_token() -> None:
    csms = new_csms()
    started = tx_event("Started", 0, at(0), evse={"id": 1}, idToken={"idToken": "TAG0001", "type": "ISO14443"})
    assert answer(csms, "TransactionEvent", started) == {"idTokenInfo": {"status": "Accepted"}}
    assert answer(csms, "TransactionEvent", tx_event("Updated", 1, at(1))) == {}
    stop = tx_event("Ended", 2, at(2), idToken={"idToken": "STRANGER", "type": "ISO14443"}, trigger="StopAuthorized")
    assert answer(csms, "TransactionEvent", stop) == {"idTokenInfo": {"status": "Invalid"}}
    (tx,) = csms.transactions("CS1")
    assert tx.id_token == "TAG0001"  # the first token seen


def test_plug_and_charge_without_pki() -> None:
    csms = new_csms()
    pnc = {"idToken": {"idToken": "TAG0001", "type": "eMAID"}, "certificate": "-----BEGIN CERTIFICATE-----"}
    assert answer(csms, "Authorize", pnc) == {
        "idTokenInfo": {"status": "Invalid"},
        "certificateStatus": "NoCertificateAvailable",
    }
    for action, status in (("Get15118EVCertificate", "Failed"), ("GetCertificateStatus", "Failed")):
        response = answer(csms, action, MINIMAL_REQUESTS[action])
        assert response["status"] == status and response["statusInfo"]["reasonCode"] == "UnsupportedRequest"
    response = answer(csms, "SignCertificate", MINIMAL_REQUESTS["SignCertificate"])
    assert response["status"] == "Rejected" and "PKI" in response["statusInfo"]["additionalInfo"]


def test_data_transfer_knows_no_vendor() -> None:
    assert answer(new_csms(), "DataTransfer", MINIMAL_REQUESTS["DataTransfer"]) == {"status": "UnknownVendorId"}


# -- boot policies and errors ---------------------------------------------------------------------------


def test_boot_accepted_gives_the_heartbeat_interval() -> None:
    csms = new_csms(heartbeat_interval=60)
    boot = answer(csms, "BootNotification", MINIMAL_REQUESTS["BootNotification"])
    assert boot == {"status": "Accepted", "currentTime": NOW, "interval": 60}
    assert answer(csms, "Heartbeat", {}) == {"currentTime": NOW}


@pytest.mark.parametrize(("policy", "status"), [("pending", "Pending"), ("reject", "Rejected")])
def test_a_station_not_accepted_may_send_only_boot_notification(policy: str, status: str) -> None:
    csms = new_csms(boot_policy=policy)
    # A station whose BootNotification this CSMS never answered (it reconnected) is served.
    assert answer(csms, "Heartbeat", {}) == {"currentTime": NOW}
    assert answer(csms, "BootNotification", MINIMAL_REQUESTS["BootNotification"])["status"] == status
    before = csms.state_of("CS1")
    for action in ("Heartbeat", "StatusNotification", "TransactionEvent", "Authorize"):
        with pytest.raises(SecurityError, match=r"B02\.FR\.09"):
            csms.handle("CS1", action, MINIMAL_REQUESTS[action], NOW)
    assert csms.state_of("CS1") == before  # refused CALLs change nothing
    assert csms.transactions("CS1") == []
    assert answer(csms, "BootNotification", MINIMAL_REQUESTS["BootNotification"])["status"] == status
    assert answer(csms, "Heartbeat", {}, station="CS2") == {"currentTime": NOW}  # other stations unaffected


def test_unknown_csms_initiated_and_invalid_calls_are_ocpp_errors() -> None:
    csms = new_csms()
    with pytest.raises(NotSupported):
        csms.handle("CS1", "Reset", {"type": "Immediate"}, NOW)
    with pytest.raises(NotImplementedAction):
        csms.handle("CS1", "StartTransaction", {}, NOW)
    with pytest.raises(OccurrenceConstraintViolation):
        csms.handle("CS1", "TransactionEvent", {"eventType": "Started"}, NOW)
    assert csms.dumps() == new_csms().dumps()


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="boot_policy"):
        ReferenceCsms(set(), boot_policy="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="heartbeat_interval"):
        ReferenceCsms(set(), heartbeat_interval=-1)


# -- transaction reconstruction ------------------------------------------------------------------------


def feed(csms: ReferenceCsms, *events: dict[str, Any]) -> list[dict[str, Any]]:
    return [answer(csms, "TransactionEvent", event) for event in events]


def test_energy_units_and_multipliers_become_integer_wh() -> None:
    csms = new_csms()
    begin = register(at(0), 1.5, "Transaction.Begin", unit="kWh")
    noise = {
        "timestamp": at(5),
        "sampledValue": [
            {"value": 99999, "measurand": "Energy.Active.Import.Register", "phase": "L1"},
            {"value": 230.0, "measurand": "Voltage", "unitOfMeasure": {"unit": "V"}},
            {"value": 77777, "location": "Inlet"},
            {"value": 2.0, "unitOfMeasure": {"unit": "Wh", "multiplier": 3}},  # measurand absent: the register
        ],
    }
    end = register(at(9), 12.3456, "Transaction.End", unit="kWh")
    feed(
        csms,
        tx_event("Started", 0, at(0), evse={"id": 2, "connectorId": 1}, meter=[begin]),
        tx_event("Updated", 1, at(5), meter=[noise]),
    )
    (running,) = csms.transactions("CS1")
    assert (running.meter_start_wh, running.meter_stop_wh, running.last_reading) == (1500, None, (at(5), 2000))
    feed(csms, tx_event("Ended", 2, at(9), meter=[begin, end], info={"stoppedReason": "EVDisconnected"}))
    (tx,) = csms.transactions("CS1")
    assert (tx.meter_start_wh, tx.meter_stop_wh) == (1500, 12346)
    assert (tx.evse_id, tx.connector_id, tx.stopped_reason) == (2, 1, "EVDisconnected")


def test_without_begin_and_end_contexts_the_first_and_last_readings_count() -> None:
    csms = new_csms()
    feed(
        csms,
        tx_event("Started", 0, at(0), evse={"id": 1}, meter=[register(at(1), 500)]),
        tx_event("Updated", 2, at(8), meter=[register(at(8), 2500)]),
        tx_event("Updated", 1, at(4), meter=[register(at(4), 1500)]),  # arrives late: not the last reading
        tx_event("Ended", 3, at(9)),
    )
    (tx,) = csms.transactions("CS1")
    assert (tx.meter_start_wh, tx.meter_stop_wh, tx.stopped_reason) == (500, 2500, "Local")  # absent = Local


def test_seq_no_gap_is_listed() -> None:
    csms = new_csms()
    feed(
        csms,
        tx_event("Started", 0, at(0), evse={"id": 1}),
        tx_event("Updated", 1, at(1)),
        tx_event("Updated", 4, at(4)),
        tx_event("Ended", 6, at(6)),
    )
    (tx,) = csms.transactions("CS1")
    assert (tx.missing_seq_nos, tx.event_count, tx.event_after_ended) == ([2, 3, 5], 4, False)


def test_offline_replay_is_counted_and_completes_the_transaction() -> None:
    csms = new_csms()
    feed(csms, tx_event("Started", 0, at(0), evse={"id": 1}, meter=[register(at(0), 100, "Transaction.Begin")]))
    # The station lost its connection and replays what it queued once back online.
    replay = [
        tx_event("Updated", 1, at(10), offline=True, meter=[register(at(10), 900)]),
        tx_event("Updated", 2, at(20), offline=True, meter=[register(at(20), 1700)]),
        tx_event(
            "Ended", 3, at(25), offline=True, meter=[register(at(25), 2100, "Transaction.End")],
            info={"stoppedReason": "EVDisconnected"},
        ),
    ]  # fmt: skip
    feed(csms, *replay)
    (tx,) = csms.transactions("CS1")
    assert (tx.offline_events, tx.event_count, tx.missing_seq_nos) == (3, 4, [])
    assert (tx.meter_start_wh, tx.meter_stop_wh, tx.ended) == (100, 2100, at(25))


def test_retransmitted_event_is_not_counted_twice() -> None:
    csms = new_csms()
    started = tx_event(
        "Started", 0, at(0), evse={"id": 1}, offline=True, idToken={"idToken": "TAG0001", "type": "ISO14443"}
    )
    updated = tx_event("Updated", 1, at(3), meter=[register(at(3), 700)])
    first = feed(csms, started, updated)
    state = csms.dumps()
    assert feed(csms, started, updated) == first  # the same answers again
    assert csms.dumps() == state  # and nothing else changed
    (tx,) = csms.transactions("CS1")
    assert (tx.event_count, tx.offline_events, tx.seq_nos) == (2, 1, [0, 1])


def test_unknown_transaction_is_created_by_updated_and_events_after_ended_are_flagged() -> None:
    csms = new_csms()
    feed(
        csms,
        tx_event("Updated", 3, at(5), transaction_id="tx-mid", meter=[register(at(5), 4000)]),
        tx_event("Updated", 2, at(2), transaction_id="tx-mid"),
        tx_event("Ended", 4, at(7), transaction_id="tx-mid", meter=[register(at(7), 4500, "Transaction.End")]),
        tx_event("Updated", 5, at(8), transaction_id="tx-mid"),
    )
    (tx,) = csms.transactions("CS1")
    assert not tx.started_seen and tx.evse_id is None
    assert (tx.started, tx.ended, tx.meter_start_wh, tx.meter_stop_wh) == (at(2), at(7), 4000, 4500)
    assert (tx.missing_seq_nos, tx.event_after_ended) == ([0, 1], True)


def test_transactions_returns_copies() -> None:
    csms = new_csms()
    feed(csms, tx_event("Started", 0, at(0), evse={"id": 1}))
    csms.transactions("CS1")[0].event_count = 99
    assert csms.transactions("CS1")[0].event_count == 1
    assert csms.transactions("nobody") == []


def test_state_is_bounded_per_station() -> None:
    csms = new_csms()
    feed(csms, tx_event("Started", 0, at(0), transaction_id="ended-early", evse={"id": 1}))
    feed(csms, tx_event("Ended", 1, at(1), transaction_id="ended-early"))
    for n in range(MAX_TRANSACTIONS):
        feed(csms, tx_event("Started", 0, at(2), transaction_id=f"open-{n}", evse={"id": 1}))
    ids = [tx.transaction_id for tx in csms.transactions("CS1")]
    assert len(ids) == MAX_TRANSACTIONS and "ended-early" not in ids  # an ended one goes first
    feed(csms, tx_event("Started", 0, at(3), transaction_id="one-more", evse={"id": 1}))
    ids = [tx.transaction_id for tx in csms.transactions("CS1")]
    assert ids[0] == "open-1" and ids[-1] == "one-more"  # then the oldest
    for request_id in range(10):
        answer(csms, "NotifyReport", {"requestId": request_id, "generatedAt": T, "seqNo": 0, "tbc": True})
    assert list(csms.stations["CS1"].open_reports) == [6, 7, 8, 9]


# -- device model ---------------------------------------------------------------------------------------


def report_data(names: list[str]) -> list[dict[str, Any]]:
    items = []
    for name in names:
        component, variable = name.split(".", 1)
        ref: dict[str, Any] = {"name": variable}
        if variable.endswith("]"):
            ref = {"name": variable[: variable.index("[")], "instance": variable[variable.index("[") + 1 : -1]}
        items.append(
            {
                "component": {"name": component},
                "variable": ref,
                "variableAttribute": [{"type": "Actual", "value": "1"}],
            }
        )
    return items


def send_report(csms: ReferenceCsms, request_id: int, names: list[str], parts: int = 2) -> None:
    chunk = -(-len(names) // parts)
    for seq_no in range(parts):
        part = {
            "requestId": request_id,
            "generatedAt": T,
            "seqNo": seq_no,
            "tbc": seq_no < parts - 1,
            "reportData": report_data(names[seq_no * chunk : (seq_no + 1) * chunk]),
        }
        answer(csms, "NotifyReport", part)


def test_complete_report_has_no_findings() -> None:
    csms = new_csms()
    send_report(csms, 1, [*MANDATORY_VARIABLES, "OCPPCommCtrlr.HeartbeatInterval"], parts=3)
    assert csms.device_model_findings("CS1") == []


def test_report_lacking_a_mandatory_variable_names_it_once_complete() -> None:
    csms = new_csms()
    names = [name for name in MANDATORY_VARIABLES if name != "OCPPCommCtrlr.MessageTimeout[Default]"]
    send_report(csms, 2, names[:10], parts=1)  # an earlier, complete report
    first_part = {"requestId": 3, "generatedAt": T, "seqNo": 0, "tbc": True, "reportData": report_data(names[:30])}
    answer(csms, "NotifyReport", first_part)
    answer(csms, "NotifyReport", first_part)  # retransmitted
    assert len(csms.device_model_findings("CS1")) == len(MANDATORY_VARIABLES) - 10  # report 2 still the last
    # The variable reported on an EVSE only does not count for the station-wide one.
    evse_item = report_data(["OCPPCommCtrlr.MessageTimeout[Default]"])[0]
    evse_item["component"]["evse"] = {"id": 1}
    last_part = {
        "requestId": 3,
        "generatedAt": T,
        "seqNo": 1,
        "reportData": [*report_data(names[30:]), evse_item],
    }
    answer(csms, "NotifyReport", last_part)
    assert csms.device_model_findings("CS1") == ["OCPPCommCtrlr.MessageTimeout[Default]"]


def test_no_findings_before_a_report_completes() -> None:
    csms = new_csms()
    assert csms.device_model_findings("CS1") == []
    answer(csms, "NotifyReport", {"requestId": 1, "generatedAt": T, "seqNo": 0, "tbc": True})
    assert csms.device_model_findings("CS1") == []


def test_mandatory_variables_are_the_reference_table() -> None:
    table = (Path(__file__).resolve().parents[3] / "shared" / "reference" / "config-keys.md").read_text()
    section = table.split("## 2. Mandatory", 1)[1].split("## 3.", 1)[0]
    for name in MANDATORY_VARIABLES:
        component, variable = name.split(".", 1)
        assert f"| {component} | {variable} |" in section or f"| {name} " in section, name


# -- state ----------------------------------------------------------------------------------------------


def session() -> list[tuple[str, str, dict[str, Any]]]:
    """A station's calls: boot, status, a transaction with a token, and a two-part report."""
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("CS1", "BootNotification", MINIMAL_REQUESTS["BootNotification"]),
        ("CS2", "BootNotification", MINIMAL_REQUESTS["BootNotification"]),
        ("CS1", "StatusNotification", MINIMAL_REQUESTS["StatusNotification"]),
        ("CS1", "Authorize", MINIMAL_REQUESTS["Authorize"]),
        (
            "CS1",
            "TransactionEvent",
            tx_event(
                "Started",
                0,
                at(0),
                evse={"id": 1},
                idToken={"idToken": "TAG0001", "type": "ISO14443"},
                meter=[register(at(0), 10, "Transaction.Begin")],
            ),
        ),
        (
            "CS1",
            "NotifyReport",
            {
                "requestId": 1,
                "generatedAt": T,
                "seqNo": 0,
                "tbc": True,
                "reportData": report_data(list(MANDATORY_VARIABLES[:20])),
            },
        ),
        ("CS2", "Heartbeat", {}),
        ("CS1", "TransactionEvent", tx_event("Updated", 2, at(4), meter=[register(at(4), 2, unit="kWh")])),
        (
            "CS1",
            "NotifyReport",
            {"requestId": 1, "generatedAt": T, "seqNo": 1, "reportData": report_data(list(MANDATORY_VARIABLES[20:]))},
        ),
        ("CS1", "TransactionEvent", tx_event("Ended", 3, at(9), idToken={"idToken": "TAG0001", "type": "ISO14443"})),
        ("CS1", "Heartbeat", {}),
    ]
    return calls


def test_state_round_trip_gives_identical_subsequent_answers() -> None:
    calls = session()
    original = new_csms()
    for station, action, payload in calls[:5]:
        answer(original, action, payload, station)
    taken_over = new_csms()
    taken_over.loads(original.dumps())
    assert taken_over.stations == original.stations
    for station, action, payload in calls[5:]:
        assert taken_over.handle(station, action, payload, NOW) == original.handle(station, action, payload, NOW)
    assert taken_over.dumps() == original.dumps()
    assert taken_over.transactions("CS1") == original.transactions("CS1")
    assert taken_over.device_model_findings("CS1") == original.device_model_findings("CS1") == []
    (tx,) = taken_over.transactions("CS1")
    assert (tx.meter_start_wh, tx.meter_stop_wh, tx.missing_seq_nos) == (10, 2000, [1])


def test_one_station_moves_to_another_worker() -> None:
    calls = session()
    first = new_csms(boot_policy="pending")
    for station, action, payload in calls[:2]:
        answer(first, action, payload, station)
    second = new_csms(boot_policy="pending")
    second.loads(first.state_of("CS1"))
    first.forget("CS1")
    assert set(second.stations) == {"CS1"} and set(first.stations) == {"CS2"}
    with pytest.raises(SecurityError):  # the takeover knows CS1 is still Pending
        second.handle("CS1", "Heartbeat", {}, NOW)
    assert answer(first, "Heartbeat", {}, station="CS1") == {"currentTime": NOW}  # forgotten: a reconnect
    empty = new_csms()
    empty.loads(first.state_of("CS9"))
    assert empty.transactions("CS9") == [] and empty.device_model_findings("CS9") == []


def test_same_calls_give_the_same_state_bytes() -> None:
    one, two = new_csms(), new_csms()
    for csms in (one, two):
        for station, action, payload in session():
            csms.handle(station, action, payload, NOW)
    assert one.dumps() == two.dumps()


def test_state_of_another_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version 0 is not 1"):
        new_csms().loads(msgpack.packb({"v": 0, "stations": {}}))


def test_reference_csms_imports_no_io_libraries() -> None:
    code = (
        "import sys\n"
        "import shadow.reference_csms\n"
        "bad = [m for m in ('asyncio', 'websockets', 'redis', 'prometheus_client', 'aiohttp') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_only_the_last_ended_transactions_are_kept() -> None:
    csms = new_csms()
    for n in range(MAX_ENDED_TRANSACTIONS + 3):
        feed(csms, tx_event("Started", 0, at(n), transaction_id=f"done-{n}", evse={"id": 1}))
        feed(csms, tx_event("Ended", 1, at(n), transaction_id=f"done-{n}"))
    feed(csms, tx_event("Started", 0, at(20), transaction_id="running", evse={"id": 1}))
    ids = [tx.transaction_id for tx in csms.transactions("CS1")]
    assert ids == [f"done-{n}" for n in range(3, MAX_ENDED_TRANSACTIONS + 3)] + ["running"]
