"""The replay shadow backend against an independent OCPP 2.0.1 CSMS built here on the `ocpp` library: its
answers come back through `answer`, its own CALLs are answered locally and recorded (never reaching the real
charger), and a CSMS that is silent, answers garbage or drops the connection costs one answer, nothing more.
Then end to end: chargers → proxy → legacy, the tee, a shadow worker replaying to that CSMS."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis.asyncio as redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms
from proxy.app import RunningProxy
from proxy.state_store import device_model_key
from proxy.tee import envelope, stream_key
from shadow import records
from shadow.divergence import Answer
from shadow.replay import (
    CSMS_CALL_POLICY,
    NOT_SUPPORTED_CALLS,
    PER_ITEM_POLICY,
    ReplayBackend,
    local_answer,
    redacted,
    redis_device_models,
)
from shadow.worker import ShadowWorker
from tests.conftest import proxy_url
from tests.schema_strategies import payloads
from tests.shadow.test_shadow_e2e import drained, lease, own_client, until  # noqa: F401  (lease: a fixture)
from translators import schemas
from translators.dispatch import ALL_ACTIONS_201, STATION_ACTIONS_201
from translators.state import DeviceModel

TOKENS = {"TAG0001", "TAG0002"}  # the native CSMS's list: TAG0003, which the legacy accepts, is not on it
NOW = "2026-11-24T19:43:27.000Z"
BOOT = {"chargingStation": {"model": "SIM-201", "vendorName": "ocpp-cutover"}, "reason": "PowerUp"}
OCPP201 = Subprotocol("ocpp2.0.1")


def authorize(token: str) -> dict[str, Any]:
    return {"idToken": {"idToken": token, "type": "ISO14443"}}


def started(token: str, transaction_id: str = "tx-1") -> dict[str, Any]:
    return {
        "eventType": "Started", "timestamp": NOW, "triggerReason": "Authorized", "seqNo": 0,
        "transactionInfo": {"transactionId": transaction_id}, "evse": {"id": 1, "connectorId": 1},
        "idToken": {"idToken": token, "type": "ISO14443"},
    }  # fmt: skip


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def device_model(values: dict[str, str], complete: bool = True) -> DeviceModel:
    """A cached device model as the proxy keeps it, from "Component/Variable" → Actual value."""
    model = DeviceModel()
    model.on_report_data(
        [
            {
                "component": {"name": key.split("/")[0]},
                "variable": {"name": key.split("/")[1]},
                "variableAttribute": [{"type": "Actual", "value": value, "mutability": "ReadWrite"}],
            }
            for key, value in values.items()
        ],
        last_part=complete,
    )
    return model


class NativeSession(ChargePoint):
    """One station's session at the native CSMS: answers its CALLs, then sends the CSMS's own after a boot."""

    def __init__(self, station_id: str, connection: ServerConnection, csms: NativeCsms) -> None:
        super().__init__(station_id, connection, response_timeout=5)
        self.csms = csms

    async def route_message(self, raw_msg: str | bytes) -> None:
        self.csms.frames.append((self.id, orjson.loads(raw_msg)))
        await super().route_message(raw_msg)

    @on(Action.boot_notification)
    def on_boot_notification(self, **_: Any) -> call_result.BootNotification:
        return call_result.BootNotification(current_time=self.csms.clock(), interval=300, status="Accepted")

    @after(Action.boot_notification)
    async def after_boot_notification(self, **_: Any) -> None:
        for request in self.csms.after_boot:
            self.csms.answers.append((self.id, request, await self.call(request)))
        if self.csms.after_boot:
            self.csms.called.set()

    @on(Action.heartbeat)
    def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=self.csms.clock())

    @on(Action.status_notification)
    def on_status_notification(self, **_: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @on(Action.notify_report)
    def on_notify_report(self, **_: Any) -> call_result.NotifyReport:
        return call_result.NotifyReport()

    @on(Action.meter_values)
    def on_meter_values(self, **_: Any) -> call_result.MeterValues:
        return call_result.MeterValues()

    @on(Action.authorize)
    def on_authorize(self, id_token: dict[str, Any], **_: Any) -> call_result.Authorize:
        return call_result.Authorize(id_token_info=self.csms.token_info(id_token))

    @on(Action.transaction_event)
    def on_transaction_event(self, id_token: dict[str, Any] | None = None, **_: Any) -> call_result.TransactionEvent:
        if id_token is None:
            return call_result.TransactionEvent()
        return call_result.TransactionEvent(id_token_info=self.csms.token_info(id_token))


class NativeCsms:
    """The test's own 2.0.1 CSMS on 127.0.0.1 (the `ocpp` library's `ChargePoint` per station): a token list,
    and CALLs of its own (`after_boot`) it makes to every station that boots; `clock` is its time."""

    def __init__(self, after_boot: tuple[Any, ...] = (), clock: Callable[[], str] = lambda: NOW) -> None:
        self.after_boot = after_boot
        self.clock = clock
        self.frames: list[tuple[str, Any]] = []  # (station, frame) as received
        self.answers: list[tuple[str, Any, Any]] = []  # (station, its CALL, the answer) for `after_boot`
        self.called = asyncio.Event()  # set once every `after_boot` CALL was answered
        self.connections: list[tuple[str, str | None]] = []  # (request path, subprotocol)
        self.sockets: dict[str, ServerConnection] = {}
        self.server: Server | None = None
        self.port = 0

    @staticmethod
    def token_info(id_token: dict[str, Any]) -> dict[str, str]:
        return {"status": "Accepted" if id_token["id_token"] in TOKENS else "Invalid"}

    def calls(self, station_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(f[2], f[3]) for s, f in self.frames if s == station_id and f[0] == 2]

    async def start(self) -> NativeCsms:
        self.server = await serve(self.serve_station, "127.0.0.1", 0, subprotocols=[OCPP201])
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def serve_station(self, connection: ServerConnection) -> None:
        station_id = connection.request.path.rstrip("/").rsplit("/", 1)[-1] if connection.request else ""
        self.connections.append((connection.request.path if connection.request else "", connection.subprotocol))
        self.sockets[station_id] = connection
        with contextlib.suppress(ConnectionClosed):
            await NativeSession(station_id, connection, self).start()

    async def drop(self, station_id: str) -> None:
        """Close the station's connection (returns once the closing handshake is done)."""
        await self.sockets[station_id].close()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/native"


