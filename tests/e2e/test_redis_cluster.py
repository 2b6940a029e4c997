"""The whole flow on a Redis Cluster (`--redis-url redis+cluster://...`): a 2.0.1 charger through the proxy to the
reference legacy CSMS, the tee spread over the cluster's nodes and consumed by a shadow worker, a switch to the new
2.0.1 CSMS by the CLI and back, all over three masters of a real cluster."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms, wait_for
from peers.redis_cluster import LocalRedisCluster
from proxy import routing
from proxy.app import RunningProxy, start_proxy
from proxy.passwords import password_key
from proxy.redis_client import connect, is_cluster_client
from proxy.state_store import state_key
from shadow import records, worker
from shadow.processor import ReferenceBackend
from shadow.reference_csms import ReferenceCsms
from shadow.streams import read_envelopes
from shadow.worker import GROUP, ShadowWorker
from tests.conftest import proxy_url, settings_for
from tests.peers.native_csms import NativeCsms

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def cluster_client(cluster: LocalRedisCluster) -> AsyncIterator[redis.Redis]:
    client = connect(cluster.url)
    await client.flushall()  # on a cluster client: every master
    yield client
    await client.aclose()


@pytest.fixture
async def cluster_proxy(
    cluster: LocalRedisCluster, cluster_client: redis.Redis, legacy: LegacyCsms, native: NativeCsms
) -> AsyncIterator[RunningProxy]:
    settings = settings_for(legacy)
    settings.native_url = native.url
    settings.reconcile_seconds = 60.0  # the switch must arrive by pub/sub, not by the periodic comparison
    running = await start_proxy(settings, cluster.url, None)
    yield running
    await running.stop()


@pytest.fixture
async def shadow_worker(cluster: LocalRedisCluster, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ShadowWorker]:
    monkeypatch.setattr(worker, "RENEW_SECONDS", 0.3)
    client, stop = connect(cluster.url), asyncio.Event()
    shadow = ShadowWorker(client, lambda: ReferenceBackend(ReferenceCsms({"TAG0001"})), name="cluster-w0")
    task = asyncio.create_task(shadow.run(stop))
    yield shadow
    stop.set()
    await asyncio.wait_for(task, 10)
    await client.aclose()


async def drained(client: redis.Redis) -> bool:
    """Every tee entry was delivered to the shadow worker and acknowledged."""
    async for key in client.scan_iter(match="cutover:tee:*"):
        info = await client.xinfo_stream(key)
        group = next((g for g in await client.xinfo_groups(key) if g["name"] == GROUP.encode()), None)
        if group is None or group["pending"] or group["last-delivered-id"] != info["last-generated-id"]:
            return False
    return True


async def eventually(predicate: object, seconds: float = 10.0) -> None:
    async def poll() -> None:
        while not await predicate():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), seconds)


def cutover_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=30)


async def test_charging_tee_shadow_and_switches_on_a_redis_cluster(
    cluster: LocalRedisCluster,
    cluster_client: redis.Redis,
    cluster_proxy: RunningProxy,
    shadow_worker: ShadowWorker,
    legacy: LegacyCsms,
    native: NativeCsms,
) -> None:
    assert is_cluster_client(cluster_proxy.store.client) and is_cluster_client(cluster_proxy.tee.client)
    stations = [f"CL{n:02d}" for n in range(6)]  # crc32 % 16 puts them on several shards, hence several nodes
    chargers = [Charger201(s, proxy_url(cluster_proxy), auto_reconnect=True, reconnect_delay=0.05) for s in stations]
    for charger in chargers:
        await charger.connect()
        await charger.boot()
        await charger.status(1, 1, "Available")
    await chargers[0].run_session(id_token="TAG0001", samples=2, interval=0.01)
    (done,) = [tx for tx in legacy.transactions.values() if tx.station_id == "CL00"]
    assert done.ended and done.meter_start == 0 and done.meter_stop == 3000

    # The station state and the tee are in the cluster, the tee on more than one master.
    assert await cluster_client.get(state_key("CL00")) is not None
    await cluster_proxy.tee.flush()
    envelopes = await read_envelopes(cluster_client)
    assert {e["station"] for e in envelopes} == set(stations)
    masters = set()
    async for key in cluster_client.scan_iter(match="cutover:tee:*"):
        masters.add(cluster_client.get_node_from_key(key).port)  # type: ignore[attr-defined]
    assert len(masters) > 1

    # The shadow worker consumed every shard (one XREADGROUP per slot) and compared the session.
    await eventually(lambda: drained(cluster_client), 15)
    comparisons = {k.decode(): int(v) for k, v in (await cluster_client.hgetall(records.COMPARISONS)).items()}
    assert comparisons["Authorize"] == 1 and comparisons["Transaction"] == 1 and comparisons["BootNotification"] == 6
    assert await records.query(cluster_client) == ([], None)

    # A switch by the CLI reaches the proxy over the cluster's pub/sub; the station reconnects to the new CSMS.
    moved = cutover_cli("switch", "--to", "cutover", "--station", "CL01", "--reason", "pilot", "--redis-url",
                        cluster.url)  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert "switched" in moved.stdout
    await wait_for(lambda: len(native.boots) == 1 and chargers[1].connected, timeout=10)
    status = cutover_cli("status", "--redis-url", cluster.url)
    assert status.returncode == 0, status.stderr
    assert any(line.split()[:2] == ["CL01", "cutover"] for line in status.stdout.splitlines()), status.stdout

    (back,) = await routing.switch(cluster_client, ["CL01"], "legacy", force=False, reason="back", actor="test",
                                   dry_run=False)  # fmt: skip
    assert back.outcome == "switched"
    await wait_for(lambda: chargers[1].connected and "CL01" in legacy.connected, timeout=10)
    await chargers[1].run_session(id_token="TAG0001", samples=1, interval=0.01)
    assert len([tx for tx in legacy.transactions.values() if tx.station_id == "CL01" and tx.ended]) == 1
    audit = await routing.audit_entries(cluster_client, station="CL01")
    assert [(e["from"], e["to"]) for e in audit] == [("cutover", "legacy"), ("legacy", "cutover")]
    for charger in chargers:
        await charger.close()

    # The one-shot commands speak to the cluster too.
    listed = cutover_cli("divergences", "--redis-url", cluster.url)
    assert listed.returncode == 0 and "no divergences" in listed.stdout, listed.stderr
    stored = subprocess.run([sys.executable, "-m", "proxy", "passwords", "set", "CL09", "--redis-url", cluster.url],
                            input="a-password-of-24-chars!!\n", capture_output=True, text=True, timeout=30)  # fmt: skip
    assert stored.returncode == 0, stored.stderr
    assert await cluster_client.get(password_key("CL09")) is not None
