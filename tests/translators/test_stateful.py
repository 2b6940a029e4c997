"""Stateful fuzzing: one 2.0.1 station driven through a `Bridge` by a machine that plays both peers.

The charger boots, reports statuses, authorizes and runs transactions (out-of-order seqNos, retransmissions,
events held back); the legacy CSMS starts and stops them remotely, unlocks, resets; each peer answers the
bridge's CALLs with a valid result, a CALLERROR, an invalid result, silence (a timeout) or a late answer;
the proxy restarts ("reconnect") from the state it persisted. After every step: every frame emitted parsed
and schema-valid, every CALL answered exactly once (never silence), the state round-trips and is persisted
whenever it changed, the id and connector maps consistent, and no translation bug logged.

CUTOVER_FUZZ_EXAMPLES=5000 CUTOVER_FUZZ_STEPS=100 run longer (the defaults keep `make test` fast).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.logged_bugs import Bugs
from translators import rpc, schemas
from translators.bridge import CHARGER, LEGACY, Bridge, LegName, Outcome, TranslationConfig
from translators.dispatch import CHARGER_CALLS, LEGACY_CALLS
from translators.state import DeviceModel, StationState

EXAMPLES = int(os.environ.get("CUTOVER_FUZZ_EXAMPLES", "150"))
STEPS = int(os.environ.get("CUTOVER_FUZZ_STEPS", "40"))
EPOCH = datetime(2026, 11, 24, tzinfo=UTC)
TIMEOUT = 30.0
EVSES = (1, 2)
# Mostly valid answers, so that transactions get far; the rest exercise every way a peer can fail.
ANSWER_MODES = ("ok", "ok", "ok", "ok", "error", "invalid", "silent")
ANSWER_PLANS = st.lists(st.sampled_from(ANSWER_MODES), max_size=6)
# Mostly tokens 1.6 can carry; the long ones are refused or aliased (TranslationConfig.long_id_token).
TOKENS = st.sampled_from(["TAG0001", "TAG0002", "RFID-XYZ", "TAG0001", "TAG0002", "A" * 21, "LONG-TOKEN-OF-25-CHARSXX"])
TOKEN_TYPES = st.sampled_from(["ISO14443", "KeyCode", "Central", "eMAID"])
STOPPED_REASONS = st.sampled_from([None, "Local", "Remote", "EVDisconnected", "ImmediateReset", "MasterPass"])
CHARGING_STATES = st.sampled_from([None, "Charging", "EVConnected", "SuspendedEV", "SuspendedEVSE", "Idle"])
CONNECTOR_STATUSES = st.sampled_from(["Available", "Occupied", "Reserved", "Unavailable", "Faulted"])

# 2.0.1 answers the charger gives, by action: the status values it cycles through.
CHARGER_STATUSES = {
    "GetBaseReport": ("Accepted", "Rejected", "NotSupported", "EmptyResultSet"),
    "RequestStartTransaction": ("Accepted", "Rejected"),
    "RequestStopTransaction": ("Accepted", "Rejected"),
    "UnlockConnector": ("Unlocked", "UnlockFailed", "OngoingAuthorizedTransaction", "UnknownConnector"),
    "Reset": ("Accepted", "Rejected", "Scheduled"),
    "TriggerMessage": ("Accepted", "Rejected", "NotImplemented"),
    "ChangeAvailability": ("Accepted", "Rejected", "Scheduled"),
}
ID_TAG_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")
ERRORS = {"2.0.1": sorted(rpc.ERROR_CODES_201), "1.6": sorted(rpc.ERROR_CODES_16)}


def timestamp(now: float) -> str:
    return (EPOCH + timedelta(seconds=now)).isoformat(timespec="milliseconds").replace("+00:00", "Z")




@dataclass
class Peer:
    """One side as the machine plays it, on the current connection."""

    leg: LegName
    version: str
    waiting: dict[str, list[str]] = field(default_factory=dict)  # our CALLs' ids → actions, not yet answered
    outstanding: rpc.Call | None = None  # the bridge's CALL to us: answered by neither us nor its timeout
    silent: bool = False  # we decided not to answer `outstanding`
    late: list[rpc.Call] = field(default_factory=list)  # bridge CALLs that timed out: answer them late
    ids: set[str] = field(default_factory=set)  # message ids of the bridge's CALLs on this connection


@dataclass
class ChargerTx:
    transaction_id: str
    evse_id: int
    seq_no: int = 0
    energy_wh: int = 0


class BridgeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.bugs = Bugs()
        logging.getLogger("cutover.translators").addHandler(self.bugs)
        self.schemas = schemas.load()
        self.config = TranslationConfig(call_timeout=TIMEOUT)
        self.now = 0.0
        self.bridge = self.new_bridge(StationState("CS-FUZZ"), DeviceModel())
        self.persisted = self.bridge.state.dumps()
        self.persisted_model = self.bridge.device_model.dumps()
        self.peers = {CHARGER: Peer(CHARGER, "2.0.1"), LEGACY: Peer(LEGACY, "1.6")}
        # The charger's side: its open transactions, events sent (to retransmit) or held back (out of order).
        self.open: dict[int, ChargerTx] = {}
        self.events: list[dict[str, Any]] = []
        self.sent_events: dict[str, dict[str, Any]] = {}  # message id → TransactionEvent payload
        self.held: list[dict[str, Any]] = []
        self.remote_starts: list[int] = []  # remoteStartIds of RequestStartTransactions the charger accepted
        self.next_tx = 1
        self.sent = 0  # message ids of both peers' CALLs
        # The legacy's side: transactionIds it issued and StopTransactions it acknowledged.
        self.next_legacy_id = 100
        self.issued: set[int] = set()
        self.stopped: set[int] = set()
        self.meter_start: dict[int, int] = {}  # legacy transactionId → the meterStart it was started with
        self.connector_of: dict[int, int] = {}  # legacy transactionId → the connectorId it was started on
        self.legacy_id_of: dict[str, int] = {}  # 2.0.1 transactionId → the legacy id it was first seen with

    def new_bridge(self, state: StationState, model: DeviceModel) -> Bridge:
        return Bridge(state, self.schemas, CHARGER_CALLS, LEGACY_CALLS, self.config, "p", model)

    def teardown(self) -> None:
        try:
            if sys.exc_info()[0] is None:  # a step that failed already has its report: don't bury it
                self.drain()
        finally:
            logging.getLogger("cutover.translators").removeHandler(self.bugs)

    @initialize(alias=st.booleans())
    def configure(self, alias: bool) -> None:
        self.config.long_id_token = "alias" if alias else "reject"

    # -- the wire --------------------------------------------------------------------------------
    def tick(self) -> None:
        self.now += 0.25

    def send(self, leg: LegName, message_id: str, action: str, payload: dict[str, Any]) -> Outcome:
        self.peers[leg].waiting.setdefault(message_id, []).append(action)
        return self.deliver(leg, orjson.dumps([2, message_id, action, payload]))

    def deliver(self, leg: LegName, raw: bytes) -> Outcome:
        self.tick()
        outcome = self.bridge.receive(leg, raw, self.now)
        self.absorb(outcome)
        return outcome

    def fresh_id(self, leg: LegName) -> str:
        self.sent += 1
        return f"{leg[0]}{self.sent}"

    def absorb(self, outcome: Outcome) -> None:
        """Persist as the proxy does, then check and take in every frame the bridge emitted."""
        if outcome.state_changed:
            self.persisted = self.bridge.state.dumps()
        if outcome.device_model_changed:
            self.persisted_model = self.bridge.device_model.dumps()
        for event in outcome.events:
            if event.kind == "timeout":
                peer = self.peers[event.leg]  # type: ignore[index]
                assert peer.outstanding is not None, f"timeout of {event.action} on {event.leg}: nothing in flight"
                assert peer.outstanding.action == event.action
                peer.late.append(peer.outstanding)
                peer.outstanding, peer.silent = None, False
        self.learn_legacy_ids()
        for leg, frames in ((CHARGER, outcome.to_charger), (LEGACY, outcome.to_legacy)):
            for raw in frames:
                self.check_frame(self.peers[leg], raw)

    def check_frame(self, peer: Peer, raw: bytes) -> None:
        message = rpc.parse(raw)  # a FrameError here fails the test: the bridge emitted a broken frame
        version: Any = peer.version
        if isinstance(message, rpc.Call):
            assert message.message_id not in peer.ids, f"message id {message.message_id} reused on {peer.leg}"
            peer.ids.add(message.message_id)
            assert peer.outstanding is None, f"second CALL {message.action} on {peer.leg} while one is in flight"
            self.schemas.validate(version, "request", message.action, message.payload)
            peer.outstanding, peer.silent = message, False
            if peer.leg == LEGACY:
                self.legacy_receives(message)
            return
        actions = peer.waiting.get(message.message_id)
        assert actions, f"answer to {message.message_id} on {peer.leg}, which has no CALL waiting: {raw!r}"
        # A CALL sent again under the id of one still in process is refused at once; the first is answered later.
        action = actions.pop(-1 if isinstance(message, rpc.CallError) else 0)
        if not actions:
            del peer.waiting[message.message_id]
        if isinstance(message, rpc.CallResult):
            self.schemas.validate(version, "response", action, message.payload)
            event = self.sent_events.get(message.message_id) if action == "TransactionEvent" else None
            if event is not None and event["eventType"] == "Ended":
                # Nothing billable is lost: the charger forgets an Ended once acknowledged, so the legacy must
                # have acknowledged the StopTransaction of every 1.6 transaction it was given for it.
                legacy_id = self.legacy_id_of.get(event["transactionInfo"]["transactionId"])
                assert legacy_id is None or legacy_id in self.stopped, f"Ended acknowledged, {legacy_id} not stopped"
        else:
            assert message.code in ERRORS[peer.version], f"{message.code} is not an OCPP {peer.version} error code"
            assert len(message.description) <= rpc.MAX_ERROR_DESCRIPTION

    def legacy_receives(self, call: rpc.Call) -> None:
        """What the legacy CSMS can tell is wrong from the 1.6 CALLs alone."""
        transaction_id = call.payload.get("transactionId")
        if call.action in ("MeterValues", "StopTransaction") and transaction_id is not None:
            assert transaction_id in self.issued, f"{call.action} for transactionId {transaction_id} never issued"
            assert transaction_id not in self.stopped, f"{call.action} for transaction {transaction_id} after its stop"
        if call.action == "MeterValues" and transaction_id is not None:
            started_on = self.connector_of[transaction_id]
            assert call.payload["connectorId"] == started_on, f"{call.payload} for a transaction on {started_on}"
        if call.action == "StopTransaction":
            # The machine's charger reports an energy register that only grows during a transaction.
            meter_start = self.meter_start[transaction_id]
            assert call.payload["meterStop"] >= meter_start, f"meterStop {call.payload} below meterStart {meter_start}"

    # -- answering the bridge ----------------------------------------------------------------------
    def answer(self, leg: LegName, mode: str, variant: int = 0) -> None:
        peer = self.peers[leg]
        call = peer.outstanding
        assert call is not None
        if mode == "silent":
            peer.silent = True
            return
        peer.outstanding = None
        if mode == "error":
            code = ERRORS[peer.version][variant % len(ERRORS[peer.version])]
            self.deliver(leg, orjson.dumps([4, call.message_id, code, "refused by the fuzzer", {}]))
            return
        payload = {"status": 12345, "bogus": True} if mode == "invalid" else self.result_for(peer, call, variant)
        if mode == "ok" and call.action == "StopTransaction":
            self.stopped.add(call.payload["transactionId"])
        self.deliver(leg, orjson.dumps([3, call.message_id, payload]))

    def result_for(self, peer: Peer, call: rpc.Call, variant: int) -> dict[str, Any]:
        if peer.leg == CHARGER:
            statuses = CHARGER_STATUSES.get(call.action)
            assert statuses is not None, f"the machine's charger cannot answer {call.action}"
            status = statuses[variant % len(statuses)]
            if call.action == "RequestStartTransaction" and status == "Accepted":
                self.remote_starts.append(call.payload["remoteStartId"])
            return {"status": status}
        id_tag_info = {"status": ID_TAG_STATUSES[variant % len(ID_TAG_STATUSES)]}
        if call.action == "BootNotification":
            status = ("Accepted", "Pending", "Rejected")[variant % 3]
            return {"status": status, "currentTime": timestamp(self.now), "interval": 300}
        if call.action == "Heartbeat":
            return {"currentTime": timestamp(self.now)}
        if call.action == "Authorize":
            return {"idTagInfo": id_tag_info}
        if call.action == "StartTransaction":
            self.next_legacy_id += 1
            self.issued.add(self.next_legacy_id)
            self.meter_start[self.next_legacy_id] = call.payload["meterStart"]
            self.connector_of[self.next_legacy_id] = call.payload["connectorId"]
            return {"transactionId": self.next_legacy_id, "idTagInfo": id_tag_info}
        if call.action == "StopTransaction":
            return {"idTagInfo": id_tag_info} if variant % 2 else {}
        assert call.action in ("StatusNotification", "MeterValues"), f"the machine's legacy cannot answer {call.action}"
        return {}

    def follow(self, plan: list[str], variant: int) -> None:
        """Answer the bridge's CALLs as they come, on either leg, by `plan` (its end leaves them pending)."""
        for mode in plan:
            legs = [leg for leg, peer in self.peers.items() if peer.outstanding is not None and not peer.silent]
            if not legs:
                return
            self.answer(legs[0], mode, variant)
            variant += 1

    def drain(self) -> None:
        """Answer or time out everything; then every CALL either peer sent must have had its answer."""
        for _ in range(200):
            legs = [leg for leg, peer in self.peers.items() if peer.outstanding is not None and not peer.silent]
            if legs:
                self.answer(legs[0], "ok")
            elif self.bridge.next_deadline() is not None:
                self.now = max(self.now, self.bridge.next_deadline() or 0.0)
                self.absorb(self.bridge.expire(self.now))
            else:
                break
        self.check_liveness()
        for peer in self.peers.values():
            assert not peer.waiting, f"{peer.leg} never got an answer to {peer.waiting}"
        assert not self.bridge.busy()

    # -- the charger -----------------------------------------------------------------------------
    def charger_call(self, action: str, payload: dict[str, Any], plan: list[str], variant: int) -> None:
        self.send(CHARGER, self.fresh_id(CHARGER), action, payload)
        self.follow(plan, variant)

    @rule(long_vendor=st.booleans(), plan=ANSWER_PLANS, variant=st.integers(0, 5))
    def boot(self, long_vendor: bool, plan: list[str], variant: int) -> None:
        vendor = "A-Vendor-With-A-Long-Name" if long_vendor else "Vendor"
        payload = {"chargingStation": {"vendorName": vendor, "model": "M-1"}, "reason": "PowerUp"}
        self.charger_call("BootNotification", payload, plan, variant)

    @rule(evse=st.sampled_from(EVSES), connector=st.sampled_from((1, 1, 2)), status=CONNECTOR_STATUSES,
          plan=ANSWER_PLANS)  # fmt: skip
    def status_notification(self, evse: int, connector: int, status: str, plan: list[str]) -> None:
        payload = {
            "timestamp": timestamp(self.now), "connectorStatus": status, "evseId": evse, "connectorId": connector,
        }  # fmt: skip
        self.charger_call("StatusNotification", payload, plan, 0)

    @rule(token=TOKENS, token_type=TOKEN_TYPES, plan=ANSWER_PLANS, variant=st.integers(0, 5))
    def authorize(self, token: str, token_type: str, plan: list[str], variant: int) -> None:
        self.charger_call("Authorize", {"idToken": {"idToken": token, "type": token_type}}, plan, variant)

    @rule(plan=ANSWER_PLANS)
    def heartbeat(self, plan: list[str]) -> None:
        self.charger_call("Heartbeat", {}, plan, 0)

    @rule(evse=st.sampled_from(EVSES), energy=st.integers(0, 50_000), plan=ANSWER_PLANS)
    def meter_values(self, evse: int, energy: int, plan: list[str]) -> None:
        payload = {"evseId": evse, "meterValue": [self.meter_value(energy, "Sample.Periodic")]}
        self.charger_call("MeterValues", payload, plan, 0)

    def meter_value(self, energy_wh: int, context: str) -> dict[str, Any]:
        return {"timestamp": timestamp(self.now), "sampledValue": [{"value": energy_wh, "context": context}]}

    def transaction_event(self, payload: dict[str, Any], plan: list[str], variant: int, same_id: bool = False) -> None:
        message_id = payload.get("_id") if same_id else None
        payload = {key: value for key, value in payload.items() if key != "_id"}
        message_id = message_id or self.fresh_id(CHARGER)
        self.events.append(dict(payload, _id=message_id))
        self.sent_events[message_id] = payload
        self.send(CHARGER, message_id, "TransactionEvent", payload)
        self.follow(plan, variant)

    @precondition(lambda self: len(self.open) < len(EVSES))
    @rule(evse=st.sampled_from(EVSES), connector=st.sampled_from((None, 1, 2)),
          token=st.none() | TOKENS, token_type=TOKEN_TYPES, remote=st.booleans(), charging_state=CHARGING_STATES,
          energy=st.integers(0, 10_000), plan=ANSWER_PLANS, variant=st.integers(0, 5))  # fmt: skip
    def transaction_started(
        self, evse: int, connector: int | None, token: str | None, token_type: str, remote: bool,
        charging_state: str | None, energy: int, plan: list[str], variant: int,
    ) -> None:  # fmt: skip
        if evse in self.open:
            evse = next(free for free in EVSES if free not in self.open)
        tx = ChargerTx(f"tx-{self.next_tx}", evse, energy_wh=energy)
        self.next_tx += 1
        self.open[evse] = tx
        info: dict[str, Any] = {"transactionId": tx.transaction_id}
        if charging_state:
            info["chargingState"] = charging_state
        trigger = "Authorized" if token else "CablePluggedIn"
        if remote and self.remote_starts:
            info["remoteStartId"] = self.remote_starts.pop(0)
            trigger = "RemoteStart"
        payload: dict[str, Any] = {
            "eventType": "Started", "seqNo": 0, "timestamp": timestamp(self.now), "triggerReason": trigger,
            "transactionInfo": info, "evse": {"id": evse},
            "meterValue": [self.meter_value(energy, "Transaction.Begin")],
        }  # fmt: skip
        if connector is not None:
            payload["evse"]["connectorId"] = connector
        if token:
            payload["idToken"] = {"idToken": token, "type": token_type}
        self.transaction_event(payload, plan, variant)

    @precondition(lambda self: self.open)
    @rule(evse=st.sampled_from(EVSES), token=st.none() | TOKENS, token_type=TOKEN_TYPES,
          charging_state=CHARGING_STATES, energy=st.integers(0, 5_000), gap=st.sampled_from((1, 1, 1, 2)),
          hold=st.booleans(), plan=ANSWER_PLANS, variant=st.integers(0, 5))  # fmt: skip
    def transaction_updated(
        self, evse: int, token: str | None, token_type: str, charging_state: str | None, energy: int, gap: int,
        hold: bool, plan: list[str], variant: int,
    ) -> None:  # fmt: skip
        tx = self.open.get(evse) or next(iter(self.open.values()))
        tx.seq_no += gap
        tx.energy_wh += energy
        info: dict[str, Any] = {"transactionId": tx.transaction_id}
        if charging_state:
            info["chargingState"] = charging_state
        payload: dict[str, Any] = {
            "eventType": "Updated", "seqNo": tx.seq_no, "timestamp": timestamp(self.now),
            "triggerReason": "Authorized" if token else "MeterValuePeriodic", "transactionInfo": info,
            "meterValue": [self.meter_value(tx.energy_wh, "Sample.Periodic")],
        }  # fmt: skip
        if token:
            payload["idToken"] = {"idToken": token, "type": token_type}
        if hold:  # sent later, after the events that follow it: out of seqNo order
            self.held.append(payload)
            return
        self.transaction_event(payload, plan, variant)

    @precondition(lambda self: self.open)
    @rule(evse=st.sampled_from(EVSES), token=st.none() | TOKENS, token_type=TOKEN_TYPES, reason=STOPPED_REASONS,
          energy=st.integers(0, 5_000), end_register=st.booleans(), plan=ANSWER_PLANS,
          variant=st.integers(0, 5))  # fmt: skip
    def transaction_ended(
        self, evse: int, token: str | None, token_type: str, reason: str | None, energy: int, end_register: bool,
        plan: list[str], variant: int,
    ) -> None:  # fmt: skip
        tx = self.open.pop(evse if evse in self.open else next(iter(self.open)))
        tx.seq_no += 1
        tx.energy_wh += energy
        info: dict[str, Any] = {"transactionId": tx.transaction_id}
        if reason:
            info["stoppedReason"] = reason
        payload: dict[str, Any] = {
            "eventType": "Ended", "seqNo": tx.seq_no, "timestamp": timestamp(self.now),
            "triggerReason": "StopAuthorized" if token else "EVCommunicationLost", "transactionInfo": info,
        }  # fmt: skip
        if end_register:
            payload["meterValue"] = [self.meter_value(tx.energy_wh, "Transaction.End")]
        if token:
            payload["idToken"] = {"idToken": token, "type": token_type}
        self.transaction_event(payload, plan, variant)

    @precondition(lambda self: self.events)
    @rule(pick=st.integers(0, 1000), same_id=st.booleans(), plan=ANSWER_PLANS, variant=st.integers(0, 5))
    def retransmit(self, pick: int, same_id: bool, plan: list[str], variant: int) -> None:
        self.transaction_event(self.events[-1 - pick % len(self.events)], plan, variant, same_id)

    @precondition(lambda self: self.held)
    @rule(plan=ANSWER_PLANS, variant=st.integers(0, 5))
    def release_held(self, plan: list[str], variant: int) -> None:
        self.transaction_event(self.held.pop(0), plan, variant)

    @rule(kind=st.sampled_from(["json", "payload", "action", "type"]))
    def charger_sends_garbage(self, kind: str) -> None:
        message_id = self.fresh_id(CHARGER)
        raw = {
            "json": b'[2, "' + message_id.encode() + b'", "Heartbeat", {',
            "payload": orjson.dumps([2, message_id, "TransactionEvent", {"eventType": "Started"}]),
            "action": orjson.dumps([2, message_id, "NoSuchAction", {}]),
            "type": orjson.dumps([7, message_id, "Heartbeat", {}]),
        }[kind]
        answered_as = rpc.UNREADABLE_ID if kind == "json" else message_id  # an unreadable frame's id is "-1"
        self.peers[CHARGER].waiting.setdefault(answered_as, []).append("(refused)")
        self.deliver(CHARGER, raw)

    # -- the legacy CSMS -------------------------------------------------------------------------
    def legacy_call(self, action: str, payload: dict[str, Any], plan: list[str], variant: int) -> None:
        self.send(LEGACY, self.fresh_id(LEGACY), action, payload)
        self.follow(plan, variant)

    @rule(token=TOKENS, connector=st.sampled_from((None, 1, 2, 3)), plan=ANSWER_PLANS, variant=st.integers(0, 5))
    def remote_start(self, token: str, connector: int | None, plan: list[str], variant: int) -> None:
        payload: dict[str, Any] = {"idTag": token[:20]}
        if connector is not None:
            payload["connectorId"] = connector
        self.legacy_call("RemoteStartTransaction", payload, plan, variant)

    @rule(pick=st.integers(0, 1000), plan=ANSWER_PLANS, variant=st.integers(0, 5))
    def remote_stop(self, pick: int, plan: list[str], variant: int) -> None:
        known = [*sorted(self.issued), 9999]
        self.legacy_call("RemoteStopTransaction", {"transactionId": known[pick % len(known)]}, plan, variant)

    @rule(connector=st.sampled_from((1, 2, 3)), plan=ANSWER_PLANS, variant=st.integers(0, 5))
    def unlock_connector(self, connector: int, plan: list[str], variant: int) -> None:
        self.legacy_call("UnlockConnector", {"connectorId": connector}, plan, variant)

    @rule(connector=st.sampled_from((0, 1, 2, 3)), operative=st.booleans(), plan=ANSWER_PLANS,
          variant=st.integers(0, 5))  # fmt: skip
    def change_availability(self, connector: int, operative: bool, plan: list[str], variant: int) -> None:
        payload = {"connectorId": connector, "type": "Operative" if operative else "Inoperative"}
        self.legacy_call("ChangeAvailability", payload, plan, variant)

    @rule(requested=st.sampled_from(("StatusNotification", "MeterValues", "Heartbeat")),
          connector=st.sampled_from((None, 1, 3)), plan=ANSWER_PLANS, variant=st.integers(0, 5))  # fmt: skip
    def trigger_message(self, requested: str, connector: int | None, plan: list[str], variant: int) -> None:
        payload: dict[str, Any] = {"requestedMessage": requested}
        if connector is not None:
            payload["connectorId"] = connector
        self.legacy_call("TriggerMessage", payload, plan, variant)

    @rule(reset_type=st.sampled_from(("Hard", "Soft")), plan=ANSWER_PLANS, variant=st.integers(0, 5))
    def reset(self, reset_type: str, plan: list[str], variant: int) -> None:
        self.legacy_call("Reset", {"type": reset_type}, plan, variant)

    # -- both peers ------------------------------------------------------------------------------
    @precondition(lambda self: self.peers[LEGACY].outstanding is not None and not self.peers[LEGACY].silent)
    @rule(mode=st.sampled_from(ANSWER_MODES), variant=st.integers(0, 5))
    def legacy_answers(self, mode: str, variant: int) -> None:
        self.answer(LEGACY, mode, variant)

    @precondition(lambda self: self.peers[CHARGER].outstanding is not None and not self.peers[CHARGER].silent)
    @rule(mode=st.sampled_from(ANSWER_MODES), variant=st.integers(0, 5))
    def charger_answers(self, mode: str, variant: int) -> None:
        self.answer(CHARGER, mode, variant)

    @precondition(lambda self: self.peers[LEGACY].late or self.peers[CHARGER].late)
    @rule(leg=st.sampled_from((LEGACY, CHARGER)))
    def late_answer(self, leg: LegName) -> None:
        peer = self.peers[leg]
        if not peer.late:
            return
        call = peer.late.pop(0)
        outcome = self.deliver(leg, orjson.dumps([3, call.message_id, self.result_for(peer, call, 0)]))
        assert not outcome.to_charger and not outcome.to_legacy, "a late answer was acted upon"

    @rule(seconds=st.sampled_from((1.0, 10.0, TIMEOUT, TIMEOUT + 1, 120.0)))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.absorb(self.bridge.expire(self.now))

    @rule()
    def reconnect(self) -> None:
        """The proxy restarts: a new bridge on what it persisted; both connections are new."""
        self.bridge = self.new_bridge(StationState.loads(self.persisted), DeviceModel.loads(self.persisted_model))
        self.peers = {CHARGER: Peer(CHARGER, "2.0.1"), LEGACY: Peer(LEGACY, "1.6")}

    # -- invariants ------------------------------------------------------------------------------
    @invariant()
    def no_translation_bug_logged(self) -> None:
        assert not self.bugs.records, self.bugs.records

    @invariant()
    def state_round_trips_and_was_persisted(self) -> None:
        state = self.bridge.state
        assert StationState.loads(state.dumps()) == state
        assert StationState.loads(self.persisted) == state, "the state changed without Outcome.state_changed"
        model = self.bridge.device_model
        assert DeviceModel.loads(model.dumps()) == model
        assert DeviceModel.loads(self.persisted_model) == model, "device model changed without device_model_changed"

    @invariant()
    def id_maps_are_consistent(self) -> None:
        state = self.bridge.state
        legacy_ids = [tx.legacy_id for tx in state.transactions.values() if tx.legacy_id is not None]
        assert len(legacy_ids) == len(set(legacy_ids)), f"two transactions share a legacy id: {legacy_ids}"
        for transaction_id, tx in state.transactions.items():
            assert tx.transaction_id == transaction_id
            if tx.legacy_id is None:
                continue
            assert tx.legacy_id in self.issued, f"{transaction_id} has legacy id {tx.legacy_id}, never issued"
            assert tx.legacy_id not in self.stopped, f"{transaction_id} still open after its StopTransaction"
        self.learn_legacy_ids()

    def learn_legacy_ids(self) -> None:
        for transaction_id, tx in self.bridge.state.transactions.items():
            if tx.legacy_id is not None:
                first = self.legacy_id_of.setdefault(transaction_id, tx.legacy_id)
                assert first == tx.legacy_id, f"{transaction_id} started twice at the legacy: {first}, {tx.legacy_id}"

    @invariant()
    def connectors_are_consistent(self) -> None:
        state = self.bridge.state
        flat = list(state.connectors.values())
        assert len(flat) == len(set(flat)), f"two EVSE connectors share a 1.6 connectorId: {state.connectors}"
        for key, connector_id in state.connectors.items():
            evse, _ = key.split("/")
            assert int(evse) > 0 and connector_id > 0, state.connectors
        for tx in state.transactions.values():
            evse = state.evse_for(tx.connector_id)
            assert evse is not None and evse[0] == tx.evse_id, f"{tx.transaction_id} on {tx.connector_id}: {evse}"
        for connector_id in (*state.connector_status, *state.legacy_status, *state.finishing):
            assert connector_id == 0 or connector_id in flat, f"status of unknown connector {connector_id}"

    @invariant()
    def check_liveness(self) -> None:
        """With nothing of the bridge's in flight, every CALL either peer sent has had its answer."""
        in_flight = [peer for peer in self.peers.values() if peer.outstanding is not None]
        assert (self.bridge.next_deadline() is not None) == bool(in_flight)
        if not in_flight:
            for peer in self.peers.values():
                assert not peer.waiting, f"{peer.leg} got no answer to {peer.waiting} and nothing is in flight"
            assert not self.bridge.busy()


BridgeMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestBridgeMachine = BridgeMachine.TestCase


def test_an_unlock_whose_stop_failed_leaves_no_unlock_reason() -> None:
    """Found by the machine: a RequestStopTransaction answered with a CALLERROR (or never) left UnlockCommand as
    the transaction's 1.6 stop reason, so its StopTransaction claimed an unlock that never happened."""
    bridge = Bridge(StationState("CS-FUZZ"), schemas.load(), CHARGER_CALLS, LEGACY_CALLS)
    started = {
        "eventType": "Started", "seqNo": 0, "timestamp": timestamp(0), "triggerReason": "Authorized",
        "transactionInfo": {"transactionId": "tx-1"}, "evse": {"id": 1, "connectorId": 1},
        "idToken": {"idToken": "TAG0001", "type": "ISO14443"},
    }  # fmt: skip
    bridge.receive(CHARGER, orjson.dumps([2, "c1", "TransactionEvent", started]), 0)
    bridge.receive(LEGACY, orjson.dumps([3, "p1", {"transactionId": 7, "idTagInfo": {"status": "Accepted"}}]), 0)
    bridge.receive(LEGACY, orjson.dumps([3, "p2", {}]), 0)  # StatusNotification Charging
    (stop,) = bridge.receive(LEGACY, orjson.dumps([2, "l1", "UnlockConnector", {"connectorId": 1}]), 0).to_charger
    assert orjson.loads(stop)[2] == "RequestStopTransaction"
    (refused,) = bridge.receive(CHARGER, orjson.dumps([4, "p3", "InternalError", "busy", {}]), 0).to_legacy
    assert orjson.loads(refused)[:3] == [4, "l1", "InternalError"]
    ended = dict(started, eventType="Ended", seqNo=1, triggerReason="StopAuthorized", transactionInfo={
        "transactionId": "tx-1", "stoppedReason": "EVDisconnected"})  # fmt: skip
    (stop_transaction,) = bridge.receive(CHARGER, orjson.dumps([2, "c2", "TransactionEvent", ended]), 0).to_legacy
    assert orjson.loads(stop_transaction)[3]["reason"] == "EVDisconnected"
