"""OCPP-J plumbing shared by the reference peers: frame recording and calls that return wire payloads.

The peers speak through the `ocpp` library's `ChargePoint`, which hands handlers snake_case keyword
arguments and returns responses as snake_case dataclasses. The peers' records and return values use the
payloads exactly as they crossed the wire instead: `RecordingConnection` keeps every CALL payload and
CALLRESULT payload it receives by message id, so nothing goes through a camelCase ⇄ snake_case round trip.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson
from ocpp.exceptions import GenericError, UnknownCallErrorCodeError
from websockets.asyncio.client import connect
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.typing import Subprotocol

CALL, CALLRESULT, CALLERROR = 2, 3, 4


# OCPP-J 1.6 errata §5.1/§5.2 keep these misspelled codes on purpose; the `ocpp` library sends the 2.0.1
# spellings on every version.
ERROR_CODE_16 = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}


def spell_for_16(message: str) -> str:
    """Return `message` with a CALLERROR's code spelled the OCPP-J 1.6 way."""
    frame = parse_frame(message)
    if isinstance(frame, list) and len(frame) == 5 and frame[0] == CALLERROR and frame[2] in ERROR_CODE_16:
        frame[2] = ERROR_CODE_16[frame[2]]
        return orjson.dumps(frame).decode()
    return message


class UnlistedCallError(GenericError):
    """A CALLERROR whose code the `ocpp` library has no class for (2.0.1 RpcFrameworkError, for one).

    A subclass of `GenericError`, not of `OCPPError` directly: the library maps codes to classes by
    walking `OCPPError.__subclasses__()`, so a direct subclass would change how it reads every CALLERROR.
    """

    def __init__(self, code: str, description: str = "", details: dict[str, Any] | None = None) -> None:
        super().__init__(description, details)
        self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.description} {self.details}"


def utc_now() -> str:
    """Return the current UTC time as an RFC 3339 timestamp with milliseconds and a `Z` suffix."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_frame(raw: str | bytes) -> Any:
    """Return the parsed JSON of `raw`, or `raw` itself when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


class RecordingConnection:
    """A websocket as the `ocpp` library wants it (`recv`/`send` of text), recording every frame.

    `record_in` and `record_out` receive each frame parsed; frames that fail to send are not recorded.
    """

    def __init__(
        self,
        ws: Connection,
        *,
        record_in: Callable[[Any], None],
        record_out: Callable[[Any], None],
    ) -> None:
        self.ws = ws
        self._record_in = record_in
        self._record_out = record_out
        # The `ocpp` library handles one received CALL completely before the next `recv`, so the last
        # CALL is the one a handler is answering.
        self.last_call: tuple[str, dict[str, Any]] | None = None
        # message id → CALLRESULT payload / CALLERROR frame, taken by `call_wire`
        self.result_payloads: dict[str, dict[str, Any]] = {}
        self.error_frames: dict[str, list[Any]] = {}

    @property
    def open(self) -> bool:
        return self.ws.state is State.OPEN

    async def recv(self) -> str | bytes:
        raw = await self.ws.recv()
        frame = parse_frame(raw)
        self._record_in(frame)
        if isinstance(frame, list) and len(frame) >= 3 and isinstance(frame[1], str):
            if frame[0] == CALL and len(frame) == 4 and isinstance(frame[3], dict):
                self.last_call = (frame[1], frame[3])
            elif frame[0] == CALLRESULT and isinstance(frame[2], dict):
                self.result_payloads[frame[1]] = frame[2]
            elif frame[0] == CALLERROR:
                self.error_frames[frame[1]] = frame
        return raw

    async def send(self, message: str) -> None:
        await self.ws.send(message)
        self._record_out(parse_frame(message))

    async def close(self) -> None:
        await self.ws.close()

    async def wait_closed(self) -> None:
        await self.ws.wait_closed()

    def call_payload(self, message_id: str) -> dict[str, Any]:
        """Return the wire payload of the CALL with `message_id` being handled on this connection."""
        if self.last_call is None or self.last_call[0] != message_id:
            raise LookupError(f"CALL {message_id!r} is not the one being handled")
        return self.last_call[1]


