"""A simple simulated OCPP 1.6-J charge point, for exercising the legacy CSMS directly.

Built on the `ocpp` library's schema-strict `ChargePoint`; the payloads it returns and records are the wire
payloads (camelCase keys).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

from peers._wire import Credentials, RecordingPeer, call_wire, run_logged, spell_for_16, utc_now

__all__ = ["Charger16"]

LOGGER = logging.getLogger("peers.charger16")


class Charger16(RecordingPeer, ChargePoint):
    """An OCPP 1.6 charge point with one register per connector; remote start/stop really start/stop."""

    def __init__(
        self,
        station_id: str,
        csms_url: str,
        *,
        connectors: int = 1,
        vendor: str = "ocpp-cutover",
        model: str = "SIM-16",
        response_timeout: float = 10,
        credentials: Credentials | None = None,
    ) -> None:
        super().__init__(station_id, None, response_timeout=response_timeout)
        self.credentials = credentials
        self.station_id = station_id
        self.url = csms_url.rstrip("/") + "/" + quote(station_id, safe="")
        self.connectors = connectors
        self.vendor = vendor
        self.model = model
        # key → (value, readonly), OCPP 1.6 §9.1
        self.configuration: dict[str, tuple[str, bool]] = {
            "HeartbeatInterval": ("300", False),
            "MeterValueSampleInterval": ("60", False),
            "ConnectionTimeOut": ("120", False),
            "AuthorizeRemoteTxRequests": ("false", False),
            "LocalPreAuthorize": ("false", False),
            "NumberOfConnectors": (str(connectors), True),
            "GetConfigurationMaxKeys": ("50", True),
        }
        self.registers_wh: dict[int, int] = {connector: 0 for connector in range(1, connectors + 1)}
        # transactionId → connectorId for the transactions this charge point has open
        self.open_transactions: dict[int, int] = {}
        self.received_calls: list[tuple[str, dict[str, Any]]] = []
        self.frames_in: list[Any] = []
        self.frames_out: list[Any] = []
        self._serve_task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.open

    async def connect(self) -> None:
        """Open the websocket (subprotocol `ocpp1.6`) and start answering the CSMS."""
        if self.connected:
            return
        await self.close()  # the previous connection's reader, if any, must be gone first
        await self._start(self.url, "ocpp1.6")

    async def close(self) -> None:
        """Close the websocket and stop answering."""
        await self._drop_connection()

    async def _send(self, message: str) -> None:
        await super()._send(spell_for_16(message))


    async def _call(self, payload: Any) -> dict[str, Any]:
        return await call_wire(self, payload)

    async def boot(self) -> dict[str, Any]:
        return await self._call(
            call.BootNotification(charge_point_vendor=self.vendor, charge_point_model=self.model)
        )

    async def heartbeat(self) -> dict[str, Any]:
        return await self._call(call.Heartbeat())

    async def status(self, connector_id: int, status: str, error_code: str = "NoError") -> dict[str, Any]:
        return await self._call(
            call.StatusNotification(
                connector_id=connector_id, error_code=error_code, status=status, timestamp=utc_now()
            )
        )

    async def authorize(self, id_tag: str) -> dict[str, Any]:
        return await self._call(call.Authorize(id_tag=id_tag))

    async def start_transaction(self, connector_id: int, id_tag: str, meter_start: int | None = None) -> int:
        """Send StartTransaction.req and return the transactionId the CSMS assigned."""
        if meter_start is None:
            meter_start = self.registers_wh[connector_id]
        self.registers_wh[connector_id] = meter_start
        response = await self._call(
            call.StartTransaction(
                connector_id=connector_id, id_tag=id_tag, meter_start=meter_start, timestamp=utc_now()
            )
        )
        transaction_id: int = response["transactionId"]
        self.open_transactions[transaction_id] = connector_id
        return transaction_id

    async def meter_values(
        self, connector_id: int, wh: int, transaction_id: int | None = None
    ) -> dict[str, Any]:
        self.registers_wh[connector_id] = wh
        sample = {
            "timestamp": utc_now(),
            "sampled_value": [
                {
                    "value": str(wh),
                    "context": "Sample.Periodic",
                    "measurand": "Energy.Active.Import.Register",
                    "unit": "Wh",
                }
            ],
        }
        return await self._call(
            call.MeterValues(connector_id=connector_id, meter_value=[sample], transaction_id=transaction_id)
        )

    async def stop_transaction(
        self,
        transaction_id: int,
        meter_stop: int | None = None,
        reason: str | None = None,
        id_tag: str | None = None,
    ) -> dict[str, Any]:
        connector_id = self.open_transactions.pop(transaction_id, None)
        if meter_stop is None:
            meter_stop = self.registers_wh[connector_id or 1]
        return await self._call(
            call.StopTransaction(
                transaction_id=transaction_id,
                meter_stop=meter_stop,
                timestamp=utc_now(),
                reason=reason,
                id_tag=id_tag,
            )
        )

    @on(Action.remote_start_transaction)
    def on_remote_start_transaction(
        self, id_tag: str, connector_id: int | None = None, **_: Any
    ) -> call_result.RemoteStartTransaction:
        busy = set(self.open_transactions.values())
        free = [c for c in self.registers_wh if c not in busy]
        accepted = connector_id in free if connector_id is not None else bool(free)
        return call_result.RemoteStartTransaction(status="Accepted" if accepted else "Rejected")

    @after(Action.remote_start_transaction)
    async def after_remote_start_transaction(
        self, id_tag: str, connector_id: int | None = None, **_: Any
    ) -> None:
        busy = set(self.open_transactions.values())
        free = [c for c in self.registers_wh if c not in busy]
        if connector_id is None and free:
            connector_id = free[0]
        if connector_id in free:
            await run_logged(
                self.start_transaction(connector_id, id_tag),
                LOGGER,
                "remote_start_failed",
                station_id=self.station_id,
            )

    @on(Action.remote_stop_transaction)
    def on_remote_stop_transaction(self, transaction_id: int, **_: Any) -> call_result.RemoteStopTransaction:
        known = transaction_id in self.open_transactions
        return call_result.RemoteStopTransaction(status="Accepted" if known else "Rejected")

    @after(Action.remote_stop_transaction)
    async def after_remote_stop_transaction(self, transaction_id: int, **_: Any) -> None:
        if transaction_id in self.open_transactions:
            await run_logged(
                self.stop_transaction(transaction_id, reason="Remote"),
                LOGGER,
                "remote_stop_failed",
                station_id=self.station_id,
            )

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> call_result.GetConfiguration:
        wanted = key or list(self.configuration)
        known = [k for k in wanted if k in self.configuration]
        return call_result.GetConfiguration(
            configuration_key=[
                {"key": k, "value": self.configuration[k][0], "readonly": self.configuration[k][1]}
                for k in known
            ],
            unknown_key=[k for k in wanted if k not in self.configuration] or None,
        )

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str, **_: Any) -> call_result.ChangeConfiguration:
        if key not in self.configuration:
            return call_result.ChangeConfiguration(status="NotSupported")
        if self.configuration[key][1]:
            return call_result.ChangeConfiguration(status="Rejected")
        self.configuration[key] = (value, False)
        return call_result.ChangeConfiguration(status="Accepted")
