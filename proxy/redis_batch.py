"""Batched writes for the hot path: commands packed once, sent in one write, replies read back in order.

redis-py spends 40–120 µs of CPU per command (argument encoding, pool checkout, a parser timeout set-up per
reply); the live path's writes — station state and tee envelopes — are a few commands of one shape, so they
are packed here directly and go out on one pooled connection as a single pipeline. A Redis Cluster client
has no single connection to write on: there the same commands go through its own pipeline, which routes
each by slot. Replies are raw on a plain client and parsed by redis-py on a cluster: read them as truthy
or not.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ResponseError

from proxy.redis_client import UNAVAILABLE
from proxy.writes import WRITES

Command = tuple[bytes, ...]


def pack(*args: bytes) -> bytes:
    """One command in RESP (the Redis wire protocol), as redis-py would pack it."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n" % len(arg))
        parts.append(arg)
        parts.append(b"\r\n")
    return b"".join(parts)


async def execute(client: redis.Redis, commands: Sequence[Command], within: float) -> list[Any]:
    """Send the commands as one pipeline and read their replies, all within `within` seconds; raises on the
    first error (a plain connection is then dropped, so no reply is ever read out of turn)."""
    if not isinstance(client, redis.Redis):  # a Redis Cluster
        async with client.pipeline(transaction=False) as pipe:
            for name, *args in commands:
                pipe.execute_command(name.decode(), *args)  # its routing reads the command's name as text
            return await asyncio.wait_for(pipe.execute(), within)
    pool = client.connection_pool
    async with asyncio.timeout(within):
        connection = await pool.get_connection()
        try:
            await connection.send_packed_command([pack(*command) for command in commands], check_health=False)
            return [await connection.read_response(disable_decoding=True, timeout=math.inf) for _ in commands]
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        finally:
            await pool.release(connection)


class Pipelined:
    """Commands written to Redis at once, without waiting for their replies: the hot path's state writes.

    One pooled connection is held for them. `send()` queues a command, written to that socket at the end of
    the event-loop pass before any frame queued meanwhile (`writes`): what the caller sends next leaves
    after it, and a process killed once it is written still delivers it (the kernel holds the bytes). A
    state write no longer costs the live path a Redis round trip. A task
    reads the replies in order and hands each to `on_reply` with the token given to `send()`; a connection
    that fails, or a reply later than `reply_timeout`, hands every token still waiting to `on_failure`.
    `send()` returns False while no connection is up (one is being made): the caller then waits for an
    ordinary write. Plain Redis only: a cluster has no single connection to write on.
    """

    def __init__(
        self,
        client: redis.Redis,
        on_reply: Callable[[object, Any], None],
        on_failure: Callable[[list[object], BaseException], None],
        reply_timeout: float,
    ) -> None:
        self.client = client
        self.on_reply = on_reply
        self.on_failure = on_failure
        self.reply_timeout = reply_timeout
        self._transport: asyncio.WriteTransport | None = None
        self._waiting: deque[object] = deque()
        self._buffer: list[bytes] = []
        self._replies = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def send(self, command: bytes, token: object) -> bool:
        transport = self._transport
        if transport is None or transport.is_closing():
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._run(), name="redis-pipelined")
            return False
        self._buffer.append(command)
        self._waiting.append(token)
        if not self._wake.is_set():
            self._wake.set()
        WRITES.first(self.flush)
        return True

    def flush(self) -> None:
        """Write what `send()` queued: before any frame of this event-loop pass (`writes`)."""
        buffer, self._buffer = self._buffer, []
        transport = self._transport
        if not buffer or transport is None:
            return  # the connection failed meanwhile: its reader hands the tokens to on_failure
        try:
            transport.write(b"".join(buffer))
        except UNAVAILABLE:  # uvloop's RuntimeError on a transport closed under us; the reader sees it too
            transport.abort()

    async def _run(self) -> None:
        pool = self.client.connection_pool
        try:
            async with asyncio.timeout(self.reply_timeout):
                connection = await pool.get_connection()
        except UNAVAILABLE:
            return  # the next send() tries again; meanwhile callers write the ordinary way
        try:
            if connection._writer is None:  # redis-py keeps its StreamWriter private
                await connection.connect()
            writer = connection._writer
            assert writer is not None
            transport = self._transport = writer.transport
            asyncio.get_running_loop().call_later(self.reply_timeout, self._watch, transport, self._replies)
            await self._read_replies(connection)
        except BaseException as exc:
            self._transport = None
            self._buffer = []
            waiting, self._waiting = list(self._waiting), deque()
            await connection.disconnect(nowait=True)  # never back in the pool with replies unread
            if not isinstance(exc, Exception):
                raise  # closing: what was sent stays sent
            if waiting:
                self.on_failure(waiting, exc)
        finally:
            self._transport = None
            await pool.release(connection)

    async def _read_replies(self, connection: Any) -> None:
        waiting = self._waiting
        while True:
            if not waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                reply = await connection.read_response(disable_decoding=True, timeout=math.inf)
            except ResponseError as error:  # a reply like any other: the connection is fine
                reply = error
            self._replies += 1
            self.on_reply(waiting.popleft(), reply)

    def _watch(self, transport: asyncio.WriteTransport, replies: int, waited: bool = False) -> None:
        """Every `reply_timeout`: a connection whose writes waited since the last look, with no reply since,
        is cut (its reader then fails them)."""
        if transport is not self._transport:
            return
        if waited and self._waiting and self._replies == replies:
            transport.abort()
            return
        loop = asyncio.get_running_loop()
        loop.call_later(self.reply_timeout, self._watch, transport, self._replies, bool(self._waiting))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
