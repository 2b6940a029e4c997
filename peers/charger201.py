"""A simulated OCPP 2.0.1 charging station: transactions, an offline queue, and a tiny device model.

Built on the `ocpp` library's schema-strict `ChargePoint`, so every frame it sends is valid against the
OCPP 2.0.1 JSON schemas and a response that is not is raised as an error. The payloads it returns and
records are the wire payloads (camelCase keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from ocpp.exceptions import OCPPError
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action
from websockets.exceptions import InvalidHandshake

from peers._wire import Credentials, RecordingPeer, call_wire, run_logged, utc_now

__all__ = ["DEVICE_MODEL", "AuthorizationRejected", "Charger201"]

LOGGER = logging.getLogger("peers.charger201")

# (component, variable) → Actual value; names from OCPP 2.0.1 Part 2 Appendix 3 (controller components)
DEVICE_MODEL: dict[tuple[str, str], str] = {
    ("OCPPCommCtrlr", "HeartbeatInterval"): "300",
    ("OCPPCommCtrlr", "ResetRetries"): "2",
    ("SampledDataCtrlr", "TxUpdatedInterval"): "60",
    ("SampledDataCtrlr", "TxStartedMeasurands"): "Energy.Active.Import.Register",
    ("SampledDataCtrlr", "TxUpdatedMeasurands"): "Energy.Active.Import.Register",
    ("SampledDataCtrlr", "TxEndedMeasurands"): "Energy.Active.Import.Register",
    ("AlignedDataCtrlr", "Interval"): "0",
    ("TxCtrlr", "EVConnectionTimeOut"): "120",
    ("TxCtrlr", "StopTxOnInvalidId"): "true",
    ("TxCtrlr", "StopTxOnEVSideDisconnect"): "true",
    ("TxCtrlr", "TxStartPoint"): "EVConnected,Authorized",
    ("TxCtrlr", "TxStopPoint"): "EVConnected,Authorized",
    ("AuthCtrlr", "LocalPreAuthorize"): "false",
    ("AuthCtrlr", "LocalAuthorizeOffline"): "false",
    ("AuthCtrlr", "AuthorizeRemoteStart"): "true",
    ("AuthCacheCtrlr", "Enabled"): "false",
    ("ChargingStation", "AvailabilityState"): "Available",
    ("DeviceDataCtrlr", "ItemsPerMessage"): "10",
    ("DeviceDataCtrlr", "BytesPerMessage"): "65536",
    ("SmartChargingCtrlr", "Available"): "true",
    ("SmartChargingCtrlr", "RateUnit"): "A,W",
    ("ReservationCtrlr", "Available"): "true",
    ("LocalAuthListCtrlr", "Available"): "false",
}
# Variable characteristics beyond the data type, as a NotifyReport describes them.
MAX_LIMITS: dict[tuple[str, str], int] = {
    ("SampledDataCtrlr", "TxUpdatedMeasurands"): 8,
    ("SampledDataCtrlr", "TxEndedMeasurands"): 8,
}
# NotifyReport reportData items per part (the station's own ItemsPerMessage for reports).
REPORT_ITEMS_PER_PART = 8
READ_ONLY_VARIABLES = frozenset(
    {
        ("TxCtrlr", "StopTxOnEVSideDisconnect"),
        ("ChargingStation", "AvailabilityState"),
        ("DeviceDataCtrlr", "ItemsPerMessage"),
        ("DeviceDataCtrlr", "BytesPerMessage"),
        ("SmartChargingCtrlr", "Available"),
        ("SmartChargingCtrlr", "RateUnit"),
        ("ReservationCtrlr", "Available"),
        ("LocalAuthListCtrlr", "Available"),
    }
)
INTEGER_VARIABLES = frozenset(
    {
        ("OCPPCommCtrlr", "HeartbeatInterval"),
        ("OCPPCommCtrlr", "ResetRetries"),
        ("SampledDataCtrlr", "TxUpdatedInterval"),
        ("AlignedDataCtrlr", "Interval"),
        ("TxCtrlr", "EVConnectionTimeOut"),
    }
)
BOOLEAN_VARIABLES = frozenset(
    {
        ("TxCtrlr", "StopTxOnInvalidId"),
        ("AuthCtrlr", "LocalPreAuthorize"),
        ("AuthCtrlr", "LocalAuthorizeOffline"),
        ("AuthCtrlr", "AuthorizeRemoteStart"),
        ("AuthCacheCtrlr", "Enabled"),
    }
)

# run_session: the triggerReason that goes with the stoppedReason a session ends with
STOP_TRIGGER_FOR_REASON = {
    "Local": "StopAuthorized",
    "Remote": "RemoteStop",
    "DeAuthorized": "Deauthorized",
    "EVDisconnected": "EVCommunicationLost",
    "EnergyLimitReached": "EnergyLimitReached",
    "TimeLimitReached": "TimeLimitReached",
    "ImmediateReset": "ResetCommand",
}

TRIGGERABLE_MESSAGES = frozenset(
    {"BootNotification", "Heartbeat", "StatusNotification", "MeterValues", "TransactionEvent"}
)

REGISTER = "Energy.Active.Import.Register"
CONNECTOR_ID = 1  # every simulated EVSE has one connector


class AuthorizationRejected(Exception):
    """The CSMS did not accept the idToken a session was started with."""

    def __init__(self, id_token: str, status: str, transaction_id: str | None) -> None:
        ended = f"; transaction {transaction_id} ended DeAuthorized" if transaction_id else ""
        super().__init__(f"idToken {id_token!r} answered {status}{ended}")
        self.id_token = id_token
        self.status = status
        self.transaction_id = transaction_id


@dataclass
class _Transaction:
    transaction_id: str
    evse_id: int
    id_token_type: str
    record: dict[str, Any]
    seq_no: int = 0


@dataclass
class _QueuedEvent:
    payload: Any  # call.TransactionEvent
    response: dict[str, Any] | None = None
    error: OCPPError | None = None
    attempts: int = 0  # answered with a CALLERROR so far


class Charger201(RecordingPeer, ChargePoint):
    """An OCPP 2.0.1 charging station with `evses` EVSEs of one connector each.

    TransactionEvents are delivered in order: while the station is offline (or one fails to get a response)
    they wait in a queue with `offline: true` and their original timestamps until `reconnect()`.
    """

    def __init__(
        self,
        station_id: str,
        csms_url: str,
        *,
        evses: int = 1,
        vendor_name: str = "ocpp-cutover",
        model: str = "SIM-201",
        serial_number: str | None = None,
        meter_start_wh: int = 0,
        response_timeout: float = 10,
        auto_reconnect: bool = False,
        reconnect_delay: float = 0.1,
        reconnect_max_delay: float = 2.0,
        id_token_type: str = "ISO14443",
        credentials: Credentials | None = None,
        message_attempts: int = 1,
        message_attempt_interval: float = 1.0,
    ) -> None:
        super().__init__(station_id, None, response_timeout=response_timeout)
        self.credentials = credentials
        self.station_id = station_id
        self.url = csms_url.rstrip("/") + "/" + quote(station_id, safe="")
        self.evses = evses
        self.vendor_name = vendor_name
        self.model = model
        self.serial_number = serial_number
        self.auto_reconnect = auto_reconnect
        self.reconnect_delay = reconnect_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.id_token_type = id_token_type
        # OCPP 2.0.1 OCPPCommCtrlr.MessageAttempts/MessageAttemptInterval (instance TransactionEvent): how
        # often a TransactionEvent answered with a CALLERROR is sent, waiting interval × attempt in between.
        self.message_attempts = message_attempts
        self.message_attempt_interval = message_attempt_interval
        self.variables: dict[tuple[str, str], str] = dict(DEVICE_MODEL)
        self.registers_wh: dict[int, int] = dict.fromkeys(range(1, evses + 1), meter_start_wh)
        self.connector_status: dict[int, str] = dict.fromkeys(range(1, evses + 1), "Available")
        self.boot_response: dict[str, Any] | None = None
        self.connects = 0
        self.booted_on = 0  # the value of `connects` when a BootNotification was last answered
        self.transactions: dict[str, dict[str, Any]] = {}
        self.tx_responses: list[dict[str, Any]] = []
        self.call_errors: list[tuple[str, OCPPError]] = []
        self.received_calls: list[tuple[str, dict[str, Any]]] = []
        self.frames_in: list[Any] = []
        self.frames_out: list[Any] = []
        self._active: dict[int, _Transaction] = {}
        self._remote_starts: dict[int, _Transaction] = {}
        self._queue: deque[_QueuedEvent] = deque()
        self._flush_lock = asyncio.Lock()
        self._serve_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._closing = False

    # Connection

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.open

    @property
    def queued(self) -> int:
        """How many TransactionEvents wait to be delivered."""
        return len(self._queue)

    def queued_transaction_ids(self) -> set[str]:
        """The transactionIds of the TransactionEvents waiting to be delivered."""
        return {queued.payload.transaction_info["transaction_id"] for queued in self._queue}

    def transaction_id(self, evse_id: int = 1) -> str | None:
        """Return the id of the transaction open on `evse_id`, if any."""
        tx = self._active.get(evse_id)
        return tx.transaction_id if tx else None

    async def connect(self) -> None:
        """Open the websocket (subprotocol `ocpp2.0.1`) and start answering the CSMS; no BootNotification."""
        self._closing = False
        if self.connected:
            return
        await self._drop_connection()
        await self._start(self.url, "ocpp2.0.1")
        self.connects += 1
        LOGGER.info("charger_connected station_id=%s url=%s", self.station_id, self.url)

    async def close(self) -> None:
        """Close the websocket and stop reconnecting; queued TransactionEvents stay queued."""
        self._closing = True
        if self._reconnect_task is not None and self._reconnect_task is not asyncio.current_task():
            self._reconnect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect_task
        self._reconnect_task = None
        await self._drop_connection()

    async def reconnect(
        self,
        retries: int | None = 10,
        delay: float = 0.1,
        max_delay: float = 2.0,
        boot_reason: str = "PowerUp",
    ) -> dict[str, Any]:
        """Connect (retrying with backoff), boot, deliver queued TransactionEvents, report connector status.

        Returns the BootNotification response. `retries=None` retries forever.
        """
        attempt = 0
        while True:
            try:
                await self.connect()
                break
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                attempt += 1
                if retries is not None and attempt > retries:
                    raise ConnectionError(
                        f"{self.url}: no connection after {attempt} attempts: {exc}"
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_delay)
        response = await self.boot(boot_reason)
        await self._flush()
        for evse_id, connector_status in self.connector_status.items():
            await self._report_status(evse_id, connector_status)
        return response

    def _on_connection_lost(self) -> None:
        LOGGER.info("charger_disconnected station_id=%s", self.station_id)
        if not self.auto_reconnect or self._closing:
            return
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.create_task(self._reconnect_until_connected())

    async def _reconnect_until_connected(self) -> None:
        delay = self.reconnect_delay
        while not self._closing:
            await asyncio.sleep(delay)
            try:
                await self.reconnect(retries=None, delay=delay, max_delay=self.reconnect_max_delay)
            except (ConnectionError, TimeoutError, OCPPError) as exc:
                LOGGER.warning("charger_reconnect_failed station_id=%s error=%r", self.station_id, exc)
            if self.connected and self.booted_on == self.connects:
                return  # connected is not enough: a BootNotification that timed out is sent again
            delay = min(delay * 2, self.reconnect_max_delay)

    async def _call(self, payload: Any) -> dict[str, Any]:
        return await call_wire(self, payload)

    # Messages outside transactions

    async def boot(self, reason: str = "PowerUp") -> dict[str, Any]:
        station = {"vendor_name": self.vendor_name, "model": self.model}
        if self.serial_number is not None:
            station["serial_number"] = self.serial_number
        self.boot_response = await self._call(call.BootNotification(charging_station=station, reason=reason))
        self.booted_on = self.connects
        return self.boot_response

    async def heartbeat(self) -> dict[str, Any]:
        return await self._call(call.Heartbeat())

    async def status(self, evse_id: int, connector_id: int, connector_status: str) -> dict[str, Any]:
        self.connector_status[evse_id] = connector_status
        return await self._call(
            call.StatusNotification(
                timestamp=utc_now(),
                connector_status=connector_status,
                evse_id=evse_id,
                connector_id=connector_id,
            )
        )

    async def _report_status(self, evse_id: int, connector_status: str) -> None:
        """Send a StatusNotification if connected; a station that is offline reports it after reconnecting.

        Never raises: a status the CSMS refused must not keep a transaction from starting or ending.
        """
        self.connector_status[evse_id] = connector_status
        if self.connected:
            try:
                await self.status(evse_id, CONNECTOR_ID, connector_status)
            except (ConnectionError, TimeoutError):
                pass
            except OCPPError as exc:
                self.call_errors.append(("StatusNotification", exc))

    async def authorize(self, id_token: str, type: str = "ISO14443") -> dict[str, Any]:
        return await self._call(call.Authorize(id_token={"id_token": id_token, "type": type}))

    async def meter_values(self, evse_id: int, wh: int, context: str = "Sample.Periodic") -> dict[str, Any]:
        return await self._call(
            call.MeterValues(evse_id=evse_id, meter_value=[_register_value(utc_now(), wh, context)])
        )

    # Transactions

    async def start_transaction(
        self,
        evse_id: int = 1,
        id_token: str | None = "TAG0001",
        *,
        trigger_reason: str = "Authorized",
        remote_start_id: int | None = None,
    ) -> str:
        """Occupy the EVSE and send TransactionEvent Started; return the new transactionId.

        Without an idToken the transaction starts on the cable (triggerReason CablePluggedIn).
        """
        token = None if id_token is None else {"id_token": id_token, "type": self.id_token_type}
        if id_token is None and trigger_reason == "Authorized":
            trigger_reason = "CablePluggedIn"
        tx = self._open_transaction(evse_id, token, remote_start_id)
        await self._begin(tx, trigger_reason)
        return tx.transaction_id

    async def authorize_transaction(self, evse_id: int, id_token: str) -> dict[str, Any]:
        """Send TransactionEvent Updated (Authorized) with the idToken for the open transaction."""
        tx = self._transaction_on(evse_id)
        tx.record["id_token"] = id_token
        token = {"id_token": id_token, "type": self.id_token_type}
        return await self._send_event(self._event(tx, "Updated", "Authorized", id_token=token))

    async def charging(self, evse_id: int) -> dict[str, Any]:
        """Send TransactionEvent Updated (ChargingStateChanged) with chargingState Charging."""
        tx = self._transaction_on(evse_id)
        return await self._send_event(
            self._event(tx, "Updated", "ChargingStateChanged", charging_state="Charging")
        )

    async def sample(self, evse_id: int, add_wh: int) -> dict[str, Any]:
        """Advance the register by `add_wh` and send it in TransactionEvent Updated (MeterValuePeriodic)."""
        tx = self._transaction_on(evse_id)
        self.registers_wh[evse_id] += add_wh
        tx.record["samples_wh"].append(self.registers_wh[evse_id])
        return await self._send_event(
            self._event(tx, "Updated", "MeterValuePeriodic", context="Sample.Periodic")
        )

    async def stop_transaction(
        self,
        evse_id: int = 1,
        stopped_reason: str = "Local",
        trigger_reason: str = "StopAuthorized",
        id_token: str | None = None,
    ) -> dict[str, Any]:
        """Send TransactionEvent Ended with the closing register, then free the EVSE.

        Returns the TransactionEventResponse, or `{}` when the event was queued (station offline).
        """
        tx = self._transaction_on(evse_id)
        del self._active[evse_id]
        token = None if id_token is None else {"id_token": id_token, "type": self.id_token_type}
        event = self._event(
            tx,
            "Ended",
            trigger_reason,
            stopped_reason=stopped_reason,
            id_token=token,
            context="Transaction.End",
        )
        tx.record.update(
            meter_stop_wh=self.registers_wh[evse_id], ended=event.timestamp, stopped_reason=stopped_reason
        )
        try:
            return await self._send_event(event)
        finally:
            await self._report_status(evse_id, "Available")

    async def run_session(
        self,
        evse_id: int = 1,
        id_token: str = "TAG0001",
        samples: int = 3,
        wh_per_sample: int = 1500,
        interval: float = 0.05,
        authorize_first: bool = True,
        stopped_reason: str = "Local",
    ) -> str:
        """Run one whole charging session and return its transactionId.

        Raises `AuthorizationRejected` when the CSMS refuses the idToken (after ending the transaction with
        DeAuthorized if it was already started on the cable).
        """
        if authorize_first:
            status = _id_token_status(await self.authorize(id_token))
            if status != "Accepted":
                raise AuthorizationRejected(id_token, status, None)
            transaction_id = await self.start_transaction(evse_id, id_token)
        else:
            transaction_id = await self.start_transaction(evse_id, None)
            status = _id_token_status(await self.authorize(id_token))
            if status != "Accepted":
                await self.stop_transaction(evse_id, "DeAuthorized", "Deauthorized")
                raise AuthorizationRejected(id_token, status, transaction_id)
            await self.authorize_transaction(evse_id, id_token)
        await self.charging(evse_id)
        for _ in range(samples):
            await asyncio.sleep(interval)
            await self.sample(evse_id, wh_per_sample)
        trigger_reason = STOP_TRIGGER_FOR_REASON.get(stopped_reason, "AbnormalCondition")
        stop_token = id_token if trigger_reason == "StopAuthorized" else None
        await self.stop_transaction(evse_id, stopped_reason, trigger_reason, stop_token)
        return transaction_id

    def _transaction_on(self, evse_id: int) -> _Transaction:
        tx = self._active.get(evse_id)
        if tx is None:
            raise LookupError(f"{self.station_id}: no transaction is open on EVSE {evse_id}")
        return tx

    def _open_transaction(
        self, evse_id: int, id_token: dict[str, str] | None, remote_start_id: int | None
    ) -> _Transaction:
        if evse_id not in self.registers_wh:
            raise ValueError(f"{self.station_id}: EVSE {evse_id} does not exist (EVSEs 1..{self.evses})")
        if evse_id in self._active:
            busy = self._active[evse_id].transaction_id
            raise RuntimeError(f"{self.station_id}: EVSE {evse_id} already has transaction {busy}")
        transaction_id = str(uuid.uuid4())
        record: dict[str, Any] = {
            "evse_id": evse_id,
            "id_token": None if id_token is None else id_token["id_token"],
            "meter_start_wh": self.registers_wh[evse_id],
            "meter_stop_wh": None,
            "started": None,
            "ended": None,
            "stopped_reason": None,
            "remote_start_id": remote_start_id,
            "samples_wh": [],
            "rejected_seq_nos": [],  # events the CSMS answered with a CALLERROR (not delivered again)
        }
        token_type = self.id_token_type if id_token is None else id_token["type"]
        tx = _Transaction(transaction_id, evse_id, token_type, record)
        self.transactions[transaction_id] = record
        self._active[evse_id] = tx
        return tx

    async def _begin(self, tx: _Transaction, trigger_reason: str) -> dict[str, Any]:
        await self._report_status(tx.evse_id, "Occupied")
        token = tx.record["id_token"]
        event = self._event(
            tx,
            "Started",
            trigger_reason,
            charging_state="EVConnected",
            id_token=None if token is None else {"id_token": token, "type": tx.id_token_type},
            context="Transaction.Begin",
            remote_start_id=tx.record["remote_start_id"],
        )
        tx.record["started"] = event.timestamp
        return await self._send_event(event)

    def _event(
        self,
        tx: _Transaction,
        event_type: str,
        trigger_reason: str,
        *,
        charging_state: str | None = None,
        stopped_reason: str | None = None,
        remote_start_id: int | None = None,
        id_token: dict[str, str] | None = None,
        context: str | None = None,
    ) -> Any:
        timestamp = utc_now()
        info: dict[str, Any] = {"transaction_id": tx.transaction_id}
        for key, value in (
            ("charging_state", charging_state),
            ("stopped_reason", stopped_reason),
            ("remote_start_id", remote_start_id),
        ):
            if value is not None:
                info[key] = value
        event = call.TransactionEvent(
            event_type=event_type,
            timestamp=timestamp,
            trigger_reason=trigger_reason,
            seq_no=tx.seq_no,
            transaction_info=info,
            meter_value=None
            if context is None
            else [_register_value(timestamp, self.registers_wh[tx.evse_id], context)],
            evse={"id": tx.evse_id, "connector_id": CONNECTOR_ID},
            id_token=id_token,
            offline=None if self.connected else True,
        )
        tx.seq_no += 1
        return event

    async def _send_event(self, event: Any) -> dict[str, Any]:
        """Deliver `event` behind any queued ones; return its response, or `{}` if it stays queued."""
        queued = _QueuedEvent(event)
        self._queue.append(queued)
        await self._flush()
        if queued.error is not None:
            raise queued.error
        return queued.response or {}

    async def _flush(self) -> None:
        async with self._flush_lock:
            while self._queue and self.connected:
                queued = self._queue[0]
                try:
                    response = await self._call(queued.payload)
                except (ConnectionError, TimeoutError) as exc:
                    # delivery unknown: send it again later, as an event that happened while offline
                    queued.payload = replace(queued.payload, offline=True)
                    LOGGER.info("transaction_event_queued station_id=%s reason=%r", self.station_id, exc)
                    return
                except OCPPError as exc:
                    queued.attempts += 1
                    if queued.attempts < self.message_attempts:
                        LOGGER.info("transaction_event_retry station_id=%s error=%s", self.station_id, exc)
                        await asyncio.sleep(self.message_attempt_interval * queued.attempts)
                        continue
                    self._queue.popleft()
                    queued.error = exc
                    self.call_errors.append(("TransactionEvent", exc))
                    rejected = self.transactions.get(queued.payload.transaction_info["transaction_id"])
                    if rejected is not None:
                        rejected["rejected_seq_nos"].append(queued.payload.seq_no)
                    continue
                self._queue.popleft()
                queued.response = response
                self.tx_responses.append(response)

    # CSMS-initiated messages

    @on(Action.request_start_transaction)
    def on_request_start_transaction(
        self, id_token: dict[str, Any], remote_start_id: int, evse_id: int | None = None, **_: Any
    ) -> call_result.RequestStartTransaction:
        free = [evse for evse in self.registers_wh if evse not in self._active]
        if evse_id is None:
            evse_id = next(iter(free), None)
        if evse_id not in free:
            return call_result.RequestStartTransaction(status="Rejected")
        tx = self._open_transaction(evse_id, id_token, remote_start_id)
        self._remote_starts[remote_start_id] = tx
        return call_result.RequestStartTransaction(status="Accepted")

    @after(Action.request_start_transaction)
    async def after_request_start_transaction(self, remote_start_id: int, **_: Any) -> None:
        tx = self._remote_starts.pop(remote_start_id, None)
        if tx is not None:
            await run_logged(
                self._begin(tx, "RemoteStart"), LOGGER, "remote_start_failed", station_id=self.id
            )

    @on(Action.request_stop_transaction)
    def on_request_stop_transaction(
        self, transaction_id: str, **_: Any
    ) -> call_result.RequestStopTransaction:
        known = any(tx.transaction_id == transaction_id for tx in self._active.values())
        return call_result.RequestStopTransaction(status="Accepted" if known else "Rejected")

    @after(Action.request_stop_transaction)
    async def after_request_stop_transaction(self, transaction_id: str, **_: Any) -> None:
        for evse_id, tx in list(self._active.items()):
            if tx.transaction_id == transaction_id:
                await run_logged(
                    self.stop_transaction(evse_id, "Remote", "RemoteStop"),
                    LOGGER,
                    "remote_stop_failed",
                    station_id=self.id,
                )

    @on(Action.get_variables)
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> call_result.GetVariables:
        return call_result.GetVariables(
            get_variable_result=[self._get_variable(item) for item in get_variable_data]
        )

    @on(Action.set_variables)
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> call_result.SetVariables:
        return call_result.SetVariables(
            set_variable_result=[self._set_variable(item) for item in set_variable_data]
        )

    def _lookup_status(self, item: dict[str, Any]) -> tuple[tuple[str, str], str | None]:
        """Return the device-model key of a get/set item and why it cannot be used (None if it can)."""
        key = (item["component"]["name"], item["variable"]["name"])
        if key not in self.variables:
            known_component = any(component == key[0] for component, _ in self.variables)
            return key, "UnknownVariable" if known_component else "UnknownComponent"
        if item.get("attribute_type", "Actual") != "Actual":
            return key, "NotSupportedAttributeType"
        return key, None

    def _get_variable(self, item: dict[str, Any]) -> dict[str, Any]:
        key, problem = self._lookup_status(item)
        result = {"component": item["component"], "variable": item["variable"], "attribute_status": problem}
        if "attribute_type" in item:
            result["attribute_type"] = item["attribute_type"]
        if problem is None:
            result.update(attribute_status="Accepted", attribute_value=self.variables[key])
        return result

    def _set_variable(self, item: dict[str, Any]) -> dict[str, Any]:
        key, problem = self._lookup_status(item)
        value = item["attribute_value"]
        if problem is None and not _valid_value(key, value):
            problem = "Rejected"
        result = {"component": item["component"], "variable": item["variable"], "attribute_status": problem}
        if "attribute_type" in item:
            result["attribute_type"] = item["attribute_type"]
        if problem is None:
            self.variables[key] = value
            result["attribute_status"] = "Accepted"
        return result

    @on(Action.reset)
    def on_reset(self, **_: Any) -> call_result.Reset:
        return call_result.Reset(status="Accepted")

    @on(Action.change_availability)
    def on_change_availability(self, **_: Any) -> call_result.ChangeAvailability:
        return call_result.ChangeAvailability(status="Accepted")

    @on(Action.unlock_connector)
    def on_unlock_connector(self, **_: Any) -> call_result.UnlockConnector:
        return call_result.UnlockConnector(status="Unlocked")

    @on(Action.clear_cache)
    def on_clear_cache(self, **_: Any) -> call_result.ClearCache:
        return call_result.ClearCache(status="Accepted")

    @on(Action.data_transfer)
    def on_data_transfer(self, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.trigger_message)
    def on_trigger_message(
        self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> call_result.TriggerMessage:
        if requested_message not in TRIGGERABLE_MESSAGES:
            return call_result.TriggerMessage(status="NotImplemented")
        evse_ids = self._triggered_evses(evse)
        if not evse_ids or (
            requested_message == "TransactionEvent" and not any(e in self._active for e in evse_ids)
        ):
            return call_result.TriggerMessage(status="Rejected")
        return call_result.TriggerMessage(status="Accepted")

    @on(Action.get_base_report)
    def on_get_base_report(self, report_base: str, **_: Any) -> call_result.GetBaseReport:
        return call_result.GetBaseReport(status="Accepted")

    @after(Action.get_base_report)
    async def after_get_base_report(self, request_id: int, **_: Any) -> None:
        await run_logged(self._send_report(request_id), LOGGER, "notify_report_failed", station_id=self.id)

    def report_data(self) -> list[dict[str, Any]]:
        """The device model as NotifyReport reportData: controller variables, then EVSEs and connectors."""
        items = []
        for (component, variable), value in self.variables.items():
            key = (component, variable)
            data_type = (
                "integer" if key in INTEGER_VARIABLES
                else "boolean" if key in BOOLEAN_VARIABLES or value in ("true", "false")
                else "MemberList" if key in MAX_LIMITS else "string"
            )  # fmt: skip
            characteristics: dict[str, Any] = {"data_type": data_type, "supports_monitoring": False}
            if key in MAX_LIMITS:
                characteristics["max_limit"] = MAX_LIMITS[key]
            items.append({
                "component": {"name": component},
                "variable": {"name": variable},
                "variable_attribute": [{
                    "type": "Actual", "value": value,
                    "mutability": "ReadOnly" if key in READ_ONLY_VARIABLES else "ReadWrite",
                }],
                "variable_characteristics": characteristics,
            })  # fmt: skip
        for evse_id in range(1, self.evses + 1):
            evse_components: list[dict[str, Any]] = [
                {"name": "EVSE", "evse": {"id": evse_id}},
                {"name": "Connector", "evse": {"id": evse_id, "connector_id": CONNECTOR_ID}},
            ]
            for evse_component in evse_components:
                items.append({
                    "component": evse_component,
                    "variable": {"name": "AvailabilityState"},
                    "variable_attribute": [{"type": "Actual", "value": "Available", "mutability": "ReadOnly"}],
                    "variable_characteristics": {"data_type": "OptionList", "supports_monitoring": False},
                })  # fmt: skip
        return items

    async def _send_report(self, request_id: int) -> None:
        items = self.report_data()
        parts = [items[n : n + REPORT_ITEMS_PER_PART] for n in range(0, len(items), REPORT_ITEMS_PER_PART)]
        for seq_no, part in enumerate(parts):
            await self._call(
                call.NotifyReport(
                    request_id=request_id, generated_at=utc_now(), seq_no=seq_no, report_data=part,
                    tbc=seq_no < len(parts) - 1,
                )
            )  # fmt: skip

    @after(Action.trigger_message)
    async def after_trigger_message(
        self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> None:
        evse_ids = self._triggered_evses(evse)
        if requested_message not in TRIGGERABLE_MESSAGES or not evse_ids:
            return
        await run_logged(
            self._send_triggered(requested_message, evse_ids),
            LOGGER,
            "trigger_message_failed",
            station_id=self.id,
            requested_message=requested_message,
        )

    def _triggered_evses(self, evse: dict[str, Any] | None) -> list[int]:
        if evse is None:
            return list(self.registers_wh)
        return [evse["id"]] if evse["id"] in self.registers_wh else []

    async def _send_triggered(self, requested_message: str, evse_ids: list[int]) -> None:
        if requested_message == "BootNotification":
            await self.boot("Triggered")
        elif requested_message == "Heartbeat":
            await self.heartbeat()
        for evse_id in evse_ids:
            if requested_message == "StatusNotification":
                await self.status(evse_id, CONNECTOR_ID, self.connector_status[evse_id])
            elif requested_message == "MeterValues":
                await self.meter_values(evse_id, self.registers_wh[evse_id], context="Trigger")
            elif requested_message == "TransactionEvent" and evse_id in self._active:
                tx = self._active[evse_id]
                await self._send_event(self._event(tx, "Updated", "Trigger", context="Trigger"))


def _register_value(timestamp: str, wh: int, context: str) -> dict[str, Any]:
    """A MeterValueType (snake_case, as the `ocpp` library takes it) holding the energy register."""
    sampled = {"value": wh, "context": context, "measurand": REGISTER, "unit_of_measure": {"unit": "Wh"}}
    return {"timestamp": timestamp, "sampled_value": [sampled]}


def _id_token_status(response: dict[str, Any]) -> str:
    status: str = response.get("idTokenInfo", {}).get("status", "Unknown")
    return status


def _valid_value(key: tuple[str, str], value: str) -> bool:
    if key in READ_ONLY_VARIABLES:
        return False
    if key in INTEGER_VARIABLES:
        return value.lstrip("-").isdigit()
    if key in BOOLEAN_VARIABLES:
        return value in ("true", "false")
    return True
