"""`cutover proxy --workers 2`: two proxy processes on one port (SO_REUSEPORT) under a supervising parent; the
kernel spreads chargers over both, /metrics and /healthz on worker 0 sum both, a killed worker is restarted and
its chargers carry on, SIGTERM stops everything; a TLS reload asked of worker 0 reaches every worker."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as redis

from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms, wait_for
from proxy import pki, routing
from proxy.redis_embedded import free_port

pytestmark = pytest.mark.timeout(90)
STARTED = re.compile(r"proxy_worker_started index=(\d+) pid=(\d+)")


def started_workers(log: Path) -> list[tuple[int, int]]:
    """(index, pid) of every worker the supervisor started, in order."""
    return [(int(i), int(pid)) for i, pid in STARTED.findall(log.read_text())]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


async def connected_stations(admin: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{admin}/metrics") as response:
        text = await response.text()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith('cutover_connected_stations{subprotocol="ocpp2.0.1"}')]  # fmt: skip
    return sum(values)


async def healthz(admin: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as session, session.get(f"{admin}/healthz") as response:
        health: dict[str, object] = await response.json()
    return health


async def instances(client: redis.Redis, stations: list[str]) -> set[str]:
    """The proxy instances (one per worker process) the stations are connected to now."""
    found = set()
    for station in stations:
        connected = await client.hget(routing.station_key(station), "connected")
        if connected:
            found.add(connected.decode().split("-")[0])
    return found


async def test_two_workers_share_the_port_and_survive_a_killed_worker(
    legacy: LegacyCsms, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    port, admin_port = free_port(), free_port()
    admin = f"http://127.0.0.1:{admin_port}"
    log = tmp_path / "proxy.log"
    with log.open("wb") as stderr:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "proxy", "proxy", "--workers", "2", "--listen", f"127.0.0.1:{port}",
             "--legacy-url", legacy.url, "--redis-url", redis_url, "--admin-listen", f"127.0.0.1:{admin_port}",
             "--security-profile", "0", "--ping-interval", "5"],
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )  # fmt: skip
    chargers: list[Charger201] = []
    try:
        await wait_for(lambda: log.read_text().count("proxy_listening") == 2, timeout=30, what="both workers listen")
        workers = dict(started_workers(log))
        assert sorted(workers) == [0, 1]

        stations = [f"WK{n:02d}" for n in range(12)]
        url = f"ws://127.0.0.1:{port}/ocpp"
        chargers = [Charger201(s, url, auto_reconnect=True, reconnect_delay=0.05) for s in stations]
        for charger in chargers:
            await charger.connect()
            await charger.boot()
        # The kernel spread the chargers over both processes; worker 0's /metrics and /healthz count them all.
        assert len(await instances(redis_client, stations)) == 2
        assert await connected_stations(admin) == len(stations)
        health = await healthz(admin)
        assert health["stations"] == {"ocpp2.0.1": len(stations), "ocpp1.6": 0}
        assert health["workers"] == 2 and health["tee_dropped"] == 0
        assert isinstance(health["tee_written"], int) and health["tee_written"] >= 2 * len(stations)  # boots

        # A worker dies: the supervisor starts another, and every charger is back (on a live worker).
        before = await instances(redis_client, stations)
        os.kill(workers[1], signal.SIGKILL)
        await wait_for(lambda: len(started_workers(log)) == 3, timeout=15, what="worker 1 restarted")
        (restarted_index, restarted_pid) = started_workers(log)[-1]
        assert restarted_index == 1 and restarted_pid != workers[1]
        await wait_for(lambda: all(c.connected for c in chargers) and set(stations) <= legacy.connected, timeout=20)
        deadline = time.monotonic() + 10
        while await connected_stations(admin) != len(stations):  # the dead worker's gauge is dropped
            assert time.monotonic() < deadline, "the /metrics sum did not come back to the connected stations"
            await asyncio.sleep(0.1)
        while (health := await healthz(admin))["workers"] != 2:  # once the restarted worker is up
            assert time.monotonic() < deadline, f"/healthz did not count the restarted worker: {health}"
            await asyncio.sleep(0.1)
        assert health["stations"] == {"ocpp2.0.1": len(stations), "ocpp1.6": 0}
        assert len(before | await instances(redis_client, stations)) >= 2
        await chargers[0].run_session(id_token="TAG0001", samples=1, interval=0.01)
        assert any(tx.station_id == "WK00" and tx.ended for tx in legacy.transactions.values())

        # SIGTERM stops the workers and the supervisor, cleanly.
        for charger in chargers:
            await charger.close()
        pids = [pid for _, pid in started_workers(log)]
        supervisor.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(supervisor.wait, 30) == 0
        assert not any(alive(pid) for pid in pids)
    finally:
        for charger in chargers:
            await charger.close()
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait()


async def served_certificates(port: int, pki_dir: Path, handshakes: int = 24) -> set[str]:
    """The serial numbers of the server certificates `handshakes` new TLS connections were given: with two
    workers on the port, the kernel hands some to each (all to one: a chance of 2 in 2^24)."""
    context = ssl.create_default_context(cafile=pki_dir / "ca.pem")
    serials = set()
    for _ in range(handshakes):
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
        serials.add(writer.get_extra_info("ssl_object").getpeercert()["serialNumber"])
        writer.close()
        await writer.wait_closed()
    return serials


async def test_a_tls_reload_asked_of_worker_0_reaches_every_worker(
    legacy: LegacyCsms, redis_url: str, tmp_path: Path
) -> None:
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    pki.init_ca(pki_dir)
    token_file = tmp_path / "admin-token"
    token_file.write_text("a-very-long-admin-token")
    port, admin_port = free_port(), free_port()
    log = tmp_path / "proxy.log"
    with log.open("wb") as stderr:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "proxy", "proxy", "--workers", "2", "--listen", f"127.0.0.1:{port}",
             "--legacy-url", legacy.url, "--redis-url", redis_url, "--admin-listen", f"127.0.0.1:{admin_port}",
             "--admin-token-file", str(token_file), "--security-profile", "2",
             "--tls-cert", str(pki_dir / "server.pem"), "--tls-key", str(pki_dir / "server.key")],
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )  # fmt: skip
    try:
        await wait_for(lambda: log.read_text().count("proxy_listening") == 2, timeout=30, what="both workers listen")
        (before,) = await served_certificates(port, pki_dir)

        pki.issue_server(pki_dir, ("localhost",), ("127.0.0.1",))  # a rotated certificate
        headers = {"Authorization": "Bearer a-very-long-admin-token"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(f"http://127.0.0.1:{admin_port}/tls/reload") as response:
                assert response.status == 200, await response.text()
        deadline = time.monotonic() + 10
        # Until every worker serves the new one: worker 0 at once, the other on the supervisor's SIGHUP.
        while len(serials := await served_certificates(port, pki_dir)) != 1 or before in serials:
            assert time.monotonic() < deadline, f"served after the reload: {serials}, the old one {before}"
            await asyncio.sleep(0.2)
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(supervisor.wait, 30)
            except subprocess.TimeoutExpired:
                os.killpg(supervisor.pid, signal.SIGKILL)
                supervisor.wait()
