"""Shadow workers end to end: chargers → proxy → reference legacy CSMS, the tee in Redis, shadow workers on
the built-in 2.0.1 backend comparing every answer and reconciling every transaction."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as redis
from prometheus_client import REGISTRY

from peers.charger201 import Charger201
from peers.faultproxy import FaultProxy
from peers.legacy_csms import LegacyCsms
from proxy.app import RunningProxy
from proxy.redis_client import connect
from proxy.redis_embedded import EmbeddedRedis, free_port
from proxy.tee import envelope, stream_key
from shadow import records, worker
from shadow.processor import ReferenceBackend
from shadow.reference_csms import ReferenceCsms
from shadow.worker import GROUP, ShadowWorker
from tests.conftest import proxy_url

TOKENS = {"TAG0001", "TAG0002", "TAG0003"}


async def drained(client: redis.Redis) -> bool:
    """Every tee entry was delivered to a shadow worker and acknowledged."""
    async for key in client.scan_iter(match="cutover:tee:*"):
        info = await client.xinfo_stream(key)
        groups = {g["name"].decode(): g for g in await client.xinfo_groups(key)}
        group = groups.get(GROUP)
        if group is None or group["pending"] or group["last-delivered-id"] != info["last-generated-id"]:
            return False
    return True


@pytest.fixture
def lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "LEASE_SECONDS", 1.0)
    monkeypatch.setattr(worker, "RENEW_SECONDS", 0.3)


def own_client(redis_url: str) -> redis.Redis:
    """A worker's own connection pool, as a separate process would have."""
    return redis.Redis.from_url(redis_url)


@pytest.fixture
async def shadow(redis_url: str, redis_client: redis.Redis, lease: None) -> AsyncIterator[Callable[..., object]]:
    """Starts a shadow worker on the built-in backend accepting the given tokens; stops it at the end."""
    started: list[tuple[asyncio.Event, asyncio.Task[None], redis.Redis]] = []

    async def run(tokens: set[str]) -> None:
        client, stop = own_client(redis_url), asyncio.Event()
        shadow = ShadowWorker(client, lambda: ReferenceBackend(ReferenceCsms(tokens)), name=f"w{len(started)}")
        started.append((stop, asyncio.create_task(shadow.run(stop)), client))

    yield run
    for stop, task, client in started:
        stop.set()
        await asyncio.wait_for(task, 10)
        await client.aclose()


async def charge(proxy: RunningProxy, station: str, token: str, authorize_first: bool = True) -> Charger201:
    charger = Charger201(station, proxy_url(proxy))
    await charger.connect()
    await charger.boot()
    await charger.status(1, 1, "Available")
    await charger.run_session(id_token=token, samples=2, interval=0.01, authorize_first=authorize_first)
    await charger.close()
    return charger


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


T0, T1 = "2026-11-24T19:43:27.000Z", "2026-11-24T19:50:00.000Z"
Tee = list[tuple[str, str, str, list[Any]]]


def crafted_transaction(tx_id: str, legacy_id: int, legacy_meter_stop: int) -> tuple[Tee, Tee]:
    """The tee of one transaction through the proxy (start part, end part): 100 -> 5100 Wh on the charger's
    side, `legacy_meter_stop` told to the legacy."""
    started: Tee = [
        ("charger", "in", "ocpp2.0.1", [2, f"{tx_id}-1", "TransactionEvent", {
            "eventType": "Started", "seqNo": 0, "timestamp": T0, "triggerReason": "Authorized",
            "transactionInfo": {"transactionId": tx_id}, "evse": {"id": 1},
            "idToken": {"idToken": "TAG0001", "type": "ISO14443"},
            "meterValue": [{"timestamp": T0, "sampledValue": [{"value": 100, "context": "Transaction.Begin"}]}]}]),
        ("legacy", "out", "ocpp1.6", [2, f"{tx_id}-p1", "StartTransaction", {
            "connectorId": 1, "idTag": "TAG0001", "meterStart": 100, "timestamp": T0}]),
        ("legacy", "in", "ocpp1.6", [3, f"{tx_id}-p1", {"transactionId": legacy_id,
                                                          "idTagInfo": {"status": "Accepted"}}]),
        ("charger", "out", "ocpp2.0.1", [3, f"{tx_id}-1", {"idTokenInfo": {"status": "Accepted"}}]),
    ]  # fmt: skip
    ended: Tee = [
        ("charger", "in", "ocpp2.0.1", [2, f"{tx_id}-2", "TransactionEvent", {
            "eventType": "Ended", "seqNo": 1, "timestamp": T1, "triggerReason": "EVDeparted",
            "transactionInfo": {"transactionId": tx_id, "stoppedReason": "EVDisconnected"},
            "meterValue": [{"timestamp": T1, "sampledValue": [{"value": 5100, "context": "Transaction.End"}]}]}]),
        ("legacy", "out", "ocpp1.6", [2, f"{tx_id}-p2", "StopTransaction", {
            "transactionId": legacy_id, "meterStop": legacy_meter_stop, "timestamp": T1,
            "reason": "EVDisconnected"}]),
        ("legacy", "in", "ocpp1.6", [3, f"{tx_id}-p2", {}]),
        ("charger", "out", "ocpp2.0.1", [3, f"{tx_id}-2", {}]),
    ]  # fmt: skip
    return started, ended


