"""Transactions across a proxy restart: the state a restarted proxy loads is what was persisted."""

from __future__ import annotations

from typing import Any

import orjson

from tests.translators.conversation import new_bridge
from translators.bridge import Bridge
from translators.state import StationState

T0, T1, T2 = "2026-11-24T19:43:27.000Z", "2026-11-24T19:43:28.000Z", "2026-11-24T19:43:29.000Z"
TOKEN = {"idToken": "TAG0001", "type": "ISO14443"}


def event(message_id: str, seq: int, event_type: str, **fields: Any) -> bytes:
    payload = {
        "eventType": event_type,
        "seqNo": seq,
        "timestamp": T1,
        "triggerReason": "Authorized",
        "transactionInfo": {"transactionId": "tx-r"},
        **fields,
    }
    return orjson.dumps([2, message_id, "TransactionEvent", payload])


def legacy_calls(bridge: Bridge, raw: bytes, answers: dict[str, Any]) -> list[str]:
    """Deliver a charger frame and answer each legacy CALL it causes; the actions the legacy got."""
    outcome = bridge.receive("charger", raw, 0)
    actions = []
    while outcome.to_legacy:
        (call,) = (orjson.loads(f) for f in outcome.to_legacy)
        actions.append(call[2])
        if call[2] not in answers:
            break  # left unanswered: the proxy "dies" here
        outcome = bridge.receive("legacy", orjson.dumps([3, call[1], answers[call[2]]]), 0)
    return actions


def restarted(bridge: Bridge) -> Bridge:
    """A new bridge on the state as persisted (every outcome's state change is saved before sending)."""
    fresh = new_bridge()
    fresh.state = StationState.loads(bridge.state.dumps())
    return fresh


START = {"transactionId": 5, "idTagInfo": {"status": "Accepted"}}
MV = [{"timestamp": T2, "sampledValue": [{"value": 900, "context": "Sample.Periodic"}]}]


def test_an_event_interrupted_by_a_restart_is_translated_again() -> None:
    first = new_bridge()
    started = event("c1", 0, "Started", evse={"id": 1}, idToken=TOKEN)
    assert legacy_calls(first, started, {"StartTransaction": START, "StatusNotification": {}}) == [
        "StartTransaction", "StatusNotification",
    ]  # fmt: skip
    updated = event("c2", 1, "Updated", meterValue=MV)
    assert legacy_calls(first, updated, {}) == ["MeterValues"]  # sent, never acknowledged

    second = restarted(first)
    assert legacy_calls(second, updated, {"MeterValues": {}}) == ["MeterValues"]  # not taken for a duplicate
    assert legacy_calls(second, updated, {"MeterValues": {}}) == []  # now it is one

    ended = event("c3", 2, "Ended", transactionInfo={"transactionId": "tx-r", "stoppedReason": "Local"})
    assert legacy_calls(second, ended, {}) == ["StopTransaction"]
    third = restarted(second)
    assert legacy_calls(third, ended, {"StopTransaction": {}, "StatusNotification": {}}) == [
        "StopTransaction", "StatusNotification",
    ]  # fmt: skip
    assert legacy_calls(restarted(third), ended, {}) == []  # a retransmitted Ended after the stop


def start_sent(bridge: Bridge, message_id: str) -> tuple[list[str], list[Any]]:
    """Deliver the Started event; the legacy CALLs it caused and the events of the outcome."""
    outcome = bridge.receive("charger", event(message_id, 0, "Started", evse={"id": 1}, idToken=TOKEN), 0)
    return [orjson.loads(f)[2] for f in outcome.to_legacy], outcome.events


