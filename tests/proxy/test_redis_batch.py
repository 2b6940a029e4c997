"""`redis_batch.execute` on a Redis Cluster: a batch split by master, each part pipelined on a connection to its
master, the replies back in the batch's order; a command a master redirects (its slot moved) is run once, by
redis-py's cluster pipeline, and the slot map read again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from redis.crc import key_slot

from peers.redis_cluster import LocalRedisCluster
from proxy import redis_batch
from proxy.redis_client import CLUSTER_POOL_SIZE, UNAVAILABLE, connect
from proxy.redis_embedded import free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def client(cluster: LocalRedisCluster) -> AsyncIterator[redis.Redis]:
    client = connect(cluster.url, fail_fast=True)
    await client.flushall()
    yield client
    await redis_batch.Masters.release(client)
    await client.aclose()


async def keys_on_every_master(cluster: LocalRedisCluster, client: redis.Redis, prefix: str) -> list[bytes]:
    """One key per master, in the masters' order (by the client's slot map, read here)."""
    await client.ping()
    found: dict[int, bytes] = {}
    for n in range(1000):
        key = f"{prefix}:{{{n}}}".encode()
        found.setdefault(client.get_node_from_key(key).port, key)
    return [found[port] for port in cluster.ports]


async def test_a_batch_over_every_master_is_split_and_its_replies_keep_the_batch_order(
    cluster: LocalRedisCluster, client: redis.Redis
) -> None:
    keys = await keys_on_every_master(cluster, client, "split")
    commands = [command for n, key in enumerate(keys) for command in ((b"SET", key, b"%d" % n), (b"GET", key))]
    commands.append((b"EVAL", b"return redis.call('GET', KEYS[1])", b"1", keys[1]))
    replies = await redis_batch.execute(client, commands, 5.0)
    assert replies == [b"OK", b"0", b"OK", b"1", b"OK", b"2", b"1"]  # raw replies: each part went to its master
    assert len(redis_batch.Masters.of(client).clients) == 3  # one connection pool per master


async def test_a_command_whose_slot_moved_runs_once_and_the_slot_map_is_read_again(
    cluster: LocalRedisCluster, client: redis.Redis
) -> None:
    keys = await keys_on_every_master(cluster, client, "moved")
    moved = keys[0]
    to_port = cluster.ports[1]
    await asyncio.to_thread(cluster.move_slot, key_slot(moved), to_port)
    assert client.get_node_from_key(moved).port == cluster.ports[0]  # the client's map is stale
    commands = [(b"XADD", key, b"*", b"e", b"x") for key in keys]
    replies = await redis_batch.execute(client, commands, 5.0)
    assert all(replies)
    for key in keys:
        assert await client.xlen(key) == 1  # the redirected XADD did not run at the old master: added once
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while client.get_node_from_key(moved).port != to_port:
        assert loop.time() < deadline, "the slot map was not read again"
        await asyncio.sleep(0.02)


async def test_a_keyless_command_goes_through_redis_py(cluster: LocalRedisCluster, client: redis.Redis) -> None:
    assert await redis_batch.execute(client, [(b"PUBLISH", b"cutover:test", b"hello")], 5.0) == [0]
    assert redis_batch.command_key((b"EVAL", b"return 1", b"0")) is None


async def test_an_error_reply_raises_as_on_a_plain_redis(cluster: LocalRedisCluster, client: redis.Redis) -> None:
    (key, *_) = await keys_on_every_master(cluster, client, "wrongtype")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await redis_batch.execute(client, [(b"SET", key, b"1"), (b"XADD", key, b"*", b"e", b"x")], 5.0)


async def test_more_concurrent_commands_than_a_node_has_connections_wait_for_one(
    cluster: LocalRedisCluster, client: redis.Redis
) -> None:
    """redis-py's cluster pool raises MaxConnectionsError once a node's connections are all in use (a reconnect
    storm's lookups on one node); the proxy's cluster client makes them wait instead, as a plain pool does."""
    key = b"storm:{0}"
    await client.set(key, b"1")
    calls = 3 * CLUSTER_POOL_SIZE
    replies = await asyncio.gather(*(client.get(key) for _ in range(calls)))
    assert replies == [b"1"] * calls
    pipelines = [client.pipeline(transaction=False).get(key).incr(b"storm:{0}:n") for _ in range(calls)]
    results = await asyncio.gather(*(pipe.execute() for pipe in pipelines))
    assert sorted(n for _, n in results) == list(range(1, calls + 1))


async def test_a_cluster_with_no_reachable_node_reads_as_redis_unavailable() -> None:
    """redis-py raises RedisClusterException (not a RedisError) when no node answers: the proxy's callers,
    which catch UNAVAILABLE (a 503 at the handshake, a deferred state), must see it as Redis away."""
    client = connect(f"redis+cluster://127.0.0.1:{free_port()}", fail_fast=True)
    try:
        with pytest.raises(UNAVAILABLE):
            await client.get(b"cutover:state:{CP1}")
        with pytest.raises(UNAVAILABLE):
            await redis_batch.execute(client, [(b"GET", b"cutover:state:{CP1}")], 2.0)
    finally:
        await client.aclose()