async def add_to_tee(client: redis.Redis, station: str, frames: Tee, first_seq: int = 0) -> None:
    for seq, (leg, direction, proto, frame) in enumerate(frames, first_seq):
        packed = envelope(station, f"c-{station}", seq, leg, direction, proto, orjson.dumps(frame))
        await client.xadd(stream_key(station, 16), {"e": packed})


async def test_identical_token_lists_give_no_divergence(
    proxy: RunningProxy, legacy: LegacyCsms, redis_client: redis.Redis, shadow: Callable[[set[str]], object]
) -> None:
    await shadow(TOKENS)  # type: ignore[misc]
    await charge(proxy, "SH01", "TAG0001")
    await charge(proxy, "SH02", "TAG0002", authorize_first=False)
    await proxy.tee.flush()
    await asyncio.wait_for(until(lambda: drained(redis_client)), 15)
    found, _ = await records.query(redis_client)
    assert found == []
    comparisons = {k.decode(): int(v) for k, v in (await redis_client.hgetall(records.COMPARISONS)).items()}
    assert comparisons["TransactionEvent"] >= 8 and comparisons["Authorize"] == 2 and comparisons["Transaction"] == 2


async def until(predicate: Callable[[], object]) -> None:
    """Poll an async condition (a Redis state this test cannot be notified of)."""
    while not await predicate():  # type: ignore[misc]  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def test_token_the_shadow_rejects_is_a_status_mismatch(
    proxy: RunningProxy,
    legacy: LegacyCsms,
    redis_url: str,
    redis_client: redis.Redis,
    shadow: Callable[[set[str]], object],
) -> None:
    before = sample("cutover_divergences_total", {"action": "Authorize", "kind": "status_mismatch"})
    await shadow(TOKENS - {"TAG0003"})  # type: ignore[misc]
    await charge(proxy, "SH03", "TAG0003")
    await proxy.tee.flush()
    await asyncio.wait_for(until(lambda: drained(redis_client)), 15)
    found, _ = await records.query(redis_client, station="SH03")
    kinds = sorted({(r["action"], r["kind"], r["path"], r["live"], r["shadow"]) for r in found})
    assert kinds == [
        ("Authorize", "status_mismatch", "idTokenInfo.status", "Accepted", "Invalid"),
        ("TransactionEvent", "status_mismatch", "idTokenInfo.status", "Accepted", "Invalid"),
    ]
    assert sample("cutover_divergences_total", {"action": "Authorize", "kind": "status_mismatch"}) == before + 1
    listed = subprocess.run(
        [sys.executable, "-m", "proxy", "divergences", "--redis-url", redis_url,
         "--station", "SH03", "--kind", "status_mismatch"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "Authorize" in listed.stdout and "idTokenInfo.status" in listed.stdout


async def test_transaction_energy_divergence_carries_both_values(
    redis_client: redis.Redis, shadow: Callable[[set[str]], object]
) -> None:
    """The legacy recorded a meterStop other than the 2.0.1 stream's (a crafted tee)."""
    station = "SH04"
    started, ended = crafted_transaction("tx", 9, legacy_meter_stop=4900)
    await add_to_tee(redis_client, station, started + ended)
    await shadow(TOKENS)  # type: ignore[misc]
    await asyncio.wait_for(until(lambda: drained(redis_client)), 15)
    found, _ = await records.query(redis_client, station=station, action="Transaction")
    assert [(r["kind"], r["path"], r["live"], r["shadow"]) for r in found] == [
        ("transaction_mismatch", "meterStop", 4900, 5100)
    ]


async def test_a_killed_worker_loses_no_comparison_and_nothing_counts_twice(
    proxy: RunningProxy, legacy: LegacyCsms, redis_url: str, redis_client: redis.Redis
) -> None:
    first = subprocess.Popen(
        [sys.executable, "-m", "proxy", "shadow", "--redis-url", redis_url, "--tokens", ",".join(TOKENS)],
        stderr=subprocess.PIPE,
    )
    charger = Charger201("SH05", proxy_url(proxy))
    try:
        await charger.connect()
        await charger.boot()
        await charger.status(1, 1, "Available")
        await charger.start_transaction(1, "TAG0001")
        await proxy.tee.flush()
        await asyncio.wait_for(until(lambda: compared(redis_client, "TransactionEvent")), 15)
    finally:
        first.send_signal(signal.SIGKILL)  # killed: leases held, entries read and left unacknowledged
        first.wait()

    await charger.sample(1, 1000)
    await charger.stop_transaction(1, "Local", "StopAuthorized", "TAG0001")
    await charger.close()
    await proxy.tee.flush()
    second = ShadowWorker(own_client(redis_url), lambda: ReferenceBackend(ReferenceCsms(TOKENS)), name="second")
    stop_second = asyncio.Event()
    second_task = asyncio.create_task(second.run(stop_second))
    await asyncio.wait_for(until(lambda: drained(redis_client)), 30)  # after the first's leases lapse
    stop_second.set()
    await asyncio.wait_for(second_task, 10)

    answered = [f for f in charger.frames_in if f[0] in (3, 4)]  # every CALL the charger made was answered
    counts = await redis_client.hgetall(records.COMPARISONS)
    assert sum(int(v) for k, v in counts.items() if k != b"Transaction") == len(answered)
    assert int(counts[b"Transaction"]) == 1
    found, _ = await records.query(redis_client, station="SH05")
    assert found == []


async def compared(client: redis.Redis, action: str) -> bool:
    return bool(await client.hget(records.COMPARISONS, action))


async def test_a_new_owner_rebuilds_what_the_previous_one_knew(redis_url: str, redis_client: redis.Redis) -> None:
    """The start of a transaction was processed (and acknowledged) by a worker that then died: the next owner
    still reconciles the transaction when it ends."""
    station = "SH06"
    started, ended = crafted_transaction("tx6", 6, legacy_meter_stop=4900)
    key = stream_key(station, 16)
    await add_to_tee(redis_client, station, started)
    await redis_client.xgroup_create(key, GROUP, id="0", mkstream=True)
    read: Any = await redis_client.xreadgroup(GROUP, "dead", {key: ">"})
    await redis_client.xack(key, GROUP, *[entry_id for entry_id, _ in read[0][1]])  # the dead owner's work
    await add_to_tee(redis_client, station, ended, len(started))

    client = own_client(redis_url)
    stop = asyncio.Event()
    task = asyncio.create_task(
        ShadowWorker(client, lambda: ReferenceBackend(ReferenceCsms(TOKENS)), name="next").run(stop)
    )
    try:
        await asyncio.wait_for(until(lambda: drained(redis_client)), 15)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await client.aclose()
    found, _ = await records.query(redis_client, station=station, action="Transaction")
    assert [(r["kind"], r["path"], r["live"], r["shadow"]) for r in found] == [
        ("transaction_mismatch", "meterStop", 4900, 5100)
    ]


async def test_divergence_rate_rolls_a_cut_over_station_back(
    redis_url: str, redis_client: redis.Redis, lease: None
) -> None:
    """Only for a station in cutover mode, and only above the rate."""
    from proxy import routing

    for station in ("DIV01", "DIV02"):
        await routing.switch(redis_client, [station], "cutover", force=False, reason="", actor="test", dry_run=False)
    await routing.switch(redis_client, ["DIV02"], "legacy", force=False, reason="", actor="test", dry_run=False)
    for station in ("DIV01", "DIV02"):
        for n in range(4):  # the shadow rejects UNKNOWN; the live answer was Accepted: a status_mismatch each
            frames = [
                ("in", [2, f"a{n}", "Authorize", {"idToken": {"idToken": "UNKNOWN", "type": "ISO14443"}}]),
                ("out", [3, f"a{n}", {"idTokenInfo": {"status": "Accepted"}}]),
            ]
            for seq, (direction, frame) in enumerate(frames, 2 * n):
                packed = envelope(station, f"c-{station}", seq, "charger", direction, "ocpp2.0.1", orjson.dumps(frame))
                await redis_client.xadd(stream_key(station, 16), {"e": packed})
    client, stop = own_client(redis_url), asyncio.Event()
    worker = ShadowWorker(
        client, lambda: ReferenceBackend(ReferenceCsms(TOKENS)), name="judge", divergence_rule=(0.5, 4)
    )
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(until(lambda: drained(redis_client)), 15)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await client.aclose()
    assert await routing.mode_of(redis_client, "DIV01") == "legacy"  # rolled back by the rule
    (last, *_) = await routing.audit_entries(redis_client, station="DIV01")
    assert last["by"] == "rule:divergence_rate"
    (last, *_) = await routing.audit_entries(redis_client, station="DIV02")
    assert last["by"] == "test"  # already on legacy: the rule had nothing to do


async def test_a_station_taken_out_of_the_shadow_is_not_compared(
    redis_client: redis.Redis, shadow: Callable[[set[str]], object]
) -> None:
    from proxy import routing

    await routing.enroll(redis_client, ["SH07"], False, "test")
    started, ended = crafted_transaction("tx7", 7, legacy_meter_stop=4900)  # would diverge if compared
    await add_to_tee(redis_client, "SH07", started + ended)
    await shadow(TOKENS)  # type: ignore[misc]
    await asyncio.wait_for(until(lambda: drained(redis_client)), 15)
    assert (await records.query(redis_client, station="SH07"))[0] == []
    assert await redis_client.hgetall(records.COMPARISONS) == {}
    await routing.enroll(redis_client, ["SH07"], True, "test")
    assert await routing.is_enrolled(redis_client, "SH07")


class SlowBackend(ReferenceBackend):
    """The built-in backend, taking longer per answer than a lease lasts over the whole batch."""

    async def answer(self, station: str, action: str, payload: dict[str, Any], timestamp: str) -> Any:
        await asyncio.sleep(0.05)
        return await super().answer(station, action, payload, timestamp)


async def test_a_long_batch_keeps_the_leases(redis_url: str, redis_client: redis.Redis, lease: None) -> None:
    """Found by the soak: leases were renewed only between batches, so a batch longer than a lease lost the
    shards to other workers mid-batch (and they replayed the shard's history: Redis drowned in it)."""
    for n in range(40):  # 40 × 50 ms = 2 s, twice the lease
        for seq, (direction, frame) in enumerate(
            (("in", [2, f"h{n}", "Heartbeat", {}]), ("out", [3, f"h{n}", {"currentTime": "2026-12-02T00:00:00Z"}])),
            2 * n,
        ):
            packed = envelope("SLOW01", "c-slow", seq, "charger", direction, "ocpp2.0.1", orjson.dumps(frame))
            await redis_client.xadd(stream_key("SLOW01", 16), {"e": packed})
    client, stop = own_client(redis_url), asyncio.Event()
    slow = ShadowWorker(client, lambda: SlowBackend(ReferenceCsms(TOKENS)), name="slow")
    task = asyncio.create_task(slow.run(stop))
    try:
        await asyncio.wait_for(until(lambda: drained(redis_client)), 15)
        assert len(slow.owned) == 16  # no lease lapsed while the batch was worked through
        assert await redis_client.zscore(worker.WORKERS, "slow") is not None
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await client.aclose()
    assert await redis_client.zscore(worker.WORKERS, "slow") is None  # released on the way out


async def test_a_worker_waits_for_a_redis_it_cannot_reach_at_start(redis_url: str, lease: None) -> None:
    """Its Redis unreachable when the worker starts (a deployment's pods come up in any order): it waits, then
    consumes; it does not exit."""
    own = EmbeddedRedis().start()
    gate = await FaultProxy(own.port).start()
    gate.reset()  # every connection reset
    client = redis.Redis.from_url(f"redis://127.0.0.1:{gate.port}/0")
    shadow, stop = ShadowWorker(client, lambda: ReferenceBackend(ReferenceCsms(TOKENS)), name="late"), asyncio.Event()
    task = asyncio.create_task(shadow.run(stop))
    try:
        await asyncio.sleep(1.5)
        assert not task.done()
        gate.heal()
        started, _ = crafted_transaction("tx-late", 1, 5100)
        await add_to_tee(client, "LATE01", started)
        await asyncio.wait_for(until(lambda: drained(client)), 15)
        assert shadow.processed == len(started)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await client.aclose()
        await gate.stop()
        own.stop()


async def test_a_worker_waits_for_a_redis_cluster_with_no_node_reachable() -> None:
    """redis-py's cluster client raises RedisClusterException, not a RedisError, when it reaches no node: the
    worker waits for the cluster as for a plain Redis."""
    client = connect(f"redis+cluster://127.0.0.1:{free_port()}")
    shadow = ShadowWorker(client, lambda: ReferenceBackend(ReferenceCsms(TOKENS)), name="nocluster")
    stop = asyncio.Event()
    task = asyncio.create_task(shadow.run(stop))
    await asyncio.sleep(1.5)
    assert not task.done()  # still waiting: not ended by the exception
    stop.set()
    await asyncio.wait_for(task, 10)
    await client.aclose()
