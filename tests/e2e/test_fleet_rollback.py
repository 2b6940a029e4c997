"""Fleet rollback across two proxy processes sharing Redis: one command brings every station back."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import redis.asyncio as redis

from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms, wait_for
from proxy import routing
from proxy.redis_embedded import free_port
from tests.e2e.test_faults import ProxyProcess
from tests.peers.native_csms import NativeCsms

STATIONS = [f"FLEET{n:02d}" for n in range(20)]


def cli(*args: str, redis_url: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "proxy", *args, "--redis-url", redis_url], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_one_command_rolls_the_fleet_back(
    legacy: LegacyCsms, native: NativeCsms, redis_url: str, redis_client: redis.Redis
) -> None:
    ports = [free_port(), free_port()]
    proxies = [ProxyProcess(port, legacy.url, redis_url, native_url=native.url) for port in ports]
    for process in proxies:
        await process.start()
    chargers = [
        Charger201(station, f"ws://127.0.0.1:{ports[n % 2]}/ocpp", auto_reconnect=True, reconnect_delay=0.2)
        for n, station in enumerate(STATIONS)
    ]
    try:
        for charger in chargers:
            await charger.connect()
            await charger.boot()
        await wait_for(lambda: set(STATIONS) <= legacy.connected, timeout=15)
        out = cli("switch", "--to", "cutover", "--glob", "FLEET*", "--reason", "pilot", redis_url=redis_url)
        assert "20 switched" in out
        await wait_for(lambda: set(STATIONS) <= set(native.sessions) and len(native.boots) >= 20, timeout=30)

        started = asyncio.get_running_loop().time()
        out = cli("switch", "--to", "legacy", "--all", "--reason", "2am rollback", redis_url=redis_url)
        assert "20 switched" in out
        await wait_for(lambda: set(STATIONS) <= legacy.connected and len(legacy.boots) >= 20, timeout=30)
        back = {s for s, b in legacy.boots.items() if s in STATIONS}
        assert back == set(STATIONS)
        assert asyncio.get_running_loop().time() - started < 30
    finally:
        for charger in chargers:
            await charger.close()
        for process in proxies:
            await process.stop()
    rollback = [e for e in await routing.audit_entries(redis_client, limit=100) if e["reason"] == "2am rollback"]
    assert len(rollback) == 20 and {e["station"] for e in rollback} == set(STATIONS)
