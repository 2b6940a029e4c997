"""Assembles a running proxy: Redis clients, tee, state store, WebSocket server, admin server."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as redis

from proxy import metrics, redis_batch
from proxy import redis_client as redis_clients
from proxy.admin import AdminServer
from proxy.security import TlsTerminator
from proxy.server import OCPP16, OCPP201, Proxy, ProxySettings
from proxy.state_store import StateStore
from proxy.tee import Tee

log = logging.getLogger("cutover")


def redis_client(url: str) -> redis.Redis:
    """A client that fails fast on an outage (no retries, short timeouts): callers decide what it means.
    A `redis+cluster://` URL gives a Redis Cluster client."""
    return redis_clients.connect(url, fail_fast=True)


@dataclass
class RunningProxy:
    proxy: Proxy
    tee: Tee
    store: StateStore
    admin: AdminServer | None
    clients: list[redis.Redis]
    metrics: AdminServer | None = None

    def health(self) -> dict[str, object]:
        by_protocol = {OCPP201: 0, OCPP16: 0}
        for session in self.proxy.sessions.values():
            by_protocol[session.subprotocol] = by_protocol.get(session.subprotocol, 0) + 1
        health: dict[str, object] = {
            "stations": by_protocol,
            "tee_written": self.tee.written,
            "tee_dropped": self.tee.dropped,
            "tasks": len(asyncio.all_tasks()),  # the soak benchmark watches it for per-session leaks
        }
        totals = metrics.worker_totals()  # under --workers: every worker's stations and tee, not this one's
        if totals is not None:
            health.update(
                stations=by_protocol | totals.stations, tee_written=totals.tee_written,
                tee_dropped=totals.tee_dropped, workers=totals.workers,
            )  # fmt: skip
        return health

    async def stop(self) -> None:
        await self.proxy.stop()
        await self.tee.stop()
        await self.store.close()
        for server in (self.admin, self.metrics):
            if server is not None:
                await server.stop()
        for client in self.clients:
            await redis_batch.Masters.release(client)  # a Redis Cluster's: its masters' own connections
            await client.aclose()


async def start_proxy(
    settings: ProxySettings,
    redis_url: str | None,
    admin_listen: tuple[str, int] | None,
    admin_token: str | None = None,
    metrics_listen: tuple[str, int] | None = None,
    *,
    reuse_port: bool = False,
    tls_reloaded: Callable[[], None] | None = None,
) -> RunningProxy:
    """`tls_reloaded` runs after `POST /tls/reload` re-read this process's TLS material (worker 0 of
    `--workers` passes the reload on to the other workers with it)."""
    clients = [redis_client(redis_url), redis_client(redis_url)] if redis_url else []
    tee = Tee(clients[0] if clients else None)
    store = StateStore(clients[1] if clients else None)
    proxy = Proxy(settings, store, tee)
    running = RunningProxy(proxy, tee, store, None, clients)
    tee.start()
    await proxy.start(reuse_port=reuse_port)
    if admin_listen is not None:
        running.admin = AdminServer(
            admin_listen[0],
            admin_listen[1],
            running.health,
            clients[1] if clients else None,
            admin_token,
            None if proxy.tls is None else functools.partial(reload_tls, proxy.tls, tls_reloaded),
            "api" if metrics_listen is not None else "all",
        )
        await running.admin.start()
        log.info("admin_listening url=%s", running.admin.url)
    if metrics_listen is not None:
        running.metrics = AdminServer(metrics_listen[0], metrics_listen[1], running.health, serves="metrics")
        await running.metrics.start()
        log.info("metrics_listening url=%s/metrics", running.metrics.url)
    return running


def reload_tls(tls: TlsTerminator, then: Callable[[], None] | None) -> None:
    tls.reload()  # raises, the previous material still served, when the new one does not load
    if then is not None:
        then()
