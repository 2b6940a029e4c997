"""Batched writes for the hot path: commands packed once, sent in one write, replies read back in order.

redis-py spends 40–120 µs of CPU per command (argument encoding, pool checkout, a parser timeout set-up per
reply); the live path's writes — station state and tee envelopes — are a few commands of one shape, so they
are packed here directly and go out on one pooled connection as a single pipeline. On a Redis Cluster the
batch is split by master (`Masters`: the slot map redis-py's cluster client keeps), each part the same
pipeline on a connection to its master; a command a master redirects (MOVED, ASK: it did not run it) is sent
again through redis-py's cluster pipeline, which follows redirections, and the slot map is read again.
Replies are raw, or parsed by redis-py for a command it sent: read them as truthy or not.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ResponseError

from proxy.redis_client import POOL_SIZE, QUEUE_SECONDS, UNAVAILABLE
from proxy.writes import WRITES

log = logging.getLogger("cutover.redis")

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
    async with asyncio.timeout(within):
        if isinstance(client, RedisCluster):
            replies = await _on_cluster(client, commands)
        else:
            replies = await _pipelined(client, commands)
    for reply in replies:
        if isinstance(reply, Exception):
            raise ResponseError(str(reply))
    return replies


async def _pipelined(client: redis.Redis, commands: Sequence[Command]) -> list[Any]:
    """The commands in one write on a pooled connection, and their replies (an error reply as an exception
    object)."""
    pool = client.connection_pool
    connection = await pool.get_connection()
    try:
        stream = _stream(connection)
        stream[1].write(pack_all(commands))
        replies: list[Any] = []
        parser = hiredis.Reader()
        while len(replies) < len(commands):
            await _read_into(stream[0], parser, replies.append)
        return replies
    except BaseException:
        await connection.disconnect(nowait=True)
        raise
    finally:
        await pool.release(connection)


async def _on_cluster(cluster: RedisCluster, commands: Sequence[Command]) -> list[Any]:
    """The commands split by master, each part pipelined to its master at once; the redirected ones again
    through redis-py. Keyless commands, or a slot map not read yet: all through redis-py."""
    masters = Masters.of(cluster)
    parts: dict[redis.Redis, list[int]] = {}
    for index, command in enumerate(commands):
        key = command_key(command)
        master = None if key is None else masters.client_for(key_slot(key))
        if master is None:
            return await _through_redis_py(cluster, commands)
        parts.setdefault(master, []).append(index)
    try:
        if len(parts) == 1:
            replies = await _pipelined(next(iter(parts)), commands)
        else:
            replies = [None] * len(commands)
            results = await asyncio.gather(
                *(_pipelined(master, [commands[i] for i in indexes]) for master, indexes in parts.items()),
                return_exceptions=True,
            )
            for indexes, result in zip(parts.values(), results, strict=True):
                if isinstance(result, BaseException):
                    raise result
                for index, reply in zip(indexes, result, strict=True):
                    replies[index] = reply
    except UNAVAILABLE:
        masters.refresh()  # a master away: maybe failed over, its replica now serves its slots
        raise
    redirected = [index for index, reply in enumerate(replies) if is_redirection(reply)]
    if redirected:
        masters.refresh()
        again = await _through_redis_py(cluster, [commands[index] for index in redirected])
        for index, reply in zip(redirected, again, strict=True):
            replies[index] = reply
    return replies


async def _through_redis_py(cluster: RedisCluster, commands: Sequence[Command]) -> list[Any]:
    async with cluster.pipeline(transaction=False) as pipe:
        for name, *args in commands:
            pipe.execute_command(name.decode(), *args)  # its routing reads the command's name as text
        replies: list[Any] = await pipe.execute()
        return replies


def command_key(command: Command) -> bytes | None:
    """The key a command is routed by on a Redis Cluster (an EVAL's first key); None for a keyless one."""
    if command[0] in (b"EVAL", b"EVALSHA"):
        return command[3] if len(command) > 3 and command[2] != b"0" else None
    return command[1] if len(command) > 1 and command[0] != b"PUBLISH" else None


def is_redirection(reply: object) -> bool:
    """A Redis Cluster master's answer that the key's slot is served elsewhere: the command did not run."""
    return isinstance(reply, Exception) and str(reply).startswith(("MOVED ", "ASK "))


class Masters:
    """The masters of a Redis Cluster as plain clients (one pool each, waiting for a free connection as the
    plain client's does), found by slot in the slot map redis-py's cluster client keeps and reads again when
    a master redirects a command or cannot be reached (at most every REFRESH_EVERY seconds)."""

    REFRESH_EVERY = 0.5
    _BY_CLUSTER: weakref.WeakKeyDictionary[RedisCluster, Masters] = weakref.WeakKeyDictionary()

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self.clients: dict[str, redis.Redis] = {}  # a master's "host:port" → its client
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0
        self._seen: set[str] = set()  # the masters of the slot map when `lost()` last looked

    @classmethod
    def of(cls, cluster: RedisCluster) -> Masters:
        """The one `Masters` of a cluster client."""
        masters = cls._BY_CLUSTER.get(cluster)
        if masters is None:
            masters = cls._BY_CLUSTER[cluster] = cls(cluster)
        return masters

    def name_for(self, slot: int) -> str | None:
        """The "host:port" of the master serving the slot, as the slot map says now (None: not read yet)."""
        nodes = self.cluster.nodes_manager.slots_cache.get(slot)
        return str(nodes[0].name) if nodes else None

    def master_for(self, slot: int) -> tuple[str, redis.Redis] | None:
        """The master serving the slot and its client, as the slot map says now (None: the map is not read yet)."""
        nodes = self.cluster.nodes_manager.slots_cache.get(slot)
        if not nodes:
            return None
        node = nodes[0]
        client = self.clients.get(node.name)
        if client is None:
            pool = redis.BlockingConnectionPool(
                connection_class=node.connection_class, max_connections=POOL_SIZE, timeout=QUEUE_SECONDS,
                **node.connection_kwargs,
            )  # fmt: skip
            client = self.clients[node.name] = redis.Redis(connection_pool=pool)
        return node.name, client

    def client_for(self, slot: int) -> redis.Redis | None:
        found = self.master_for(slot)
        return None if found is None else found[1]

    def lost(self) -> set[str]:
        """The masters the slot map named when last asked and names no longer: failed over (a replica serves their
        slots now) or removed. Nothing while the map is not read."""
        now = {node.name for node in self.cluster.get_primaries()}
        if not now:
            return set()
        lost, self._seen = self._seen - now, now
        return lost

    def refresh(self) -> None:
        """Read the slot map again, in the background, unless that was done within REFRESH_EVERY seconds."""
        now = time.monotonic()
        if now - self._refreshed_at < self.REFRESH_EVERY or (self._refreshing and not self._refreshing.done()):
            return
        self._refreshed_at = now
        self._refreshing = asyncio.create_task(self._refresh(), name="redis-cluster-refresh")

    async def _refresh(self) -> None:
        try:
            await self.cluster.nodes_manager.initialize()
        except Exception as exc:  # a cluster still failing over: the next redirection or failure asks again
            log.warning("redis_cluster_slots_refresh_failed error=%r", exc)
            return
        masters = {node.name for node in self.cluster.get_primaries()}
        for name in [name for name in self.clients if name not in masters]:
            await self.clients.pop(name).aclose()

    @classmethod
    async def release(cls, client: object) -> None:
        """Close the masters' clients of a cluster client (before closing it); nothing for a plain client."""
        masters = cls._BY_CLUSTER.pop(client, None) if isinstance(client, RedisCluster) else None
        if masters is not None:
            await masters.close()

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        for client in self.clients.values():
            await client.aclose()
        self.clients.clear()


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
    connection is up (one is being made): the caller then writes the ordinary way. On a Redis Cluster, one
    per master (`client` is then that master's, from `Masters`).
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
