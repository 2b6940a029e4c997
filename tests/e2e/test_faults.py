"""Faults on the live path: proxy killed mid-transaction, legacy down or dropping, Redis killed, a mute
legacy. Charging must go on or resume, and nothing billable may be lost."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as redis
from prometheus_client import REGISTRY
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from peers.charger201 import Charger201
from peers.faultproxy import FaultProxy
from peers.ledger import charger_transactions, check
from peers.legacy_csms import LegacyCsms, LegacyFaults, wait_for
from proxy.app import RunningProxy, start_proxy
from proxy.redis_embedded import EmbeddedRedis, free_port
from proxy.routing import station_key
from proxy.state_store import StateStore, StateUnavailable, state_key
from tests.conftest import proxy_url, settings_for
from tests.frames import invalid_emitted_frames, tee_envelopes
from translators.state import StationState


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class ProxyProcess:
    """`cutover proxy` as a real child process, killed with SIGKILL as a crash would."""

    def __init__(self, port: int, legacy_url: str, redis_url: str, native_url: str | None = None) -> None:
        self.port, self.legacy_url, self.redis_url = port, legacy_url, redis_url
        self.extra = ["--native-url", native_url] if native_url else []
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "proxy", "--listen", f"127.0.0.1:{self.port}",
             "--legacy-url", self.legacy_url, "--redis-url", self.redis_url,
             "--admin-listen", f"127.0.0.1:{free_port()}", "--call-timeout", "5", "--security-profile", "0",
             *self.extra],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        await wait_for(lambda: port_open(self.port), timeout=15)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    async def stop(self) -> None:
        """SIGTERM and wait without blocking the loop (the legacy CSMS in this process must still answer)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            process = self.process
            await wait_for(lambda: process.poll() is not None, timeout=10)


async def test_proxy_killed_mid_transaction_resumes_it(
    legacy: LegacyCsms, redis_url: str, redis_client: redis.Redis
) -> None:
    port = free_port()
    process = ProxyProcess(port, legacy.url, redis_url)
    await process.start()
    charger = Charger201("KILL01", f"ws://127.0.0.1:{port}/ocpp", auto_reconnect=True, reconnect_delay=0.1)
    try:
        await charger.connect()
        await charger.boot()
        await charger.status(1, 1, "Available")
        tx_id = await charger.start_transaction(1, "TAG0001")
        await charger.charging(1)
        await charger.sample(1, 2000)
        (legacy_tx,) = legacy.open_transactions("KILL01")

        process.kill()
        await wait_for(lambda: not charger.connected, timeout=5)
        await charger.sample(1, 1500)  # offline: queued by the charger
        await charger.stop_transaction(1, "Local", "StopAuthorized", "TAG0001")
        assert charger.queued == 2

        await process.start()
        await wait_for(lambda: legacy_tx.ended, timeout=15)
    finally:
        await charger.close()
        await process.stop()

    assert list(legacy.transactions) == [legacy_tx.transaction_id]  # no second transaction was opened
    reported = charger.transactions[tx_id]
    assert legacy_tx.meter_stop == reported["meter_stop_wh"] == reported["meter_start_wh"] + 3500
    assert legacy_tx.stop_id_tag == "TAG0001"
    assert len(legacy_tx.meter_values) == 2
    assert invalid_emitted_frames(await tee_envelopes(redis_client)) == []  # both proxy processes' frames


async def test_legacy_down_closes_the_charger_and_queued_events_arrive_in_order(
    proxy: RunningProxy, legacy: LegacyCsms
) -> None:
    charger = Charger201("DOWN01", proxy_url(proxy), auto_reconnect=True, reconnect_delay=0.1)
    await charger.connect()
    await charger.boot()
    await charger.status(1, 1, "Available")
    tx_id = await charger.start_transaction(1, "TAG0001")
    (legacy_tx,) = legacy.open_transactions("DOWN01")
    port = legacy.port

    await legacy.stop()
    await wait_for(lambda: not charger.connected, timeout=5)
    for wh in (1000, 1000, 500):
        await charger.sample(1, wh)
    await charger.stop_transaction(1, "EVDisconnected", "EVCommunicationLost")
    await asyncio.sleep(0.5)  # the charger keeps trying; the proxy keeps refusing it without a legacy
    assert not charger.connected

    await legacy.start(port=port)
    await legacy.wait_for(lambda: legacy_tx.ended, timeout=15)
    await charger.close()
    values = [mv["sampledValue"][0]["value"] for mv in legacy_tx.meter_values]
    start = charger.transactions[tx_id]["meter_start_wh"]
    assert values == [str(start + 1000), str(start + 2000), str(start + 2500)]  # in order
    assert legacy_tx.meter_stop == start + 2500
    assert legacy_tx.stop_reason == "EVDisconnected"


