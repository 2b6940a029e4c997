"""A loopback TCP forwarder that injects network faults between two processes (for the chaos suite).

`FaultProxy(target_port)` listens on 127.0.0.1 and forwards every connection to `127.0.0.1:target_port`.
Faults, switched at run time:

- `blackhole()`: a partition. Nothing is delivered in either direction, new connections included, until
  `heal()`; bytes sent meanwhile are held, as TCP retransmissions would deliver them once the link is back
  (unless an endpoint gave up on the connection first).
- `delay(seconds)`: every chunk is delivered that much later, in order.
- `reset()`: every open connection is aborted with a TCP reset, and new ones are reset at once, until
  `heal()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time

__all__ = ["FaultProxy"]

LOGGER = logging.getLogger("peers.faultproxy")
LOOPBACK = "127.0.0.1"
CHUNK_BYTES = 64 * 1024
CONNECT_TIMEOUT = 5.0


class FaultProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target_port`, with faults on demand."""

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target_port = target_port
        self.port = port
        self.connections = 0
        self.resets = 0
        self._latency = 0.0
        self._open = asyncio.Event()
        self._open.set()
        self._resetting = False
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()

    @property
    def state(self) -> str:
        if self._resetting:
            return "reset"
        if not self._open.is_set():
            return "blackhole"
        return f"delay {self._latency:g}s" if self._latency else "pass"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and abort every connection."""
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def blackhole(self) -> None:
        self._resetting = False
        self._open.clear()

    def delay(self, seconds: float) -> None:
        self._latency = seconds

    def reset(self) -> None:
        self._resetting = True
        self._open.set()
        for link in list(self._links):
            link.abort()
            self.resets += 1

    def heal(self) -> None:
        """Back to plain forwarding: held bytes are delivered, new connections go through."""
        self._resetting = False
        self._latency = 0.0
        self._open.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self._resetting:
            self.resets += 1
            _abort(writer)
            return
        await self._open.wait()  # a partition holds the connection attempt too
        if self._resetting:
            _abort(writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(LOOPBACK, self.target_port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            _abort(writer)
            return
        link = _Link(self, writer, upstream_writer)
        self._links.add(link)
        try:
            await link.run(reader, upstream_reader)
        except asyncio.CancelledError:
            pass  # the stream server cancels a handler whose connection was aborted: that is the point here
        finally:
            self._links.discard(link)


class _Link:
    """One forwarded connection: a reader and a delivering writer per direction."""

    def __init__(self, proxy: FaultProxy, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.writers = (client, upstream)
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self, client_reader: asyncio.StreamReader, upstream_reader: asyncio.StreamReader) -> None:
        client, upstream = self.writers
        self.tasks = [
            asyncio.create_task(self._pipe(client_reader, upstream)),
            asyncio.create_task(self._pipe(upstream_reader, client)),
        ]
        try:
            await asyncio.wait(self.tasks, return_when=asyncio.FIRST_EXCEPTION)
            await asyncio.gather(*self.tasks, return_exceptions=True)
        finally:
            for task in self.tasks:
                task.cancel()
            for writer in self.writers:
                writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read chunks as they come and deliver each `delay` later, once the link is open; EOF in order."""
        pending: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            try:
                while True:
                    received_at, chunk = await pending.get()
                    wait = received_at + self.proxy._latency - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    await self.proxy._open.wait()
                    if not chunk:
                        if writer.can_write_eof():
                            writer.write_eof()
                        return
                    writer.write(chunk)
                    await writer.drain()
            except (ConnectionError, OSError):
                self.abort()

        delivering = asyncio.create_task(deliver())
        try:
            while True:
                chunk = await reader.read(CHUNK_BYTES)
                pending.put_nowait((time.monotonic(), chunk))
                if not chunk:
                    break
            await delivering
        except (ConnectionError, OSError):
            self.abort()
        finally:
            delivering.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await delivering

    def abort(self) -> None:
        for writer in self.writers:
            _abort(writer)
        for task in self.tasks:
            task.cancel()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0) rather than an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
