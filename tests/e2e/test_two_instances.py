"""One station, two proxy instances: a charger back through another path (another instance, behind a TCP
load balancer) while its old connection still looks open to the first. The newer session claims the station
and announces it: the older session is closed at once; and should the announcement be lost (pub/sub delivers
at most once), the older session may still not write its state over the newer one's, nor send what depended
on that state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from prometheus_client import REGISTRY
from websockets.exceptions import ConnectionClosed

from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms, wait_for
from proxy.app import RunningProxy, start_proxy
from proxy.state_store import state_key
from tests.conftest import proxy_url, settings_for
from translators.state import StationState

pytestmark = pytest.mark.timeout(60)
STATION = "TWO01"


def superseded_writes() -> float:
    return REGISTRY.get_sample_value("cutover_state_writes_superseded_total") or 0.0


@pytest.fixture
async def instances(legacy: LegacyCsms, redis_url: str) -> AsyncIterator[tuple[RunningProxy, RunningProxy]]:
    """Two proxy instances on one Redis. Each has a legacy of its own, so that no legacy closes the older
    upstream connection when the newer one opens (many do, which ends the older session sooner: what is
    tested here must not depend on it)."""
    other_legacy = LegacyCsms()
    await other_legacy.start()
    first = await start_proxy(settings_for(legacy), redis_url, None)
    second = await start_proxy(settings_for(other_legacy), redis_url, None)
    yield first, second
    await first.stop()
    await second.stop()
    await other_legacy.stop()


def closed_as_replaced(charger: Charger201) -> bool:
    close = charger._connection.ws.protocol.close_rcvd  # type: ignore[union-attr]
    return close is not None and (close.code, close.reason) == (1001, "replaced by a newer connection of this station")


async def test_a_session_superseded_on_another_instance_neither_writes_its_state_nor_sends(
    instances: tuple[RunningProxy, RunningProxy],
    legacy: LegacyCsms,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = instances

    async def announcement_lost(station_id: str, epoch: int) -> None:
        pass

    monkeypatch.setattr(first.proxy, "_claimed", announcement_lost)
    old = Charger201(STATION, proxy_url(first))
    new = Charger201(STATION, proxy_url(second))
    try:
        await old.connect()
        await old.boot()
        await old.start_transaction(1, "TAG0001")
        await old.sample(1, 1_000)
        await wait_for(lambda: len(legacy.meter_values.get(STATION, [])) == 1, timeout=10)

        # The charger comes back through the second instance; its first connection is still open.
        await new.connect()
        await new.boot()
        await new.heartbeat()
        claimed = await redis_client.get(state_key(STATION))
        assert claimed is not None
        assert STATION in second.proxy.sessions and STATION in first.proxy.sessions
        before = superseded_writes()

        # The old connection's next event changes the station's state: Redis refuses the write, the old
        # session ends without sending what waited for it.
        pending = asyncio.create_task(old.sample(1, 5_000))
        await wait_for(lambda: not old.connected, timeout=10, what="the superseded session closes its charger")
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, TimeoutError, Exception):
            await pending
        assert closed_as_replaced(old)
        assert superseded_writes() == before + 1
        assert len(legacy.meter_values.get(STATION, [])) == 1  # the stale sample never reached the legacy
        assert await redis_client.get(state_key(STATION)) == claimed  # the newer session's state stands
        tx = next(iter(StationState.loads(claimed).transactions.values()))
        assert tx.last_register_wh == 1_000
        await wait_for(lambda: STATION not in first.proxy.sessions, timeout=10)

        # The newer session goes on.
        assert "currentTime" in await new.heartbeat()  # the CALLRESULT payload as received
        assert second.proxy.sessions[STATION].superseded is False
    finally:
        await old.close()
        await new.close()


async def test_an_older_session_on_another_instance_is_closed_when_the_station_is_claimed(
    instances: tuple[RunningProxy, RunningProxy], redis_client: redis.Redis
) -> None:
    first, second = instances
    old = Charger201("TWO02", proxy_url(first))
    new = Charger201("TWO02", proxy_url(second))
    try:
        await old.connect()
        await old.boot()
        await old.start_transaction(1, "TAG0001")
        before = superseded_writes()
        await new.connect()
        await new.boot()
        # The old connection is closed without having to write anything first.
        await wait_for(lambda: not old.connected, timeout=10, what="the older session closes its charger")
        assert closed_as_replaced(old)
        await wait_for(lambda: "TWO02" not in first.proxy.sessions, timeout=10)
        assert superseded_writes() == before
        assert "currentTime" in await new.heartbeat()
        # The transaction the old connection opened is the newer session's to carry on.
        state = StationState.loads(await redis_client.get(state_key("TWO02")))  # type: ignore[arg-type]
        assert [tx.legacy_id is not None for tx in state.transactions.values()] == [True]
    finally:
        await old.close()
        await new.close()
