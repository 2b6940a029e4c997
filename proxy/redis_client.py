"""Redis clients from a URL: a single Redis (`redis://`, `rediss://`, `unix://`) or a Redis Cluster
(`redis+cluster://HOST:PORT`, `rediss+cluster://HOST:PORT`: any one node; the client discovers the others).

A cluster client is handed out typed as `redis.asyncio.Redis`: redis-py's `RedisCluster` speaks the same
commands and pipelines, and every multi-key operation of ocpp-cutover stays within one hash slot (its keys
are hash-tagged: `cutover:tee:{N}`, `cutover:state:{station}`, `cutover:{divergences}:...`), so callers need
not know which one they hold. What differs: one XREADGROUP cannot name streams of several slots (callers ask
`is_cluster_client`), and pub/sub goes through `subscribe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import RedisClusterException, RedisError

# The cluster schemes and the plain scheme each stands for.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
# Connections per client: stations share them, and a caller waits for a free one rather than failing
# (the plain pool raises once its connections are all in use, as a benchmark with 100 chargers showed).
POOL_SIZE = 32
# How long a command may wait for a pooled connection and for its reply. The live path bounds its own calls
# far tighter (a state write: 0.5 s); what may wait is a reconnect storm's lookups, queued behind its
# handshakes on a busy event loop (1 s refused hundreds of a 1,000-charger storm).
QUEUE_SECONDS = 5.0
# A cluster client keeps a pool per node that raises MaxConnectionsError once its connections are all in use
# (redis-py has no waiting one): its commands and pipelines wait for one of POOL_SIZE slots instead
# (`WaitingRedisCluster`), so that no node's pool holds more connections than a plain client's; a pipeline
# that sends redirected commands again takes more, within this.
CLUSTER_POOL_SIZE = 128


# What a call raises when Redis is unavailable: redis-py's errors, the OS's, a timeout — and, under uvloop,
# RuntimeError("unable to perform operation on <TCPTransport closed=True>") on a connection Redis reset
# (MagicStack/uvloop#506; the chaos suite saw it kill session set-up and retry tasks in a Redis outage). A
# Redis Cluster client raises RedisClusterException, not a RedisError, when no node can be reached.
UNAVAILABLE = (RedisError, OSError, TimeoutError, RuntimeError, RedisClusterException)
UNAVAILABLE_OR_UNREADABLE = (*UNAVAILABLE, ValueError, TypeError)  # ... or what came back does not parse


def is_cluster(url: str) -> bool:
    return url.partition("://")[0] in CLUSTER_SCHEMES


def node_url(url: str) -> str:
    """The plain redis:// or rediss:// URL of a cluster URL's node (unchanged for a plain URL)."""
    scheme, _, rest = url.partition("://")
    return f"{CLUSTER_SCHEMES[scheme]}://{rest}" if scheme in CLUSTER_SCHEMES else url


def is_cluster_client(client: object) -> bool:
    return isinstance(client, RedisCluster)


# Whether this task holds a slot of a `WaitingRedisCluster` already (its pipeline sends redirected commands
# again through the client: that must not wait for a second slot).
_HOLDS_SLOT: contextvars.ContextVar[bool] = contextvars.ContextVar("cutover_cluster_slot", default=False)


class WaitingRedisCluster(RedisCluster):
    """redis-py's cluster client whose commands wait for a free connection, as the plain client's pool does:
    at most POOL_SIZE of its commands and pipelines run at once, so no node's pool is ever exhausted and none
    opens more connections than a plain pool would (a reconnect storm's lookups queue behind each other
    instead of failing, or of opening a hundred connections to each node on a busy event loop, whose connect
    timeouts then make redis-py take reachable nodes for failed ones)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.free = asyncio.Semaphore(POOL_SIZE)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the client's slots for a command or a pipeline, unless this task holds one already."""
        if _HOLDS_SLOT.get():
            yield
            return
        async with self.free:
            holding = _HOLDS_SLOT.set(True)
            try:
                yield
            finally:
                _HOLDS_SLOT.reset(holding)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.slot():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return WaitingClusterPipeline(self, transaction)  # type: ignore[abstract]  # as redis-py makes its own


class WaitingClusterPipeline(ClusterPipeline):
    """A pipeline of `WaitingRedisCluster`: it holds one of the client's slots while it runs."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        client = self.cluster_client
        assert isinstance(client, WaitingRedisCluster)
        async with client.slot():
            return await super().execute(raise_on_error, allow_redirections)


def connect(url: str, *, fail_fast: bool = False) -> aioredis.Redis:
    """An asyncio client for the URL; with `fail_fast` it never retries and times out within a second, so a
    Redis outage reaches the caller at once (the proxy's live path decides what it means)."""
    options: dict[str, Any] = {}
    if fail_fast:
        options = {
            "socket_connect_timeout": 0.25, "socket_timeout": QUEUE_SECONDS, "retry": Retry(NoBackoff(), 0),
        }  # fmt: skip
    if is_cluster(url):
        cluster = WaitingRedisCluster.from_url(node_url(url), max_connections=CLUSTER_POOL_SIZE, **options)
        return cast(aioredis.Redis, cluster)
    if not fail_fast:
        return aioredis.Redis.from_url(url)
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_SIZE, timeout=QUEUE_SECONDS, retry_on_timeout=False, **options
    )
    return aioredis.Redis(connection_pool=pool)


def connect_sync(url: str) -> redis.Redis:
    """A blocking client for the URL (one-shot CLI commands)."""
    if is_cluster(url):
        return cast(redis.Redis, SyncRedisCluster.from_url(node_url(url)))
    return redis.Redis.from_url(url)


async def subscribe(client: aioredis.Redis, channel: str) -> PubSub:
    """A pub/sub subscribed to `channel`; the caller closes it. On a cluster it listens on one node's own
    connection: a PUBLISH reaches every node of a Redis Cluster (and redis-py before 8 has no async
    cluster pub/sub)."""
    if is_cluster_client(client):
        cluster = cast(RedisCluster, client)
        try:
            await cluster.initialize()
        except RedisClusterException as exc:  # not a RedisError: say what it is, an unreachable Redis
            raise aioredis.ConnectionError(str(exc)) from exc
        node = cluster.get_random_node()
        pool = aioredis.ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
        pubsub = aioredis.Redis(connection_pool=pool).pubsub()
    else:
        pubsub = client.pubsub()
    try:
        await pubsub.subscribe(channel)
    except BaseException:
        await pubsub.aclose()
        raise
    return pubsub
