"""A bare relay on `picows` (`python -m bench.servers relay-picows`), for the measured choice of the charger-side
WebSocket library: the same job as the `websockets` relay (each charger connection gets its own upstream one,
frames copied both ways, never parsed), on a library whose frames are handled in callbacks, not coroutines.
"""

from __future__ import annotations

import asyncio
from typing import Any

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_connect,
    ws_create_server,
)

SUBPROTOCOLS = ("ocpp2.0.1", "ocpp1.6")


class _Upstream(WSListener):  # type: ignore[misc]
    def __init__(self, charger: WSTransport) -> None:
        self.charger = charger

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.charger.send(WSMsgType.TEXT, frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            self.charger.send_close(WSCloseCode.GOING_AWAY)
            self.charger.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.charger.disconnect()


class _Charger(WSListener):  # type: ignore[misc]
    def __init__(self, upstream_url: str, subprotocol: str) -> None:
        self.upstream_url, self.subprotocol = upstream_url, subprotocol
        self.upstream: WSTransport | None = None
        self.queued: list[bytes] = []
        self.task: asyncio.Task[None] | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.task = asyncio.get_running_loop().create_task(self._connect(transport))

    async def _connect(self, charger: WSTransport) -> None:
        try:
            upstream, _ = await ws_connect(
                lambda: _Upstream(charger), self.upstream_url,
                extra_headers={"Sec-WebSocket-Protocol": self.subprotocol}, max_frame_size=256 * 1024,
            )  # fmt: skip
        except (OSError, TimeoutError, ValueError):
            charger.disconnect()
            return
        self.upstream = upstream
        for payload in self.queued:
            upstream.send(WSMsgType.TEXT, payload)
        self.queued.clear()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            payload = frame.get_payload_as_bytes()
            if self.upstream is None:
                self.queued.append(payload)
            else:
                self.upstream.send(WSMsgType.TEXT, payload)
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif frame.msg_type == WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.upstream is not None:
            self.upstream.disconnect()
        elif self.task is not None:
            self.task.cancel()


async def serve(upstream: str) -> Any:
    """A listening picows relay toward `upstream` (a ws:// base URL); the asyncio Server."""

    def accept(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
        offered = [p.strip() for p in (request.headers.get("Sec-WebSocket-Protocol") or "").split(",")]
        chosen = next((p for p in SUBPROTOCOLS if p in offered), "ocpp1.6")
        response = WSUpgradeResponse.create_101_response(extra_headers={"Sec-WebSocket-Protocol": chosen})
        path = request.path.decode() if isinstance(request.path, bytes) else request.path
        return WSUpgradeResponseWithListener(response, _Charger(upstream + path, chosen))

    return await ws_create_server(accept, "127.0.0.1", 0, max_frame_size=256 * 1024)
