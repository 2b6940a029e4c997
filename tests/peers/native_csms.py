"""A tiny OCPP 2.0.1 CSMS made with the `ocpp` library, independent of the code under test."""

from __future__ import annotations

from typing import Any

from ocpp.charge_point import snake_to_camel_case
from ocpp.exceptions import GenericError
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from peers._wire import utc_now


class NativeCsms:
    """Answers everything with Accepted and keeps each TransactionEvent payload (camelCase) in order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.statuses: list[tuple[int, str]] = []
        self.boots: list[str] = []
        self.meter_values: list[dict[str, Any]] = []
        self.sessions: dict[str, _NativeSession] = {}
        self.lose_next_event = False
        self.refuse_next_event = False
        self.boot_status = "Accepted"
        self.url = ""

    async def serve(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        session = _NativeSession(ws.request.path.rsplit("/", 1)[-1], ws, self)
        self.sessions[session.id] = session
        try:
            await session.start()
        except ConnectionClosed:
            pass


class _NativeSession(ChargePoint):
    def __init__(self, station_id: str, ws: ServerConnection, csms: NativeCsms) -> None:
        super().__init__(station_id, ws, response_timeout=5)
        self.csms = csms

    @on(Action.boot_notification)
    def on_boot(self, reason: str, **_: Any) -> call_result.BootNotification:
        self.csms.boots.append(reason)
        return call_result.BootNotification(current_time=utc_now(), interval=300, status=self.csms.boot_status)

    @on(Action.status_notification)
    def on_status(self, evse_id: int, connector_status: str, **_: Any) -> call_result.StatusNotification:
        self.csms.statuses.append((evse_id, connector_status))
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_token: dict[str, str], **_: Any) -> call_result.Authorize:
        status = "Accepted" if id_token["id_token"].startswith("TAG") else "Invalid"
        return call_result.Authorize(id_token_info={"status": status})

    @on(Action.meter_values)
    def on_meter_values(self, **kwargs: Any) -> call_result.MeterValues:
        self.csms.meter_values.append(kwargs)
        return call_result.MeterValues()

    @on(Action.transaction_event)
    async def on_transaction_event(self, **kwargs: Any) -> call_result.TransactionEvent:
        if self.csms.refuse_next_event:
            self.csms.refuse_next_event = False
            # OCPP 2.0.1 Part 4 §4.3 RpcFrameworkError, a code the `ocpp` library has no class for; set on
            # the instance because a new OCPPError subclass would teach the library the code
            refusal = GenericError(description="refused for the test")
            refusal.code = "RpcFrameworkError"
            raise refusal
        if self.csms.lose_next_event:
            self.csms.lose_next_event = False
            await self._connection.close()  # the station never sees a response
        self.csms.events.append(snake_to_camel_case(kwargs))
        return call_result.TransactionEvent(id_token_info={"status": "Accepted"})
