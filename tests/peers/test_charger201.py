"""The simulated OCPP 2.0.1 station against the tiny `ocpp`-library CSMS of native_csms.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from ocpp.v201 import call

from peers._wire import UnlistedCallError, utc_now, wait_for
from peers.charger201 import Charger201
from tests.peers.native_csms import NativeCsms


@pytest.fixture
async def charger(native_csms: NativeCsms) -> AsyncIterator[Charger201]:
    charger = Charger201("CS-201", native_csms.url, evses=2, meter_start_wh=10_000)
    await charger.connect()
    assert (await charger.boot())["status"] == "Accepted"
    yield charger
    await charger.close()


def _register(event: dict[str, Any]) -> tuple[str, float]:
    (sampled,) = event["meterValue"][0]["sampledValue"]
    assert sampled["measurand"] == "Energy.Active.Import.Register"
    assert sampled["unitOfMeasure"] == {"unit": "Wh"}
    return sampled["context"], sampled["value"]


async def test_an_authorize_first_session(native_csms: NativeCsms, charger: Charger201) -> None:
    transaction_id = await charger.run_session(evse_id=2, samples=2, wh_per_sample=1500, interval=0)

    events = native_csms.events
    assert [(e["eventType"], e["triggerReason"], e["seqNo"]) for e in events] == [
        ("Started", "Authorized", 0),
        ("Updated", "ChargingStateChanged", 1),
        ("Updated", "MeterValuePeriodic", 2),
        ("Updated", "MeterValuePeriodic", 3),
        ("Ended", "StopAuthorized", 4),
    ]
    assert all(e["transactionInfo"]["transactionId"] == transaction_id for e in events)
    assert all(e["evse"] == {"id": 2, "connectorId": 1} and "offline" not in e for e in events)
    assert events[0]["idToken"] == {"idToken": "TAG0001", "type": "ISO14443"}
    assert events[0]["transactionInfo"]["chargingState"] == "EVConnected"
    assert events[1]["transactionInfo"]["chargingState"] == "Charging"
    assert [_register(e) for e in events if "meterValue" in e] == [
        ("Transaction.Begin", 10_000),
        ("Sample.Periodic", 11_500),
        ("Sample.Periodic", 13_000),
        ("Transaction.End", 13_000),
    ]
    assert events[-1]["transactionInfo"]["stoppedReason"] == "Local"
    assert native_csms.statuses == [(2, "Occupied"), (2, "Available")]
    assert len(charger.tx_responses) == 5
    record = charger.transactions[transaction_id]
    assert (record["meter_start_wh"], record["meter_stop_wh"], record["id_token"]) == (
        10_000,
        13_000,
        "TAG0001",
    )


async def test_a_plug_in_first_session(native_csms: NativeCsms, charger: Charger201) -> None:
    await charger.run_session(
        id_token="TAG0002", samples=0, authorize_first=False, stopped_reason="EVDisconnected"
    )
    started, authorized = native_csms.events[0], native_csms.events[1]
    assert started["triggerReason"] == "CablePluggedIn" and "idToken" not in started
    assert authorized["triggerReason"] == "Authorized"
    assert authorized["idToken"] == {"idToken": "TAG0002", "type": "ISO14443"}
    ended = native_csms.events[-1]
    assert ended["triggerReason"] == "EVCommunicationLost" and "idToken" not in ended
    assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"


async def test_events_queued_offline_arrive_in_order_after_reconnect(
    native_csms: NativeCsms, charger: Charger201
) -> None:
    transaction_id = await charger.start_transaction(1, "TAG0001")
    await charger.charging(1)
    await charger.close()
    assert not charger.connected

    offline_from = utc_now()
    await charger.sample(1, 700)
    await charger.sample(1, 800)
    assert await charger.stop_transaction(1, "EVDisconnected", "EVCommunicationLost") == {}
    assert charger.queued == 3 and len(native_csms.events) == 2
    offline_until = utc_now()

    assert (await charger.reconnect())["status"] == "Accepted"
    assert charger.queued == 0
    delivered = native_csms.events[2:]
    assert [(e["eventType"], e["seqNo"], e.get("offline")) for e in delivered] == [
        ("Updated", 2, True),
        ("Updated", 3, True),
        ("Ended", 4, True),
    ]
    assert all(offline_from <= e["timestamp"] <= offline_until for e in delivered)  # original timestamps
    assert all(e["transactionInfo"]["transactionId"] == transaction_id for e in delivered)
    assert [_register(e)[1] for e in delivered] == [10_700, 11_500, 11_500]
    assert native_csms.boots == ["PowerUp", "PowerUp"]
    assert native_csms.statuses[-2:] == [(1, "Available"), (2, "Available")]  # reported after reconnecting


async def test_auto_reconnect_delivers_events_queued_when_the_csms_dropped_the_socket(
    native_csms: NativeCsms,
) -> None:
    charger = Charger201("CS-AUTO", native_csms.url, auto_reconnect=True, reconnect_delay=0.05)
    await charger.connect()
    await charger.boot()
    await charger.start_transaction(1, "TAG0001")
    await native_csms.sessions["CS-AUTO"]._connection.close()
    await wait_for(lambda: not charger.connected, timeout=2)

    await charger.sample(1, 100)  # queued while the station reconnects
    await wait_for(lambda: charger.queued == 0 and len(native_csms.boots) == 2, timeout=3)
    assert [(e["seqNo"], e.get("offline")) for e in native_csms.events] == [(0, None), (1, True)]
    await charger.stop_transaction(1)
    assert native_csms.events[-1]["eventType"] == "Ended" and "offline" not in native_csms.events[-1]
    await charger.close()


async def test_an_event_whose_response_was_lost_is_sent_again_as_offline(native_csms: NativeCsms) -> None:
    charger = Charger201("CS-LOST", native_csms.url, auto_reconnect=True, reconnect_delay=0.05)
    await charger.connect()
    await charger.boot()
    await charger.start_transaction(1, "TAG0001")
    native_csms.lose_next_event = True
    assert await charger.charging(1) == {}  # connection closed while waiting: queued, no 10 s timeout
    await wait_for(lambda: charger.queued == 0, timeout=2)
    # at-least-once: the CSMS saw the event before the socket dropped, and again after the reconnect
    assert [(e["seqNo"], e.get("offline")) for e in native_csms.events] == [(0, None), (1, None), (1, True)]
    await charger.close()


async def test_a_callerror_is_raised_to_the_caller_and_the_event_is_not_retried(
    native_csms: NativeCsms, charger: Charger201
) -> None:
    await charger.start_transaction(1, "TAG0001")
    native_csms.refuse_next_event = True
    with pytest.raises(UnlistedCallError) as refused:  # a code the `ocpp` library has no class for
        await charger.charging(1)
    assert refused.value.code == "RpcFrameworkError" and charger.queued == 0
    assert [action for action, _ in charger.call_errors] == ["TransactionEvent"]
    await charger.stop_transaction(1)
    assert [e["seqNo"] for e in native_csms.events] == [0, 2]


async def test_csms_initiated_messages(native_csms: NativeCsms, charger: Charger201) -> None:
    session = native_csms.sessions["CS-201"]
    token = {"id_token": "REMOTE1", "type": "Central"}
    response = await session.call(call.RequestStartTransaction(id_token=token, remote_start_id=7, evse_id=1))
    assert response.status == "Accepted"
    await wait_for(lambda: len(native_csms.events) == 1, timeout=2)
    started = native_csms.events[0]
    assert started["triggerReason"] == "RemoteStart"
    assert started["idToken"] == {"idToken": "REMOTE1", "type": "Central"}
    assert started["transactionInfo"]["remoteStartId"] == 7
    busy = await session.call(call.RequestStartTransaction(id_token=token, remote_start_id=8, evse_id=1))
    assert busy.status == "Rejected"

    assert (await session.call(call.RequestStopTransaction(transaction_id="nope"))).status == "Rejected"
    transaction_id = started["transactionInfo"]["transactionId"]
    assert (
        await session.call(call.RequestStopTransaction(transaction_id=transaction_id))
    ).status == "Accepted"
    await wait_for(lambda: native_csms.events[-1]["eventType"] == "Ended", timeout=2)
    assert native_csms.events[-1]["triggerReason"] == "RemoteStop"
    assert native_csms.events[-1]["transactionInfo"]["stoppedReason"] == "Remote"

    get = await session.call(
        call.GetVariables(
            get_variable_data=[
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "Nope"}},
                {"component": {"name": "NopeCtrlr"}, "variable": {"name": "Nope"}},
            ]
        )
    )
    assert [(r["attribute_status"], r.get("attribute_value")) for r in get.get_variable_result] == [
        ("Accepted", "300"),
        ("UnknownVariable", None),
        ("UnknownComponent", None),
    ]
    set_ = await session.call(
        call.SetVariables(
            set_variable_data=[
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                    "attribute_value": "60",
                },
                {
                    "component": {"name": "ChargingStation"},
                    "variable": {"name": "AvailabilityState"},
                    "attribute_value": "Unavailable",
                },
            ]
        )
    )
    assert [r["attribute_status"] for r in set_.set_variable_result] == ["Accepted", "Rejected"]
    assert charger.variables[("OCPPCommCtrlr", "HeartbeatInterval")] == "60"

    trigger = await session.call(call.TriggerMessage(requested_message="MeterValues", evse={"id": 2}))
    assert trigger.status == "Accepted"
    await wait_for(lambda: len(native_csms.meter_values) == 1, timeout=2)
    assert native_csms.meter_values[0]["evse_id"] == 2
    assert native_csms.meter_values[0]["meter_value"][0]["sampled_value"][0]["context"] == "Trigger"

    assert [action for action, _ in charger.received_calls] == [
        "RequestStartTransaction",
        "RequestStartTransaction",
        "RequestStopTransaction",
        "RequestStopTransaction",
        "GetVariables",
        "SetVariables",
        "TriggerMessage",
    ]
    assert charger.frames_out[0][2] == "BootNotification"


async def test_a_refused_event_is_sent_message_attempts_times_then_given_up(native_csms: NativeCsms) -> None:
    charger = Charger201("CS-RETRY", native_csms.url, message_attempts=2, message_attempt_interval=0.01)
    await charger.connect()
    await charger.boot()
    tx_id = await charger.start_transaction(1, "TAG0001")
    native_csms.refuse_next_event = True
    assert await charger.charging(1) == {"idTokenInfo": {"status": "Accepted"}}  # delivered at the 2nd attempt
    assert [e["seqNo"] for e in native_csms.events] == [0, 1] and charger.call_errors == []
    assert charger.transactions[tx_id]["rejected_seq_nos"] == []
    await charger.close()
