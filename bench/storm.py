"""`python -m bench --scenario storm`: N chargers connecting at once, as after a power cut or a proxy restart.

Storms against the proxy (a subprocess, as in `python -m bench`; upstream the stub CSMS, state in an
embedded Redis), each of the same N stations, each from its own loopback address:

- **ws**: security profile 0 (no TLS), the baseline: WebSocket, admission, upstream leg, boot translation;
- **Basic**: security profile 1, ws with HTTP Basic: the proxy checks each password against its salted scrypt hash
  in Redis (every station has the same password and stored hash: one scrypt check per connection all the same);
- **TLS + Basic**: security profile 2, the same over wss (server certificate only, every handshake a full one);
- **mTLS, full handshakes**: security profile 3, a client certificate per station (`proxy/pki.py` dev PKI in a
  temporary directory, CN = station id), every handshake a full one;
- **mTLS, resumed**: the same, each charger offering the TLS session of its previous connection.

A charger counts as booted when its BootNotification is answered. asyncio's (and uvloop's) TLS transports
take no `session=`: they create the `SSLObject` with `SSLContext.wrap_bio()`, so each charger has its own
context (it needs its own certificate anyway) of a subclass whose `wrap_bio` offers the saved session. With
TLS 1.3 (what the proxy and these clients negotiate) that is a session ticket from the first connection.
Results go to bench/results/storm.json.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from bench.__main__ import Child, cpu_seconds, healthz, publish, source_revision
from bench.chargers import Charger, Tally
from bench.soak import raise_fd_limit
from proxy import passwords, pki, redis_client
from proxy.redis_embedded import EmbeddedRedis, free_port

RESULTS = Path(__file__).parent / "results" / "storm.json"
PASSWORD = "storm-benchmark-password"  # OCPP 2.0.1 passwordString: 16 to 40 characters


class ResumingContext(ssl.SSLContext):
    """A client context whose connections offer `resume`, a session from an earlier connection."""

    resume: ssl.SSLSession | None = None

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session or self.resume)


def client_context(pki_dir: Path, station_id: str, tls12: bool) -> ResumingContext:
    context = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki_dir / "ca.pem")
    context.load_cert_chain(pki_dir / f"{station_id}.pem", pki_dir / f"{station_id}.key")
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def server_context(pki_dir: Path, tls12: bool) -> ssl.SSLContext:
    """A client context that trusts the dev PKI's server certificate and presents none (profile 2)."""
    context = ssl.create_default_context(cafile=pki_dir / "ca.pem")
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def store_passwords(redis_url: str, stations: list[str]) -> None:
    """PASSWORD's salted hash stored for every station, as `cutover passwords set` stores one."""
    stored = passwords.hash_password(PASSWORD)
    client = redis_client.connect_sync(redis_url)
    try:
        client.mset({passwords.password_key(station): stored for station in stations})
    finally:
        client.close()