@pytest.fixture
async def native() -> AsyncIterator[Callable[..., Awaitable[NativeCsms]]]:
    """Starts native CSMSs (`after_boot`: the CALLs each makes to a booted station; `clock`: its time, fixed
    unless given); stops them at the end."""
    started_csms: list[NativeCsms] = []

    async def start(after_boot: tuple[Any, ...] = (), clock: Callable[[], str] = lambda: NOW) -> NativeCsms:
        started_csms.append(await NativeCsms(after_boot, clock).start())
        return started_csms[-1]

    yield start
    for csms in started_csms:
        await csms.stop()


@pytest.fixture
async def replay() -> AsyncIterator[Callable[..., ReplayBackend]]:
    """Builds replay backends; closes them at the end."""
    backends: list[ReplayBackend] = []

    def build(url: str, **options: Any) -> ReplayBackend:
        backends.append(ReplayBackend(url, **options))
        return backends[-1]

    yield build
    for backend in backends:
        await backend.close()


@contextlib.asynccontextmanager
async def serve_raw(handler: Callable[[ServerConnection], Awaitable[None]]) -> AsyncIterator[str]:
    """A bare WebSocket server speaking ocpp2.0.1 through `handler`: a CSMS that misbehaves on purpose."""
    async with serve(handler, "127.0.0.1", 0, subprotocols=[OCPP201]) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/raw"


# -- the native CSMS's answers ------------------------------------------------------------------------------


