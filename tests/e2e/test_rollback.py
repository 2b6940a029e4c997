"""Automatic rollback rules: each fires on its condition (and not otherwise) and moves the station back."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis
from ocpp.exceptions import OCPPError
from ocpp.v201 import call
from prometheus_client import REGISTRY
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidHandshake

from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms, wait_for
from proxy import pki, rollback, routing
from proxy.app import RunningProxy, start_proxy
from proxy.redis_embedded import free_port
from proxy.rollback import RollbackRules, Thresholds
from proxy.security import AttemptLimiter, UpstreamSecurity
from tests.conftest import proxy_url, settings_for
from tests.peers.native_csms import NativeCsms


def fired(rule: str) -> float:
    return REGISTRY.get_sample_value("cutover_rollbacks_total", {"rule": rule}) or 0.0


async def proxy_to(legacy: LegacyCsms, native_url: str, redis_url: str, rules: RollbackRules) -> RunningProxy:
    settings = settings_for(legacy)
    settings.native_url = native_url
    settings.rollback = rules
    settings.reconcile_seconds = 0.5
    return await start_proxy(settings, redis_url, None)


@pytest.fixture
async def cut_over(redis_client: redis.Redis) -> AsyncIterator[None]:
    for station in ("RB01", "RB02", "RB03"):
        await routing.switch(
            redis_client, [station], "cutover", force=False, reason="test", actor="test", dry_run=False
        )
    yield


async def rolled_back_by(client: redis.Redis, station: str) -> str:
    (last, *_) = await routing.audit_entries(client, station=station)
    return str(last["by"]) if last["to"] == "legacy" else ""


async def test_unreachable_new_csms(
    legacy: LegacyCsms, redis_url: str, redis_client: redis.Redis, cut_over: None
) -> None:
    before = fired("native_unreachable")
    running = await proxy_to(
        legacy, f"ws://127.0.0.1:{free_port()}/gone", redis_url, RollbackRules(Thresholds(unreachable_seconds=0.5))
    )
    running.proxy.admission.by_station = AttemptLimiter(100.0, 100)  # this test's charger retries fast
    charger = Charger201("RB01", proxy_url(running), response_timeout=2)

    async def attempt() -> None:
        await asyncio.wait_for(charger.connect(), 3)
        await asyncio.wait_for(charger.boot(), 3)

    try:
        with pytest.raises((ConnectionError, OSError, TimeoutError)):
            await attempt()
        assert fired("native_unreachable") == before  # one failure is not yet half a second of failures
        deadline = asyncio.get_running_loop().time() + 20
        while "RB01" not in legacy.boots and asyncio.get_running_loop().time() < deadline:
            try:  # the charger's back-off, until the legacy takes it back
                await attempt()
            except (ConnectionError, OSError, TimeoutError, InvalidHandshake):
                await asyncio.sleep(0.05)
        assert "RB01" in legacy.boots
    finally:
        await asyncio.wait_for(charger.close(), 10)
        await running.stop()
    assert fired("native_unreachable") == before + 1
    assert await rolled_back_by(redis_client, "RB01") == "rule:native_unreachable"


async def test_boot_rejected_by_the_new_csms(
    legacy: LegacyCsms, native: NativeCsms, redis_url: str, redis_client: redis.Redis, cut_over: None
) -> None:
    before = fired("boot_rejected")
    native.boot_status = "Rejected"
    running = await proxy_to(legacy, native.url, redis_url, RollbackRules())
    charger = Charger201("RB02", proxy_url(running), auto_reconnect=True, reconnect_delay=0.05)
    try:
        await charger.connect()
        assert (await charger.boot())["status"] == "Rejected"
        await wait_for(lambda: "RB02" in legacy.boots, timeout=10)  # it reconnected, to the legacy
    finally:
        await charger.close()
        await running.stop()
    assert fired("boot_rejected") == before + 1
    assert await rolled_back_by(redis_client, "RB02") == "rule:boot_rejected"


async def test_callerror_rate_of_the_new_csms(
    legacy: LegacyCsms, native: NativeCsms, redis_url: str, redis_client: redis.Redis, cut_over: None
) -> None:
    before = fired("callerror_rate")
    running = await proxy_to(legacy, native.url, redis_url, RollbackRules(Thresholds(window=4, max_error_rate=0.5)))
    charger = Charger201("RB03", proxy_url(running), auto_reconnect=True, reconnect_delay=0.05)
    try:
        await charger.connect()
        await charger.boot()
        for _ in range(4):
            await charger.authorize("TAG0001")  # answered: no rollback
        assert fired("callerror_rate") == before
        refused = 0
        for _ in range(4):  # the test CSMS implements no DataTransfer: NotImplemented each time
            try:
                await charger._call(call.DataTransfer(vendor_id="com.example"))
            except OCPPError:
                refused += 1
            except ConnectionError:  # the rule fired and the proxy closed to roll back
                break
        assert refused >= 3  # the window (4) only exceeds 0.5 errors once three are in it
        await wait_for(lambda: "RB03" in legacy.boots, timeout=10)
    finally:
        await charger.close()
        await running.stop()
    assert fired("callerror_rate") == before + 1
    assert await rolled_back_by(redis_client, "RB03") == "rule:callerror_rate"


@pytest.fixture
async def native_wss(native: NativeCsms, tmp_path: Path) -> AsyncIterator[tuple[NativeCsms, Path]]:
    """The test's native CSMS again, over wss with a certificate of its own dev CA (`tmp_path/ca.pem`)."""
    pki.init_ca(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / pki.SERVER_CERT, tmp_path / pki.SERVER_KEY)
    async with serve(native.serve, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"], ssl=context) as server:  # type: ignore[list-item]
        native.url = f"wss://localhost:{server.sockets[0].getsockname()[1]}/native"
        yield native, tmp_path / pki.CA_CERT


async def test_tls_failures_with_the_new_csms(
    legacy: LegacyCsms, native_wss: tuple[NativeCsms, Path], redis_url: str, redis_client: redis.Redis,
    cut_over: None,
) -> None:  # fmt: skip
    native, ca = native_wss
    before = fired("native_tls_failed")
    trusting = await proxy_to(legacy, native.url, redis_url, RollbackRules(Thresholds(tls_failures=2)))
    trusting.proxy.native_tls = UpstreamSecurity(ca=ca).context()
    charger = Charger201("RB01", proxy_url(trusting))
    try:  # the new CSMS's certificate verifies: the station boots there and nothing fires
        await charger.connect()
        assert (await charger.boot())["status"] == "Accepted"
        assert native.boots and "RB01" not in legacy.boots
    finally:
        await charger.close()
        await trusting.stop()
    assert fired("native_tls_failed") == before
    running = await proxy_to(
        legacy, native.url, redis_url, RollbackRules(Thresholds(tls_failures=2))
    )  # system CAs only
    running.proxy.admission.by_station = AttemptLimiter(100.0, 100)
    charger = Charger201("RB01", proxy_url(running), auto_reconnect=True, reconnect_delay=0.05)
    try:
        with contextlib.suppress(ConnectionError, OSError, TimeoutError, InvalidHandshake):
            await asyncio.wait_for(charger.connect(), 3)
        await wait_for(lambda: "RB01" in legacy.boots, timeout=15)  # after two failed handshakes: the legacy
    finally:
        await asyncio.wait_for(charger.close(), 10)
        await running.stop()
    assert fired("native_tls_failed") == before + 1
    assert await rolled_back_by(redis_client, "RB01") == "rule:native_tls_failed"
    assert await routing.mode_of(redis_client, "RB01") == "legacy"


async def test_a_group_rule_is_stricter_than_the_flags(
    legacy: LegacyCsms, native: NativeCsms, redis_url: str, redis_client: redis.Redis, cut_over: None
) -> None:
    await redis_client.sadd(routing.group_key("canary"), "RB03")
    await rollback.set_group_rules(redis_client, "canary", {"window": 2, "max_error_rate": 0.4})
    before = fired("callerror_rate")
    running = await proxy_to(legacy, native.url, redis_url, RollbackRules(Thresholds(window=50, max_error_rate=0.9)))
    loose = Charger201("RB02", proxy_url(running))
    strict = Charger201("RB03", proxy_url(running), auto_reconnect=True, reconnect_delay=0.05)
    try:
        for charger in (loose, strict):
            await charger.connect()
            await charger.boot()
        for _ in range(2):  # the flags' window (50) is far from full: RB02 stays
            with pytest.raises(OCPPError):
                await loose._call(call.DataTransfer(vendor_id="com.example"))
        with contextlib.suppress(OCPPError, ConnectionError):  # the canary group's window of 2 is full
            await strict._call(call.DataTransfer(vendor_id="com.example"))
        await wait_for(lambda: "RB03" in legacy.boots, timeout=10)
    finally:
        for charger in (loose, strict):
            await charger.close()
        await running.stop()
    assert fired("callerror_rate") == before + 1
    assert await rolled_back_by(redis_client, "RB03") == "rule:callerror_rate"
    assert await routing.mode_of(redis_client, "RB02") == "cutover"
