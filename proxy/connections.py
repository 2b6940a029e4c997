"""WebSocket connections that hand every message to a callback and send without awaiting.

The proxy's hot path is synchronous: a message arrives (websockets' `data_received` → `process_event`),
the session parses and translates it, hands the station state to Redis and queues what results, all in
that one call; the writes go out once per event-loop pass (`writes`). websockets' own reading path (a
queue, a future per message, coroutines woken per frame) and its `send()` (an async context manager and a
drain per message) cost more CPU than the translation itself. Only data frames take this path, with the
checks websockets' reading path makes on them (a text message must be UTF-8: 1007; at most its number of
fragments: 1009); the opening handshake, pings and pongs, and the closing handshake stay websockets' own.

No backpressure is lost that OCPP-J does not bound already: the proxy sends a peer only answers to that
peer's CALLs and its own CALLs one at a time, and a translating session holds at most `MAX_QUEUED_CALLS`
per leg. A peer that stops reading while its write buffer passes `WRITE_BUFFER_LIMIT` is cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import websockets.frames
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.messages import MAX_FRAGMENTS
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State

from proxy.writes import WRITES

log = logging.getLogger("cutover.proxy")

# Messages held for a session that has not attached yet (websockets' own default queue); reading pauses
# there, as it would behind websockets' queue.
EARLY_MESSAGES = 16
# Bytes waiting to be written to a peer, beyond which it is taken for one that stopped reading.
WRITE_BUFFER_LIMIT = 4 * 1024 * 1024
_DATA = (Opcode.TEXT, Opcode.BINARY)


class MaskEntropy:
    """What websockets' frames module asks `secrets` for: the 4-byte masking key of every frame a client
    sends (the upstream leg's), which RFC 6455 §5.3 wants from a strong source of entropy. Still the
    kernel's (`os.urandom`), read 4 KiB at a time instead of one getrandom() system call per frame."""

    POOL = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()  # websockets' threading client may mask frames in other threads
        self._pool = b""
        self._at = 0

    def token_bytes(self, nbytes: int) -> bytes:
        with self._lock:
            at = self._at
            if at + nbytes > len(self._pool):
                self._pool, at = os.urandom(max(self.POOL, nbytes)), 0
            self._at = at + nbytes
            return self._pool[at : at + nbytes]


websockets.frames.secrets = MaskEntropy()  # type: ignore[assignment]


class MessageCallbacks:
    """Mixed into a websockets connection: whole messages go to the callback given to `attach()`."""

    # Set by websockets' connection classes.
    protocol: Any
    transport: Any

    _handler: Callable[[bytes], None] | None = None
    _early: list[bytes] | None = None
    _fragments: list[bytes] | None = None
    _text = False  # whether the message being received is a text one (UTF-8 checked)
    _paused = False
    _closing: asyncio.Future[None] | None = None  # failing the connection (kept: a task needs a reference)

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame):
            opcode = event.opcode
            if opcode in _DATA:
                self._text = opcode is Opcode.TEXT
                if event.fin:
                    self._deliver(event.data if type(event.data) is bytes else bytes(event.data))
                else:
                    self._fragments = [bytes(event.data)]
                return
            if opcode is Opcode.CONT:
                # websockets' protocol rejects a continuation without a start, and bounds the total (max_size).
                fragments = self._fragments
                if fragments is not None:
                    if len(fragments) >= MAX_FRAGMENTS:
                        self._fail(CloseCode.MESSAGE_TOO_BIG, "too many fragments")
                        return
                    fragments.append(bytes(event.data))
                    if event.fin:
                        self._fragments = None
                        self._deliver(b"".join(fragments))
                return
        super().process_event(event)  # type: ignore[misc]

    def _deliver(self, message: bytes) -> None:
        if self._text:
            try:
                message.decode()  # RFC 6455 §8.1: a text message that is not UTF-8 fails the connection
            except UnicodeDecodeError as exc:
                self._fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                return
        handler = self._handler
        if handler is not None:
            handler(message)
            return
        if self._early is None:
            self._early = []
        self._early.append(message)
        if len(self._early) >= EARLY_MESSAGES and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def attach(self, handler: Callable[[bytes], None]) -> None:
        """From now on every message goes to `handler`; those that arrived before go first, in order."""
        early, self._early = self._early or [], None
        for message in early:  # a handler never re-enters: nothing new arrives while these run
            handler(message)
        self._handler = handler
        if self._paused:
            self._paused = False
            self.transport.resume_reading()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """websockets' close; a connection closed before any session attached drops what it held, and reads
        again if it had paused: else the peer's close frame would wait behind the paused reading."""
        if self._handler is None:
            self._handler = _drop
            self._early = None
        if self._paused:
            self._paused = False
            self.transport.resume_reading()
        await super().close(code, reason)  # type: ignore[misc]

    def _fail(self, code: CloseCode, reason: str) -> None:
        """Fail the connection as websockets' reading path does (its recv() on the same errors): nothing more is
        delivered, the close frame goes out, and the connection is cut if the peer does not close in time."""
        self._handler = _drop
        self._fragments = self._early = None
        if self.protocol.state is State.OPEN:
            self.protocol.fail(code, reason)
            self._closing = asyncio.ensure_future(self._closed_after_failing())

    async def _closed_after_failing(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async with self.send_context(expected_state=State.CLOSING):  # type: ignore[attr-defined]
                pass

    def detach(self) -> None:
        """Messages arriving from now on are dropped (the session that read them has ended)."""
        self._handler = _drop

    def send_now(self, message: bytes) -> bool:
        """Queue one text message, written at the end of this event-loop pass (`writes`); False when the
        connection is no longer open."""
        if self.protocol.state is not State.OPEN:
            return False
        self.protocol.send_text(message)
        WRITES.frames(self)
        return True

    def send_data(self) -> None:
        # Every write of frames, websockets' own (a pong, a close) included, comes after the state writes
        # handed over before: a frame queued by send_now() may go out with it. (websockets calls this after
        # every read too, mostly with nothing to write.)
        if self.protocol.writes:
            WRITES.flush_first()
        super().send_data()  # type: ignore[misc]

    def write_frames(self) -> None:
        if self.transport.is_closing():
            return
        try:
            self.send_data()
        except Exception as exc:  # what websockets' send() does: the connection is over
            self.set_connection_exc(exc)  # type: ignore[attr-defined]
            self.transport.abort()
            return
        if self.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            log.warning(
                "peer_not_reading peer=%s buffered=%d; closing the connection",
                self.transport.get_extra_info("peername"),
                self.transport.get_write_buffer_size(),
            )
            self.transport.abort()


def _drop(message: bytes) -> None:
    pass


class ChargerConnection(MessageCallbacks, ServerConnection):
    """A charger's connection to the proxy."""


class UpstreamConnection(MessageCallbacks, ClientConnection):
    """The proxy's connection to the legacy CSMS (or the new 2.0.1 CSMS) for one charger."""