async def test_native_answers_come_back_over_one_connection(
    native: Callable[..., Awaitable[NativeCsms]], replay: Callable[..., ReplayBackend]
) -> None:
    csms = await native()
    backend = replay(csms.url)
    boot = await backend.answer("RP01", "BootNotification", BOOT, NOW)
    assert boot == Answer(payload={"currentTime": NOW, "interval": 300, "status": "Accepted"})
    assert await backend.answer("RP01", "Heartbeat", {}, NOW) == Answer(payload={"currentTime": NOW})
    authorized = await backend.answer("RP01", "Authorize", authorize("TAG0001"), NOW)
    assert authorized == Answer(payload={"idTokenInfo": {"status": "Accepted"}})
    assert csms.calls("RP01") == [("BootNotification", BOOT), ("Heartbeat", {}), ("Authorize", authorize("TAG0001"))]
    assert csms.connections == [("/native/RP01", "ocpp2.0.1")]  # one connection, the id as the last segment
    ids = [frame[1] for _, frame in csms.frames]
    assert len(set(ids)) == 3 and all(len(i) <= 36 for i in ids)


async def test_a_token_the_native_csms_rejects_is_invalid_and_the_transaction_is_rebuilt(
    native: Callable[..., Awaitable[NativeCsms]], replay: Callable[..., ReplayBackend]
) -> None:
    csms = await native()
    backend = replay(csms.url)
    rejected = await backend.answer("RP02", "Authorize", authorize("TAG0003"), NOW)
    assert rejected == Answer(payload={"idTokenInfo": {"status": "Invalid"}})
    event = await backend.answer("RP02", "TransactionEvent", started("TAG0003"), NOW)
    assert event == Answer(payload={"idTokenInfo": {"status": "Invalid"}})
    (tx,) = backend.transactions("RP02")
    assert (tx.transaction_id, tx.id_token, tx.started_seen, tx.evse_id) == ("tx-1", "TAG0003", True, 1)
    assert backend.transactions("elsewhere") == []


async def test_a_callerror_of_the_native_csms_is_the_answer(
    native: Callable[..., Awaitable[NativeCsms]], replay: Callable[..., ReplayBackend]
) -> None:
    csms = await native()
    backend = replay(csms.url)
    notified = await backend.answer("RP03", "NotifyEvent", {"generatedAt": NOW, "seqNo": 0, "eventData": [{
        "eventId": 1, "timestamp": NOW, "trigger": "Alerting", "actualValue": "1", "eventNotificationType":
        "HardWiredNotification", "component": {"name": "EVSE"}, "variable": {"name": "Problem"}}]}, NOW)  # fmt: skip
    assert notified is not None and notified.error == "NotImplemented"  # the `ocpp` library has no handler


async def test_a_schema_invalid_call_is_answered_here_and_never_sent(
    native: Callable[..., Awaitable[NativeCsms]], replay: Callable[..., ReplayBackend]
) -> None:
    csms = await native()
    backend = replay(csms.url)
    refused = await backend.answer("RP04", "Authorize", {"idToken": {"idToken": "TAG0001"}}, NOW)
    assert refused is not None and refused.error == "OccurrenceConstraintViolation"
    assert csms.connections == []


async def test_the_station_url_follows_the_proxys_rule(
    native: Callable[..., Awaitable[NativeCsms]], replay: Callable[..., ReplayBackend]
) -> None:
    csms = await native()
    templated = replay(f"ws://127.0.0.1:{csms.port}/csms/{{station}}/ws")
    assert templated.url_for("A B/1") == f"ws://127.0.0.1:{csms.port}/csms/A%20B%2F1/ws"
    assert replay("wss://csms.example/ocpp/").url_for("RP05") == "wss://csms.example/ocpp/RP05"
    assert (await templated.answer("RP05", "Heartbeat", {}, NOW)) == Answer(payload={"currentTime": NOW})
    assert csms.connections == [("/csms/RP05/ws", "ocpp2.0.1")]
    with pytest.raises(ValueError, match="ws:// or wss://"):
        ReplayBackend("http://csms.example/ocpp")


