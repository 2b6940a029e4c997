"""Shared fixtures: a real Redis (embedded unless CUTOVER_REDIS_URL is set), a three-master Redis Cluster (for
the tests that ask for one), the reference legacy CSMS, and a proxy in this process, all on loopback ports
chosen at run time."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as redis

from peers.legacy_csms import LegacyCsms
from peers.redis_cluster import LocalRedisCluster
from proxy.app import RunningProxy, start_proxy
from proxy.redis_embedded import EmbeddedRedis
from proxy.server import ProxySettings
from tests.frames import invalid_emitted_frames, tee_envelopes
from translators.bridge import TranslationConfig


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    external = os.environ.get("CUTOVER_REDIS_URL")
    if external:
        yield external
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalRedisCluster]:
    """One cluster for the session: tests that move slots or flush it read where keys live, never assume it."""
    with LocalRedisCluster(masters=3) as started:
        yield started


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def legacy() -> AsyncIterator[LegacyCsms]:
    csms = LegacyCsms()
    await csms.start()
    yield csms
    await csms.stop()


def settings_for(legacy: LegacyCsms, **translation: object) -> ProxySettings:
    return ProxySettings(
        listen_host="127.0.0.1",
        listen_port=0,
        legacy_url=legacy.url,
        ping_interval=5,
        ping_timeout=5,
        upstream_open_timeout=2,
        translation=TranslationConfig(**translation),  # type: ignore[arg-type]
    )


@pytest.fixture
async def proxy(legacy: LegacyCsms, redis_url: str, redis_client: redis.Redis) -> AsyncIterator[RunningProxy]:
    running = await start_proxy(settings_for(legacy, call_timeout=5), redis_url, ("127.0.0.1", 0))
    yield running
    await running.stop()
    # Invariant 4, checked after every test that ran the proxy: what it emitted validates.
    envelopes = await tee_envelopes(redis_client)
    assert running.tee.dropped == 0
    assert invalid_emitted_frames(envelopes) == []


def proxy_url(running: RunningProxy) -> str:
    return f"ws://127.0.0.1:{running.proxy.port}/ocpp"