async def test_legacy_dropping_a_station_closes_that_charger_socket(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    async with connect(proxy_url(proxy) + "/DROP01", subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        await legacy.wait_for(lambda: "DROP01" in legacy.connected)
        await legacy.disconnect("DROP01")
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code in (1001, 1011)
    assert "legacy CSMS" in closed.value.rcvd.reason


async def test_unreachable_legacy_refuses_the_charger_with_a_reason(
    legacy: LegacyCsms, redis_url: str, redis_client: redis.Redis
) -> None:
    settings = settings_for(legacy)
    settings.legacy_url = f"ws://127.0.0.1:{free_port()}/nothing-here"
    running = await start_proxy(settings, redis_url, None)
    try:
        async with connect(proxy_url(running) + "/NOPE01", subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
    finally:
        await running.stop()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1011, "legacy CSMS unreachable")


@pytest.fixture
async def mute_legacy() -> AsyncIterator[str]:
    """A 1.6 'CSMS' that accepts connections and never answers."""

    async def swallow(connection: ServerConnection) -> None:
        async for _ in connection:
            pass

    async with serve(swallow, "127.0.0.1", 0, subprotocols=["ocpp1.6"]) as server:  # type: ignore[list-item]
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ocpp"


async def test_unanswered_call_gets_a_callerror_not_silence(
    legacy: LegacyCsms, mute_legacy: str, redis_url: str, redis_client: redis.Redis
) -> None:
    settings = settings_for(legacy, call_timeout=0.3)
    settings.legacy_url = mute_legacy
    running = await start_proxy(settings, redis_url, None)
    try:
        async with connect(proxy_url(running) + "/MUTE01", subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
            await ws.send('[2, "h1", "Heartbeat", {}]')
            await ws.send('[2, "h2", "Heartbeat", {}]')  # queued behind h1, then timed out in turn
            first = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
            second = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
    finally:
        await running.stop()
    assert first[:3] == [4, "h1", "InternalError"]
    assert "did not answer Heartbeat within 0.3 s" in first[3]
    assert second[:3] == [4, "h2", "InternalError"]


async def test_redis_killed_during_traffic(legacy: LegacyCsms) -> None:
    own_redis = EmbeddedRedis().start()
    running = await start_proxy(settings_for(legacy), own_redis.url, None)
    charger = Charger201("REDIS01", proxy_url(running))
    try:
        await charger.connect()
        await charger.boot()
        await charger.status(1, 1, "Available")
        tx_id = await charger.start_transaction(1, "TAG0001")
        await running.tee.flush()
        written_before = running.tee.written

        own_redis.kill()
        for _ in range(3):
            await charger.sample(1, 1000)  # charging goes on without Redis
        await wait_for(lambda: running.tee.dropped > 0, timeout=5)

        restarted = EmbeddedRedis(port=own_redis.port).start()
        await asyncio.sleep(0.6)  # past the tee's back-off
        await charger.stop_transaction(1, "Local", "StopAuthorized", "TAG0001")
        await wait_for(lambda: running.tee.written > written_before, timeout=5)
        client = redis.Redis.from_url(restarted.url)
        for _ in range(100):  # `written` may have moved with a batch the flusher had under way before the kill
            entries = sum([await client.xlen(key) async for key in client.scan_iter(match="cutover:tee:*")])
            if entries:
                break
            await asyncio.sleep(0.05)
        assert entries > 0  # the tee resumed into the new, empty Redis
        await client.aclose()
    finally:
        await charger.close()
        await running.stop()
        own_redis.stop()
        if "restarted" in locals():
            restarted.stop()
    (legacy_tx,) = legacy.transactions.values()
    assert legacy_tx.ended and legacy_tx.meter_stop == charger.transactions[tx_id]["meter_stop_wh"]
    assert len(legacy_tx.meter_values) == 3


async def test_a_start_answered_after_the_charger_dropped_is_recorded_not_sent_twice(
    legacy: LegacyCsms, redis_url: str
) -> None:
    """Found by the chaos suite (charger_links_flap): the legacy's StartTransaction answer, arriving after the
    charger's link dropped, was discarded with the session; the charger's retransmission opened a second one."""
    settings = settings_for(legacy)
    settings.translation.call_timeout = 5
    running = await start_proxy(settings, redis_url, None)
    charger = Charger201("FLAP01", proxy_url(running), response_timeout=5)
    try:
        await charger.connect()
        await charger.boot()
        await charger.status(1, 1, "Occupied")
        legacy.faults = LegacyFaults(latency=(0.5, 0.5), actions=frozenset({"StartTransaction"}))
        start = asyncio.create_task(charger.start_transaction(1, "TAG0001"))
        await asyncio.sleep(0.2)  # the StartTransaction is at the legacy, its answer 0.3 s away
        charger._connection.ws.transport.abort()  # the link drops with the StartTransaction at the legacy
        await start  # the Started event stays in the charger's queue
        await asyncio.sleep(1.0)
        legacy.faults = None
        await charger.reconnect()  # boots, then delivers the queued Started event again
        await wait_for(lambda: charger.queued == 0, timeout=10)
        report = check(charger_transactions([charger]), legacy.transactions)
        assert len(legacy.transactions) == 1 and report.counts()["duplicated"] == 0
    finally:
        await charger.close()
        await running.stop()


async def open_transactions(client: redis.Redis, station_id: str, expected: bytes) -> bytes | None:
    """The station's open-transaction count in Redis, once it reads `expected` (the last read after 5 s)."""
    value = None
    for _ in range(100):
        value = await client.hget(station_key(station_id), "active_transactions")
        if value == expected:
            break
        await asyncio.sleep(0.05)
    return value


async def test_station_states_are_written_again_when_redis_comes_back_empty(
    legacy: LegacyCsms, redis_url: str, redis_client: redis.Redis
) -> None:
    """Found by the chaos suite (redis_lost_then_proxy_kill): after Redis lost its data, a proxy that then
    died left nothing for its successor, which billed the running transactions wrongly or not at all. The
    station's open-transaction count comes back too: without it a switch would take the charging station for
    an idle one and move it mid-transaction."""
    running = await start_proxy(settings_for(legacy), redis_url, None)
    charger = Charger201("LOST01", proxy_url(running))
    try:
        await charger.connect()
        await charger.boot()
        await charger.start_transaction(1, "TAG0001")
        key = state_key("LOST01")
        await wait_for(lambda: bool(legacy.transactions), timeout=10)
        await redis_client.flushdb()  # a Redis restarted without persistence
        for _ in range(100):  # the proxy checks every half second
            if await redis_client.get(key) is not None:
                break
            await asyncio.sleep(0.05)
        restored = StationState.loads(await redis_client.get(key))
        (tx,) = restored.transactions.values()
        assert tx.legacy_id == next(iter(legacy.transactions))
        assert REGISTRY.get_sample_value("cutover_state_restores_total", {}) >= 1
        assert await open_transactions(redis_client, "LOST01", b"1") == b"1"  # written after the states
    finally:
        await charger.close()
        await running.stop()


async def test_an_open_transaction_count_redis_missed_is_written_once_it_is_back(legacy: LegacyCsms) -> None:
    """A station's open-transaction count that Redis did not take (unreachable as the transaction started) is
    written again until it does: left out, a switch would take the charging station for an idle one and move it
    mid-transaction."""
    own_redis = EmbeddedRedis().start()
    gate = await FaultProxy(own_redis.port).start()
    running = await start_proxy(settings_for(legacy), f"redis://127.0.0.1:{gate.port}/0", None)
    charger = Charger201("COUNT01", proxy_url(running))
    client = redis.Redis.from_url(own_redis.url)
    try:
        await charger.connect()
        await charger.boot()
        await charger.status(1, 1, "Occupied")
        gate.reset()  # Redis unreachable: every connection to it reset
        await charger.start_transaction(1, "TAG0001")  # charging goes on
        await wait_for(lambda: bool(legacy.transactions), timeout=10)
        await asyncio.sleep(0.5)  # the count's writes fail meanwhile
        assert await client.hget(station_key("COUNT01"), "active_transactions") in (None, b"0")
        gate.heal()
        assert await open_transactions(client, "COUNT01", b"1") == b"1"
    finally:
        await client.aclose()
        await charger.close()
        await running.stop()
        await gate.stop()
        own_redis.stop()


def closed_for_state() -> float:
    return REGISTRY.get_sample_value("cutover_upstream_failures_total", {"event": "state_unavailable"}) or 0.0


async def test_strict_durability_closes_the_charger_rather_than_forward_on_a_state_redis_lacks(
    legacy: LegacyCsms, caplog: pytest.LogCaptureFixture
) -> None:
    """`--state-durability strict`: Redis unreachable, a TransactionEvent whose state Redis cannot take is not
    forwarded; the charger is closed (1013) and keeps it queued; once Redis is back it is delivered, billed once.
    (The default, `available`, forwards it and writes the state once Redis is back.)"""
    closed_before = closed_for_state()
    own_redis = EmbeddedRedis().start()
    gate = await FaultProxy(own_redis.port).start()
    settings = settings_for(legacy)
    settings.state_durability = "strict"
    running = await start_proxy(settings, f"redis://127.0.0.1:{gate.port}/0", None)
    charger = Charger201(
        "STRICT01", proxy_url(running), auto_reconnect=True, reconnect_delay=0.2, reconnect_max_delay=0.5
    )
    try:
        await charger.connect()
        await charger.boot()
        await charger.status(1, 1, "Available")
        gate.reset()  # Redis unreachable
        with caplog.at_level("WARNING", logger="cutover.proxy"):
            tx_id = await charger.start_transaction(1, "TAG0001")
            await asyncio.sleep(1.5)
        assert legacy.transactions == {}  # nothing went to the legacy on a state only the proxy held
        assert tx_id in charger.queued_transaction_ids()  # the charger keeps it
        messages = [r.getMessage() for r in caplog.records]
        assert len([m for m in messages if m.startswith("session_state_unavailable station_id=STRICT01")]) == 1
        # Its reconnections meanwhile are refused before they are served on the copy only the proxy holds.
        assert any(m.startswith("station_state_unavailable station_id=STRICT01") for m in messages)
        assert closed_for_state() >= closed_before + 2  # the first close and at least one refusal
        gate.heal()
        await wait_for(lambda: charger.queued == 0 and bool(legacy.transactions), timeout=20)
        await charger.stop_transaction(1, "Local", "StopAuthorized", "TAG0001")
        await wait_for(lambda: all(tx.ended for tx in legacy.transactions.values()), timeout=10)
        report = check(charger_transactions([charger]), legacy.transactions)
        assert report.clean and len(legacy.transactions) == 1, report.counts()
    finally:
        await charger.close()
        await running.stop()
        await gate.stop()
        own_redis.stop()


async def test_a_station_the_proxy_knows_nothing_of_waits_while_redis_is_away(legacy: LegacyCsms) -> None:
    """A fresh proxy that cannot read a station's state or mode does not guess (a fresh state would open its
    running transactions again; `legacy` would split a cut-over station's): the charger is told to retry."""
    running = await start_proxy(settings_for(legacy), f"redis://127.0.0.1:{free_port()}/0", None)
    url = proxy_url(running) + "/AWAY01"
    try:
        with pytest.raises(InvalidStatus) as refused:  # its security profile is unknown: 503 at the handshake
            await connect(url, subprotocols=["ocpp2.0.1"])  # type: ignore[list-item]
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["Retry-After"] == "5"
        running.proxy.admission.client = None  # as if its profile were known: now its routing mode is not
        async with connect(url, subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        assert "AWAY01" not in legacy.connected
    finally:
        await running.stop()


async def test_a_known_station_is_served_from_the_proxys_copy_when_redis_is_away() -> None:
    store = StateStore(redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2))
    with pytest.raises(StateUnavailable, match="NEW01: its translation state could not be read"):
        await store.load("NEW01")
    with pytest.raises(StateUnavailable, match="NEW01: its translation state could not be read"):
        await store.claim("NEW01")  # what a session does: claim and load in one round trip
    known = StationState("KNOWN01")
    await store.save(known, epoch=7)  # deferred: Redis is away
    assert await store.load("KNOWN01") is known
    assert await store.claim("KNOWN01") == (7, known)  # the epoch this process last wrote with
    await store.close()
