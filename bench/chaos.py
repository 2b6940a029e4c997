"""`python -m bench.chaos`: fault scenarios over real processes and sockets, each ending with the billing
ledger check (peers/ledger.py) and a recovery-time measurement; prints a table, writes bench/results/chaos.json.

Every scenario runs its own stack on loopback: an embedded redis-server (or a local Redis Cluster with
replicas), the reference legacy CSMS in this process (its records are the legacy's billing), one or two
`cutover proxy` child processes, and many simulated 2.0.1 chargers charging in a loop (auto-reconnecting, with
their offline queue). Network faults go through `peers.faultproxy.FaultProxy`. Recovery is the time from the
end of a fault until every charger is connected, booted on that connection, and has nothing queued from before
the fault ended.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ocpp.exceptions import OCPPError
from redis.crc import key_slot
from websockets.exceptions import InvalidHandshake

from bench.__main__ import publish
from peers._wire import utc_now
from peers.charger201 import Charger201
from peers.faultproxy import FaultProxy
from peers.ledger import charger_transactions, check
from peers.legacy_csms import LegacyCsms, LegacyFaults
from peers.redis_cluster import LocalRedisCluster
from proxy.redis_embedded import EmbeddedRedis, free_port
from proxy.state_store import state_key

RESULTS = Path(__file__).parent / "results" / "chaos.json"
LOGGER = logging.getLogger("bench.chaos")
ID_TOKENS = ("TAG0001", "TAG0002", "TAG0003")
CALL_TIMEOUT = 5.0  # the proxy's --call-timeout
PING_INTERVAL = 2.0  # the proxy's --ping-interval (and ping timeout): a dead peer is noticed within ~4 s
STOP_GRACE = 20.0  # sessions in progress at the end get this long to finish
DRAIN_TIMEOUT = 30.0  # then the chargers' queues this long to empty
PROCESS_TIMEOUT = 15.0
SCENARIO_TIMEOUT = 240.0  # on top of the profile's own durations: a scenario still running then is a hang


@dataclass(frozen=True)
class Profile:
    """How big and how long: `--quick` for a smoke run, the default for a real one."""

    chargers: int
    warmup: float  # normal charging before the fault
    fault: float  # how long a fault lasts
    cooldown: float  # normal charging after recovery
    redis_outage: float  # the redis_down scenario's outage
    recovery_timeout: float  # longer than this to recover counts as a hang
    kills: int  # proxy_kill: how many SIGKILLs


FULL = Profile(chargers=30, warmup=4.0, fault=8.0, cooldown=5.0, redis_outage=60.0, recovery_timeout=60.0, kills=4)
QUICK = Profile(chargers=6, warmup=2.0, fault=3.0, cooldown=2.0, redis_outage=5.0, recovery_timeout=30.0, kills=2)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:  # noqa: ASYNC109
    """Wait for `predicate()`; whether it became true within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True


