"""The tee: every frame of every leg, as a msgpack envelope, appended to Redis streams sharded by station.

`offer()` never blocks and never raises: frames go into a bounded in-memory queue that a background task
flushes to Redis in pipelined batches. When the queue is full, or Redis is unavailable, frames are
dropped and counted (`cutover_tee_dropped_frames_total`); the live path never waits on Redis. A Redis that
failed a write gets no frames for DOWN_SECONDS (they are dropped, not replayed into a struggling Redis); on a
Redis Cluster that is the master that failed, the other masters' shards go on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import zlib
from collections import deque
from collections.abc import Awaitable
from typing import Any

import msgpack
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from proxy import metrics, redis_batch
from proxy.redis_client import UNAVAILABLE

log = logging.getLogger("cutover.tee")

ENVELOPE_VERSION = 1
WRITE_TIMEOUT = 2.0
DOWN_SECONDS = 0.5
_PACKER = msgpack.Packer(use_bin_type=True)  # one for the process: `packb` builds a Packer per call
STREAM_PREFIX = "cutover:tee:"


def stream_key(station_id: str, shards: int) -> str:
    """The stream of a station: a hash-tagged shard key, so Redis Cluster spreads the shards."""
    shard = zlib.crc32(station_id.encode()) % shards
    return f"{STREAM_PREFIX}{{{shard}}}"


def envelope(
    station_id: str, connection_id: str, seq: int, leg: str, direction: str, subprotocol: str, frame: bytes
) -> bytes:
    return _PACKER.pack(
        {
            "v": ENVELOPE_VERSION,
            "station": station_id,
            "conn": connection_id,
            "seq": seq,
            "leg": leg,
            "dir": direction,
            "proto": subprotocol,
            "t_ns": time.time_ns(),
            "frame": frame,
        }
    )


async def _failure(write: Awaitable[object]) -> BaseException | None:
    """What made Redis fail the write (None: written)."""
    try:
        await write
    except UNAVAILABLE as exc:
        return exc
    return None


@functools.lru_cache(maxsize=1024)
def _slot(key: str) -> int:
    return key_slot(key.encode())


def unpack(raw: bytes) -> dict[str, Any]:
    envelope: dict[str, Any] = msgpack.unpackb(raw, raw=False)
    return envelope


class Tee:
    def __init__(
        self,
        client: redis.Redis | None,
        *,
        shards: int = 16,
        max_queue: int = 50_000,
        batch: int = 512,
        stream_maxlen: int = 1_000_000,
    ) -> None:
        self.client = client
        self.shards = shards
        self.max_queue = max_queue
        self.batch = batch
        self.stream_maxlen = stream_maxlen
        self._queue: deque[tuple[str, bytes]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.written = 0
        self.dropped = 0
        # A master ("" for a plain Redis, or a cluster's slot map not read yet) → until when its frames are dropped.
        self._down: dict[str, float] = {}
        self._masters = redis_batch.Masters.of(client) if isinstance(client, RedisCluster) else None

    def offer(
        self,
        station_id: str,
        connection_id: str,
        seq: int,
        leg: str,
        direction: str,
        subprotocol: str,
        frame: bytes,
    ) -> None:
        """Queue one frame for the tee, or drop and count it; never blocks."""
        if self.client is None:
            return
        if len(self._queue) >= self.max_queue:
            self._drop("queue_full", 1)
            return
        key = stream_key(station_id, self.shards)
        self._queue.append(
            (key, envelope(station_id, connection_id, seq, leg, direction, subprotocol, frame))
        )
        if len(self._queue) >= self.batch:
            self._wake.set()

    def _drop(self, reason: str, count: int) -> None:
        self.dropped += count
        metrics.TEE_DROPPED.labels(reason).inc(count)

    def start(self) -> None:
        if self.client is not None and self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._flush_forever(), name="tee-flush")

    async def stop(self) -> None:
        if self._task is not None:
            # The flag as well as the cancellation: Python 3.11's wait_for returns instead of raising when it is
            # cancelled just as its awaitable finishes, and the flusher would then loop on, holding stop forever.
            self._stopping = True
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)  # a cancellation of stop itself still raises
            self._task = None
        if self._queue:
            await self.flush()

    async def flush(self) -> None:
        """Write what is queued now, in pipelined batches; what Redis (a master) fails is dropped and counted."""
        assert self.client is not None
        while self._queue:
            count = min(len(self._queue), self.batch)
            batch = [self._queue.popleft() for _ in range(count)]
            metrics.TEE_QUEUE_DEPTH.set(len(self._queue))
            written = await self._write(batch)
            self.written += written
            metrics.TEE_FRAMES.inc(written)
        metrics.TEE_QUEUE_DEPTH.set(0)

    async def _write(self, batch: list[tuple[str, bytes]]) -> int:
        """Write the batch, a part per Redis Cluster master (one on a plain Redis), the parts at once; how many
        frames were written. A part whose master failed within DOWN_SECONDS is dropped without being tried."""
        assert self.client is not None
        maxlen = b"%d" % self.stream_maxlen
        commands: list[redis_batch.Command] = [
            (b"XADD", key.encode(), b"MAXLEN", b"~", maxlen, b"*", b"e", packed) for key, packed in batch
        ]
        parts = {"": commands}
        if self._masters is not None:
            parts = {}
            for (key, _), command in zip(batch, commands, strict=True):
                parts.setdefault(self._masters.name_for(_slot(key)) or "", []).append(command)
        now = time.monotonic()
        for master in [master for master in parts if now < self._down.get(master, 0.0)]:
            self._drop("redis_unavailable", len(parts.pop(master)))
        writes = [_failure(redis_batch.execute(self.client, commands, WRITE_TIMEOUT)) for commands in parts.values()]
        failures = [await writes[0]] if len(writes) == 1 else await asyncio.gather(*writes)
        written = 0
        for (master, commands), failure in zip(parts.items(), failures, strict=True):
            if failure is None:
                written += len(commands)
                continue
            self._down[master] = time.monotonic() + DOWN_SECONDS
            self._drop("redis_unavailable", len(commands))
            log.warning(
                "tee_write_failed frames=%d%s error=%r; frames dropped for %g s, live traffic unaffected",
                len(commands), f" master={master}" if master else "", failure, DOWN_SECONDS,
            )  # fmt: skip
        return written

    async def _flush_forever(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=0.05)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._queue:
                await self.flush()