# -- the native CSMS's own CALLs ------------------------------------------------------------------------------

GET_VARIABLES = call.GetVariables(
    get_variable_data=[
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NoSuchVariable"}},
        {"component": {"name": "NoSuchCtrlr"}, "variable": {"name": "Enabled"}},
    ]
)
REMOTE_START = call.RequestStartTransaction(id_token={"id_token": "TAG0001", "type": "ISO14443"}, remote_start_id=7)


async def test_the_native_csmss_calls_are_answered_locally_and_recorded(
    native: Callable[..., Awaitable[NativeCsms]], replay: Callable[..., ReplayBackend]
) -> None:
    csms = await native(after_boot=(GET_VARIABLES, REMOTE_START, call.GetTransactionStatus()))
    loaded: list[str] = []

    async def load(station_id: str) -> DeviceModel:
        loaded.append(station_id)
        return device_model({"OCPPCommCtrlr/HeartbeatInterval": "300", "OCPPCommCtrlr/ResetRetries": "2"})

    backend = replay(csms.url, device_model=load)
    await backend.answer("RP06", "BootNotification", BOOT, NOW)
    await asyncio.wait_for(csms.called.wait(), 5)

    (_, _, variables), (_, _, remote_start), (_, _, transaction_status) = csms.answers
    assert [(r["attribute_status"], r.get("attribute_value")) for r in variables.get_variable_result] == [
        ("Accepted", "300"),
        ("UnknownVariable", None),
        ("UnknownComponent", None),
    ]
    assert remote_start.status == "Rejected"
    assert transaction_status is None  # a CALLERROR: the `ocpp` library returns nothing
    assert loaded == ["RP06"]
    assert [(station, action) for station, action, _ in backend.recorded] == [
        ("RP06", "GetVariables"), ("RP06", "RequestStartTransaction"), ("RP06", "GetTransactionStatus"),
    ]  # fmt: skip
    _, _, exchange = backend.recorded[1]
    assert exchange["request"] == {"idToken": {"idToken": "TAG0001", "type": "ISO14443"}, "remoteStartId": 7}
    assert exchange["result"]["status"] == "Rejected"
    assert backend.recorded[2][2]["error"] == "NotSupported"
    assert csms.calls("RP06") == [("BootNotification", BOOT)]  # nothing else went to the CSMS


async def test_a_recorder_is_given_every_exchange(
    native: Callable[..., Awaitable[NativeCsms]], replay: Callable[..., ReplayBackend]
) -> None:
    csms = await native(after_boot=(call.Reset(type="Immediate"),))
    kept: list[tuple[str, str, dict[str, Any]]] = []

    async def record(station_id: str, action: str, exchange: dict[str, Any]) -> None:
        kept.append((station_id, action, exchange))

    backend = replay(csms.url, record=record)
    await backend.answer("RP07", "BootNotification", BOOT, NOW)
    await asyncio.wait_for(csms.called.wait(), 5)
    assert kept == [("RP07", "Reset", {"request": {"type": "Immediate"}, "result": CSMS_CALL_POLICY["Reset"]})]
    assert backend.recorded == []


# -- a native CSMS that misbehaves ------------------------------------------------------------------------------


async def test_a_csms_that_never_answers_gives_none_within_the_timeout(replay: Callable[..., ReplayBackend]) -> None:
    async def silent(connection: ServerConnection) -> None:
        async for _ in connection:
            pass

    async with serve_raw(silent) as url:
        backend = replay(url, call_timeout=0.2)
        began = time.monotonic()
        assert await backend.answer("RP08", "Heartbeat", {}, NOW) is None
        assert await backend.answer("RP08", "Heartbeat", {}, NOW) is None
        assert time.monotonic() - began < 2