class ProxyProcess:
    """`cutover proxy` as a child process (`python -m proxy proxy`), its output in a log file."""

    def __init__(self, name: str, legacy_url: str, redis_url: str, log_dir: Path, args: Sequence[str] = ()) -> None:
        self.name = name
        self.args = list(args)  # more `cutover proxy` flags
        self.port = free_port()
        self.legacy_url, self.redis_url = legacy_url, redis_url
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0
        self.unexpected_exits: list[int] = []
        self.metrics_port = free_port()
        self.counted: dict[str, float] = {}  # counters of processes gone, summed

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def start(self) -> None:
        self._check_exit()
        self.process = process = self._spawn()
        if not await until(lambda: port_open(self.port) or process.poll() is not None, PROCESS_TIMEOUT):
            raise RuntimeError(f"{self.name} did not listen within {PROCESS_TIMEOUT:g} s (log: {self.log_path})")
        if process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {process.returncode} at start (log: {self.log_path})")

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "proxy", "proxy", "--listen", f"127.0.0.1:{self.port}",
                 "--legacy-url", self.legacy_url, "--redis-url", self.redis_url,
                 "--call-timeout", str(CALL_TIMEOUT), "--ping-interval", str(PING_INTERVAL),
                 "--security-profile", "0", "--log-level", "WARNING",
                 "--metrics-listen", f"127.0.0.1:{self.metrics_port}", *self.args],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip

    async def scrape(self) -> None:
        """Add the live process's counters of interest to `counted` (call once per process, before it goes)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            text = await asyncio.to_thread(_get, f"http://127.0.0.1:{self.metrics_port}/metrics")
        except OSError:
            return
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in SCRAPED:
                self.counted[name] = self.counted.get(name, 0.0) + float(line.rsplit(" ", 1)[1])

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        self._check_exit()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=PROCESS_TIMEOUT)
            self.kills += 1
        self.process = None

    async def stop(self) -> None:
        self._check_exit()
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        if not await until(lambda: process.poll() is not None, PROCESS_TIMEOUT):
            process.kill()
            process.wait(timeout=PROCESS_TIMEOUT)

    def _check_exit(self) -> None:
        """Note a proxy that exited without being told to (a crash)."""
        if self.process is not None and self.process.poll() is not None:
            self.unexpected_exits.append(self.process.returncode)
            self.process = None


# Proxy counters read before a proxy process goes: CALLs sent again although the legacy may have acted on the
# first (in-doubt StartTransactions the proxy itself noticed), and state writes Redis did not take.
SCRAPED = ("cutover_uncertain_calls_total", "cutover_state_persist_failures_total")


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:
        return str(response.read().decode())


class ChaosCharger(Charger201):
    """A simulated 2.0.1 charger as the chaos suite drives it: several proxy URLs to fall back on, a queue it
    keeps retrying, and optionally a buggy queue that reorders events after an offline period."""

    def __init__(self, station_id: str, proxy_urls: Sequence[str], *, reorder_on_boot: bool = False, **kw: Any):
        super().__init__(
            station_id, proxy_urls[0], serial_number=station_id, auto_reconnect=True, reconnect_delay=0.2,
            reconnect_max_delay=1.0, message_attempts=3, message_attempt_interval=0.5, **kw,
        )  # fmt: skip
        self.urls = [url.rstrip("/") + "/" + quote(station_id, safe="") for url in proxy_urls]
        self.reorder_on_boot = reorder_on_boot
        self.reordered = 0
        self._retrier: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        try:
            await super().connect()
        except (OSError, InvalidHandshake, TimeoutError):
            self.urls.append(self.urls.pop(0))  # the next proxy instance, next time
            self.url = self.urls[0]
            raise

    async def boot(self, reason: str = "PowerUp") -> dict[str, Any]:
        response = await super().boot(reason)
        if self.reorder_on_boot:
            async with self._flush_lock:  # never under an event being delivered
                self._reorder_queue()
        return response

    async def _flush(self) -> None:
        # OCPP 2.0.1 B02: nothing but BootNotification until the CSMS accepted one on this connection
        if self.booted_on == self.connects:
            await super()._flush()

    def _reorder_queue(self) -> None:
        """Swap each pair of queued events of one transaction after its Started event (a faulty queue)."""
        queue = list(self._queue)
        index = 0
        while index + 1 < len(queue):
            first, second = queue[index].payload, queue[index + 1].payload
            same = first.transaction_info["transaction_id"] == second.transaction_info["transaction_id"]
            if same and first.event_type == "Updated":
                queue[index], queue[index + 1] = queue[index + 1], queue[index]
                self.reordered += 1
                index += 2
            else:
                index += 1
        self._queue.clear()
        self._queue.extend(queue)

    def healthy(self, since: str) -> bool:
        """Connected, booted on this connection, and nothing queued from before `since` (a timestamp)."""
        if not self.connected or self.booted_on != self.connects:
            return False
        return all(queued.payload.timestamp >= since for queued in self._queue)

    def start_retrying(self) -> None:
        """Deliver queued events every half second (a timed-out event is sent again, same seqNo)."""
        self._retrier = asyncio.create_task(self._retry_queue())

    async def _retry_queue(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.queued and self.connected and self.booted_on == self.connects and not self._flush_lock.locked():
                with contextlib.suppress(Exception):
                    await self._flush()

    async def close(self) -> None:
        if self._retrier is not None:
            self._retrier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrier
            self._retrier = None
        await super().close()


@dataclass
class Stack:
    """One scenario's processes and peers."""

    name: str
    profile: Profile
    rng: random.Random
    log_dir: Path
    redis: EmbeddedRedis | None  # None: the scenario runs on `cluster`
    legacy: LegacyCsms
    proxies: list[ProxyProcess]
    legacy_gate: FaultProxy | None = None
    redis_gate: FaultProxy | None = None
    charger_gate: FaultProxy | None = None
    cluster: LocalRedisCluster | None = None
    chargers: list[ChaosCharger] = field(default_factory=list)
    recoveries: list[float | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    twins: int = 0

    async def recovered(self, fault_ended: str | None = None) -> float | None:
        """Seconds until every charger is healthy again (None: not within the profile's recovery timeout)."""
        since = fault_ended or utc_now()
        started = time.monotonic()
        ok = await until(
            lambda: all(charger.healthy(since) for charger in self.chargers), self.profile.recovery_timeout, 0.1
        )
        seconds = round(time.monotonic() - started, 2) if ok else None
        if seconds is None:
            stuck = [c.station_id for c in self.chargers if not c.healthy(since)]
            self.notes.append(f"not recovered within {self.profile.recovery_timeout:g} s: {stuck[:10]}")
        self.recoveries.append(seconds)
        return seconds

    async def sleep(self, low: float, high: float | None = None) -> None:
        await asyncio.sleep(low if high is None else self.rng.uniform(low, high))


# -- scenarios --------------------------------------------------------------------------------------------
Fault = Callable[[Stack], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    fault: Fault
    proxies: int = 1
    legacy_gate: bool = False
    redis_gate: bool = False
    charger_gate: bool = False  # the chargers reach the (first) proxy through a FaultProxy
    cluster: bool = False  # a Redis Cluster of three masters with a replica each, instead of one Redis
    proxy_args: tuple[str, ...] = ()  # more `cutover proxy` flags
    charger: dict[str, Any] = field(default_factory=dict)


async def proxy_kill(stack: Stack) -> None:
    proxy = stack.proxies[0]
    for _ in range(stack.profile.kills):
        await stack.sleep(0.3, stack.profile.fault)  # a random point of the charging sessions
        await proxy.scrape()
        proxy.kill()
        stack.notes.append(f"{proxy.name} killed at {utc_now()}")
        await stack.sleep(0.0, 1.0)
        await proxy.start()
        await stack.recovered()


async def proxy_failover(stack: Stack) -> None:
    await stack.proxies[0].scrape()
    stack.proxies[0].kill()
    await stack.recovered()
    await stack.sleep(stack.profile.fault / 2)
    await stack.proxies[0].start()  # back, and the other one goes
    await stack.proxies[1].scrape()
    stack.proxies[1].kill()
    await stack.recovered()


async def legacy_restart(stack: Stack) -> None:
    await stack.legacy.kill()
    await stack.sleep(stack.profile.fault)
    await stack.legacy.start(port=stack.legacy.port)
    await stack.recovered()


def with_legacy_faults(faults: Callable[[], LegacyFaults]) -> Fault:
    async def run(stack: Stack) -> None:
        stack.legacy.faults = applied = faults()
        applied.rng.seed(stack.rng.random())
        await stack.sleep(stack.profile.fault)
        stack.legacy.faults = None
        ended = utc_now()
        stack.notes.append(
            f"legacy faults: {applied.errors} CALLERRORs, {applied.drops_before} drops before handling, "
            f"{applied.drops_after} after (unanswered: {applied.unanswered})"
        )
        await stack.recovered(ended)

    return run


TRANSACTION_ACTIONS = frozenset({"StartTransaction", "MeterValues", "StopTransaction"})


def partition_seconds(profile: Profile) -> float:
    """Long enough for the proxy to notice: two ping intervals and a CALL timeout."""
    return max(profile.fault, 2 * PING_INTERVAL + CALL_TIMEOUT + 1)


async def partition_legacy(stack: Stack) -> None:
    assert stack.legacy_gate is not None
    stack.legacy_gate.blackhole()
    await stack.sleep(partition_seconds(stack.profile))
    stack.legacy_gate.heal()
    await stack.recovered()


async def partition_redis(stack: Stack) -> None:
    assert stack.redis_gate is not None
    stack.redis_gate.blackhole()
    await stack.sleep(partition_seconds(stack.profile))
    stack.redis_gate.heal()
    await stack.recovered()


async def redis_down(stack: Stack) -> None:
    assert stack.redis_gate is not None
    stack.redis_gate.reset()
    await stack.sleep(stack.profile.redis_outage)
    stack.redis_gate.heal()
    await stack.recovered()


async def redis_restart(stack: Stack) -> None:
    assert stack.redis is not None
    stack.redis.kill()
    stack.redis = EmbeddedRedis(port=stack.redis.port).start()  # empty: every station's state is gone
    await stack.recovered()
    await stack.sleep(stack.profile.fault)


async def redis_lost_then_proxy_kill(stack: Stack) -> None:
    """Redis comes back empty; shortly after, the proxy dies: what it kept only in memory is gone."""
    assert stack.redis is not None
    proxy = stack.proxies[0]
    stack.redis.kill()
    stack.redis = EmbeddedRedis(port=stack.redis.port).start()
    await stack.sleep(0.3, 1.0)
    await proxy.scrape()
    proxy.kill()
    stack.notes.append(f"{proxy.name} killed at {utc_now()}")
    await proxy.start()
    await stack.recovered()


async def redis_down_with_proxy_kill(stack: Stack) -> None:
    """Redis unreachable; meanwhile the proxy dies and restarts (still without Redis), then Redis is back."""
    assert stack.redis_gate is not None
    proxy = stack.proxies[0]
    stack.redis_gate.reset()
    await stack.sleep(1.0, max(1.5, stack.profile.fault / 2))
    await proxy.scrape()
    proxy.kill()
    stack.notes.append(f"{proxy.name} killed at {utc_now()}")
    await proxy.start()
    await stack.sleep(stack.profile.fault / 2)
    stack.redis_gate.heal()
    await stack.recovered()


async def cluster_failover(stack: Stack) -> None:
    """On a Redis Cluster with replicas: a master's replica stops receiving (the master acknowledges the proxy's
    writes and passes them on no further), the master dies, and the cluster elects its replica, which serves
    the master's slots with the older data (the master's stations' writes fail until then, ~4 s)."""
    cluster = stack.cluster
    assert cluster is not None
    master = cluster.owner(key_slot(state_key(stack.chargers[0].station_id).encode()))
    await asyncio.to_thread(cluster.hold_back_replication, master)
    await stack.sleep(stack.profile.fault)  # charging goes on, on states the replica never gets
    await asyncio.to_thread(cluster.kill, master)
    stack.notes.append(f"master {master} killed at {utc_now()}")
    await asyncio.to_thread(cluster.take_over, cluster.replica_ports[master][0], forced=False)
    stack.notes.append(f"its replica elected at {utc_now()}")
    await stack.recovered()


async def cluster_failover_then_proxy_kill(stack: Stack) -> None:
    """`cluster_failover`, then the proxy dies too: its successor loads the stations from the cluster."""
    proxy = stack.proxies[0]
    await cluster_failover(stack)
    await stack.sleep(1.0, 2.0)  # the proxy sees the master leave the slot map (four times a second)
    await proxy.scrape()
    proxy.kill()
    stack.notes.append(f"{proxy.name} killed at {utc_now()}")
    await proxy.start()
    await stack.recovered()


async def charger_links_flap(stack: Stack) -> None:
    """The chargers' own connections reset every second or so while the legacy takes its time to answer."""
    assert stack.charger_gate is not None
    stack.legacy.faults = LegacyFaults(latency=(0.2, 1.0), seed=int(stack.rng.random() * 1e6))
    deadline = time.monotonic() + stack.profile.fault
    while time.monotonic() < deadline:
        await stack.sleep(0.5, 1.5)
        stack.charger_gate.reset()
        await asyncio.sleep(0.05)
        stack.charger_gate.heal()
    stack.legacy.faults = None
    await stack.recovered()
    stack.notes.append(f"charger connections reset: {stack.charger_gate.resets}")


async def offline_then_reordered(stack: Stack) -> None:
    proxy = stack.proxies[0]
    await proxy.scrape()
    proxy.kill()
    await stack.sleep(stack.profile.fault)  # sessions go on; their events queue in the chargers
    await proxy.start()
    await stack.recovered()
    stack.notes.append(f"events reordered by the chargers: {sum(c.reordered for c in stack.chargers)}")


async def same_station_twice(stack: Stack) -> None:
    """A second connection with a charger's station id, to the same or the other proxy, now and then."""
    deadline = time.monotonic() + stack.profile.fault

    async def twin(charger: ChaosCharger) -> None:
        url = stack.rng.choice(stack.proxies).url
        other = Charger201(charger.station_id, url, serial_number=charger.station_id, response_timeout=3)
        stack.twins += 1
        try:
            await other.connect()
            await other.boot()
            await stack.sleep(0.2, 1.0)
        except (OSError, ConnectionError, TimeoutError, OCPPError, InvalidHandshake):
            pass
        finally:
            await other.close()

    while time.monotonic() < deadline:
        chosen = stack.rng.sample(stack.chargers, max(1, len(stack.chargers) // 3))
        await asyncio.gather(*(twin(charger) for charger in chosen))
        await stack.sleep(0.2, 0.8)
    await stack.recovered()
    stack.notes.append(f"twin connections: {stack.twins}")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("proxy_kill", "proxy SIGKILLed at random points, restarted", proxy_kill),
    Scenario("proxy_failover", "two proxies; one SIGKILLed, chargers move to the other", proxy_failover, proxies=2),
    Scenario("legacy_restart", "legacy CSMS crashed (connections reset), restarted", legacy_restart),
    Scenario(
        "legacy_slow",
        "legacy answers every CALL 0.5-3 s late",
        with_legacy_faults(lambda: LegacyFaults(latency=(0.5, 3.0))),
    ),
    Scenario(
        "legacy_callerror",
        "legacy answers 20% of CALLs with InternalError",
        with_legacy_faults(lambda: LegacyFaults(error_rate=0.2)),
    ),
    Scenario(
        "legacy_drop",
        "legacy resets the connection on 5% of CALLs (half after recording them)",
        with_legacy_faults(lambda: LegacyFaults(drop_rate=0.05)),
    ),
    Scenario("partition_legacy", "proxy ⇹ legacy blackholed", partition_legacy, legacy_gate=True),
    Scenario("partition_redis", "proxy ⇹ Redis blackholed", partition_redis, redis_gate=True),
    Scenario("redis_restart", "Redis killed, restarted empty (data lost)", redis_restart),
    Scenario("redis_down", "Redis connections reset for --redis-outage seconds", redis_down, redis_gate=True),
    Scenario(
        "redis_lost_then_proxy_kill",
        "Redis restarted empty, then the proxy SIGKILLed and restarted",
        redis_lost_then_proxy_kill,
    ),
    Scenario(
        "redis_down_with_proxy_kill",
        "Redis unreachable; the proxy SIGKILLed and restarted meanwhile",
        redis_down_with_proxy_kill,
        redis_gate=True,
    ),
    Scenario(
        "redis_down_with_proxy_kill_strict",
        "redis_down_with_proxy_kill, the proxy run with --state-durability strict",
        redis_down_with_proxy_kill,
        redis_gate=True,
        proxy_args=("--state-durability", "strict"),
    ),
    Scenario(
        "cluster_failover",
        "Redis Cluster: a master dies with writes its replica never got, the replica is elected",
        cluster_failover,
        cluster=True,
    ),
    Scenario(
        "cluster_failover_then_proxy_kill",
        "cluster_failover, then the proxy SIGKILLed and restarted",
        cluster_failover_then_proxy_kill,
        cluster=True,
    ),
    Scenario(
        "retransmit",
        "legacy 1.2-2 s late on transactions; chargers time out after 1 s and send again",
        with_legacy_faults(lambda: LegacyFaults(latency=(1.2, 2.0), actions=TRANSACTION_ACTIONS)),
        charger={"response_timeout": 1.0},
    ),
    Scenario(
        "out_of_order",
        "proxy down; chargers queue, then send queued Updated events swapped",
        offline_then_reordered,
        charger={"reorder_on_boot": True},
    ),
    Scenario(
        "charger_links_flap",
        "chargers' connections reset every ~1 s, legacy 0.2-1 s late",
        charger_links_flap,
        charger_gate=True,
    ),
    Scenario(
        "same_station_twice", "a second connection with a station's id, either proxy", same_station_twice, proxies=2
    ),
)
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


# -- the charging load ------------------------------------------------------------------------------------
async def drive(charger: ChaosCharger, rng: random.Random, stop: asyncio.Event, errors: list[str]) -> None:
    """Boot, then charge in a loop until `stop`; errors are collected, never raised."""
    await pause(stop, rng.uniform(0, 0.5))
    while not stop.is_set() and charger.booted_on == 0:
        try:
            await charger.reconnect(retries=0)
        except (ConnectionError, TimeoutError, OCPPError) as exc:
            errors.append(f"{charger.station_id}: boot: {exc}")
            await pause(stop, 0.5)
    charger.start_retrying()
    while not stop.is_set():
        await pause(stop, rng.uniform(0.2, 1.0))
        if stop.is_set() or not charger.connected:
            continue
        try:
            await session(charger, rng)
        except (ConnectionError, TimeoutError, OCPPError, LookupError) as exc:
            errors.append(f"{charger.station_id}: {type(exc).__name__}: {exc}")


async def session(charger: ChaosCharger, rng: random.Random) -> None:
    evse_id, id_token = 1, rng.choice(ID_TOKENS)
    if charger.transaction_id(evse_id) is not None:  # left open by an error in the previous session
        await charger.stop_transaction(evse_id, "Other", "AbnormalCondition")
    if rng.random() < 0.5:
        status = (await charger.authorize(id_token)).get("idTokenInfo", {}).get("status")
        if status != "Accepted":
            return
        await charger.start_transaction(evse_id, id_token)
    else:
        await charger.start_transaction(evse_id, None)
        await charger.authorize_transaction(evse_id, id_token)
    await charger.charging(evse_id)
    for _ in range(rng.randint(1, 4)):
        await asyncio.sleep(rng.uniform(0.1, 0.4))
        await charger.sample(evse_id, rng.randint(100, 2000))
    if rng.random() < 0.5:
        await charger.stop_transaction(evse_id, "Local", "StopAuthorized", id_token)
    else:
        await charger.stop_transaction(evse_id, "EVDisconnected", "EVCommunicationLost")


async def pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


# -- one scenario -----------------------------------------------------------------------------------------
async def run_scenario(scenario: Scenario, profile: Profile, seed: int, log_root: Path) -> dict[str, Any]:
    """Run `scenario` on a fresh stack; its ledger counts, recovery times and notes."""
    rng = random.Random(f"{seed}-{scenario.name}")
    log_dir = log_root / scenario.name
    log_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    cluster = await asyncio.to_thread(LocalRedisCluster(masters=3, replicas=1).start) if scenario.cluster else None
    redis_server = EmbeddedRedis().start() if cluster is None else None
    legacy = LegacyCsms(accepted_id_tags=ID_TOKENS, response_timeout=CALL_TIMEOUT)
    gates: list[FaultProxy] = []
    stack: Stack | None = None
    drivers: list[asyncio.Task[None]] = []
    errors: list[str] = []
    try:
        await legacy.start()
        legacy_port = legacy.port
        redis_gate = await FaultProxy(redis_server.port).start() if redis_server and scenario.redis_gate else None
        legacy_gate = await FaultProxy(legacy_port).start() if scenario.legacy_gate else None
        gates = [gate for gate in (redis_gate, legacy_gate) if gate is not None]
        if cluster is not None:
            redis_url = cluster.url
        else:
            assert redis_server is not None
            redis_url = f"redis://127.0.0.1:{redis_gate.port}/0" if redis_gate else redis_server.url
        legacy_url = f"ws://127.0.0.1:{legacy_gate.port}/ocpp" if legacy_gate else legacy.url
        proxies = [
            ProxyProcess(f"proxy{n}", legacy_url, redis_url, log_dir, scenario.proxy_args)
            for n in range(scenario.proxies)
        ]
        stack = Stack(scenario.name, profile, rng, log_dir, redis_server, legacy, proxies, legacy_gate, redis_gate)
        stack.cluster = cluster
        for proxy in proxies:
            await proxy.start()
        urls = [proxy.url for proxy in proxies]
        if scenario.charger_gate:
            stack.charger_gate = await FaultProxy(proxies[0].port).start()
            gates.append(stack.charger_gate)
            urls[0] = f"ws://127.0.0.1:{stack.charger_gate.port}/ocpp"
        stack.chargers = [
            ChaosCharger(f"CHAOS{n:03d}", urls[n % len(urls) :] + urls[: n % len(urls)], **scenario.charger)
            for n in range(profile.chargers)
        ]
        stop = asyncio.Event()
        drivers = [
            asyncio.create_task(drive(charger, random.Random(rng.random()), stop, errors)) for charger in stack.chargers
        ]
        booted = await until(lambda: all(c.booted_on for c in stack.chargers), PROCESS_TIMEOUT)
        if not booted:
            stack.notes.append("not every charger booted before the fault")
        await asyncio.sleep(profile.warmup)
        await scenario.fault(stack)
        await asyncio.sleep(profile.cooldown)
        stop.set()
        _, unfinished = await asyncio.wait(drivers, timeout=STOP_GRACE)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
        drained = await until(lambda: not any(c.queued for c in stack.chargers), DRAIN_TIMEOUT, 0.1)
        if not drained:
            stack.notes.append(f"queues not drained within {DRAIN_TIMEOUT:g} s")
        await asyncio.sleep(0.5)  # the last answers reach the legacy's records
        for proxy in stack.proxies:
            await proxy.scrape()
        return summarise(scenario, stack, errors, time.monotonic() - began)
    finally:
        for task in drivers:
            task.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
        if stack is not None:
            await asyncio.gather(*(charger.close() for charger in stack.chargers), return_exceptions=True)
            for proxy in stack.proxies:
                await proxy.stop()
            redis_server = stack.redis
        for gate in gates:
            await gate.stop()
        await legacy.stop()
        if redis_server is not None:
            redis_server.stop()
        if cluster is not None:
            await asyncio.to_thread(cluster.stop)


def summarise(scenario: Scenario, stack: Stack, errors: list[str], elapsed: float) -> dict[str, Any]:
    report = check(charger_transactions(stack.chargers), stack.legacy.transactions)
    counts = report.counts()
    records = {tx_id: record for charger in stack.chargers for tx_id, record in charger.transactions.items()}
    rejected_lost = [tx for tx in report.lost + report.open if records[tx].get("rejected_seq_nos")]
    recoveries = [seconds for seconds in stack.recoveries if seconds is not None]
    crashes = [code for proxy in stack.proxies for code in proxy.unexpected_exits]
    by_tx = {tx_id: charger for charger in stack.chargers for tx_id in charger.transactions}
    traces = {
        tx: trace(by_tx[tx], tx, stack.legacy)
        for tx in [*report.lost, *report.open, *(entry["transaction_id"] for entry in report.duplicated),
                   *(entry["transaction_id"] for entry in report.energy_mismatch)][:10]
    }  # fmt: skip
    return {
        "scenario": scenario.name,
        "what": scenario.what,
        **counts,
        "clean": report.clean,
        "max_recovery_s": max(recoveries) if recoveries else None,
        "recoveries_s": stack.recoveries,
        "hangs": sum(1 for seconds in stack.recoveries if seconds is None),
        "proxy_crashes": crashes,
        "proxy_kills": sum(proxy.kills for proxy in stack.proxies),
        "proxy_flagged_uncertain": sum(p.counted.get(SCRAPED[0], 0.0) for p in stack.proxies),
        "proxy_state_persist_failures": sum(p.counted.get(SCRAPED[1], 0.0) for p in stack.proxies),
        "lost_or_open_after_callerror": rejected_lost,
        "legacy_duplicate_stops": len(stack.legacy.duplicate_stops),
        "events_rejected_by_callerror": sum(len(r.get("rejected_seq_nos", [])) for r in records.values()),
        "charger_errors": len(errors),
        "charger_error_samples": errors[:5],
        "reconnects": sum(max(c.connects - 1, 0) for c in stack.chargers),
        "details": {
            "lost": [charger_view(tx, records[tx]) for tx in report.lost[:20]],
            "duplicated": report.duplicated[:20],
            "energy_mismatch": report.energy_mismatch[:20],
            "orphaned": [legacy_view(stack.legacy.transactions[legacy_id]) for legacy_id in report.orphaned[:20]],
            "open": [charger_view(tx, records[tx]) | {"legacy_ids": report.matched[tx]} for tx in report.open[:20]],
        },
        "traces": traces,
        "notes": stack.notes,
        "logs": str(stack.log_dir),
        "elapsed_s": round(elapsed, 1),
    }


def charger_view(transaction_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """What a charger transaction looked like, for a reader chasing a ledger problem."""
    keys = ("evse_id", "id_token", "meter_start_wh", "meter_stop_wh", "started", "ended", "rejected_seq_nos")
    return {"transaction_id": transaction_id, **{key: record.get(key) for key in keys}}


def trace(charger: ChaosCharger, transaction_id: str, legacy: LegacyCsms) -> dict[str, Any]:
    """The TransactionEvents a charger sent for one transaction, and what the legacy got from its station."""
    sent = [
        [frame[3]["eventType"], frame[3]["seqNo"], frame[3]["triggerReason"], frame[3].get("offline", False),
         frame[3]["timestamp"], frame[1][:8]]
        for frame in charger.frames_out
        if isinstance(frame, list) and len(frame) == 4 and frame[2] == "TransactionEvent"
        and frame[3]["transactionInfo"]["transactionId"] == transaction_id
    ]  # fmt: skip
    record = charger.transactions[transaction_id]
    window = (record["started"] or "", record["ended"] or "9")
    legacy_calls = [
        [frame[2], {k: v for k, v in frame[3].items() if k in ("idTag", "meterStart", "meterStop", "transactionId",
                                                                   "timestamp", "status")}]
        for station_id, frame in legacy.received
        if station_id == charger.station_id and isinstance(frame, list) and len(frame) == 4 and frame[0] == 2
        and frame[2] in ("StartTransaction", "StopTransaction")
        and window[0] <= frame[3].get("timestamp", "") <= window[1]
    ]  # fmt: skip
    return {"station_id": charger.station_id, "charger_sent": sent, "legacy_received": legacy_calls}


def legacy_view(tx: Any) -> dict[str, Any]:
    return {
        "legacy_id": tx.transaction_id, "station_id": tx.station_id, "connector_id": tx.connector_id,
        "id_tag": tx.id_tag, "meter_start": tx.meter_start, "start_timestamp": tx.start_timestamp,
        "meter_stop": tx.meter_stop, "stop_timestamp": tx.stop_timestamp, "meter_values": len(tx.meter_values),
    }  # fmt: skip


# -- the suite --------------------------------------------------------------------------------------------
async def run(names: Sequence[str], profile: Profile, seed: int, log_root: Path) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        print(f"chaos: {name}: {BY_NAME[name].what} ({profile.chargers} chargers)", file=sys.stderr)
        limit = SCENARIO_TIMEOUT + profile.redis_outage + profile.kills * profile.fault
        try:
            row = await asyncio.wait_for(run_scenario(BY_NAME[name], profile, seed, log_root), limit)
        except Exception as exc:  # a scenario that cannot run (or hangs past `limit`) is a result too
            LOGGER.exception("scenario_failed scenario=%s", name)
            row = {"scenario": name, "what": BY_NAME[name].what, "failed": f"{type(exc).__name__}: {exc}"}
        rows.append(row)
        print(f"chaos: {name}: {table_row(row)}", file=sys.stderr)
    return rows


COLUMNS = ("transactions", "lost", "duplicated", "energy_mismatch", "orphaned", "open")


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ran = [row for row in rows if "failed" not in row]
    total: dict[str, Any] = {column: sum(row[column] for row in ran) for column in (*COLUMNS, "in_doubt_starts")}
    recoveries = [row["max_recovery_s"] for row in ran if row["max_recovery_s"] is not None]
    total["max_recovery_s"] = max(recoveries) if recoveries else None
    total["hangs"] = sum(row["hangs"] for row in ran)
    total["proxy_flagged_uncertain"] = sum(row["proxy_flagged_uncertain"] for row in ran)
    total["proxy_crashes"] = sum(len(row["proxy_crashes"]) for row in ran)
    total["failed_scenarios"] = [row["scenario"] for row in rows if "failed" in row]
    total["clean_scenarios"] = [row["scenario"] for row in ran if row["clean"]]
    return total


def table_row(row: dict[str, Any]) -> list[str]:
    if "failed" in row:
        return [row["scenario"], "failed: " + row["failed"][:60], *[""] * (len(COLUMNS) + 2)]
    recovery = "-" if row["max_recovery_s"] is None else f"{row['max_recovery_s']:.2f}"
    if row.get("hangs"):
        recovery += f" ({row['hangs']} hang)"
    return [row["scenario"], *(str(row[column]) for column in COLUMNS), recovery, str(row["in_doubt_starts"])]


def table(rows: list[dict[str, Any]], total: dict[str, Any]) -> str:
    header = ["scenario", "transactions", "lost", "duplicated", "energy mismatches", "orphaned", "open",
              "max recovery s", "in-doubt starts"]  # fmt: skip
    body = [table_row(row) for row in rows]
    recovery = "-" if total["max_recovery_s"] is None else f"{total['max_recovery_s']:.2f}"
    body.append(["total", *(str(total[column]) for column in COLUMNS), recovery, str(total["in_doubt_starts"])])
    widths = [max(len(line[column]) for line in [header, *body]) for column in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) + " |"
             for line in [header, *body]]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    lines.append("")
    lines.append(
        "in-doubt starts: duplicates whose extra legacy transaction got nothing after its StartTransaction (the "
        "legacy answered, the answer never reached the proxy's state); also counted in duplicated."
    )
    lines.append(
        f"flagged by the proxies themselves (cutover_uncertain_calls_total): {total['proxy_flagged_uncertain']:g}; "
        f"proxy crashes: {total['proxy_crashes']}; hangs: {total['hangs']}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few chargers, short faults (a smoke run)")
    parser.add_argument("--chargers", type=int, help="simulated 2.0.1 chargers per scenario")
    parser.add_argument("--fault-seconds", type=float, help="how long each fault lasts")
    parser.add_argument("--redis-outage", type=float, help="redis_down: seconds without Redis (60; quick 5)")
    parser.add_argument("--scenarios", help=f"comma-separated subset of {','.join(BY_NAME)}")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    parser.add_argument("--log-dir", type=Path, help="proxy logs (default: a new directory under /tmp)")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    overrides = {"chargers": args.chargers, "fault": args.fault_seconds, "redis_outage": args.redis_outage}
    profile = Profile(**{**profile.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
    names = args.scenarios.split(",") if args.scenarios else list(BY_NAME)
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(BY_NAME)}")
    log_root = args.log_dir or Path(tempfile.mkdtemp(prefix="cutover-chaos-"))
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("ocpp").setLevel(logging.CRITICAL)  # late answers to timed-out CALLs are expected here
    rows = asyncio.run(run(names, profile, args.seed, log_root))
    total = totals(rows)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    results = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit.stdout.strip() or None,  # the working tree may differ from it
        "profile": profile.__dict__ | {"quick": args.quick, "seed": args.seed},
        "logs": str(log_root),
        "scenarios": rows,
        "totals": total,
    }
    publish(results, args.output, table(rows, total), f"; proxy logs in {log_root}")


if __name__ == "__main__":
    main()
