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
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis.asyncio as redis
from redis.exceptions import ResponseError

from proxy.redis_client import UNAVAILABLE
from proxy.writes import WRITES

Command = tuple[bytes, ...]
READ_CHUNK = 1 << 16
LONG_COMMAND = 6  # arguments from which `pack_all` keeps a command's packed prefix
MAX_PREFIXES = 1024
MAX_PREFIX_BYTES = 256  # a longer head (an EVAL's script and keys) is not kept
_PREFIXES: dict[tuple[bytes, ...], bytes] = {}


def pack(*args: bytes) -> bytes:
    """One command in RESP (the Redis wire protocol), as redis-py would pack it."""
    return pack_head(args, len(args)) if args else b"*0\r\n"


def pack_head(head: Sequence[bytes], arguments: int) -> bytes:
    """The first arguments of a command of `arguments` arguments in all, packed: the rest follows as
    `pack_arguments(...)`. Commands that differ only in their last arguments pack their head once."""
    return b"*%d\r\n" % arguments + pack_arguments(*head)


def pack_arguments(*args: bytes) -> bytes:
    return b"".join([b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args])


def pack_all(commands: Sequence[Command]) -> bytes:
    """Commands in RESP, one after the other. A long command is mostly a repeat of an earlier one but for
    its last argument (the tee's XADD of an envelope to one of its shards): its prefix is packed once."""
    packed = []
    for command in commands:
        if len(command) < LONG_COMMAND:
            packed.append(pack(*command))
            continue
        head = command[:-1]
        prefix = _PREFIXES.get(head)
        if prefix is None and sum(map(len, head)) > MAX_PREFIX_BYTES:  # unique each time (a script's keys)
            packed.append(pack(*command))
            continue
        if prefix is None:
            if len(_PREFIXES) >= MAX_PREFIXES:
                _PREFIXES.clear()
            prefix = _PREFIXES[head] = pack_head(head, len(command))
        last = command[-1]
        packed.append(b"%s$%d\r\n%s\r\n" % (prefix, len(last), last))
    return b"".join(packed)


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
            stream = _stream(connection)
            stream[1].write(pack_all(commands))
            replies: list[Any] = []
            parser = hiredis.Reader()
            while len(replies) < len(commands):
                await _read_into(stream[0], parser, replies.append)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise ResponseError(str(reply))
            return replies
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        finally:
            await pool.release(connection)


def _stream(connection: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The socket of a pooled redis-py connection (connected by the pool), read and written here directly:
    redis-py's reply parsing costs a coroutine per reply, and the hot path reads hundreds per write."""
    reader, writer = connection._reader, connection._writer  # redis-py keeps them private
    if reader is None or writer is None:
        raise ConnectionError("Redis connection not connected")
    return reader, writer


async def _read_into(stream: asyncio.StreamReader, parser: Any, reply: Callable[[Any], None]) -> None:
    """Read what Redis sent so far and hand every whole reply in it to `reply` (an error reply as an
    exception object); raises when Redis closed the connection."""
    data = await stream.read(READ_CHUNK)
    if not data:
        raise ConnectionError("Redis closed the connection")
    parser.feed(data)
    while (parsed := parser.gets()) is not False:
        reply(parsed)


class Pipelined:
    """Commands pipelined on one connection, their replies handed back in order: the hot path's state writes.

    One pooled connection is held for them. `send()` queues a command; the queue is written at the end of
    the event-loop pass (`writes`), in one write however many stations changed, before any frame of the pass.
    A task reads the replies in bulk and hands each, in order, to `on_reply` with the token given to `send()`
    (an error reply as an exception object); a connection that fails, or that leaves writes without a reply
    for `reply_timeout`, hands every token still waiting to `on_failure`. `send()` returns False while no
    connection is up (one is being made): the caller then writes the ordinary way. Plain Redis only: a
    cluster has no single connection to write on.
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
        self._task: asyncio.Task[None] | None = None

    def send(self, command: bytes, token: object) -> bool:
        transport = self._transport
        if transport is None or transport.is_closing():
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._run(), name="redis-pipelined")
            return False
        self._buffer.append(command)
        self._waiting.append(token)
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
            reader, writer = _stream(connection)
            transport = self._transport = writer.transport
            asyncio.get_running_loop().call_later(self.reply_timeout, self._watch, transport, self._replies)
            parser = hiredis.Reader()
            while True:
                await _read_into(reader, parser, self._reply)
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

    def _reply(self, reply: Any) -> None:
        self._replies += 1
        if not self._waiting:
            raise ConnectionError(f"Redis sent a reply nothing waits for: {reply!r}")
        self.on_reply(self._waiting.popleft(), reply)

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
