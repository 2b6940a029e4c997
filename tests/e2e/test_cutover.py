"""Cutover control: switch a 2.0.1 station to the new 2.0.1 CSMS and back, drain then switch, force."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms, wait_for
from proxy import routing
from proxy.app import RunningProxy, start_proxy
from tests.conftest import proxy_url, settings_for
from tests.peers.native_csms import NativeCsms


@pytest.fixture
async def cutover_proxy(
    legacy: LegacyCsms, native: NativeCsms, redis_url: str, redis_client: redis.Redis
) -> AsyncIterator[RunningProxy]:
    settings = settings_for(legacy)
    settings.native_url = native.url
    settings.reconcile_seconds = 0.5
    running = await start_proxy(settings, redis_url, None)
    yield running
    await running.stop()


async def connected_charger(proxy: RunningProxy, station: str) -> Charger201:
    charger = Charger201(station, proxy_url(proxy), auto_reconnect=True, reconnect_delay=0.05)
    await charger.connect()
    await charger.boot()
    await charger.status(1, 1, "Available")
    return charger


async def test_an_idle_station_moves_at_once_and_back(
    cutover_proxy: RunningProxy, legacy: LegacyCsms, native: NativeCsms, redis_url: str, redis_client: redis.Redis
) -> None:
    charger = await connected_charger(cutover_proxy, "CUT01")
    assert "CUT01" in legacy.boots and native.boots == []
    moved = subprocess.run(
        [sys.executable, "-m", "proxy", "switch", "--to", "cutover", "--station", "CUT01", "--reason", "beta",
         "--redis-url", redis_url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert "CUT01" in moved.stdout and "switched" in moved.stdout
    await wait_for(lambda: len(native.boots) == 1, timeout=10)  # it reconnected, to the new CSMS
    await wait_for(lambda: charger.connected, timeout=10)
    await charger.run_session(samples=1, interval=0.01)
    assert len([e for e in native.events if e["eventType"] == "Ended"]) == 1
    assert legacy.transactions == {}

    (back,) = await routing.switch(redis_client, ["CUT01"], "legacy", force=False, reason="rollback", actor="test",
                                   dry_run=False)  # fmt: skip
    assert back.outcome == "switched"
    await wait_for(lambda: len(legacy.boots) == 1 and charger.connected and "CUT01" in legacy.connected, timeout=10)
    await charger.close()
    entries = await routing.audit_entries(redis_client, station="CUT01")
    assert [(e["from"], e["to"], e["outcome"]) for e in entries] == [
        ("cutover", "legacy", "switched"),
        ("legacy", "cutover", "switched"),
    ]


async def test_a_running_transaction_drains_first_unless_forced(
    cutover_proxy: RunningProxy, legacy: LegacyCsms, native: NativeCsms, redis_client: redis.Redis
) -> None:
    charger = await connected_charger(cutover_proxy, "CUT02")
    await charger.start_transaction(1, "TAG0001")
    await wait_for(lambda: len(legacy.open_transactions("CUT02")) == 1, timeout=5)
    (pending,) = await routing.switch(redis_client, ["CUT02"], "cutover", force=False, reason="", actor="test",
                                      dry_run=False)  # fmt: skip
    assert pending.outcome == "pending"
    rows = {row["station"]: row for row in await routing.status(redis_client)}
    assert rows["CUT02"]["pending"] == "cutover" and rows["CUT02"]["mode"] == "legacy"
    await charger.stop_transaction(1, "Local", "StopAuthorized", "TAG0001")
    await wait_for(lambda: len(native.boots) == 1, timeout=10)  # switched once the transaction ended
    (legacy_tx,) = legacy.transactions.values()
    assert legacy_tx.ended  # started and ended on the legacy: never split

    await wait_for(lambda: charger.connected, timeout=10)
    await charger.start_transaction(1, "TAG0001")
    (forced,) = await routing.switch(redis_client, ["CUT02"], "legacy", force=True, reason="2am", actor="test",
                                     dry_run=False)  # fmt: skip
    assert forced.outcome == "switched" and forced.forced
    await wait_for(lambda: "CUT02" in legacy.connected and charger.connected, timeout=10)
    await charger.close()
    (last, *_) = await routing.audit_entries(redis_client, station="CUT02")
    assert last["forced"] is True and last["reason"] == "2am" and last["split_transactions"] == 1


async def test_percentages_are_stable_and_nested() -> None:
    stations = [f"ST{n:04d}" for n in range(2000)]
    ten = {s for s in stations if routing.percent_bucket(s) < 1000}
    twenty = {s for s in stations if routing.percent_bucket(s) < 2000}
    assert ten < twenty and 150 < len(ten) < 250
    assert ten == {s for s in stations if routing.percent_bucket(s) < 1000}


async def test_admin_api_switches_rolls_back_and_refuses_bad_bodies(
    legacy: LegacyCsms, native: NativeCsms, redis_url: str, redis_client: redis.Redis
) -> None:
    import aiohttp

    settings = settings_for(legacy)
    settings.native_url = native.url
    running = await start_proxy(settings, redis_url, ("127.0.0.1", 0), admin_token="a-very-long-admin-token")
    assert running.admin is not None
    charger = await connected_charger(running, "API01")
    auth = {"Authorization": "Bearer a-very-long-admin-token"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(running.admin.url + "/switch", json={"to": "cutover", "all": True}) as response:
                assert response.status == 401  # no token
            async with aiohttp.ClientSession(headers=auth) as api:
                for body, field in (({"to": "sideways", "all": True}, "to"), ({"to": "cutover"}, "stations"),
                                    ({"to": "cutover", "percent": 150}, "percent"),
                                    ({"to": "cutover", "stations": "API01"}, "stations"),
                                    ({"to": "cutover", "colour": "red"}, "colour")):  # fmt: skip
                    async with api.post(running.admin.url + "/switch", json=body) as response:
                        problem = await response.json(content_type=None)
                        assert response.status == 400 and problem["field"] == field, problem
                async with api.post(running.admin.url + "/switch", json={"to": "cutover", "stations": ["API01"]}) as r:
                    assert (await r.json())["items"][0]["outcome"] == "switched"
                await wait_for(lambda: len(native.boots) == 1, timeout=10)
                async with api.get(running.admin.url + "/stations") as response:
                    (row,) = [r for r in (await response.json())["items"] if r["station"] == "API01"]
                    assert row["mode"] == "cutover"
                async with api.post(running.admin.url + "/rollback", json={"reason": "2am"}) as response:
                    assert [i["outcome"] for i in (await response.json())["items"] if i["station"] == "API01"] == [
                        "switched"
                    ]
                await wait_for(lambda: "API01" in legacy.connected and charger.connected, timeout=10)
                async with api.get(running.admin.url + "/audit", params={"station": "API01"}) as response:
                    entries = (await response.json())["items"]
                    assert [(e["to"], e["by"], e["reason"]) for e in entries] == [
                        ("legacy", "api", "2am"),
                        ("cutover", "api", ""),
                    ]
                async with api.get(running.admin.url + "/openapi.json") as response:
                    assert "/switch" in (await response.json())["paths"]
    finally:
        await charger.close()
        await running.stop()
