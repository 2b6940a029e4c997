"""A reference OCPP 1.6 central system (the "legacy" CSMS) that records everything it is told.

Built on the `ocpp` library's schema-strict `ChargePoint`, so a frame that breaks the OCPP 1.6 JSON schemas
is answered with a CALLERROR instead of being recorded. Records keep payloads as they crossed the wire
(camelCase keys).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import orjson
from ocpp.exceptions import TypeConstraintViolationError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from peers._wire import CALL, RecordingConnection, call_wire, parse_frame, spell_for_16, utc_now, wait_for

__all__ = ["LegacyCsms", "LegacyFaults", "LegacyTransaction", "wait_for"]

LOGGER = logging.getLogger("peers.legacy_csms")


@dataclass
class LegacyTransaction:
    """One OCPP 1.6 transaction as the legacy CSMS saw it; values are the raw wire values."""

    transaction_id: int
    station_id: str
    connector_id: int
    id_tag: str
    meter_start: int
    start_timestamp: str
    reservation_id: int | None = None
    meter_stop: int | None = None
    stop_timestamp: str | None = None
    stop_reason: str | None = None
    stop_id_tag: str | None = None
    meter_values: list[dict[str, Any]] = field(default_factory=list)
    transaction_data: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        return self.meter_stop is not None


@dataclass
class LegacyFaults:
    """Misbehaviour of the legacy CSMS toward the CALLs stations send it (for the chaos suite).

    Each CALL of an action in `actions` (all actions when empty) is first delayed by a latency drawn from
    `latency` (seconds, min and max), then, by draw, answered with an InternalError CALLERROR
    (`error_rate`; nothing is recorded), or its connection is cut without an answer (`drop_rate`): half of
    the cuts before the CALL is handled, half after it was handled and recorded (its answer is lost).
    """

    latency: tuple[float, float] = (0.0, 0.0)
    error_rate: float = 0.0
    drop_rate: float = 0.0
    actions: frozenset[str] = frozenset()
    seed: int | None = None
    errors: int = 0
    drops_before: int = 0
    drops_after: int = 0
    # per action: CALLs handled, recorded and then cut before their answer went out
    unanswered: dict[str, int] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.seed is not None:
            self.rng.seed(self.seed)

    def applies_to(self, action: str) -> bool:
        return not self.actions or action in self.actions


class LegacyCsms:
    """An OCPP 1.6-J central system on a websockets server; every station is one `ocpp` ChargePoint."""

    def __init__(
        self,
        accepted_id_tags: Iterable[str] = ("TAG0001", "TAG0002", "TAG0003"),
        heartbeat_interval: int = 300,
        boot_status: str = "Accepted",
        *,
        response_timeout: float = 10.0,
    ) -> None:
        self.accepted_id_tags = set(accepted_id_tags)
        self.response_timeout = response_timeout
        self.heartbeat_interval = heartbeat_interval
        self.boot_status = boot_status
        self.port = 0
        self.url = ""
        self.transactions: dict[int, LegacyTransaction] = {}
        self.boots: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, list[dict[str, Any]]] = {}
        self.meter_values: dict[str, list[dict[str, Any]]] = {}
        self.data_transfers: list[tuple[str, dict[str, Any]]] = []
        self.diagnostics_statuses: dict[str, list[str]] = {}
        self.firmware_statuses: dict[str, list[str]] = {}
        # transaction ids a second StopTransaction.req arrived for (the first one's values are kept)
        self.duplicate_stops: list[int] = []
        self.received: list[tuple[str, Any]] = []
        self.sent: list[tuple[str, Any]] = []
        self.connected: set[str] = set()
        # per station: the Authorization header and client certificate of its last connection
        self.handshakes: dict[str, dict[str, Any]] = {}
        self._sessions: dict[str, _LegacySession] = {}
        self._next_transaction_id = 1
        self._server: Server | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.faults: LegacyFaults | None = None

    async def __aenter__(self) -> LegacyCsms:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        """Listen on `host:port` (0 picks a free port) for `ocpp1.6` websocket connections (wss with `tls`)."""
        if self._server is not None:
            raise RuntimeError(f"legacy CSMS already listening on port {self.port}")
        self._server = await serve(
            self._serve_station, host, port, subprotocols=[Subprotocol("ocpp1.6")], ssl=tls
        )
        self.port = self._server.sockets[0].getsockname()[1]
        url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self.url = f"{'wss' if tls else 'ws'}://{'localhost' if tls else url_host}:{self.port}/ocpp"

    async def stop(self) -> None:
        """Stop listening and close every station connection; `start(port=self.port)` may follow."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), 5)
        except TimeoutError:
            LOGGER.warning("legacy_csms_stop_timeout: connections still open are abandoned")

    async def kill(self) -> None:
        """Stop as a crash would: every station connection reset, no closing handshake; `start()` may follow.

        What was recorded stays (the legacy's database survives its process).
        """
        for session in list(self._sessions.values()):
            _reset(session.connection)
        await self.stop()

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 10.0,  # noqa: ASYNC109 - the interface tests call
        *,
        what: str | None = None,
    ) -> None:
        """Return once `predicate()` is true, polling every 20 ms; raise `TimeoutError` after `timeout` s."""
        await wait_for(predicate, timeout, what=what)

    def is_accepted(self, id_tag: str) -> bool:
        # OCPP 1.6: an idTag is a CiString20Type, and CiStrings compare case-insensitively
        return id_tag.casefold() in {tag.casefold() for tag in self.accepted_id_tags}

    def id_tag_info(self, id_tag: str) -> dict[str, str]:
        return {"status": "Accepted" if self.is_accepted(id_tag) else "Invalid"}

    def open_transactions(self, station_id: str | None = None) -> list[LegacyTransaction]:
        """Return the transactions not yet stopped, optionally for one station."""
        return [
            tx
            for tx in self.transactions.values()
            if not tx.ended and (station_id is None or tx.station_id == station_id)
        ]

    # CSMS-initiated calls: each returns the response payload as received.

    async def remote_start(
        self, station_id: str, id_tag: str, connector_id: int | None = None
    ) -> dict[str, Any]:
        return await self._call(
            station_id, call.RemoteStartTransaction(id_tag=id_tag, connector_id=connector_id)
        )

    async def remote_stop(self, station_id: str, transaction_id: int) -> dict[str, Any]:
        return await self._call(station_id, call.RemoteStopTransaction(transaction_id=transaction_id))

    async def get_configuration(self, station_id: str, keys: list[str] | None = None) -> dict[str, Any]:
        return await self._call(station_id, call.GetConfiguration(key=keys))

    async def change_configuration(self, station_id: str, key: str, value: str) -> dict[str, Any]:
        return await self._call(station_id, call.ChangeConfiguration(key=key, value=value))

    async def reset(self, station_id: str, type: str) -> dict[str, Any]:
        return await self._call(station_id, call.Reset(type=type))

    async def change_availability(self, station_id: str, connector_id: int, type: str) -> dict[str, Any]:
        return await self._call(station_id, call.ChangeAvailability(connector_id=connector_id, type=type))

    async def unlock_connector(self, station_id: str, connector_id: int) -> dict[str, Any]:
        return await self._call(station_id, call.UnlockConnector(connector_id=connector_id))

    async def trigger_message(
        self, station_id: str, requested_message: str, connector_id: int | None = None
    ) -> dict[str, Any]:
        return await self._call(
            station_id,
            call.TriggerMessage(requested_message=requested_message, connector_id=connector_id),
        )

    async def clear_cache(self, station_id: str) -> dict[str, Any]:
        return await self._call(station_id, call.ClearCache())

    async def data_transfer(
        self, station_id: str, vendor_id: str, message_id: str | None = None, data: str | None = None
    ) -> dict[str, Any]:
        return await self._call(
            station_id, call.DataTransfer(vendor_id=vendor_id, message_id=message_id, data=data)
        )

    async def disconnect(self, station_id: str) -> None:
        """Close the station's websocket (the station may reconnect)."""
        await self._session(station_id).connection.close()

    async def _call(self, station_id: str, payload: Any) -> dict[str, Any]:
        return await call_wire(self._session(station_id), payload)

    def _session(self, station_id: str) -> _LegacySession:
        session = self._sessions.get(station_id)
        if session is None or not session.connection.open:
            raise ConnectionError(f"station {station_id!r} is not connected to the legacy CSMS")
        return session

    def _assign_transaction_id(self) -> int:
        transaction_id = self._next_transaction_id
        self._next_transaction_id += 1
        return transaction_id

    async def _serve_station(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        path = ws.request.path.split("?", 1)[0]
        station_id = unquote(path.rsplit("/", 1)[-1])
        if not station_id:
            await ws.close(1008, "the URL path must end with the station id")
            return
        ssl_object = ws.transport.get_extra_info("ssl_object")
        self.handshakes[station_id] = {
            "authorization": ws.request.headers.get("Authorization"),
            "client_certificate": ssl_object.getpeercert() if ssl_object is not None else None,
        }
        connection = RecordingConnection(
            ws,
            record_in=lambda frame: self.received.append((station_id, frame)),
            record_out=lambda frame: self.sent.append((station_id, frame)),
        )
        session = _LegacySession(station_id, connection, self)
        previous = self._sessions.get(station_id)
        self._sessions[station_id] = session
        self.connected.add(station_id)
        LOGGER.info("station_connected station_id=%s", station_id)
        if previous is not None:
            # a station reconnecting replaces its old connection
            closing = asyncio.create_task(previous.connection.close())
            self._background.add(closing)
            closing.add_done_callback(self._background.discard)
        try:
            await session.serve()
        finally:
            if self._sessions.get(station_id) is session:
                del self._sessions[station_id]
                self.connected.discard(station_id)
            LOGGER.info("station_disconnected station_id=%s", station_id)


class _LegacySession(ChargePoint):
    """One station's OCPP 1.6 connection to the legacy CSMS."""

    def __init__(self, station_id: str, connection: RecordingConnection, csms: LegacyCsms) -> None:
        super().__init__(station_id, connection, response_timeout=csms.response_timeout)
        self.connection = connection
        self.csms = csms
        self._drop_reply = False  # LegacyFaults: cut the connection instead of sending the next answer

    async def serve(self) -> None:
        try:
            while True:
                raw = await self.connection.recv()
                if self.csms.faults is None or await self._misbehave(self.csms.faults, raw):
                    await self.route_message(raw)
        except ConnectionClosed:
            pass

    async def _misbehave(self, faults: LegacyFaults, raw: str | bytes) -> bool:
        """Apply `faults` to one received frame; whether it is still to be handled normally."""
        frame = parse_frame(raw)
        if not (isinstance(frame, list) and len(frame) == 4 and frame[0] == CALL and faults.applies_to(frame[2])):
            return True
        low, high = faults.latency
        if high > 0:
            await asyncio.sleep(faults.rng.uniform(low, high))
        draw = faults.rng.random()
        if draw < faults.error_rate:
            faults.errors += 1
            error = [4, frame[1], "InternalError", "legacy CSMS fault injection", {}]
            await self.connection.send(orjson.dumps(error).decode())
            return False
        if draw < faults.error_rate + faults.drop_rate:
            if faults.rng.random() < 0.5:
                faults.drops_before += 1
                _reset(self.connection)
                return False
            faults.drops_after += 1
            faults.unanswered[frame[2]] = faults.unanswered.get(frame[2], 0) + 1
            self._drop_reply = True
        return True

    async def _send(self, message: str) -> None:
        if self._drop_reply:
            self._drop_reply = False
            _reset(self.connection)
            return
        await super()._send(spell_for_16(message))

    def _payload(self, message_id: str) -> dict[str, Any]:
        """The wire payload of the CALL being handled, after checking its timestamps."""
        payload = self.connection.call_payload(message_id)
        _require_timestamps(payload)
        return payload

    @on(Action.boot_notification)
    def on_boot_notification(self, call_unique_id: str, **_: Any) -> call_result.BootNotification:
        self.csms.boots[self.id] = self._payload(call_unique_id)
        return call_result.BootNotification(
            current_time=utc_now(), interval=self.csms.heartbeat_interval, status=self.csms.boot_status
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=utc_now())

    @on(Action.status_notification)
    def on_status_notification(self, call_unique_id: str, **_: Any) -> call_result.StatusNotification:
        self.csms.statuses.setdefault(self.id, []).append(self._payload(call_unique_id))
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str, **_: Any) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=self.csms.id_tag_info(id_tag))

    @on(Action.start_transaction)
    def on_start_transaction(self, call_unique_id: str, **_: Any) -> call_result.StartTransaction:
        payload = self._payload(call_unique_id)
        transaction_id = self.csms._assign_transaction_id()
        self.csms.transactions[transaction_id] = LegacyTransaction(
            transaction_id=transaction_id,
            station_id=self.id,
            connector_id=payload["connectorId"],
            id_tag=payload["idTag"],
            meter_start=payload["meterStart"],
            start_timestamp=payload["timestamp"],
            reservation_id=payload.get("reservationId"),
        )
        return call_result.StartTransaction(
            transaction_id=transaction_id, id_tag_info=self.csms.id_tag_info(payload["idTag"])
        )

    @on(Action.meter_values)
    def on_meter_values(self, call_unique_id: str, **_: Any) -> call_result.MeterValues:
        payload = self._payload(call_unique_id)
        self.csms.meter_values.setdefault(self.id, []).append(payload)
        transaction = self.csms.transactions.get(payload.get("transactionId", -1))
        if transaction is not None:
            transaction.meter_values.extend(payload["meterValue"])
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    def on_stop_transaction(self, call_unique_id: str, **_: Any) -> call_result.StopTransaction:
        payload = self._payload(call_unique_id)
        transaction = self.csms.transactions.get(payload["transactionId"])
        if transaction is not None and transaction.ended:
            self.csms.duplicate_stops.append(transaction.transaction_id)
        elif transaction is not None:
            transaction.meter_stop = payload["meterStop"]
            transaction.stop_timestamp = payload["timestamp"]
            transaction.stop_reason = payload.get("reason")
            transaction.stop_id_tag = payload.get("idTag")
            transaction.transaction_data = payload.get("transactionData", [])
        id_tag = payload.get("idTag")
        return call_result.StopTransaction(
            id_tag_info=self.csms.id_tag_info(id_tag) if id_tag is not None else None
        )

    @on(Action.data_transfer)
    def on_data_transfer(self, call_unique_id: str, **_: Any) -> call_result.DataTransfer:
        self.csms.data_transfers.append((self.id, self._payload(call_unique_id)))
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status_notification(
        self, status: str, **_: Any
    ) -> call_result.DiagnosticsStatusNotification:
        self.csms.diagnostics_statuses.setdefault(self.id, []).append(status)
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_firmware_status_notification(
        self, status: str, **_: Any
    ) -> call_result.FirmwareStatusNotification:
        self.csms.firmware_statuses.setdefault(self.id, []).append(status)
        return call_result.FirmwareStatusNotification()


def _reset(connection: RecordingConnection) -> None:
    """Abort the connection with a TCP reset, as a crashed process or a dropped link would."""
    transport = connection.ws.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _require_timestamps(value: Any, path: str = "") -> None:
    """Raise TypeConstraintViolation for a `timestamp` that is not a date-time with a UTC offset.

    The `ocpp` library validates without a format checker, so `"format": "date-time"` is not enforced.
    """
    if isinstance(value, list):
        for index, item in enumerate(value):
            _require_timestamps(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key == "timestamp" and not _is_date_time(item):
                raise TypeConstraintViolationError(
                    details={"cause": f"{where}: {item!r} is not a date-time with a UTC offset"}
                )
            _require_timestamps(item, where)


def _is_date_time(value: Any) -> bool:
    if not isinstance(value, str) or "T" not in value:
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False