async def test_garbage_is_no_answer_and_the_connection_goes_on(replay: Callable[..., ReplayBackend]) -> None:
    received: list[Any] = []

    async def garbled(connection: ServerConnection) -> None:
        async for raw in connection:
            frame = orjson.loads(raw)
            received.append(frame)
            calls = sum(1 for f in received if f[0] == 2)
            if frame[0] != 2:
                continue
            if calls == 1:
                await connection.send("this is not OCPP")
            elif calls == 2:
                await connection.send(orjson.dumps([3, frame[1]]).decode())  # a CALLRESULT without payload
            else:
                await connection.send(orjson.dumps([3, frame[1], {"currentTime": NOW}]).decode())

    async with serve_raw(garbled) as url:
        backend = replay(url, call_timeout=5)
        began = time.monotonic()
        assert await backend.answer("RP09", "Heartbeat", {}, NOW) is None
        assert await backend.answer("RP09", "Heartbeat", {}, NOW) is None
        assert time.monotonic() - began < 2  # no answer now, not after the timeout
        assert await backend.answer("RP09", "Heartbeat", {}, NOW) == Answer(payload={"currentTime": NOW})
        # the unreadable frame got the CALLERROR OCPP-J prescribes, on the same connection
        assert [4, "-1", "RpcFrameworkError"] in [f[:3] for f in received]


async def test_a_late_answer_is_dropped_and_the_next_call_gets_its_own(replay: Callable[..., ReplayBackend]) -> None:
    async def slow_first(connection: ServerConnection) -> None:
        first: str | None = None
        async for raw in connection:
            frame = orjson.loads(raw)
            if first is None:
                first = frame[1]
                continue
            await connection.send(orjson.dumps([3, first, {"currentTime": "2020-01-01T00:00:00Z"}]).decode())
            await connection.send(orjson.dumps([3, frame[1], {"currentTime": NOW}]).decode())

    async with serve_raw(slow_first) as url:
        backend = replay(url, call_timeout=0.2)
        assert await backend.answer("RP10", "Heartbeat", {}, NOW) is None
        assert await backend.answer("RP10", "Heartbeat", {}, NOW) == Answer(payload={"currentTime": NOW})


async def test_a_dropped_connection_is_reopened_at_the_next_call(
    native: Callable[..., Awaitable[NativeCsms]], replay: Callable[..., ReplayBackend]
) -> None:
    csms = await native()
    backend = replay(csms.url)
    await backend.answer("RP11", "BootNotification", BOOT, NOW)
    await csms.drop("RP11")
    assert await backend.answer("RP11", "Heartbeat", {}, NOW) == Answer(payload={"currentTime": NOW})
    assert csms.connections == [("/native/RP11", "ocpp2.0.1")] * 2
    assert csms.calls("RP11") == [("BootNotification", BOOT), ("Heartbeat", {})]  # nothing extra on reconnect


async def test_an_unreachable_csms_is_no_answer(replay: Callable[..., ReplayBackend]) -> None:
    async with serve_raw(lambda connection: connection.wait_closed()) as url:
        pass  # the server is gone: its port refuses connections
    backend = replay(url, call_timeout=2)
    assert await backend.answer("RP12", "Heartbeat", {}, NOW) is None


# -- local answers (sans-I/O) -----------------------------------------------------------------------------------

CSMS_ACTIONS = sorted(ALL_ACTIONS_201 - STATION_ACTIONS_201 | {"DataTransfer"})


def test_every_csms_initiated_action_has_one_local_answer() -> None:
    declared = [*CSMS_CALL_POLICY, *PER_ITEM_POLICY, *NOT_SUPPORTED_CALLS, "GetVariables"]
    assert sorted(declared) == CSMS_ACTIONS


@pytest.mark.parametrize("action", CSMS_ACTIONS)
@settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_generated_csms_calls_get_valid_local_answers(action: str, data: st.DataObject) -> None:
    compiled = schemas.load()
    request = data.draw(payloads("2.0.1", action, "request"), label="request")
    model = device_model({"OCPPCommCtrlr/HeartbeatInterval": "300"}, complete=data.draw(st.booleans()))
    answer = local_answer(compiled, action, request, data.draw(st.sampled_from([None, model])))
    if action in NOT_SUPPORTED_CALLS:
        assert answer.error == "NotSupported"
    else:
        assert answer.payload is not None, answer
        compiled.validate("2.0.1", "response", action, answer.payload)