def test_a_start_whose_answer_was_lost_is_sent_again_and_flagged() -> None:
    first = new_bridge()
    actions, events = start_sent(first, "c1")  # the proxy dies before the legacy's answer is persisted
    assert actions == ["StartTransaction"] and not [e for e in events if e.kind == "uncertain"]
    assert first.state.transactions["tx-r"].start_requests == 1  # persisted before the CALL went out
    second = restarted(first)
    actions, events = start_sent(second, "c1")  # the charger retransmits the unanswered event
    assert actions == ["StartTransaction"]
    (flag,) = [e for e in events if e.kind == "uncertain"]
    assert flag.action == "StartTransaction" and "tx-r" in flag.detail and "may hold it twice" in flag.detail
    outcome = second.receive("legacy", orjson.dumps([3, "p1", START]), 0)
    assert second.state.transactions["tx-r"].start_requests == 0 and outcome.state_changed


def test_a_start_the_legacy_refused_is_not_flagged_when_sent_again() -> None:
    bridge = new_bridge()
    start_sent(bridge, "c1")
    bridge.receive("legacy", orjson.dumps([4, "p1", "InternalError", "busy", {}]), 0)
    assert bridge.state.transactions["tx-r"].start_requests == 0
    actions, events = start_sent(bridge, "c2")
    assert actions == ["StartTransaction"] and not [e for e in events if e.kind == "uncertain"]


def test_a_start_that_timed_out_is_flagged_when_sent_again() -> None:
    bridge = new_bridge()
    start_sent(bridge, "c1")
    bridge.expire(bridge.config.call_timeout + 1)  # no answer: the legacy may or may not have it
    actions, events = start_sent(bridge, "c2")
    assert actions == ["StartTransaction"] and [e.kind for e in events].count("uncertain") == 1


def test_an_authorizing_event_arriving_after_a_later_one_still_starts_the_transaction() -> None:
    # OCPP 2.0.1 seqNo lets the CSMS order events; a charger's queue delivered seqNo 2 before seqNo 1
    bridge = new_bridge()
    begin = [{"timestamp": T0, "sampledValue": [{"value": 1200, "context": "Transaction.Begin"}]}]
    started = event("c1", 0, "Started", evse={"id": 1}, triggerReason="CablePluggedIn", meterValue=begin)
    assert legacy_calls(bridge, started, {"StatusNotification": {}}) in ([], ["StatusNotification"])
    charging = event("c2", 2, "Updated", triggerReason="ChargingStateChanged",
                     transactionInfo={"transactionId": "tx-r", "chargingState": "Charging"})  # fmt: skip
    legacy_calls(bridge, charging, {"StatusNotification": {}})
    authorized = event("c3", 1, "Updated", idToken=TOKEN)
    actions = legacy_calls(bridge, authorized, {"StartTransaction": START, "StatusNotification": {}})
    assert actions[0] == "StartTransaction"
    tx = bridge.state.transactions["tx-r"]
    assert (tx.legacy_id, tx.meter_start_wh, tx.seq_no) == (5, 1200, 2)
    assert legacy_calls(bridge, authorized, {}) == []  # its retransmission is one


def test_a_started_event_arriving_late_gives_the_start_its_begin_register() -> None:
    bridge = new_bridge()
    updated = event("c1", 1, "Updated", evse={"id": 1}, triggerReason="ChargingStateChanged")
    legacy_calls(bridge, updated, {"StatusNotification": {}})  # first seen in Updated: no idToken yet
    begin = [{"timestamp": T0, "sampledValue": [{"value": 1200, "context": "Transaction.Begin"}]}]
    started = event("c2", 0, "Started", evse={"id": 1}, idToken=TOKEN, meterValue=begin, timestamp=T0)
    outcome = bridge.receive("charger", started, 0)
    (call,) = (orjson.loads(frame) for frame in outcome.to_legacy)
    assert call[2] == "StartTransaction"
    assert (call[3]["meterStart"], call[3]["timestamp"]) == (1200, T0)


def test_a_transaction_first_seen_after_its_start_is_flagged() -> None:
    bridge = new_bridge()
    updated = event("c1", 3, "Updated", evse={"id": 1}, idToken=TOKEN, meterValue=MV)
    outcome = bridge.receive("charger", updated, 0)
    (flag,) = [e for e in outcome.events if e.kind == "uncertain"]
    assert "first seen in its Updated event" in flag.detail
