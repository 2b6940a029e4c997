"""`cutover demo`: everything embedded on loopback — Redis, the reference legacy 1.6 CSMS, the proxy, a
fleet of simulated 2.0.1 chargers and one 1.6 charger — with a live summary until Ctrl-C or --duration."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as redis
from prometheus_client import REGISTRY

from peers._wire import Credentials
from peers.charger16 import Charger16
from peers.fleet import run_fleet
from peers.legacy_csms import LegacyCsms
from proxy import pki
from proxy.app import RunningProxy, start_proxy
from proxy.cli import proxy_settings
from proxy.passwords import hash_password, password_key
from proxy.redis_embedded import redis_or_embedded
from shadow.processor import ReferenceBackend
from shadow.reference_csms import ReferenceCsms
from shadow.worker import ShadowWorker

LEGACY_TOKENS = ("TAG0001", "TAG0002", "TAG0003")
FLEET_PREFIX = "SIM201-"
STATION_16 = "SIM16-001"
DEMO_PASSWORD = "demo-password-0001"  # a demo's, on loopback
SHADOW_TOKENS = {"TAG0001", "TAG0002"}

log = logging.getLogger("cutover.demo")


async def charge_16(url: str, stop: asyncio.Event, credentials: Credentials | None) -> None:
    """One 1.6 charger through the passthrough, charging in a loop."""
    charger = Charger16(STATION_16, url, credentials=credentials)
    meter = 0
    try:
        await charger.connect()
        await charger.boot()
        await charger.status(1, "Available")
        while not stop.is_set():
            tx = await charger.start_transaction(1, "TAG0001", meter_start=meter)
            await charger.status(1, "Charging")
            for _ in range(3):
                meter += 1000
                await asyncio.sleep(0.25)
                await charger.meter_values(1, meter, tx)
            await charger.stop_transaction(tx, meter, "Local")
            await charger.status(1, "Available")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    except (OSError, ConnectionError, TimeoutError) as exc:
        log.warning("demo_16_charger_stopped error=%r", exc)
    finally:
        await charger.close()


def summary(running: RunningProxy, legacy: LegacyCsms, started: float) -> str:
    health = running.health()
    stations: dict[str, int] = health["stations"]  # type: ignore[assignment]
    ended = sum(1 for tx in legacy.transactions.values() if tx.ended)
    compared = sum(sample.value for sample in metric_samples("cutover_shadow_comparisons_total"))
    diverged = sum(sample.value for sample in metric_samples("cutover_divergences_total"))
    return (
        f"{time.monotonic() - started:5.0f}s  stations ocpp2.0.1={stations.get('ocpp2.0.1', 0)} "
        f"ocpp1.6={stations.get('ocpp1.6', 0)}  legacy transactions started={len(legacy.transactions)} "
        f"ended={ended}  frames tee'd={health['tee_written']} dropped={health['tee_dropped']}  "
        f"shadow compared={compared:.0f} diverged={diverged:.0f}"
    )


def metric_samples(name: str) -> list[Any]:
    return [s for family in REGISTRY.collect() for s in family.samples if s.name == name]


async def run_demo(values: dict[str, Any]) -> int:
    with redis_or_embedded(values["redis_url"]) as (redis_url, embedded), tempfile.TemporaryDirectory() as pki_dir:
        credentials = await demo_credentials(values, Path(pki_dir), redis_url)
        legacy = LegacyCsms(accepted_id_tags=LEGACY_TOKENS)
        await legacy.start()
        try:
            return await demo_against(legacy, redis_url, embedded, values, credentials)
        finally:
            await legacy.stop()


async def demo_credentials(values: dict[str, Any], pki_dir: Path, redis_url: str) -> Callable[[str], Credentials]:
    """What the demo's stations need for the security profile asked for: a dev PKI (profiles 2 and 3, with a
    certificate per station for 3) and passwords stored as the proxy expects them (profiles 1 and 2)."""
    profile = values["security_profile"]
    stations = [f"{FLEET_PREFIX}{n:03d}" for n in range(1, values["chargers"] + 1)] + [STATION_16]
    if profile >= 2 and values["tls_cert"] is None:
        pki.init_ca(pki_dir, hostnames=("localhost",), ips=("127.0.0.1",))
        values.update(tls_cert=pki_dir / "server.pem", tls_key=pki_dir / "server.key", client_ca=pki_dir / "ca.pem")
        values["crl"] = pki_dir / "crl.pem"
        for station in stations if profile == 3 else []:
            pki.issue_station(pki_dir, station)
    if profile in (1, 2):
        client = redis.Redis.from_url(redis_url)
        for station in stations:
            await client.set(password_key(station), hash_password(DEMO_PASSWORD))
        await client.aclose()

    def credentials(station: str) -> Credentials:
        tls = None
        if profile >= 2:
            tls = ssl.create_default_context(cafile=values["client_ca"] or pki_dir / "ca.pem")
            if profile == 3:
                tls.load_cert_chain(pki_dir / f"{station}.pem", pki_dir / f"{station}.key")
        return Credentials(tls=tls, password=DEMO_PASSWORD if profile in (1, 2) else None)

    return credentials


async def demo_against(
    legacy: LegacyCsms,
    redis_url: str,
    embedded: bool,
    values: dict[str, Any],
    credentials: Callable[[str], Credentials],
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        running = await start_proxy(proxy_settings(values, legacy.url), redis_url, values["admin_listen"])
    except OSError as exc:
        print(f"cutover demo: cannot listen: {exc} (choose another --admin-listen / --listen)", file=sys.stderr)
        return 1
    scheme, host = ("wss", "localhost") if running.proxy.tls is not None else ("ws", "127.0.0.1")
    url = f"{scheme}://{host}:{running.proxy.port}/ocpp"
    print(f"ocpp-cutover demo — Redis {redis_url}{' (embedded)' if embedded else ''}, legacy 1.6 CSMS {legacy.url}")
    print(f"proxy listening on {url}/<station-id> (security profile {values['security_profile']})")
    if running.admin is not None:
        print(f"metrics: {running.admin.url}/metrics   health: {running.admin.url}/healthz")
    print(f"{values['chargers']} simulated 2.0.1 chargers + 1 OCPP 1.6 charger; Ctrl-C to stop", flush=True)

    started = time.monotonic()
    shadow_client = redis.Redis.from_url(redis_url)
    # The shadow's token list lacks one the legacy accepts: the divergences an operator would look into.
    shadow = ShadowWorker(shadow_client, lambda: ReferenceBackend(ReferenceCsms(SHADOW_TOKENS)), name="demo-shadow")
    shadow_task = asyncio.create_task(shadow.run(stop))
    print(
        f"shadow 2.0.1 backend: built-in, accepting {', '.join(sorted(SHADOW_TOKENS))} "
        f"(the legacy also accepts {', '.join(sorted(set(LEGACY_TOKENS) - SHADOW_TOKENS))})",
        flush=True,
    )
    fleet = asyncio.create_task(
        run_fleet(
            url, values["chargers"], duration=None, stop=stop, id_tokens=LEGACY_TOKENS, prefix=FLEET_PREFIX,
            credentials_for=credentials,
        )
    )  # fmt: skip
    charger_16 = asyncio.create_task(charge_16(url, stop, credentials(STATION_16)))
    if values["duration"] is not None:
        loop.call_later(values["duration"], stop.set)
    live = sys.stdout.isatty()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            line = summary(running, legacy, started)
            print(("\r" + line + "  ") if live else line, end="" if live else "\n", flush=True)
        result = await fleet
        await charger_16
        await shadow_task
    finally:
        await running.stop()
        await shadow_client.aclose()
    open_at_legacy = [tx for tx in legacy.transactions.values() if not tx.ended]
    print(("\n" if live else "") + "final: " + summary(running, legacy, started))
    print(
        f"fleet: sessions started={result['sessions_started']} ended={result['sessions_ended']} "
        f"errors={result['errors']}; legacy transactions still open={len(open_at_legacy)}"
    )
    return 0