async def call_wire(charge_point: Any, payload: Any) -> dict[str, Any]:
    """Send `payload` through `charge_point.call` and return the CALLRESULT payload as received.

    Raises the `ocpp` library's `OCPPError` for a CALLERROR or a response failing its schema
    (`UnlistedCallError` for a code the library has no class for), `TimeoutError` when no response arrives
    in time, and `ConnectionError` when the socket closes first (the library alone would wait out the whole
    response timeout).
    """
    connection: RecordingConnection | None = charge_point._connection
    action = type(payload).__name__
    if connection is None or not connection.open:
        raise ConnectionError(f"{charge_point.id}: cannot send {action}, not connected")
    message_id = str(uuid.uuid4())
    call = asyncio.ensure_future(charge_point.call(payload, suppress=False, unique_id=message_id))
    closed = asyncio.ensure_future(connection.wait_closed())
    try:
        await asyncio.wait({call, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (call, closed):
            task.cancel()
        await asyncio.gather(call, closed, return_exceptions=True)
    if call.cancelled():
        connection.result_payloads.pop(message_id, None)
        raise ConnectionError(f"{charge_point.id}: connection closed while waiting for the {action} response")
    error_frame = connection.error_frames.pop(message_id, None)
    try:
        call.result()  # raises OCPPError or TimeoutError as they are
    except ConnectionClosed as exc:
        raise ConnectionError(f"{charge_point.id}: connection closed before {action} was sent") from exc
    except UnknownCallErrorCodeError as exc:
        assert error_frame is not None
        raise UnlistedCallError(*error_frame[2:]) from exc
    return connection.result_payloads.pop(message_id)


async def wait_for(
    predicate: Callable[[], bool],
    timeout: float = 10.0,  # noqa: ASYNC109 - the interface tests call
    *,
    what: str | None = None,
) -> None:
    """Return once `predicate()` is true, polling every 20 ms; raise `TimeoutError` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            code = getattr(predicate, "__code__", None)
            where = f"{code.co_filename}:{code.co_firstlineno}" if code else repr(predicate)
            raise TimeoutError(f"condition {what or where} still false after {timeout}s")
        await asyncio.sleep(0.02)


async def run_logged(coro: Awaitable[Any], logger: logging.Logger, event: str, **fields: Any) -> None:
    """Await `coro`, logging instead of raising any exception (for tasks nobody awaits)."""
    try:
        await coro
    except Exception as exc:
        details = " ".join(f"{key}={value}" for key, value in fields.items())
        logger.warning("%s %s error=%r", event, details, exc)


@dataclass(frozen=True)
class Credentials:
    """How a simulated station proves who it is: a TLS context (with its certificate for profile 3) and/or
    an HTTP Basic password (profiles 1 and 2)."""

    tls: ssl.SSLContext | None = None
    password: str | None = None

    def headers(self, station_id: str) -> dict[str, str]:
        if self.password is None:
            return {}
        token = base64.b64encode(f"{unquote(station_id)}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


class RecordingPeer:
    """What both simulated chargers share: frame records and opening a recorded OCPP connection."""

    frames_in: list[Any]
    frames_out: list[Any]
    received_calls: list[tuple[str, dict[str, Any]]]
    credentials: Credentials | None = None
    _serve_task: asyncio.Task[None] | None
    _response_queue: asyncio.Queue[Any]
    if TYPE_CHECKING:  # the ocpp library's ChargePoint, which every peer also is, provides these
        _connection: Any

        async def route_message(self, raw_msg: str | bytes) -> None: ...

    def _record_in(self, frame: Any) -> None:
        self.frames_in.append(frame)
        if isinstance(frame, list) and len(frame) == 4 and frame[0] == CALL:
            self.received_calls.append((frame[2], frame[3]))

    async def _open(self, url: str, subprotocol: str) -> RecordingConnection:
        """Connect to `url` insisting on `subprotocol`; the connection records both directions."""
        credentials = self.credentials or Credentials()
        ws = await connect(
            url,
            subprotocols=[Subprotocol(subprotocol)],
            open_timeout=5,
            ssl=credentials.tls,
            additional_headers=credentials.headers(url.rsplit("/", 1)[-1]),
        )
        if ws.subprotocol != subprotocol:
            await ws.close()
            raise ConnectionError(f"{url}: server did not select subprotocol {subprotocol}")
        return RecordingConnection(ws, record_in=self._record_in, record_out=self.frames_out.append)

    async def _start(self, url: str, subprotocol: str) -> None:
        """Open the recorded connection and answer what arrives on it until it closes."""
        self._connection = await self._open(url, subprotocol)
        self._response_queue = asyncio.Queue()
        self._serve_task = asyncio.create_task(self._serve(self._connection))

    async def _drop_connection(self) -> None:
        """Close the connection and wait for its reader to stop."""
        if self._connection is not None:
            await self._connection.close()
        if self._serve_task is not None:
            await self._serve_task
            self._serve_task = None

    async def _serve(self, connection: RecordingConnection) -> None:
        try:
            while True:
                await self.route_message(await connection.recv())
        except ConnectionClosed:
            pass
        finally:
            self._on_connection_lost()

    def _on_connection_lost(self) -> None:
        """The reader stopped; a peer that reconnects by itself overrides this."""
