"""The tee never blocks and never raises: full queue or no Redis → frames dropped and counted."""

from __future__ import annotations

import asyncio
import inspect

import redis.asyncio as redis

from proxy.app import redis_client
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