def test_station_actions_and_bad_requests_from_the_csms_are_callerrors() -> None:
    compiled = schemas.load()
    assert local_answer(compiled, "Heartbeat", {}, None).error == "NotSupported"
    assert local_answer(compiled, "Frobnicate", {}, None).error == "NotImplemented"
    assert local_answer(compiled, "Reset", {"type": "Sometime"}, None).error == "PropertyConstraintViolation"


@pytest.mark.parametrize(
    ("model", "item", "expected"),
    [
        (None, {}, ("Rejected", None, "NoDeviceModel")),
        ("complete", {}, ("Accepted", "300", None)),
        ("complete", {"attributeType": "Target"}, ("Rejected", None, "NotCached")),
        ("complete", {"variable": {"name": "Nope"}}, ("UnknownVariable", None, None)),
        ("complete", {"component": {"name": "Nope"}}, ("UnknownComponent", None, None)),
        ("complete", {"component": {"name": "OCPPCommCtrlr", "evse": {"id": 1}}}, ("UnknownComponent", None, None)),
        ("partial", {"variable": {"name": "Nope"}}, ("Rejected", None, "ReportIncomplete")),
        ("partial", {}, ("Accepted", "300", None)),
    ],
)
def test_get_variables_from_the_device_model_cache(
    model: str | None, item: dict[str, Any], expected: tuple[str, str | None, str | None]
) -> None:
    cached = None if model is None else device_model({"OCPPCommCtrlr/HeartbeatInterval": "300"}, model == "complete")
    request = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}} | item
    answer = local_answer(schemas.load(), "GetVariables", {"getVariableData": [request]}, cached)
    assert answer.payload is not None
    (result,) = answer.payload["getVariableResult"]
    reason = result.get("attributeStatusInfo", {}).get("reasonCode")
    assert (result["attributeStatus"], result.get("attributeValue"), reason) == expected
    assert (result["component"], result["variable"]) == (request["component"], request["variable"])


async def test_the_redis_device_model_loader(redis_client: redis.Redis) -> None:
    load = redis_device_models(redis_client)
    assert await load("DM-NONE") is None
    await redis_client.set(device_model_key("DM-OK"), device_model({"A/B": "1"}).dumps())
    loaded = await load("DM-OK")
    assert loaded is not None and loaded.variables == {"A/B": {"value": "1", "mutability": "ReadWrite"}}
    await redis_client.set(device_model_key("DM-BAD"), b"\xc1 not msgpack")
    assert await load("DM-BAD") is None


def test_urls_in_logs_carry_no_password() -> None:
    assert redacted("wss://CP1:s3cret@csms.example:443/ocpp/CP1") == "wss://***@csms.example:443/ocpp/CP1"
    assert redacted("ws://csms/ocpp") == "ws://csms/ocpp"


# -- end to end -------------------------------------------------------------------------------------------------


async def model_complete(client: redis.Redis, station_id: str) -> bool:
    raw: Any = await client.get(device_model_key(station_id))
    return raw is not None and DeviceModel.loads(raw).complete