async def storm(chargers: list[Charger], proxy_pid: int, admin_port: int, resume: bool = False) -> dict[str, Any]:
    """All chargers connect at once (offering their last TLS session if `resume`) and boot; times from the start,
    the proxy's CPU, resumptions. Each charger's session is kept for a later storm."""
    for charger in chargers:
        if isinstance(charger.tls, ResumingContext) and not resume:
            charger.tls.resume = None
    tally = Tally()
    connected_at: list[float] = []
    booted_at: list[float] = []
    failures: list[str] = []
    kinds: Counter[str] = Counter()  # failures by HTTP status, or by exception (a handshake cut off: InvalidMessage)
    cpu_before = cpu_seconds(proxy_pid)
    loadgen_before = time.process_time()
    started = time.perf_counter()

    async def one(charger: Charger) -> None:
        try:
            await charger.connect(tally)
            connected_at.append(time.perf_counter() - started)
            await charger.boot(tally)
            booted_at.append(time.perf_counter() - started)
        except Exception as exc:  # counted and reported: one failed charger must not hide the others' times
            failures.append(f"{charger.station_id}: {exc!r}"[:200])
            status = getattr(getattr(exc, "response", None), "status_code", None)
            kinds[f"HTTP {status}" if status else type(exc).__name__] += 1

    await asyncio.gather(*(one(charger) for charger in chargers))
    elapsed = time.perf_counter() - started
    proxy_cpu = cpu_seconds(proxy_pid) - cpu_before
    loadgen_cpu = time.process_time() - loadgen_before
    resumed = 0
    for charger in chargers:
        tls = charger.connection.transport.get_extra_info("ssl_object") if charger.connection else None
        if tls is not None:
            resumed += tls.session_reused
            if isinstance(charger.tls, ResumingContext):
                charger.tls.resume = tls.session  # for the next storm (TLS 1.3: the ticket arrived by now)
    health = await asyncio.to_thread(healthz, admin_port)
    booted_at.sort()
    count = len(chargers)
    return {
        "chargers": count,
        "booted": len(booted_at),
        "failures": len(failures),
        "failures_by_kind": dict(kinds),
        "failure_samples": failures[:5],
        "call_errors": tally.call_errors,
        "tls_sessions_resumed": resumed,
        "seconds_to_all_connected": round(max(connected_at, default=float("nan")), 3),
        "seconds_to_all_booted": round(booted_at[-1], 3) if booted_at else None,
        "seconds_to_half_booted": round(booted_at[len(booted_at) // 2], 3) if booted_at else None,
        "handshakes_per_s": round(len(connected_at) / max(connected_at), 1) if connected_at else None,
        "proxy_cpu_ms_per_connection": round(proxy_cpu * 1000 / count, 2),
        "proxy_cpu_ms_per_booted": round(proxy_cpu * 1000 / len(booted_at), 2) if booted_at else None,
        "proxy_cpu_share_of_one_core": round(proxy_cpu / elapsed, 2),
        "loadgen_cpu_share_of_one_core": round(loadgen_cpu / elapsed, 2),
        "stations_connected_after": sum(health["stations"].values()),
    }


async def close_all(chargers: list[Charger], admin_port: int) -> None:
    """Close every charger cleanly and wait until the proxy has let all of them go."""
    await asyncio.gather(*(charger.close() for charger in chargers), return_exceptions=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sum((await asyncio.to_thread(healthz, admin_port))["stations"].values()) == 0:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # let the proxy's CPU settle before the next storm


async def run(count: int, tls12: bool) -> dict[str, Any]:
    stub = Child.start("stub")
    results: dict[str, Any] = {}
    try:
        with EmbeddedRedis() as redis_server, tempfile.TemporaryDirectory(prefix="cutover-storm-pki-") as directory:
            pki_dir = Path(directory)
            issued = time.perf_counter()
            pki.init_ca(pki_dir, hostnames=("localhost",), ips=("127.0.0.1",))
            stations = [f"STORM{index:05d}" for index in range(count)]
            for station in stations:
                pki.issue_station(pki_dir, station)
            store_passwords(redis_server.url, stations)
            print(f"storm: PKI with {count} station certificates in {time.perf_counter() - issued:.1f} s",
                  file=sys.stderr)  # fmt: skip
            common = ("--upstream", stub.url, "--redis", redis_server.url)

            async def storms(proxy_args: tuple[str, ...], chargers_at: Callable[[int], list[Charger]],
                             keys: tuple[str, ...]) -> None:  # fmt: skip
                """One proxy process, then the storms `keys` of the chargers `chargers_at(its port)` against it."""
                admin_port = free_port()
                proxy = Child.start("proxy", *common, "--admin-port", str(admin_port), *proxy_args)
                try:
                    chargers = chargers_at(proxy.port)
                    for key in keys:
                        print(f"storm: {count} chargers, {key}", file=sys.stderr)
                        results[key] = await storm(chargers, proxy.process.pid, admin_port, key == "mtls_resumed")
                        await close_all(chargers, admin_port)
                finally:
                    proxy.stop()

            await storms(
                (), lambda port: [Charger(f"ws://127.0.0.1:{port}", s, i) for i, s in enumerate(stations)],
                ("ws_cold", "ws"),
            )  # fmt: skip
            await storms(
                ("--security-profile", "1"),
                lambda port: [Charger(f"ws://{s}:{PASSWORD}@127.0.0.1:{port}", s, i) for i, s in enumerate(stations)],
                ("basic_cold", "basic"),
            )  # fmt: skip
            server_only = server_context(pki_dir, tls12)
            await storms(
                ("--tls-dir", str(pki_dir), "--security-profile", "2"),
                lambda port: [
                    Charger(f"wss://{s}:{PASSWORD}@127.0.0.1:{port}", s, i, server_only) for i, s in enumerate(stations)
                ],
                ("tls_basic_cold", "tls_basic"),
            )  # fmt: skip
            await storms(
                ("--tls-dir", str(pki_dir)),
                lambda port: [
                    Charger(f"wss://127.0.0.1:{port}", s, i, client_context(pki_dir, s, tls12))
                    for i, s in enumerate(stations)
                ],
                ("mtls_full_cold", "mtls_full", "mtls_resumed"),
            )  # fmt: skip
    finally:
        stub.stop()
    return results


def table(results: dict[str, Any]) -> str:
    header = ("storm", "booted", "handshakes/s", "all connected", "half booted", "all booted",
              "proxy CPU ms/conn", "TLS resumed", "proxy core", "loadgen core")  # fmt: skip
    rows = [header]
    names = {
        "ws_cold": "ws (profile 0), fresh proxy",
        "ws": "ws (profile 0)",
        "basic_cold": "Basic (profile 1), fresh proxy",
        "basic": "Basic (profile 1)",
        "tls_basic_cold": "TLS + Basic (profile 2), fresh",
        "tls_basic": "TLS + Basic (profile 2)",
        "mtls_full_cold": "mTLS, full, fresh proxy",
        "mtls_full": "mTLS, full handshakes",
        "mtls_resumed": "mTLS, resumed sessions",
    }
    for key, name in names.items():
        r = results["storms"][key]
        rows.append((
            name, f"{r['booted']}/{r['chargers']}", f"{r['handshakes_per_s']:,.0f}",
            f"{r['seconds_to_all_connected']:.2f} s", f"{r['seconds_to_half_booted']:.2f} s",
            f"{r['seconds_to_all_booted']:.2f} s", f"{r['proxy_cpu_ms_per_connection']:.2f}",
            str(r["tls_sessions_resumed"]), f"{r['proxy_cpu_share_of_one_core']:.2f}",
            f"{r['loadgen_cpu_share_of_one_core']:.2f}",
        ))  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for key, name in names.items():
        kinds = results["storms"][key].get("failures_by_kind")
        if kinds:
            counted = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
            lines.append(f"{name}: {results['storms'][key]['failures']} not booted ({counted})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench --scenario storm", description=__doc__)
    parser.add_argument("--chargers", type=int, default=500, help="chargers in the storm (default 500)")
    parser.add_argument("--tls12", action="store_true", help="cap TLS at 1.2 (resumption by session id)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    raise_fd_limit()
    storms = uvloop.run(run(args.chargers, args.tls12))
    results = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source_revision(),
        "chargers": args.chargers,
        "tls": "1.2" if args.tls12 else "1.3",
        "storms": storms,
    }
    publish(results, args.output, table(results))


if __name__ == "__main__":
    main()
