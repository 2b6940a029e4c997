"""`python -m bench.soak`: a fleet held through the proxy for a long while, watching for leaks.

N paced 2.0.1 chargers (`bench/chargers.py`: a session every `--period` seconds, reconnecting every few
sessions, now and then dropping the socket with a CALL in flight) go through the proxy (a subprocess, as in
`python -m bench`) to the stub CSMS; two shadow workers (`cutover shadow`, built-in backend) consume the tee
from an embedded Redis. Every few seconds the proxy's RSS, open file descriptors and asyncio task count, the
shadow workers' RSS and Redis's memory, tee stream length and consumer-group backlog are sampled. The trend
verdict fits a least-squares line to the second half of the run (the first half is warm-up: every charger
connected, booted, ran sessions, dropped a socket mid-CALL and reconnected) and calls a rise beyond noise a
failure. Results go to bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as redis
import uvloop

from bench.__main__ import Child, cpu_seconds, healthz, publish, rss_kib, source_revision
from bench.chargers import Charger, Pace, Tally, soak_charger
from proxy.redis_embedded import EmbeddedRedis, free_port
from proxy.tee import STREAM_PREFIX

RESULTS = Path(__file__).parent / "results" / "soak.json"
TEE_SHARDS = 16  # the proxy's default
SHADOW_GROUP = "shadow"
# A rise over the fitted half counts only beyond both: NOISE_SIGMAS residual standard deviations of the fit
# (what the samples scatter by), and a floor per metric: the step in which that resource is taken, so that
# one allocator arena or one connection caught mid-reconnect by a sample is not called a leak.
NOISE_SIGMAS = 3.0
FLOORS: dict[str, tuple[float, float]] = {
    # metric: (absolute floor, floor as a share of the metric's mean over the fitted half)
    # CPython takes memory from the OS in 1 MiB pymalloc arenas and glibc gives it back lazily: 1 MiB or 2 %.
    "proxy_rss_kib": (1024.0, 0.02),
    "shadow_rss_kib": (1024.0, 0.02),
    # Two sockets per connected charger (charger leg + upstream leg): a few chargers between connections.
    "proxy_fds_without_redis_pool": (4.0, 0.01),
    # Three tasks per session (two readers, a timer) plus short-lived bookkeeping tasks.
    "proxy_tasks": (6.0, 0.01),
    # Entries read but not acknowledged, or not read yet: a backlog that grows means the workers fall behind.
    "redis_backlog": (500.0, 0.0),
}
# The proxy's two Redis clients (tee; state and control) each pool at most 32 connections (proxy/app.py).
REDIS_POOL_BOUND = 2 * 32
JUDGED = ("proxy_rss_kib", "proxy_fds_without_redis_pool", "proxy_tasks", "shadow_rss_kib", "redis_backlog")
INFORMATIVE = ("proxy_fds", "proxy_fds_redis", "shadow_calls_held", "redis_used_memory", "redis_keys")


def redis_pid(server: EmbeddedRedis) -> int:
    assert server._process is not None
    return server._process.pid


def tcp_ports(pid: int) -> dict[int, tuple[int, int]]:
    """Socket inode → (local port, remote port) of the TCP sockets in the process's network namespace."""
    ports = {}
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], int(fields[9])
                ports[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
    return ports


def proxy_fds(pid: int, listen_port: int, stub_port: int, redis_port: int) -> dict[str, int]:
    """The proxy's open file descriptors by what they are: charger legs, upstream legs, Redis clients, the rest."""
    ports = tcp_ports(pid)
    kinds = {"proxy_fds_charger": 0, "proxy_fds_upstream": 0, "proxy_fds_redis": 0, "proxy_fds_other": 0}
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(f"/proc/{pid}/fd/{name}")
            local, remote = ports.get(int(target[8:-1]), (0, 0)) if target.startswith("socket:[") else (0, 0)
            if local == listen_port and remote:
                kinds["proxy_fds_charger"] += 1
            elif remote == stub_port:
                kinds["proxy_fds_upstream"] += 1
            elif remote == redis_port:
                kinds["proxy_fds_redis"] += 1
            else:
                kinds["proxy_fds_other"] += 1
    return kinds


def start_shadow_worker(redis_url: str, admin_port: int) -> subprocess.Popen[bytes]:
    """A `cutover shadow` worker on the built-in reference backend (accepting the benchmark's token)."""
    return subprocess.Popen(
        [sys.executable, "-m", "proxy", "shadow", "--redis-url", redis_url, "--tokens", "TAG0001",
         "--admin-listen", f"127.0.0.1:{admin_port}", "--log-level", "WARNING"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def redis_sample(client: redis.Redis) -> dict[str, int]:
    """Redis's memory, keys, tee stream entries and the shadow group's backlog: entries read but not
    acknowledged (pending) plus entries not read yet (lag). Redis 7 counts the latter (`lag` in XINFO GROUPS);
    Redis 6.2 (the embedded one) does not, and then each shard with entries not delivered yet counts one (its
    last entry is not the group's last delivered one): the backlog is then a lower bound, and 0 exactly when
    everything was read."""
    memory: Any = await client.info("memory")
    entries = pending = lag = 0
    for shard in range(TEE_SHARDS):
        key = f"{STREAM_PREFIX}{{{shard}}}"
        entries += int(await client.xlen(key))
        if not await client.exists(key):
            continue
        groups: Any = await client.xinfo_groups(key)
        for group in groups:
            if group["name"] in (SHADOW_GROUP, SHADOW_GROUP.encode()):
                pending += int(group.get("pending") or 0)
                if "lag" in group:
                    lag += int(group["lag"] or 0)
                else:
                    stream: Any = await client.xinfo_stream(key)
                    lag += int(stream["last-generated-id"] != group["last-delivered-id"])
    return {
        "redis_used_memory": int(memory["used_memory"]),
        "redis_keys": int(await client.dbsize()),
        "tee_entries": entries,
        "redis_pending": pending,
        "redis_lag": lag,
        "redis_backlog": pending + lag,
    }


def shadow_pending(admin_port: int) -> int:
    """The worker's `cutover_shadow_pending_entries`: CALLs it holds in memory waiting for their live answer."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("cutover_shadow_pending_entries "):
                return int(float(line.split()[1]))
    return 0


async def wait_for_metrics(port: int, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            await asyncio.to_thread(shadow_pending, port)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no shadow worker /metrics on port {port} after {within:g} s") from None
            await asyncio.sleep(0.2)


@dataclass
class Fleet:
    """The processes under test and where to find them."""

    proxy: Child
    stub: Child
    admin_port: int
    redis_port: int
    workers: list[tuple[subprocess.Popen[bytes], int]]  # process, its /metrics port
    client: redis.Redis
    started: float


async def sample(fleet: Fleet) -> dict[str, Any]:
    health = await asyncio.to_thread(healthz, fleet.admin_port)
    pid = fleet.proxy.process.pid
    fds = proxy_fds(pid, fleet.proxy.port, fleet.stub.port, fleet.redis_port)
    shadow = [rss_kib(worker.pid) for worker, _ in fleet.workers]
    held = [await asyncio.to_thread(shadow_pending, port) for _, port in fleet.workers]
    return {
        "t": round(time.monotonic() - fleet.started, 1),
        "proxy_rss_kib": rss_kib(pid),
        "proxy_fds": sum(fds.values()),
        # The Redis clients' pools open connections lazily up to their size (2 × 32): judged apart, by that bound.
        "proxy_fds_without_redis_pool": sum(fds.values()) - fds["proxy_fds_redis"],
        **fds,
        "proxy_tasks": health["tasks"],
        "stations": sum(health["stations"].values()),
        "tee_written": health["tee_written"],
        "tee_dropped": health["tee_dropped"],
        "shadow_rss_kib": sum(shadow),
        "shadow_rss_kib_each": shadow,
        "shadow_calls_held": sum(held),
    } | await redis_sample(fleet.client)


def fit(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Least-squares line through (t, value): slope per second, intercept, residual standard deviation."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / spread if spread else 0.0
    intercept = mean_v - slope * mean_t
    residuals = [v - (intercept + slope * t) for t, v in points]
    sigma = math.sqrt(sum(r * r for r in residuals) / max(n - 2, 1))
    return slope, intercept, sigma


def trend(
    samples: list[dict[str, Any]], metric: str, warm_up: float, floors: dict[str, tuple[float, float]] = FLOORS
) -> dict[str, Any]:
    """The metric's rise over the samples after `warm_up` seconds, against the noise and its floor."""
    points = [(s["t"], float(s[metric])) for s in samples if s["t"] >= warm_up]
    if len(points) < 3:
        return {"verdict": "too few samples", "samples": len(points)}
    slope, _, sigma = fit(points)
    span = points[-1][0] - points[0][0]
    mean = sum(v for _, v in points) / len(points)
    absolute, relative = floors.get(metric, (0.0, 0.0))
    limit = max(NOISE_SIGMAS * sigma, absolute, relative * mean)
    rise = slope * span
    return {
        "samples": len(points),
        "from_s": points[0][0],
        "to_s": points[-1][0],
        "mean": round(mean, 1),
        "slope_per_s": round(slope, 4),
        "slope_per_hour": round(slope * 3600, 1),
        "rise_over_window": round(rise, 1),
        "noise_sigma": round(sigma, 2),
        "limit": round(limit, 1),
        "verdict": "growing" if rise > limit else "flat",
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    pace = Pace(period=args.period, gap=args.gap, reconnect_every=args.reconnect_every, abort_every=args.abort_every)
    samples: list[dict[str, Any]] = []
    tally = Tally()
    stub = Child.start("stub")
    try:
        with EmbeddedRedis() as redis_server:
            proxy, admin_port = Child.start_proxy(stub.url, redis_server.url)
            ports = [free_port() for _ in range(args.workers)]
            workers = [(start_shadow_worker(redis_server.url, port), port) for port in ports]
            for _, port in workers:
                await wait_for_metrics(port)
            client = redis.Redis.from_url(redis_server.url)
            fleet = Fleet(proxy, stub, admin_port, redis_server.port, workers, client, time.monotonic())
            try:
                loop = asyncio.get_running_loop()
                until = loop.time() + args.duration
                chargers = [Charger(proxy.url, f"SOAK{index:05d}", index) for index in range(args.chargers)]
                # All connect at once; sessions staggered over one period, so the load is spread evenly in time.
                running = asyncio.gather(
                    *(
                        soak_charger(charger, pace, index * pace.period / len(chargers), until, tally)
                        for index, charger in enumerate(chargers)
                    ),
                    return_exceptions=True,
                )
                pids = {"proxy": proxy.process.pid, "stub": stub.process.pid, "redis": redis_pid(redis_server)}
                pids |= {f"shadow{number}": worker.pid for number, (worker, _) in enumerate(workers, 1)}
                cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()} | {"loadgen": time.process_time()}
                print(f"soak: {args.chargers} chargers through the proxy for {args.duration:g} s", file=sys.stderr)
                print(HEADER, file=sys.stderr)
                while loop.time() < until:
                    samples.append(await sample(fleet))
                    print(row(samples[-1]), file=sys.stderr)
                    await asyncio.sleep(min(args.sample_every, max(0.0, until - loop.time())))
                samples.append(await sample(fleet))
                outcomes = await running
                elapsed = time.monotonic() - fleet.started
                cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
                cpu["loadgen"] = time.process_time() - cpu_before["loadgen"]
                crashed = [repr(outcome) for outcome in outcomes if isinstance(outcome, BaseException)]
                drained = await drain(fleet)
                slowlog: Any = await client.slowlog_get(10)
            finally:
                await client.aclose()
                for worker, _ in workers:
                    stop_process(worker)
                proxy.stop()
    finally:
        stub.stop()
    warm_up = args.duration / 2
    floors = FLOORS | {metric: (FLOORS[metric][0], args.rss_floor) for metric in ("proxy_rss_kib", "shadow_rss_kib")}
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": sys.platform, "cpu_count": os.cpu_count(), "python": sys.version.split()[0]},
        "source": source_revision(),
        "chargers": args.chargers,
        "duration_s": args.duration,
        "pace": asdict(pace),
        "shadow_workers": args.workers,
        "sample_every_s": args.sample_every,
        "warm_up_s": warm_up,
        "fleet": tally.as_dict() | {"crashed_chargers": crashed[:5]},
        "cpu_share_of_one_core": {name: round(seconds / elapsed, 3) for name, seconds in cpu.items()},
        "rss_floor_share": args.rss_floor,
        "trends": {metric: trend(samples, metric, warm_up, floors) for metric in (*JUDGED, *INFORMATIVE)},
        "redis_pool_connections_max": max(s["proxy_fds_redis"] for s in samples),
        "redis_bytes_per_tee_entry": redis_bytes_per_entry(samples, warm_up),
        "after_drain": drained,
        # Redis commands over 10 ms (its default slowlog threshold): what kept Redis from answering the proxy.
        "redis_slowlog": [
            {"ms": round(entry["duration"] / 1000, 1), "command": entry["command"].decode(errors="replace")[:120]}
            for entry in slowlog
        ],
        "samples": samples,
    }


async def drain(fleet: Fleet, quiet: float = 3.0, limit: float = 60.0) -> dict[str, Any]:
    """Once the chargers stopped: wait for the shadow workers to read everything (lag 0) and for their
    backlog to stop moving; what is still pending then was read and will never be acknowledged."""
    started = time.monotonic()
    last = await sample(fleet)
    still_since = time.monotonic()
    while time.monotonic() - still_since < quiet and time.monotonic() - started < limit:
        await asyncio.sleep(0.5)
        now = await sample(fleet)
        if now["redis_lag"] or (now["redis_pending"], now["shadow_calls_held"]) != (
            last["redis_pending"],
            last["shadow_calls_held"],
        ):
            still_since = time.monotonic()
        last = now
    return {
        "seconds": round(time.monotonic() - started, 1),
        "stations": last["stations"],
        "proxy_tasks": last["proxy_tasks"],
        "proxy_fds": last["proxy_fds"],
        "redis_lag": last["redis_lag"],
        "redis_pending": last["redis_pending"],
        "shadow_calls_held": last["shadow_calls_held"],
    }


def redis_bytes_per_entry(samples: list[dict[str, Any]], warm_up: float) -> float | None:
    """Redis memory added per tee entry appended over the fitted half (the streams are trimmed only at
    ~1,000,000 entries a shard, so until then Redis grows with the traffic by design)."""
    window = [s for s in samples if s["t"] >= warm_up]
    if len(window) < 2 or window[-1]["tee_entries"] == window[0]["tee_entries"]:
        return None
    added = window[-1]["redis_used_memory"] - window[0]["redis_used_memory"]
    return round(added / (window[-1]["tee_entries"] - window[0]["tee_entries"]), 1)


HEADER = (
    f"{'t s':>6} {'proxy RSS MiB':>13} {'fds':>6} {'tasks':>6} {'stations':>8} {'shadow RSS MiB':>14} "
    f"{'redis MiB':>9} {'tee entries':>11} {'backlog':>8} {'keys':>8}"
)


def row(s: dict[str, Any]) -> str:
    return (
        f"{s['t']:>6.0f} {s['proxy_rss_kib'] / 1024:>13.1f} {s['proxy_fds']:>6} {s['proxy_tasks']:>6} "
        f"{s['stations']:>8} {s['shadow_rss_kib'] / 1024:>14.1f} {s['redis_used_memory'] / 2**20:>9.1f} "
        f"{s['tee_entries']:>11,} {s['redis_backlog']:>8,} {s['redis_keys']:>8,}"
    )


def table(results: dict[str, Any], rows: int = 12) -> str:
    samples = results["samples"]
    step = max(1, len(samples) // rows)
    shown = samples[::step]
    if shown[-1] is not samples[-1]:
        shown.append(samples[-1])
    lines = [HEADER, *(row(s) for s in shown), ""]
    lines.append(
        f"trend over {results['warm_up_s']:g} s … {results['duration_s']:g} s (least squares; first half is warm-up):"
    )
    for metric, verdict in results["trends"].items():
        if "slope_per_hour" not in verdict:
            lines.append(f"  {metric:<28} {verdict['verdict']}")
            continue
        lines.append(
            f"  {metric:<28} rise {verdict['rise_over_window']:>13,.1f} (limit {verdict['limit']:,.1f}, "
            f"noise σ {verdict['noise_sigma']:,.1f}), {verdict['slope_per_hour']:>15,.1f}/h  "
            + (verdict["verdict"].upper() if metric in JUDGED else "(informative)")
        )
    fleet = results["fleet"]
    lines.append(
        f"fleet: {fleet['calls']:,} CALLs answered ({fleet['call_errors']} CALLERRORs), "
        f"{fleet['sessions']:,} sessions, "
        f"{fleet['connects']:,} connections ({fleet['aborted_mid_session']} dropped mid-session, "
        f"{fleet['unexpected_closes']} closed unexpectedly); latency p50 {fleet['latency_ms']['p50']} ms, "
        f"p99 {fleet['latency_ms']['p99']} ms"
    )
    drained = results["after_drain"]
    lines.append(
        f"after the fleet stopped ({drained['seconds']} s to drain): {drained['stations']} stations, "
        f"{drained['proxy_tasks']} proxy tasks, {drained['proxy_fds']} proxy fds; tee entries never acknowledged "
        f"{drained['redis_pending']:,}, CALLs the shadow still holds {drained['shadow_calls_held']:,} "
        f"(lag {drained['redis_lag']})"
    )
    lines.append(
        f"proxy Redis connections at most {results['redis_pool_connections_max']} (bound {REDIS_POOL_BOUND}); "
        f"Redis bytes per tee entry: {results['redis_bytes_per_tee_entry']}"
    )
    lines.append(
        "CPU share of one core: " + ", ".join(f"{k} {v:.2f}" for k, v in results["cpu_share_of_one_core"].items())
    )
    found = failures(results)
    lines.append("VERDICT: " + ("FAIL: " + ", ".join(found) if found else "PASS (no growth beyond noise)"))
    return "\n".join(lines)


def failures(results: dict[str, Any]) -> list[str]:
    found = [metric for metric in JUDGED if results["trends"][metric].get("verdict") == "growing"]
    if results["redis_pool_connections_max"] > REDIS_POOL_BOUND:
        found.append("proxy_fds_redis")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds (default 1800)")
    parser.add_argument("--chargers", type=int, default=1000, help="simulated 2.0.1 chargers (default 1000)")
    parser.add_argument("--period", type=float, default=60.0, help="seconds between a charger's sessions (60)")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between the CALLs of a session (1)")
    parser.add_argument("--reconnect-every", type=int, default=2, help="sessions per connection (2)")
    parser.add_argument("--abort-every", type=int, default=2, help="every n-th connection ends mid-CALL (2; 0 never)")
    parser.add_argument("--workers", type=int, default=2, help="shadow worker processes (2)")
    parser.add_argument(
        "--rss-floor", type=float, default=FLOORS["proxy_rss_kib"][1],
        help="an RSS rise below this share of RSS is never a failure (default 0.02; short runs need more)",
    )  # fmt: skip
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples (5)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args()
    raise_fd_limit()
    results = uvloop.run(run(args))
    publish(results, args.output, table(results))
    sys.exit(1 if failures(results) else 0)


def raise_fd_limit() -> int:
    """Raise this process's (and its children's) open-file limit to the hard limit; return it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


if __name__ == "__main__":
    main()
