"""Station states written through `StateStore.persist(state, then)` on the held, pipelined Redis connection
(`redis_batch.Pipelined`): `then` runs once Redis holds the state, in the order handed over, with no task per
write; when Redis stalls, dies or refuses, the state is deferred, `then` runs at once and the state is written
again later; on a Redis Cluster the same, on a connection to each station's master."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as redis
from prometheus_client import REGISTRY

from peers.redis_cluster import LocalRedisCluster
from proxy import state_store
from proxy.redis_client import connect
from proxy.redis_embedded import EmbeddedRedis
from proxy.state_store import StateStore, state_key
from translators.state import StationState

pytestmark = pytest.mark.timeout(120)

DEADLINE = 30.0  # seconds: generous, the machine is shared with benchmark runs


def failures() -> float:
    return REGISTRY.get_sample_value("cutover_state_persist_failures_total") or 0.0


def station(station_id: str, version: int) -> StationState:
    """A state told apart from another of the same station by `version`."""
    return StationState(station_id, next_request_id=version, last_reset_type=f"v{version}")


async def until(predicate: Callable[[], Awaitable[object] | object], seconds: float = DEADLINE) -> None:
    """Wait until `predicate()` (or what it returns, awaited) holds, polling; fails the test past `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {predicate}")
        await asyncio.sleep(0.02)


async def stored(client: redis.Redis, station_id: str) -> StationState | None:
    raw = await client.get(state_key(station_id))
    return None if raw is None else StationState.loads(raw if isinstance(raw, bytes) else raw.encode())


def holds(client: redis.Redis, state: StationState) -> Callable[[], Awaitable[bool]]:
    """A predicate: Redis holds exactly `state` for its station (Redis errors read as not yet)."""

    async def check() -> bool:
        try:
            return await asyncio.wait_for(stored(client, state.station_id), 2) == state
        except (redis.RedisError, OSError, TimeoutError):
            return False

    return check


class Released:
    """A `then` given to persist(): how often it ran, and whether the state was deferred when it did."""

    def __init__(self, store: StateStore, station_id: str, order: list[str] | None = None) -> None:
        self.store, self.station_id, self.order = store, station_id, order
        self.calls = 0
        self.deferred: bool | None = None
        self._called = asyncio.Event()

    def __call__(self) -> None:
        self.calls += 1
        self.deferred = self.station_id in self.store._deferred
        if self.order is not None:
            self.order.append(self.station_id)
        self._called.set()

    async def wait(self) -> Released:
        await asyncio.wait_for(self._called.wait(), DEADLINE)
        return self


def persist(
    store: StateStore, state: StationState, order: list[str] | None = None, epoch: int = 0
) -> tuple[Released, bool]:
    """persist() with a recording `then`; and whether the write went on the held connection (no task taken, and
    the caller not released at once as it is when the state is deferred)."""
    tasks = asyncio.all_tasks()
    released = Released(store, state.station_id, order)
    store.persist(state, released, epoch=epoch)
    assert released.calls == 0 or state.station_id in store._deferred  # only a deferral releases at once
    return released, released.calls == 0 and not (asyncio.all_tasks() - tasks)


async def persist_until_pipelined(store: StateStore, state: StationState, epoch: int = 0) -> int:
    """Persist `state` until it goes on the held connection, waiting for each write meanwhile; how many did not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    ordinary = 0
    while True:
        released, held = persist(store, state, epoch=epoch)
        await released.wait()
        assert released.calls == 1
        if held and not released.deferred:
            return ordinary
        ordinary += 1
        assert loop.time() < deadline, "the pipelined connection never came up"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def opened_store(url: str) -> AsyncIterator[tuple[redis.Redis, StateStore]]:
    """A state store on `url`, with the client the proxy uses (`app.redis_client`); both closed after."""
    client = connect(url, fail_fast=True)
    store = StateStore(client)
    try:
        yield client, store
    finally:
        await store.close()
        await client.aclose()


@pytest.fixture
async def store(redis_url: str, redis_client: redis.Redis) -> AsyncIterator[StateStore]:
    """A state store on the suite's Redis."""
    async with opened_store(redis_url) as (_, store):
        yield store


async def test_once_the_connection_is_held_a_state_is_in_redis_when_the_caller_is_called_back(
    store: StateStore, redis_client: redis.Redis
) -> None:
    before = failures()
    released, held = persist(store, station("CP1", 1))
    assert not held  # no connection held yet: an ordinary write
    assert (await released.wait()).deferred is False
    assert await stored(redis_client, "CP1") == station("CP1", 1)  # in Redis when the caller was called back
    await persist_until_pipelined(store, station("CP1", 2))
    for version in range(3, 8):
        released, held = persist(store, station("CP1", version))
        assert held  # the connection stays held: no task for this write
        assert released.calls == 0  # not before Redis acknowledged it
        assert (await released.wait()).deferred is False
        assert released.calls == 1
        assert await stored(redis_client, "CP1") == station("CP1", version)
    assert store._deferred == {}
    assert failures() == before


async def test_many_persists_of_several_stations_in_one_pass_are_acknowledged_in_order_latest_last(
    store: StateStore, redis_client: redis.Redis
) -> None:
    await persist_until_pipelined(store, station("CP0", 0))
    before = failures()
    states = {f"CP{index}": StationState(f"CP{index}") for index in range(1, 6)}
    order: list[str] = []
    expected: list[str] = []
    releases: list[Released] = []
    for version in range(1, 21):  # one pass: nothing awaited in between
        for station_id, state in states.items():
            state.next_request_id = version  # as the translator does: one state object, changed in place
            state.last_reset_type = f"{station_id} v{version}"
            released, held = persist(store, state, order)
            assert held
            releases.append(released)
            expected.append(station_id)
    assert order == []  # none before Redis answered
    for released in releases:
        await released.wait()
    assert order == expected  # called back in the order handed over, each once
    assert all(released.calls == 1 and released.deferred is False for released in releases)
    for state in states.values():
        assert (await stored(redis_client, state.station_id)) == state
        assert state.next_request_id == 20
    assert store._deferred == {}
    assert failures() == before


async def test_a_stalled_redis_cuts_the_connection_releases_the_caller_and_writes_the_state_once_back(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_store, "REPLY_TIMEOUT", 0.3)
    async with opened_store(redis_url) as (_, store), redis.Redis.from_url(redis_url) as admin:
        try:
            await persist_until_pipelined(store, station("STALL1", 1))
            before = failures()
            await admin.execute_command("CLIENT", "PAUSE", "3000", "WRITE")  # writes wait 3 s, replies with them
            released, held = persist(store, station("STALL1", 2))
            assert held
            # Not acknowledged within the reply timeout: the caller goes on, the state deferred (Redis still paused).
            assert (await released.wait()).deferred is True
            assert failures() > before
            released, _ = persist(store, station("STALL1", 3))  # while Redis stalls: never raises, releases
            assert (await released.wait()).deferred is True
            await until(holds(redis_client, station("STALL1", 3)))  # the deferred state, written once Redis answers
            await until(lambda: store._deferred == {})
            await persist_until_pipelined(store, station("STALL1", 4))  # a connection held again
            released, held = persist(store, station("STALL1", 5))
            assert held and (await released.wait()).deferred is False
            assert await stored(redis_client, "STALL1") == station("STALL1", 5)
        finally:
            await admin.execute_command("CLIENT", "UNPAUSE")


async def test_a_caller_that_gives_unavailable_is_told_of_a_deferral_instead_of_released(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`persist(..., unavailable=...)` (`--state-durability strict`): a deferred state calls `unavailable`, never
    `then`, whether the held connection went silent or Redis was already known to be away; written, `then`."""
    monkeypatch.setattr(state_store, "REPLY_TIMEOUT", 0.3)
    async with opened_store(redis_url) as (_, store), redis.Redis.from_url(redis_url) as admin:

        def persist_strict(state: StationState) -> tuple[Released, list[str]]:
            released, told = Released(store, state.station_id), list[str]()

            def unavailable() -> None:
                told.append(state.station_id)
                released._called.set()

            store.persist(state, released, unavailable=unavailable)
            return released, told

        try:
            await persist_until_pipelined(store, station("STRICT1", 1))
            released, told = persist_strict(station("STRICT1", 2))
            await released.wait()
            assert (released.calls, told) == (1, [])  # written: released
            await admin.execute_command("CLIENT", "PAUSE", "2000", "WRITE")
            released, told = persist_strict(station("STRICT1", 3))
            await released.wait()  # silent past the reply timeout
            assert (released.calls, told) == (0, ["STRICT1"])
            released, told = persist_strict(station("STRICT1", 4))  # Redis known to be away: told at once
            assert (released.calls, told) == (0, ["STRICT1"])
            assert store._deferred == {"STRICT1": station("STRICT1", 4)}  # kept, and retried all the same
            await until(holds(redis_client, station("STRICT1", 4)))
        finally:
            await admin.execute_command("CLIENT", "UNPAUSE")


async def test_a_redis_killed_and_restarted_gets_the_deferred_states_again() -> None:
    server = EmbeddedRedis().start()
    port = server.port
    try:
        async with opened_store(server.url) as (_, store), redis.Redis.from_url(server.url) as reader:
            await persist_until_pipelined(store, station("KILL1", 1))
            await persist_until_pipelined(store, station("KILL2", 1))
            assert await stored(reader, "KILL1") == station("KILL1", 1)
            before = failures()
            server.kill()
            for version in range(2, 12):  # Redis away: persist never raises, and the caller is released
                released, _ = persist(store, station("KILL1", version))
                assert (await released.wait()).deferred is True
                await asyncio.sleep(0.05)
            released, _ = persist(store, station("KILL2", 11))
            assert (await released.wait()).deferred is True
            assert failures() > before
            assert store._deferred == {"KILL1": station("KILL1", 11), "KILL2": station("KILL2", 11)}
            server = EmbeddedRedis(port).start()  # empty: no persistence
            await until(holds(reader, station("KILL1", 11)))
            await until(holds(reader, station("KILL2", 11)))
            await until(lambda: store._deferred == {})
            await persist_until_pipelined(store, station("KILL1", 12))
            assert await stored(reader, "KILL1") == station("KILL1", 12)
    finally:
        server.stop()


async def test_an_error_reply_defers_that_state_and_the_connection_serves_later_writes(
    store: StateStore, redis_client: redis.Redis
) -> None:
    old_maxmemory = str((await redis_client.config_get("maxmemory"))["maxmemory"])
    old_policy = str((await redis_client.config_get("maxmemory-policy"))["maxmemory-policy"])
    await persist_until_pipelined(store, station("OOM1", 1))
    await persist_until_pipelined(store, station("OOM2", 1))
    before = failures()
    try:
        await redis_client.config_set("maxmemory-policy", "noeviction")
        await redis_client.config_set("maxmemory", 1)  # every SET now answers "-OOM command not allowed ..."
        released, held = persist(store, station("OOM1", 2))
        assert held
        assert (await released.wait()).deferred is True  # refused: deferred, the caller released
        assert failures() > before
        assert "OOM2" not in store._deferred
        assert await stored(redis_client, "OOM1") == station("OOM1", 1)
    finally:
        await redis_client.config_set("maxmemory", old_maxmemory)
        await redis_client.config_set("maxmemory-policy", old_policy)
    await until(holds(redis_client, station("OOM1", 2)))  # the deferred state, retried
    await until(lambda: store._deferred == {})
    after_retry = failures()
    # The error was a reply like any other: the held connection still takes writes.
    released, held = persist(store, station("OOM2", 2))
    assert held
    assert (await released.wait()).deferred is False
    assert await stored(redis_client, "OOM2") == station("OOM2", 2)
    assert failures() == after_retry


async def test_on_a_redis_cluster_persists_are_pipelined_to_each_station_s_master_and_land(
    cluster: LocalRedisCluster,
) -> None:
    stations = ("CLU-A", "CLU-B", "CLU-C")  # keys in different slots, on different masters
    async with opened_store(cluster.url) as (client, store):
        before = failures()
        await client.ping()  # reads the slot map
        assert len({client.get_node_from_key(state_key(station_id)).name for station_id in stations}) == 3
        for station_id in stations:  # the first writes are ordinary ones, while each master's connection is made
            assert await persist_until_pipelined(store, station(station_id, 1)) < 10
        for version in range(2, 5):
            pending = []
            for station_id in stations:
                released, held = persist(store, station(station_id, version))
                assert held  # on the station's master's held connection: no task per write
                pending.append(released)
            for released in pending:
                assert (await released.wait()).deferred is False
            for station_id in stations:
                assert await stored(client, station_id) == station(station_id, version)
        assert len(store._by_master) == 3
        assert store._deferred == {}
        assert failures() == before


async def test_on_a_redis_cluster_a_write_to_a_master_that_lost_the_slot_follows_it(
    cluster: LocalRedisCluster,
) -> None:
    """A slot moved to another master (resharding): the held connection's write is redirected (MOVED, not run);
    it is made again the ordinary way, its caller released only once it landed, and the slot map is read again."""
    station_id = "MOVE1"
    slot = state_store._state_slot(station_id)
    target_port = next(port for port in cluster.ports if port != cluster.owner(slot))
    async with opened_store(cluster.url) as (client, store), redis.Redis(port=target_port) as target_node:
        await client.ping()
        assert await persist_until_pipelined(store, station(station_id, 1)) < 10
        source = client.get_node_from_key(state_key(station_id))
        await asyncio.to_thread(cluster.move_slot, slot, target_port)
        assert client.get_node_from_key(state_key(station_id)).port == source.port  # the client's map is stale

        released, held = persist(store, station(station_id, 2))
        assert held  # sent to the old master, which answers MOVED
        assert (await released.wait()).deferred is False
        assert await stored(client, station_id) == station(station_id, 2)
        assert await target_node.get(state_key(station_id)) is not None
        await until(lambda: client.get_node_from_key(state_key(station_id)).port == target_port)
        assert await persist_until_pipelined(store, station(station_id, 3)) < 10  # to the new master now
        assert await target_node.get(state_key(station_id)) == station(station_id, 3).dumps()


async def test_on_a_redis_cluster_a_stalled_master_s_writes_are_deferred_and_land_once_it_answers(
    cluster: LocalRedisCluster,
) -> None:
    """A master that stops answering (stalled, failing over) holds its stations' writes no longer than a plain
    Redis would: the caller is released with the state deferred, and the state is written once it answers. The
    other masters' stations go on as before, their writes acknowledged, not deferred."""
    station_id = "STALL1"
    port = cluster.owner(state_store._state_slot(station_id))
    others = (f"STALL-OTHER{n}" for n in range(1000))
    other = next(name for name in others if cluster.owner(state_store._state_slot(name)) != port)
    async with opened_store(cluster.url) as (client, store):
        await client.ping()
        assert await persist_until_pipelined(store, station(station_id, 1)) < 10
        assert await persist_until_pipelined(store, station(other, 1)) < 10
        before = failures()
        cluster.pause(port)  # for about a second: less than the cluster's node timeout (2 s)
        try:
            released, held = persist(store, station(station_id, 2))
            assert held
            assert (await released.wait()).deferred is True  # cut after REPLY_TIMEOUT without a reply
            assert failures() == before + 1
            released, held = persist(store, station(other, 2))
            assert held  # on its own master's connection, not deferred with the stalled master's
            assert (await released.wait()).deferred is False
            assert failures() == before + 1
        finally:
            cluster.resume(port)
        await until(holds(client, station(station_id, 2)))
        await until(lambda: station_id not in store._deferred)


async def test_on_a_redis_cluster_a_master_that_refuses_writes_is_waited_out_alone_and_logged_once(
    cluster: LocalRedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A master that refuses writes (out of memory here; every master answers CLUSTERDOWN while a replica of a
    failed one is elected) has its stations' writes deferred without being sent for RETRY_AFTER, as a plain Redis
    that refuses; the other masters' stations go on; the refusals are one warning, not one per write."""
    port = cluster.owner(state_store._state_slot("REFUSE0"))
    names = (f"REFUSE{n}" for n in range(1, 2000))
    same = ["REFUSE0", *[name for name in names if cluster.owner(state_store._state_slot(name)) == port][:4]]
    other = next(f"ACCEPT{n}" for n in range(1000) if cluster.owner(state_store._state_slot(f"ACCEPT{n}")) != port)
    async with opened_store(cluster.url) as (client, store), redis.Redis(port=port) as node:
        await client.ping()
        for station_id in (*same, other):
            assert await persist_until_pipelined(store, station(station_id, 1)) < 10
        await node.config_set("maxmemory-policy", "noeviction")
        await node.config_set("maxmemory", 1)  # every SET now answers "-OOM command not allowed ..."
        try:
            with caplog.at_level("WARNING", logger="cutover.state"):
                refused = [persist(store, station(station_id, 2)) for station_id in same]
                for released, held in refused:
                    assert held
                    assert (await released.wait()).deferred is True
                released, held = persist(store, station(same[0], 3))
                assert not held and released.deferred is True  # deferred at once: the master is waited out
                released, held = persist(store, station(other, 2))
                assert held and (await released.wait()).deferred is False
            assert len([r for r in caplog.records if "state_save_failed" in r.getMessage()]) == 1
        finally:
            await node.config_set("maxmemory", 0)
        await until(holds(client, station(same[0], 3)))
        for station_id in same[1:]:
            await until(holds(client, station(station_id, 2)))


async def test_on_a_redis_cluster_every_master_that_loses_its_data_gets_its_states_back(
    cluster: LocalRedisCluster,
) -> None:
    """A master restarted without persistence loses its own keys: each master holds a sentinel of the proxy,
    so a loss on any of them, not only on the one that holds a single sentinel, writes the states again."""
    nodes = [redis.Redis(port=port) for port in cluster.ports]
    async with opened_store(cluster.url) as (client, store):
        try:
            await client.ping()
            on_master: dict[str, str] = {}  # the master's "host:port" → a station whose state it holds
            for n in range(1000):
                station_id = f"LOSS{n}"
                on_master.setdefault(client.get_node_from_key(state_key(station_id)).name, station_id)
            assert len(on_master) == len(cluster.ports)
            for station_id in on_master.values():
                epoch, _ = await store.claim(station_id)
                assert await store.save(station(station_id, 1), epoch) is True

            async def sentinels_on_every_master() -> bool:
                return all([await node.keys("cutover:sentinel:*") for node in nodes])

            await until(sentinels_on_every_master)
            restores = REGISTRY.get_sample_value("cutover_state_restores_total") or 0.0
            for port, node in zip(cluster.ports, nodes, strict=True):
                lost = on_master[f"127.0.0.1:{port}"]
                await node.flushall()  # this master alone, as after its restart without persistence
                assert await stored(client, lost) is None
                await until(holds(client, station(lost, 1)))
                await until(sentinels_on_every_master)  # set again, for the next master's loss
            assert REGISTRY.get_sample_value("cutover_state_restores_total") == restores + len(nodes)
            for station_id in on_master.values():
                assert await stored(client, station_id) == station(station_id, 1)
        finally:
            for node in nodes:
                await node.aclose()


async def test_on_a_redis_cluster_a_master_failed_over_before_its_replica_got_its_last_writes_gets_them_again() -> (
    None
):
    """Replication is asynchronous: a master can acknowledge a state write, then die before its replica got it,
    and the replica that takes its slots over holds the older state (and the older claim), with no sentinel
    missing to tell. The proxy sees the master leave the slot map, writes its states again, fenced, and
    restores the newer claim's epoch, so the older session stays fenced out."""
    cluster = await asyncio.to_thread(LocalRedisCluster(masters=3, replicas=1).start)
    station_id = "FAILOVER1"
    master = cluster.owner(state_store._state_slot(station_id))
    replica_port = cluster.replica_ports[master][0]
    try:
        async with opened_store(cluster.url) as (client, store), redis.Redis(port=replica_port) as replica:
            writes_lost: list[str] = []
            store.writes_lost = lambda: writes_lost.append("counts")
            old_epoch, _ = await store.claim(station_id)
            assert await persist_until_pipelined(store, station(station_id, 1), old_epoch) < 10  # as the proxy does
            await replica.execute_command("READONLY")  # reads on a replica of the cluster
            await until(lambda: replica.get(state_key(station_id)))
            await until(lambda: store._masters is not None and store._masters._seen)  # the watcher knows the masters

            await asyncio.to_thread(cluster.hold_back_replication, master)
            new_epoch, _ = await store.claim(station_id)  # a newer session of the station: this process's too
            released, refused = persist_claimed(store, station(station_id, 2), new_epoch)
            assert (await released.wait()).deferred is False  # the master acknowledged it
            assert refused == []
            restores = REGISTRY.get_sample_value("cutover_state_restores_total") or 0.0
            await asyncio.to_thread(cluster.kill, master)
            await asyncio.to_thread(cluster.take_over, replica_port)
            assert await replica.get(state_key(station_id)) == station(station_id, 1).dumps()  # the older state

            await until(holds(client, station(station_id, 2)))
            assert await replica.get(state_key(station_id)) == station(station_id, 2).dumps()
            assert REGISTRY.get_sample_value("cutover_state_restores_total") == restores + 1
            await until(lambda: writes_lost == ["counts"])
            assert f"127.0.0.1:{master}" not in store._by_master
            # The newer claim's epoch is back: the older session's write is refused, the newer state stands.
            assert await store.save(station(station_id, 3), old_epoch) is False
            assert await stored(client, station_id) == station(station_id, 2)
            # And the hot path goes on, pipelined to the new master.
            assert await persist_until_pipelined(store, station(station_id, 4), new_epoch) < 10
            assert await replica.get(state_key(station_id)) == station(station_id, 4).dumps()
    finally:
        await asyncio.to_thread(cluster.stop)


# -- writes fenced by the station's epoch -------------------------------------------------------


def superseded_writes() -> float:
    return REGISTRY.get_sample_value("cutover_state_writes_superseded_total") or 0.0


def persist_claimed(
    store: StateStore, state: StationState, epoch: int
) -> tuple[Released, list[str]]:
    """persist() for a session holding `epoch`: `then` records the release, the refusal is noted apart."""
    released, refused = Released(store, state.station_id), list[str]()

    def superseded() -> None:
        refused.append(state.station_id)
        released._called.set()

    store.persist(state, released, epoch=epoch, superseded=superseded)
    return released, refused


async def test_a_write_of_an_earlier_claim_is_refused_and_the_newer_state_stands(
    store: StateStore, redis_client: redis.Redis
) -> None:
    old_epoch, _ = await store.claim("FENCE1")
    await persist_until_pipelined(store, station("FENCE1", 0))  # the held connection up
    released, refused = persist_claimed(store, station("FENCE1", 1), old_epoch)
    await released.wait()
    assert (released.calls, refused) == (1, [])
    new_epoch, _ = await store.claim("FENCE1")  # a newer session, here or on another instance
    assert new_epoch > old_epoch
    released, refused = persist_claimed(store, station("FENCE1", 2), new_epoch)
    await released.wait()
    before = superseded_writes()
    stale, refused = persist_claimed(store, station("FENCE1", 3), old_epoch)
    await stale.wait()
    assert (stale.calls, refused) == (0, ["FENCE1"])  # `superseded`, never `then`: its frames must not go
    assert superseded_writes() == before + 1
    assert await stored(redis_client, "FENCE1") == station("FENCE1", 2)
    assert "FENCE1" not in store._local  # this process's copy was the stale one


async def test_an_ordinary_write_and_a_deferred_one_are_fenced_too(
    store: StateStore, redis_client: redis.Redis
) -> None:
    old_epoch, _ = await store.claim("FENCE2")
    assert await store.save(station("FENCE2", 1), old_epoch) is True
    new_epoch, _ = await store.claim("FENCE2")
    assert await store.save(station("FENCE2", 2), new_epoch) is True
    assert await store.save(station("FENCE2", 3), old_epoch) is False
    assert await stored(redis_client, "FENCE2") == station("FENCE2", 2)
    # A state deferred while Redis was away, retried after a newer claim: dropped, not written over it.
    store._epochs["FENCE2"] = old_epoch
    store._defer(station("FENCE2", 4))
    await until(lambda: store._deferred == {})
    assert await stored(redis_client, "FENCE2") == station("FENCE2", 2)


async def test_on_a_redis_cluster_writes_are_fenced_too(cluster: LocalRedisCluster) -> None:
    async with opened_store(cluster.url) as (client, store):
        for station_id in ("CLU-F1", "CLU-F2", "CLU-F3"):  # different slots, on different masters
            old_epoch, _ = await store.claim(station_id)
            new_epoch, _ = await store.claim(station_id)
            released, refused = persist_claimed(store, station(station_id, 1), new_epoch)
            await released.wait()
            assert (released.calls, refused) == (1, [])
            stale, refused = persist_claimed(store, station(station_id, 2), old_epoch)
            await stale.wait()
            assert (stale.calls, refused) == (0, [station_id])
            assert await stored(client, station_id) == station(station_id, 1)
            epoch, loaded = await store.claim(station_id)  # the claim and the read in one round trip, one slot
            assert epoch > new_epoch and loaded == station(station_id, 1)


async def test_a_claim_after_redis_lost_its_data_still_outranks_the_sessions_from_before(
    store: StateStore, redis_client: redis.Redis
) -> None:
    old_epoch, _ = await store.claim("FENCE3")
    assert await store.save(station("FENCE3", 1), old_epoch) is True
    await redis_client.flushdb()  # a Redis restarted without persistence: the epochs are gone too
    new_epoch, loaded = await store.claim("FENCE3")
    assert new_epoch > old_epoch and loaded == station("FENCE3", 1)  # this process's copy
    assert await store.save(station("FENCE3", 2), new_epoch) is True
    assert await store.save(station("FENCE3", 3), old_epoch) is False
    assert await stored(redis_client, "FENCE3") == station("FENCE3", 2)
    raw = await redis_client.hget("cutover:station:{FENCE3}", "epoch")
    assert raw is not None and int(raw) == new_epoch  # kept exactly (microseconds exceed a float's %g)