async def test_replay_end_to_end_records_the_native_csmss_answers_and_keeps_its_calls_from_the_charger(
    proxy: RunningProxy,
    legacy: LegacyCsms,
    redis_url: str,
    redis_client: redis.Redis,
    native: Callable[..., Awaitable[NativeCsms]],
    replay: Callable[..., ReplayBackend],
    lease: None,  # noqa: F811
) -> None:
    csms = await native(after_boot=(GET_VARIABLES, REMOTE_START), clock=utc_now)
    charger = Charger201("RPE1", proxy_url(proxy))
    await charger.connect()
    try:
        await charger.boot()
        await charger.status(1, 1, "Available")
        await charger.run_session(id_token="TAG0003", samples=2, interval=0.01)  # the legacy accepts TAG0003
        await asyncio.wait_for(until(lambda: model_complete(redis_client, "RPE1")), 10)
        await proxy.tee.flush()

        # The worker starts on a complete tee (the consumer group reads it from the start), so the native
        # CSMS's GetVariables after the replayed boot meets the device model the proxy cached.
        backend = replay(csms.url, call_timeout=5, device_model=redis_device_models(redis_client))
        client, stop = own_client(redis_url), asyncio.Event()
        worker = ShadowWorker(client, lambda: backend, name="replay", backend_label="replay")
        task = asyncio.create_task(worker.run(stop))
        try:
            await asyncio.wait_for(until(lambda: drained(redis_client)), 15)
            await asyncio.wait_for(csms.called.wait(), 5)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await client.aclose()

        found, _ = await records.query(redis_client, station="RPE1")
        assert sorted({(r["action"], r["kind"], r["path"], r["live"], r["shadow"]) for r in found}) == [
            ("Authorize", "status_mismatch", "idTokenInfo.status", "Accepted", "Invalid"),
            ("TransactionEvent", "status_mismatch", "idTokenInfo.status", "Accepted", "Invalid"),
        ]
        # every CALL of the charger, in its order, and nothing else
        assert csms.calls("RPE1") == [(f[2], f[3]) for f in charger.frames_out if f[0] == 2]
        comparisons = await redis_client.hgetall(records.COMPARISONS)
        assert int(comparisons[b"Transaction"]) == 1  # reconciled with the replay's rebuilt transaction

        (_, _, variables), (_, _, remote_start) = csms.answers
        assert [(r["attribute_status"], r.get("attribute_value")) for r in variables.get_variable_result] == [
            ("Accepted", "300"), ("UnknownVariable", None), ("UnknownComponent", None),
        ]  # fmt: skip
        assert remote_start.status == "Rejected"
        assert [action for _, action, _ in backend.recorded] == ["GetVariables", "RequestStartTransaction"]
        assert charger.connected
    finally:
        await charger.close()
    received = [action for action, _ in charger.received_calls]
    assert "RequestStartTransaction" not in received and "GetVariables" not in received, received


async def test_cutover_shadow_with_a_shadow_url_replays(
    redis_url: str, redis_client: redis.Redis, native: Callable[..., Awaitable[NativeCsms]]
) -> None:
    csms = await native()
    station, conn = "RPC1", "c-1"
    frames = [
        ("in", [2, "b1", "BootNotification", BOOT]),
        ("out", [3, "b1", {"currentTime": NOW, "interval": 300, "status": "Accepted"}]),
        ("in", [2, "a1", "Authorize", authorize("TAG0003")]),
        ("out", [3, "a1", {"idTokenInfo": {"status": "Accepted"}}]),
    ]
    for seq, (direction, frame) in enumerate(frames):
        entry = envelope(station, conn, seq, "charger", direction, "ocpp2.0.1", orjson.dumps(frame))
        await redis_client.xadd(stream_key(station, 16), {"e": entry})
    worker = subprocess.Popen(
        [sys.executable, "-m", "proxy", "shadow", "--redis-url", redis_url,
         "--shadow-url", f"ws://127.0.0.1:{csms.port}/csms/{{station}}"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        await asyncio.wait_for(until(lambda: drained(redis_client)), 30)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(worker.communicate, timeout=15)
    assert worker.returncode == 0, stderr
    assert csms.connections == [("/csms/RPC1", "ocpp2.0.1")]
    assert csms.calls(station) == [("BootNotification", BOOT), ("Authorize", authorize("TAG0003"))]
    found, _ = await records.query(redis_client, station=station)
    assert [(r["action"], r["kind"], r["live"], r["shadow"]) for r in found] == [
        ("Authorize", "status_mismatch", "Accepted", "Invalid")
    ]
