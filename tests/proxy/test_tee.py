"""The tee never blocks and never raises: full queue or no Redis → frames dropped and counted."""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest
import redis.asyncio as redis
from redis.crc import key_slot

from peers.redis_cluster import LocalRedisCluster
from proxy import tee as tee_module
from proxy.app import redis_client
from proxy.redis_client import connect
from proxy.redis_embedded import free_port
from proxy.tee import Tee, stream_key
from shadow.streams import read_envelopes


async def test_full_queue_drops_and_counts(redis_client: redis.Redis) -> None:
    tee = Tee(redis_client, max_queue=3)
    for seq in range(5):
        tee.offer("CP1", "c1", seq, "charger", "in", "ocpp2.0.1", b"[]")
    assert tee.dropped == 2
    await tee.flush()
    assert tee.written == 3
    assert [e["seq"] for e in await read_envelopes(redis_client, "CP1")] == [0, 1, 2]


async def test_unreachable_redis_drops_without_blocking() -> None:
    assert not inspect.iscoroutinefunction(Tee.offer)  # the live path cannot await Redis through it
    tee = Tee(redis_client(f"redis://127.0.0.1:{free_port()}/0"))
    for seq in range(100):
        tee.offer("CP1", "c1", seq, "charger", "in", "ocpp2.0.1", b"[]")
    await tee.flush()
    assert tee.dropped == 100 and tee.written == 0


async def test_on_a_redis_cluster_a_master_that_fails_loses_its_own_shards_frames_only(
    cluster: LocalRedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One master stalled: the frames of the shards it serves are dropped and counted, the other masters' are
    written; for DOWN_SECONDS its part is dropped at once, not waited for again."""
    monkeypatch.setattr(tee_module, "WRITE_TIMEOUT", 0.3)  # the master stays paused below the node timeout
    client = connect(cluster.url, fail_fast=True)
    tee = Tee(client)
    try:
        await client.ping()  # reads the slot map
        station_on: dict[int, str] = {}  # a master's port → a station whose shard it serves
        for n in range(500):
            station_on.setdefault(cluster.owner(key_slot(stream_key(f"TEE{n}", tee.shards).encode())), f"TEE{n}")
        assert len(station_on) == 3
        stalled = cluster.ports[0]
        cluster.pause(stalled)
        try:
            for station_id in station_on.values():
                for seq in range(10):
                    tee.offer(station_id, "c1", seq, "charger", "in", "ocpp2.0.1", b"[]")
            await tee.flush()
            assert (tee.written, tee.dropped) == (20, 10)
            for station_id in station_on.values():
                tee.offer(station_id, "c1", 10, "charger", "in", "ocpp2.0.1", b"[]")
            started = time.monotonic()
            await tee.flush()
            assert time.monotonic() - started < tee_module.WRITE_TIMEOUT  # the stalled master's part not tried
            assert (tee.written, tee.dropped) == (22, 11)
        finally:
            cluster.resume(stalled)
        for port, station_id in station_on.items():
            seqs = [envelope["seq"] for envelope in await read_envelopes(client, station_id)]
            assert seqs == ([] if port == stalled else list(range(11))), port
    finally:
        await client.aclose()


async def test_stop_ends_the_flusher_even_when_a_cancellation_is_swallowed(redis_client: redis.Redis) -> None:
    tee = Tee(redis_client, batch=1)
    flushing = asyncio.Event()

    async def flush_swallowing_cancellation() -> None:  # as 3.11's wait_for does when its awaitable just finished
        flushing.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            pass
        tee._queue.clear()

    tee.flush = flush_swallowing_cancellation  # type: ignore[method-assign]
    tee.start()
    tee.offer("CP1", "c1", 0, "charger", "in", "ocpp2.0.1", b"[]")
    await asyncio.wait_for(flushing.wait(), 2)
    stopping = asyncio.create_task(tee.stop())
    done, _ = await asyncio.wait({stopping}, timeout=2)
    assert stopping in done and tee._task is None


def test_streams_are_hash_tagged_shards() -> None:
    keys = {stream_key(f"CP{n}", 16) for n in range(200)}
    assert len(keys) == 16
    assert all(key.startswith("cutover:tee:{") and key.endswith("}") for key in keys)
    assert stream_key("CP1", 16) == stream_key("CP1", 16)
