"""The replay shadow backend: each charger's real 2.0.1 CALLs, in order, to an external (native) 2.0.1 CSMS
over a WebSocket, posing as the charger; what the native CSMS answers is what the shadow compares.

One connection per station (subprotocol ocpp2.0.1), opened at the station's first CALL and, after a drop,
reopened at its next CALL with nothing extra sent: the native CSMS sees exactly what the charger sent. One
CALL is outstanding per connection at a time. The CALLs the native CSMS makes toward the "charger" are never
carried out and never reach the real charger: `local_answer` (sans-I/O) answers GetVariables from the
device-model cache the proxies keep in Redis and every other action by `CSMS_CALL_POLICY` (a refusal), and
each such exchange is handed to `record`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import msgpack
import redis.asyncio as redis
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State
from websockets.typing import Subprotocol

from proxy import config
from proxy.redis_client import UNAVAILABLE
from proxy.server import ProxySettings
from proxy.state_store import device_model_key
from shadow.divergence import Answer
from shadow.reference_csms import ReferenceCsms
from translators import rpc, schemas
from translators.dispatch import STATION_ACTIONS_201
from translators.rpc import V201, InternalError, NotSupported, OcppError
from translators.state import DeviceModel, variable_key

log = logging.getLogger("cutover.shadow.replay")

OCPP201 = Subprotocol("ocpp2.0.1")

DeviceModelLoader = Callable[[str], Awaitable[DeviceModel | None]]
Recorder = Callable[[str, str, dict[str, Any]], Awaitable[None]]

# StatusInfoType (reasonCode: at most 20 characters) on every refusal, so the native CSMS's operator sees why.
REPLAY_STATUS_INFO: dict[str, str] = {
    "reasonCode": "ShadowReplay",
    "additionalInfo": "a shadow replaying this charging station's traffic: requests from the CSMS are answered "
    "here and never carried out",
}
NO_DEVICE_MODEL: dict[str, str] = {
    "reasonCode": "NoDeviceModel",
    "additionalInfo": "the shadow holds no device model of this station (no NotifyReport cached yet)",
}
NOT_CACHED: dict[str, str] = {
    "reasonCode": "NotCached",
    "additionalInfo": "the shadow's device-model cache holds only the Actual values the station reported",
}
REPORT_INCOMPLETE: dict[str, str] = {
    "reasonCode": "ReportIncomplete",
    "additionalInfo": "the station's NotifyReport is still arriving: not yet known whether it has this variable",
}

# The CALLRESULT the charger's stand-in gives each CSMS-initiated 2.0.1 action it cannot carry out (OCPP 2.0.1
# Part 2, by functional block): the status that says "not done, nothing will follow" in each response's enum.
CSMS_CALL_POLICY: dict[str, dict[str, Any]] = {
    "CancelReservation": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # H
    "CertificateSigned": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # A
    "ChangeAvailability": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # G
    "ClearCache": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # C
    "ClearChargingProfile": {"status": "Unknown", "statusInfo": REPLAY_STATUS_INFO},  # K
    "ClearDisplayMessage": {"status": "Unknown", "statusInfo": REPLAY_STATUS_INFO},  # O
    "CustomerInformation": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # N
    "DataTransfer": {"status": "UnknownVendorId", "statusInfo": REPLAY_STATUS_INFO},  # P
    "DeleteCertificate": {"status": "Failed", "statusInfo": REPLAY_STATUS_INFO},  # M
    "GetBaseReport": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # B: no NotifyReport follows
    "GetChargingProfiles": {"status": "NoProfiles", "statusInfo": REPLAY_STATUS_INFO},  # K
    "GetCompositeSchedule": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # K
    "GetDisplayMessages": {"status": "Unknown", "statusInfo": REPLAY_STATUS_INFO},  # O
    "GetInstalledCertificateIds": {"status": "NotFound", "statusInfo": REPLAY_STATUS_INFO},  # M
    "GetLog": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # N
    "GetMonitoringReport": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # N
    "GetReport": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # B
    "InstallCertificate": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # M
    "PublishFirmware": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # L
    "RequestStartTransaction": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # F
    "RequestStopTransaction": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # F
    "ReserveNow": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # H
    "Reset": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # B
    "SendLocalList": {"status": "Failed", "statusInfo": REPLAY_STATUS_INFO},  # D
    "SetChargingProfile": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # K
    "SetDisplayMessage": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # O
    "SetMonitoringBase": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # N
    "SetMonitoringLevel": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # N
    "SetNetworkProfile": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # B
    "TriggerMessage": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # F
    "UnlockConnector": {"status": "UnlockFailed", "statusInfo": REPLAY_STATUS_INFO},  # F
    "UnpublishFirmware": {"status": "NoFirmware"},  # L (its response has no statusInfo)
    "UpdateFirmware": {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO},  # L
}
# CSMS-initiated actions whose response has no status to refuse with: a CALLERROR NotSupported, so the native
# CSMS is not told something the shadow cannot know (the charger's local list version, its message queue) or
# did not do (show a cost).
NOT_SUPPORTED_CALLS = frozenset({"CostUpdated", "GetLocalListVersion", "GetTransactionStatus"})


def rejected_set_variables(payload: dict[str, Any]) -> dict[str, Any]:
    """B05: every SetVariableData item Rejected."""
    return {
        "setVariableResult": [
            echo_attribute_type(
                item,
                {
                    "attributeStatus": "Rejected",
                    "component": item["component"],
                    "variable": item["variable"],
                    "attributeStatusInfo": REPLAY_STATUS_INFO,
                },
            )
            for item in payload["setVariableData"]
        ]
    }


def rejected_set_variable_monitoring(payload: dict[str, Any]) -> dict[str, Any]:
    """N04: every SetMonitoringData item Rejected."""
    results = []
    for item in payload["setMonitoringData"]:
        result = {key: item[key] for key in ("id", "type", "severity", "component", "variable") if key in item}
        results.append(result | {"status": "Rejected", "statusInfo": REPLAY_STATUS_INFO})
    return {"setMonitoringResult": results}


def rejected_clear_variable_monitoring(payload: dict[str, Any]) -> dict[str, Any]:
    """N06: every monitor id Rejected."""
    return {
        "clearMonitoringResult": [
            {"status": "Rejected", "id": monitor_id, "statusInfo": REPLAY_STATUS_INFO} for monitor_id in payload["id"]
        ]
    }


# CSMS-initiated actions answered item by item (their responses carry one status per requested item).
PER_ITEM_POLICY: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "ClearVariableMonitoring": rejected_clear_variable_monitoring,  # N06
    "SetVariableMonitoring": rejected_set_variable_monitoring,  # N04
    "SetVariables": rejected_set_variables,  # B05
}


def echo_attribute_type(item: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    if "attributeType" in item:
        result["attributeType"] = item["attributeType"]
    return result


def get_variables_result(payload: dict[str, Any], model: DeviceModel | None) -> dict[str, Any]:
    """B06 from the device-model cache: the Actual value the station reported, or why there is none.

    UnknownComponent / UnknownVariable only when the station's report is complete; while it is not, or when
    nothing is cached, the item is Rejected with a statusInfo saying so.
    """
    reported = {} if model is None else model.variables
    results = []
    for item in payload["getVariableData"]:
        result = echo_attribute_type(item, {"component": item["component"], "variable": item["variable"]})
        entry = reported.get(variable_key(item["component"], item["variable"]))
        if not reported:
            result |= {"attributeStatus": "Rejected", "attributeStatusInfo": NO_DEVICE_MODEL}
        elif entry is None and not (model is not None and model.complete):
            result |= {"attributeStatus": "Rejected", "attributeStatusInfo": REPORT_INCOMPLETE}
        elif entry is None:
            component = variable_key(item["component"], {"name": ""})  # "Component[instance]@evse/"
            known = any(key.startswith(component) for key in reported)
            result["attributeStatus"] = "UnknownVariable" if known else "UnknownComponent"
        elif item.get("attributeType", "Actual") != "Actual" or "value" not in entry:
            result |= {"attributeStatus": "Rejected", "attributeStatusInfo": NOT_CACHED}
        else:
            result |= {"attributeStatus": "Accepted", "attributeValue": entry["value"]}
        results.append(result)
    return {"getVariableResult": results}


def local_answer(known: schemas.Schemas, action: str, payload: dict[str, Any], model: DeviceModel | None) -> Answer:
    """What the charger's stand-in answers a CALL from the native CSMS: a CALLRESULT valid against the OCA
    response schema, or the CALLERROR a charging station owes (a schema-invalid request, an action it does not
    take, one it cannot answer without carrying it out)."""
    try:
        known.validate(V201, "request", action, payload)  # an unknown action: NotImplemented
        if action == "GetVariables":
            result = get_variables_result(payload, model)
        elif action in CSMS_CALL_POLICY:
            result = copy.deepcopy(CSMS_CALL_POLICY[action])
        elif action in PER_ITEM_POLICY:
            result = PER_ITEM_POLICY[action](payload)
        elif action in NOT_SUPPORTED_CALLS:
            raise NotSupported(f"{action}: the shadow of a charging station cannot answer it without carrying it out")
        elif action in STATION_ACTIONS_201:
            raise NotSupported(f"{action} is sent by a charging station to a CSMS, not by a CSMS")
        else:
            raise InternalError(f"{action}: no local answer declared")  # a gap in the tables above
    except OcppError as error:
        return Answer(error=error.code_for(V201), description=error.description)
    try:
        known.validate(V201, "response", action, result)
    except OcppError as error:  # our bug, or a cached value the schema does not admit
        log.error("replay_invalid_local_answer action=%s error=%s", action, error.description)
        return Answer(error=InternalError.code, description=f"{action}: the shadow could not form a valid answer")
    return Answer(payload=result)


def redacted(url: str) -> str:
    """The URL without user information (a station password in ws://id:password@host must not reach a log)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def redis_device_models(client: redis.Redis, timeout: float = 0.5) -> DeviceModelLoader:
    """A `device_model` loader reading the cache the proxies keep in Redis; None when absent or unreadable."""

    async def load(station_id: str) -> DeviceModel | None:
        try:
            raw: Any = await asyncio.wait_for(client.get(device_model_key(station_id)), timeout)
        except UNAVAILABLE as exc:
            log.warning("replay_device_model_unavailable station_id=%s error=%r", station_id, exc)
            return None
        if raw is None:
            return None
        try:
            return DeviceModel.loads(raw)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            log.warning("replay_device_model_unreadable station_id=%s error=%r", station_id, exc)
            return None

    return load


async def log_exchange(station_id: str, action: str, exchange: dict[str, Any]) -> None:
    """A `record` that logs each CSMS-initiated exchange (request and the answer given)."""
    answer = exchange.get("result", exchange.get("error"))
    log.info("replay_csms_call station_id=%s action=%s answer=%s", station_id, action, answer)


class ReplayBackend:
    """A shadow backend replaying each charger's 2.0.1 CALLs to an external 2.0.1 CSMS (see the module doc)."""

    def __init__(
        self,
        url_template: str,
        *,
        call_timeout: float = 10.0,
        device_model: DeviceModelLoader | None = None,
        record: Recorder | None = None,
    ) -> None:
        config.ws_url(url_template)  # ValueError saying what a template must be
        if call_timeout <= 0:
            raise ValueError(f"call_timeout: {call_timeout}, expected seconds > 0")
        # The station URL rule the proxy applies to the legacy URL: `{station}` replaced, else appended.
        self.urls = ProxySettings(legacy_url=url_template)
        self.call_timeout = call_timeout
        self.device_model = device_model
        self.record: Recorder = record if record is not None else self.keep
        self.recorded: list[tuple[str, str, dict[str, Any]]] = []
        self.schemas = schemas.load()
        # Fed the same CALLs, its answers ignored: it rebuilds the transactions from the TransactionEvents.
        self.reference = ReferenceCsms(frozenset(), boot_policy="accept")
        self.links: dict[str, CsmsLink] = {}

    def url_for(self, station_id: str) -> str:
        return self.urls.legacy_url_for(station_id)

    async def answer(self, station_id: str, action: str, payload: dict[str, Any], now: str) -> Answer | None:
        """The native CSMS's answer to the charger's CALL; None if it gave none within `call_timeout` (or
        could not be reached, or answered with garbage). A schema-invalid CALL is not sent: it gets the
        CALLERROR a 2.0.1 CSMS owes it."""
        try:
            self.schemas.validate(V201, "request", action, payload)
        except OcppError as error:
            return Answer(error=error.code_for(V201), description=error.description)
        with contextlib.suppress(OcppError):
            self.reference.handle(station_id, action, payload, now)
        link = self.links.get(station_id)
        if link is None:
            link = self.links[station_id] = CsmsLink(self, station_id)
        return await link.call(action, payload)

    def transactions(self, station_id: str) -> list[Any]:
        return list(self.reference.transactions(station_id))

    async def close(self) -> None:
        """Close every station's connection to the native CSMS."""
        links, self.links = list(self.links.values()), {}
        await asyncio.gather(*(link.close() for link in links))

    async def keep(self, station_id: str, action: str, exchange: dict[str, Any]) -> None:
        self.recorded.append((station_id, action, exchange))


class CsmsLink:
    """One station's connection to the native CSMS: at most one CALL outstanding; reopened after a drop."""

    def __init__(self, backend: ReplayBackend, station_id: str) -> None:
        self.backend = backend
        self.station_id = station_id
        self.url = backend.url_for(station_id)
        self.lock = asyncio.Lock()
        self.connection: ClientConnection | None = None
        self.readers: set[asyncio.Task[None]] = set()
        self.waiting: tuple[str, str, asyncio.Future[Answer | None]] | None = None  # message id, action, answer
        self.closing = False

    async def call(self, action: str, payload: dict[str, Any]) -> Answer | None:
        async with self.lock:
            try:
                async with asyncio.timeout(self.backend.call_timeout):
                    return await self.exchange(action, payload)
            except TimeoutError:
                log.info(
                    "replay_csms_timeout station_id=%s action=%s timeout_s=%s; recorded as a shadow_timeout",
                    self.station_id, action, self.backend.call_timeout,
                )  # fmt: skip
                return None
            finally:
                self.waiting = None

    async def exchange(self, action: str, payload: dict[str, Any]) -> Answer | None:
        message_id = str(uuid.uuid4())
        frame = rpc.dump_call(message_id, action, payload)
        for _ in range(2):  # a connection found closed before the CALL went out is reopened once
            connection = await self.open()
            if connection is None:
                return None
            answered: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()
            self.waiting = (message_id, action, answered)
            try:
                await connection.send(frame, text=True)
            except websockets.ConnectionClosed:
                continue
            return await answered
        return None

    async def open(self) -> ClientConnection | None:
        """The open connection, opening one if there is none (None, logged, if the native CSMS refuses)."""
        if self.connection is not None and self.connection.state is State.OPEN:
            return self.connection
        try:
            connection = await connect(
                self.url, subprotocols=[OCPP201], open_timeout=self.backend.call_timeout, compression=None
            )
        except (OSError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
            log.warning(
                "replay_csms_unreachable station_id=%s url=%s error=%r; the CALL counts as unanswered, "
                "check --shadow-url and that the CSMS accepts this station",
                self.station_id, redacted(self.url), exc,
            )  # fmt: skip
            return None
        if connection.subprotocol != OCPP201:
            log.warning(
                "replay_csms_subprotocol station_id=%s url=%s subprotocol=%s; the CSMS must select ocpp2.0.1",
                self.station_id, redacted(self.url), connection.subprotocol,
            )  # fmt: skip
            await connection.close()
            return None
        log.info("replay_csms_connected station_id=%s url=%s", self.station_id, redacted(self.url))
        self.connection = connection
        reader = asyncio.create_task(self.read(connection), name=f"replay-{self.station_id}")
        self.readers.add(reader)
        reader.add_done_callback(self.readers.discard)
        return connection

    async def read(self, connection: ClientConnection) -> None:
        try:
            async for raw in connection:
                try:
                    await self.on_frame(connection, raw)
                except Exception:  # our bug: keep the connection, the CALL waiting times out
                    log.exception("replay_frame_failed station_id=%s", self.station_id)
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self.closing:
                log.info(
                    "replay_csms_closed station_id=%s code=%s; reopened at the station's next CALL",
                    self.station_id, connection.close_code,
                )  # fmt: skip
            if self.connection is connection:
                self.resolve(None)

    async def on_frame(self, connection: ClientConnection, raw: str | bytes) -> None:
        try:
            message = rpc.parse(raw)
        except rpc.FrameError as exc:
            log.warning(
                "replay_csms_garbage station_id=%s error=%s frame=%r; a CALL waiting gets no answer",
                self.station_id, exc.error.code, raw[:120],
            )  # fmt: skip
            if exc.is_call:
                await self.send(connection, rpc.dump_error(exc.message_id, exc.error, V201))
            if self.waiting is not None and exc.message_id in (self.waiting[0], rpc.UNREADABLE_ID):
                self.resolve(None)
            return
        if isinstance(message, rpc.Call):
            await self.on_csms_call(connection, message)
        elif self.waiting is None or message.message_id != self.waiting[0]:
            log.info("replay_csms_late_answer station_id=%s message_id=%s", self.station_id, message.message_id)
        elif isinstance(message, rpc.CallError):
            self.resolve(Answer(error=message.code, description=message.description))
        else:
            action = self.waiting[1]
            try:
                self.backend.schemas.validate(V201, "response", action, message.payload)
            except OcppError as error:  # compared as it is: the divergence records show what is off
                log.warning("replay_csms_invalid_answer station_id=%s error=%s", self.station_id, error.description)
            self.resolve(Answer(payload=message.payload))

    async def on_csms_call(self, connection: ClientConnection, call: rpc.Call) -> None:
        """Answer a CALL of the native CSMS here, record the exchange, and never pass it on."""
        model = None
        if call.action == "GetVariables" and self.backend.device_model is not None:
            try:
                model = await self.backend.device_model(self.station_id)
            except Exception:
                log.exception("replay_device_model_failed station_id=%s", self.station_id)
        answer = local_answer(self.backend.schemas, call.action, call.payload, model)
        try:  # recorded before it is sent: once the CSMS has its answer, the record exists
            await self.backend.record(self.station_id, call.action, {"request": call.payload} | answer.as_record())
        except Exception:
            log.exception("replay_record_failed station_id=%s action=%s", self.station_id, call.action)
        if answer.payload is not None:
            frame = rpc.dump_result(call.message_id, answer.payload)
        else:
            frame = rpc.dump_error_code(call.message_id, answer.error or InternalError.code, answer.description, {})
        await self.send(connection, frame)

    @staticmethod
    async def send(connection: ClientConnection, frame: bytes) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await connection.send(frame, text=True)

    def resolve(self, answer: Answer | None) -> None:
        if self.waiting is not None and not self.waiting[2].done():
            self.waiting[2].set_result(answer)

    async def close(self) -> None:
        self.closing = True
        if self.connection is not None:
            await self.connection.close()
        await asyncio.gather(*self.readers, return_exceptions=True)
