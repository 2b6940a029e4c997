"""`python -m bench --scenario idle`: memory per idle charger, through the proxy and through a bare relay.

N chargers (default 2,000; `--large`: 10,000, as far as the open-file limit allows) connect, each from its own
loopback address, boot (BootNotification and StatusNotification answered) and then stay idle, the server
pinging them every 20 s (both servers' default). RSS KiB per charger = (server VmRSS after the hold − VmRSS
before the chargers connected) / N, the same for the bare relay (`bench/servers.py relay`, one upstream
connection per charger, frames copied) and for the proxy (its charger and upstream legs, sessions, loaded
translation state and device model). For the proxy the Redis memory added per charger is reported too
(station state, station record and the tee entries of its boot). Results go to bench/results/idle.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as redis
import uvloop

from bench.__main__ import Child, healthz, publish, rss_kib, source_revision
from bench.chargers import Charger, Tally
from bench.soak import raise_fd_limit
from proxy.redis_embedded import EmbeddedRedis

RESULTS = Path(__file__).parent / "results" / "idle.json"
CONNECTING_AT_ONCE = 200  # a ramp, not a storm: `--scenario storm` measures that
SETTLE_SECONDS = 2.0
# Sockets a server holds besides two per charger (listener, Redis pools of 2 × 32, logs, the interpreter's own).
SPARE_FDS = 200


async def hold(chargers: list[Charger], server_pid: int, hold_seconds: float) -> dict[str, Any]:
    """Connect and boot every charger, keep them idle for `hold_seconds`; the server's RSS along the way."""
    await asyncio.sleep(SETTLE_SECONDS)
    rss_before = rss_kib(server_pid)
    tally = Tally()
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)
    failures: list[str] = []

    async def up(charger: Charger) -> None:
        async with gate:
            try:
                await charger.connect(tally)
                await charger.boot(tally)
            except Exception as exc:  # counted and reported with the results
                failures.append(f"{charger.station_id}: {exc!r}"[:200])

    started = time.perf_counter()
    await asyncio.gather(*(up(charger) for charger in chargers))
    ramp = time.perf_counter() - started
    await asyncio.sleep(SETTLE_SECONDS)
    rss_booted = rss_kib(server_pid)
    await asyncio.sleep(hold_seconds)
    rss_held = rss_kib(server_pid)
    booted = len(chargers) - len(failures)
    still_open = sum(charger.connection is not None and charger.connection.close_code is None for charger in chargers)
    return {
        "chargers": len(chargers),
        "booted": booted,
        "still_open_after_hold": still_open,
        "failures": len(failures),
        "failure_samples": failures[:5],
        "call_errors": tally.call_errors,
        "ramp_seconds": round(ramp, 2),
        "hold_seconds": hold_seconds,
        "rss_kib_before": rss_before,
        "rss_kib_booted": rss_booted,
        "rss_kib_after_hold": rss_held,
        "rss_kib_per_charger": round((rss_held - rss_before) / max(booted, 1), 1),
        "rss_kib_per_charger_booted": round((rss_booted - rss_before) / max(booted, 1), 1),
    }


async def run(count: int, hold_seconds: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    stub = Child.start("stub")
    try:
        relay = Child.start("relay", "--upstream", stub.url)
        try:
            print(f"idle: {count} chargers → relay → stub, held {hold_seconds:g} s", file=sys.stderr)
            chargers = [Charger(relay.url, f"IDLER{index:05d}", index) for index in range(count)]
            try:
                results["bare_relay"] = await hold(chargers, relay.process.pid, hold_seconds)
            finally:
                await close(chargers)
        finally:
            relay.stop()
        with EmbeddedRedis() as redis_server:
            proxy, admin_port = Child.start_proxy(stub.url, redis_server.url)
            client = redis.Redis.from_url(redis_server.url)
            try:
                print(f"idle: {count} chargers → proxy → stub, held {hold_seconds:g} s", file=sys.stderr)
                memory_before = int((await client.info("memory"))["used_memory"])
                chargers = [Charger(proxy.url, f"IDLEP{index:05d}", index) for index in range(count)]
                try:
                    results["proxy"] = await hold(chargers, proxy.process.pid, hold_seconds)
                    health = await asyncio.to_thread(healthz, admin_port)
                    memory_after = int((await client.info("memory"))["used_memory"])
                    results["proxy"] |= {
                        "stations_connected": sum(health["stations"].values()),
                        "proxy_tasks": health["tasks"],
                        "redis_bytes_per_charger": round((memory_after - memory_before) / count),
                    }
                finally:
                    await close(chargers)
            finally:
                await client.aclose()
                proxy.stop()
    finally:
        stub.stop()
    return results


async def close(chargers: list[Charger]) -> None:
    await asyncio.gather(*(charger.close() for charger in chargers), return_exceptions=True)


def table(results: dict[str, Any]) -> str:
    rows = [("server", "chargers booted", "RSS before", "RSS after hold", "RSS KiB/charger", "Redis B/charger")]
    for key, name in (("bare_relay", "bare relay"), ("proxy", "proxy")):
        r = results["servers"][key]
        rows.append((
            name, f"{r['booted']:,}/{r['chargers']:,}", f"{r['rss_kib_before'] / 1024:,.1f} MiB",
            f"{r['rss_kib_after_hold'] / 1024:,.1f} MiB", f"{r['rss_kib_per_charger']:.1f}",
            f"{r['redis_bytes_per_charger']:,}" if "redis_bytes_per_charger" in r else "-",
        ))  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    relay, proxy = results["servers"]["bare_relay"], results["servers"]["proxy"]
    lines.append(
        f"\nproxy / bare relay RSS per charger: ×{proxy['rss_kib_per_charger'] / relay['rss_kib_per_charger']:.2f}; "
        f"proxy asyncio tasks with {proxy['stations_connected']:,} stations: {proxy['proxy_tasks']:,}"
    )
    if results.get("clamped_from"):
        lines.append(
            f"(asked for {results['clamped_from']:,} chargers; the open-file limit allows {results['chargers']:,})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench --scenario idle", description=__doc__)
    parser.add_argument("--chargers", type=int, default=2000, help="idle chargers (default 2000)")
    parser.add_argument("--large", action="store_true", help="10,000 chargers (as many as the fd limit allows)")
    parser.add_argument("--hold", type=float, default=25.0, help="seconds held idle, > one ping interval (25)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    wanted = 10_000 if args.large else args.chargers
    limit = raise_fd_limit()
    count = min(wanted, (limit - SPARE_FDS) // 2)  # the proxy holds two sockets per charger
    if count < wanted:
        print(f"idle: open-file limit {limit}: {count} chargers instead of {wanted}", file=sys.stderr)
    servers = uvloop.run(run(count, args.hold))
    results = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source_revision(),
        "chargers": count,
        "clamped_from": wanted if count < wanted else None,
        "open_file_limit": limit,
        "servers": servers,
    }
    publish(results, args.output, table(results))


if __name__ == "__main__":
    main()
