"""`python -m bench.shadow_lag`: shadow lag at the proxy's maximum rate.

The proxy scenario of `python -m bench` (closed loop: the same load generator, frames and stub CSMS, the tee
on, state and tee in an embedded Redis) with N shadow workers (`cutover shadow`, built-in reference backend)
consuming the tee at the same time. Lag is a tee entry's age when a worker has processed it: from its write
(the stream id's milliseconds, Redis's clock when the proxy appended it) to the end of the worker's work on
it, from the workers' `cutover_shadow_processed_lag_seconds` histograms (read before the load and after the
drain). Every 0.25 s the backlog is sampled: entries the tee wrote that no worker processed yet (the proxy's
`tee_written` minus the workers' processed count), entries read and not acknowledged (`XINFO GROUPS` pending)
and the age of the oldest entry not delivered yet; after the load, how long the workers took to catch up.
Last, the workers' capacity: the proxy alone at its maximum rate for 3 s (workers stopped), then the workers
alone until they caught up. Prints a table with the issue's target and writes bench/results/shadow_lag.json.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as redis
import uvloop
from prometheus_client.parser import text_string_to_metric_families

from bench.__main__ import CLOCK_TICKS, Child, cpu_seconds, healthz, publish, run_header, tee_drop_reasons
from bench.__main__ import RESULTS as MAIN_RESULTS
from bench.load import close_all, connect_all, run_all
from bench.soak import SHADOW_GROUP, TEE_SHARDS, redis_pid, start_shadow_worker, stop_process, wait_for_metrics
from proxy.redis_embedded import EmbeddedRedis, free_port
from proxy.tee import STREAM_PREFIX

RESULTS = Path(__file__).parent / "results" / "shadow_lag.json"
TARGET_P99_SECONDS = 1.0  # issue #7: shadow lag p99 < 1 s at the full proxy's maximum rate with two workers
LAG_METRIC = "cutover_shadow_processed_lag_seconds"
SAMPLE_EVERY = 0.25
DRAIN_LIMIT = 120.0  # seconds the workers get to catch up after the load
STUCK_SECONDS = 2.0  # all processed and the pending count still for this long: what is pending stays pending
BALANCE_LIMIT = 30.0  # seconds for the workers to share the shards evenly before the load starts
# Seconds of load with the workers stopped: a lease lasts 6 s and is renewed every 2 s, so a worker stopped
# for less than 4 s still holds its shards when it resumes.
CATCH_UP_LOAD_SECONDS = 3.0
CATCH_UP_SAMPLE_EVERY = 0.1  # the drain takes a second or two: finer samples than under load


@dataclass
class LagHistogram:
    """A worker's lag histogram: cumulative count per upper bound (seconds), like Prometheus's `le`."""

    buckets: dict[float, float]
    count: float
    total_seconds: float

    def __sub__(self, before: LagHistogram) -> LagHistogram:
        return LagHistogram(
            {bound: count - before.buckets.get(bound, 0.0) for bound, count in self.buckets.items()},
            self.count - before.count,
            self.total_seconds - before.total_seconds,
        )

    def __add__(self, other: LagHistogram) -> LagHistogram:
        bounds = self.buckets.keys() | other.buckets.keys()
        return LagHistogram(
            {bound: self.buckets.get(bound, 0.0) + other.buckets.get(bound, 0.0) for bound in bounds},
            self.count + other.count,
            self.total_seconds + other.total_seconds,
        )

    def quantile(self, fraction: float) -> float:
        """The fraction's quantile, interpolated linearly inside its bucket (as PromQL's histogram_quantile)."""
        if not self.count:
            return math.nan
        rank = fraction * self.count
        lower = below = 0.0
        for bound, cumulative in sorted(self.buckets.items()):
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower
                inside = cumulative - below
                return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = bound, cumulative
        return lower

    def share_within(self, seconds: float) -> float:
        """The share of entries processed within `seconds` (which must be a bucket bound: exact, not estimated)."""
        return self.buckets[seconds] / self.count if self.count else math.nan

    def max_bucket(self) -> tuple[float, float]:
        """The bounds (lower, upper] of the highest bucket holding an entry: the maximum lag lies in it."""
        lower, below = 0.0, 0.0
        highest = (0.0, 0.0)
        for bound, cumulative in sorted(self.buckets.items()):
            if cumulative > below:
                highest = (lower, bound)
            lower, below = bound, cumulative
        return highest


def scrape(port: int) -> tuple[LagHistogram, int]:
    """A shadow worker's processed-lag histogram and the tee shards it owns, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    buckets: dict[float, float] = {}
    count = total = 0.0
    shards = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{LAG_METRIC}_bucket":
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name == f"{LAG_METRIC}_count":
                count = sample.value
            elif sample.name == f"{LAG_METRIC}_sum":
                total = sample.value
            elif sample.name == "cutover_shadow_shards_owned":
                shards = int(sample.value)
    if not buckets:
        raise RuntimeError(f"the shadow worker on port {port} exports no {LAG_METRIC}")
    return LagHistogram(buckets, count, total), shards


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used so far, all cores together (/proc/stat)."""
    fields = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / CLOCK_TICKS


async def balanced(ports: list[int]) -> None:
    """Wait until the workers own the shards evenly (a newcomer gets its share within two lease renewals)."""
    fair = math.ceil(TEE_SHARDS / len(ports))
    deadline = time.monotonic() + BALANCE_LIMIT
    while True:
        owned = [(await asyncio.to_thread(scrape, port))[1] for port in ports]
        if sum(owned) == TEE_SHARDS and max(owned) <= fair:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"shadow workers own {owned} of {TEE_SHARDS} shards after {BALANCE_LIMIT:g} s")
        await asyncio.sleep(0.2)


@dataclass
class Watched:
    """Where the backlog is read: Redis, the proxy's /healthz and the shadow workers' /metrics."""

    client: redis.Redis
    admin_port: int
    ports: list[int]


async def backlog(watched: Watched, processed: float | None = None) -> dict[str, Any]:
    """The shadow's backlog: tee entries written and not yet processed by a worker (`unprocessed`: the proxy's
    `tee_written` minus the workers' processed count, whether the entries were read from the stream or not);
    entries read and not acknowledged (`pending`, XINFO GROUPS: charger CALLs wait there for their live answer
    too); and the age of the oldest entry not delivered to a worker yet. (Redis 6.2, the embedded one, has no
    `lag` in XINFO GROUPS: entries not delivered yet are not counted by Redis.) `processed`: the workers' count,
    if known (a stopped worker does not answer its /metrics)."""
    if processed is None:
        scraped = await asyncio.gather(*(asyncio.to_thread(scrape, port) for port in watched.ports))
        processed = sum(lag.count for lag, _ in scraped)
    written = (await asyncio.to_thread(healthz, watched.admin_port))["tee_written"]  # after: never below processed
    keys = [f"{STREAM_PREFIX}{{{shard}}}" for shard in range(TEE_SHARDS)]
    async with watched.client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.xinfo_groups(key)
        replies: list[Any] = await pipe.execute()
    groups = [next(g for g in found if g["name"] in (SHADOW_GROUP, SHADOW_GROUP.encode())) for found in replies]
    async with watched.client.pipeline(transaction=False) as pipe:
        for key, group in zip(keys, groups, strict=True):
            pipe.xrange(key, min=b"(" + group["last-delivered-id"], count=1)
        firsts: list[Any] = await pipe.execute()
    now_ms = time.time() * 1000
    ages = [now_ms - int(entries[0][0].split(b"-")[0]) for entries in firsts if entries]
    return {
        "unprocessed": max(0, written - int(processed)),
        "pending": sum(int(group["pending"]) for group in groups),
        "oldest_undelivered_s": round(max(ages) / 1000, 3) if ages else None,
    }


async def sample_backlog(
    watched: Watched, samples: list[dict[str, Any]], started: float, every: float = SAMPLE_EVERY
) -> None:
    """Append a backlog sample (`t`: seconds since `started`) every `every` seconds until cancelled."""
    while True:
        taken = time.perf_counter()
        samples.append({"t": round(taken - started, 2)} | await backlog(watched))
        await asyncio.sleep(max(0.0, every - (time.perf_counter() - taken)))


async def drained(
    samples: list[dict[str, Any]], since: float, sampler: asyncio.Task[None], every: float = SAMPLE_EVERY
) -> dict[str, Any]:
    """Wait for the workers to catch up after the load ended (`since`, on the samples' clock): nothing unprocessed
    and nothing pending, or nothing unprocessed and the pending count still for STUCK_SECONDS (entries read that
    will never be acknowledged). How long after the load that was, and the backlog then."""
    while True:
        await asyncio.sleep(every)
        if sampler.done():
            sampler.result()  # it failed: raise why
        after = [s for s in samples if s["t"] >= since]
        if not after:
            continue
        last = after[-1]
        if last["unprocessed"] == 0 and last["pending"] == 0:
            done = next(s for s in after if s["unprocessed"] == 0 and s["pending"] == 0)
            return {"seconds": round(done["t"] - since, 2), "left": done, "caught_up": True}
        still = len(after)  # the samples since which all was processed and the pending count has not moved
        while still and after[still - 1]["unprocessed"] == 0 and after[still - 1]["pending"] == last["pending"]:
            still -= 1
        if still < len(after) and last["t"] - after[still]["t"] >= STUCK_SECONDS:
            return {"seconds": round(after[still]["t"] - since, 2), "left": last, "caught_up": False}
        if last["t"] - since > DRAIN_LIMIT:
            return {"seconds": None, "left": last, "caught_up": False}


async def run(chargers: int, duration: float, workers: int) -> dict[str, Any]:
    stub = Child.start("stub")
    try:
        with EmbeddedRedis() as redis_server:
            proxy, admin_port = Child.start_proxy(stub.url, redis_server.url)
            ports = [free_port() for _ in range(workers)]
            shadow = [start_shadow_worker(redis_server.url, port) for port in ports]
            client = redis.Redis.from_url(redis_server.url)
            try:
                for port in ports:
                    await wait_for_metrics(port)
                await balanced(ports)
                pids = {"proxy": proxy.process.pid, "stub": stub.process.pid, "redis": redis_pid(redis_server)}
                pids |= {f"shadow{number}": worker.pid for number, worker in enumerate(shadow, 1)}
                watched = Watched(client, admin_port, ports)
                measured = await measure(watched, proxy.url, pids, chargers, duration)
                capacity = await catch_up(watched, proxy.url, pids, chargers)
                return measured | {"catch_up": capacity}
            finally:
                await client.aclose()
                for worker in shadow:
                    stop_process(worker)
                proxy.stop()
    finally:
        stub.stop()


async def measure(
    watched: Watched, proxy_url: str, pids: dict[str, int], chargers: int, duration: float
) -> dict[str, Any]:
    """The closed-loop window through the proxy while the workers consume the tee, then their drain."""
    admin_port, ports = watched.admin_port, watched.ports
    connected = await connect_all(proxy_url, chargers, "SHADOW")
    samples: list[dict[str, Any]] = []
    try:
        print(f"shadow lag: {chargers} chargers → proxy (tee → Redis → {len(ports)} shadow workers) → stub, "
              f"{duration:g} s", file=sys.stderr)  # fmt: skip
        tee_before = await asyncio.to_thread(healthz, admin_port)
        lag_before = [(await asyncio.to_thread(scrape, port))[0] for port in ports]
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()} | {"loadgen": time.process_time()}
        busy_before = machine_busy_seconds()
        started = time.perf_counter()
        sampler = asyncio.create_task(sample_backlog(watched, samples, started))
        result = await run_all(connected, duration)
        load_seconds = time.perf_counter() - started
        cpu_load = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        cpu_load["loadgen"] = time.process_time() - cpu_before["loadgen"]
        # Whatever else ran on the machine meanwhile (other benchmarks: it is shared) took cores from these.
        cpu_load["other_processes"] = max(0.0, machine_busy_seconds() - busy_before - sum(cpu_load.values()))
    finally:
        await close_all(connected)
    try:
        drain = await drained(samples, load_seconds, sampler)
    finally:
        sampler.cancel()
    cpu_drain = {name: cpu_seconds(pid) - cpu_before[name] - cpu_load[name] for name, pid in pids.items()}
    drain_elapsed = time.perf_counter() - started - load_seconds
    for sample in samples:
        sample["phase"] = "load" if sample["t"] < load_seconds else "drain"
    lag_after = [(await asyncio.to_thread(scrape, port))[0] for port in ports]
    tee_after = await asyncio.to_thread(healthz, admin_port)
    lags = [after - before for after, before in zip(lag_after, lag_before, strict=True)]
    total = sum(lags[1:], lags[0])
    elapsed = result.elapsed
    shadow_cpu = sum(cpu_load[name] + cpu_drain[name] for name in pids if name.startswith("shadow"))
    return {
        "proxy": {
            "calls": result.calls,
            "call_errors": result.call_errors,
            "error_samples": result.error_samples,
            "sessions": result.sessions,
            "elapsed_s": round(elapsed, 3),
            "throughput_msgs_per_s": round(result.calls / elapsed, 1),
        },
        "tee": {
            "written": tee_after["tee_written"] - tee_before["tee_written"],
            "dropped": tee_after["tee_dropped"] - tee_before["tee_dropped"],
            "dropped_by_reason": await asyncio.to_thread(tee_drop_reasons, admin_port),
        },
        "lag_s": lag_summary(total),
        "workers": [{"name": f"shadow{number}"} | lag_summary(lag) for number, lag in enumerate(lags, 1)],
        "backlog_at_end_of_load": next((s for s in reversed(samples) if s["phase"] == "load"), None),
        "unprocessed_max": max((s["unprocessed"] for s in samples), default=0),
        "pending_max": max((s["pending"] for s in samples), default=0),
        "oldest_undelivered_max_s": max((s["oldest_undelivered_s"] or 0.0 for s in samples), default=0.0),
        "drain": drain,
        "shadow_cpu_us_per_entry": round(shadow_cpu * 1e6 / total.count, 1) if total.count else None,
        "cpu_share_of_one_core": {name: round(seconds / elapsed, 2) for name, seconds in cpu_load.items()},
        "cpu_share_of_one_core_drain": {name: round(seconds / drain_elapsed, 2) for name, seconds in cpu_drain.items()},
        "samples": samples,
    }


async def catch_up(watched: Watched, proxy_url: str, pids: dict[str, int], chargers: int) -> dict[str, Any]:
    """The workers' capacity: the proxy at its maximum rate with the workers stopped (SIGSTOP: the proxy gets the
    cores, as in the main bench), for less time than a shard lease outlives its last renewal; then the workers
    resumed, alone, and timed until they caught up. Entries they processed per second of that drain."""
    admin_port, ports = watched.admin_port, watched.ports
    shadow_pids = [pid for name, pid in pids.items() if name.startswith("shadow")]
    connected = await connect_all(proxy_url, chargers, "CATCHUP")
    print(f"catch-up: the proxy alone for {CATCH_UP_LOAD_SECONDS:g} s, then the workers drain", file=sys.stderr)
    lag_before = [(await asyncio.to_thread(scrape, port))[0] for port in ports]
    tee_before = await asyncio.to_thread(healthz, admin_port)
    for pid in shadow_pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        try:
            result = await run_all(connected, CATCH_UP_LOAD_SECONDS)
        finally:
            await close_all(connected)
        await asyncio.sleep(0.2)  # the tee's last batches
        at_resume = await backlog(watched, sum(lag.count for lag in lag_before))
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()} | {"loadgen": time.process_time()}
        busy_before = machine_busy_seconds()
    finally:
        started = time.perf_counter()
        for pid in shadow_pids:
            os.kill(pid, signal.SIGCONT)
    samples: list[dict[str, Any]] = []
    sampler = asyncio.create_task(sample_backlog(watched, samples, started, CATCH_UP_SAMPLE_EVERY))
    try:
        drain = await drained(samples, 0.0, sampler, CATCH_UP_SAMPLE_EVERY)
    finally:
        sampler.cancel()
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    cpu["loadgen"] = time.process_time() - cpu_before["loadgen"]
    cpu["other_processes"] = max(0.0, machine_busy_seconds() - busy_before - sum(cpu.values()))
    window = time.perf_counter() - started  # the drain, and the last sample's look that it was over
    tee_after = await asyncio.to_thread(healthz, admin_port)
    lags = [(await asyncio.to_thread(scrape, port))[0] - before for port, before in zip(ports, lag_before, strict=True)]
    processed = sum(lag.count for lag in lags)
    seconds = drain["seconds"]
    return {
        "load_seconds": round(result.elapsed, 3),
        "proxy_throughput_msgs_per_s": round(result.calls / result.elapsed, 1),
        "tee_written": tee_after["tee_written"] - tee_before["tee_written"],
        "tee_entries_per_s": round((tee_after["tee_written"] - tee_before["tee_written"]) / result.elapsed, 1),
        "backlog_at_resume": at_resume,
        "drain": drain,
        "entries_processed": int(processed),
        "entries_per_s": round(processed / seconds, 1) if seconds else None,
        "cpu_share_of_one_core": {name: round(used / window, 2) for name, used in cpu.items()},
    }


def lag_summary(lag: LagHistogram) -> dict[str, Any]:
    lower, upper = lag.max_bucket()
    return {
        "entries_processed": int(lag.count),
        "p50": round(lag.quantile(0.50), 4),
        "p99": round(lag.quantile(0.99), 4),
        "max_between": [lower, upper],
        "mean": round(lag.total_seconds / lag.count, 4) if lag.count else None,
        "share_within_target": round(lag.share_within(TARGET_P99_SECONDS), 5),
        "buckets": {("+Inf" if math.isinf(b) else f"{b:g}"): int(n) for b, n in sorted(lag.buckets.items())},
    }


def main_bench_throughput() -> dict[str, Any] | None:
    """The proxy scenario's throughput in the main benchmark's last results, for comparison."""
    try:
        latest = orjson.loads(MAIN_RESULTS.read_bytes())
        proxy = latest["scenarios"]["proxy"]
        return {
            "msgs_per_s": proxy["throughput_msgs_per_s"],
            "tee_entries_per_s": round(proxy["tee"]["written_during_load"] / proxy["elapsed_s"], 1),
            "timestamp": latest["timestamp"],
        }
    except (OSError, KeyError, orjson.JSONDecodeError):
        return None


def report(measured: dict[str, Any], chargers: int, duration: float, workers: int) -> dict[str, Any]:
    p99 = measured["lag_s"]["p99"]
    met = measured["lag_s"]["share_within_target"] >= 0.99 and measured["drain"]["caught_up"]
    main = main_bench_throughput()
    return {
        **run_header(),
        "chargers": chargers,
        "duration_s": duration,
        "shadow_workers": workers,
        "target": {"shadow_lag_p99_s": TARGET_P99_SECONDS, "measured": p99, "met": met},
        "main_bench_proxy": main,
        "shadow_cores_at_main_bench_rate": (
            round(main["tee_entries_per_s"] * measured["shadow_cpu_us_per_entry"] / 1e6, 2)
            if main and measured["shadow_cpu_us_per_entry"]
            else None
        ),
    } | measured


def table(results: dict[str, Any]) -> str:
    header = ("worker", "entries", "lag p50", "lag p99", "lag max", "≤ 1 s", "CPU load", "CPU drain")
    rows = [header]
    shares = {}
    for phase in ("cpu_share_of_one_core", "cpu_share_of_one_core_drain"):
        per_worker = {w["name"]: results[phase][w["name"]] for w in results["workers"]}
        shares[phase] = per_worker | {"all": sum(per_worker.values())}
    for summary in (*results["workers"], {"name": "all"} | results["lag_s"]):
        name = summary["name"]
        rows.append(
            (
                name,
                f"{summary['entries_processed']:,}",
                f"{summary['p50'] * 1000:,.1f} ms",
                f"{summary['p99'] * 1000:,.1f} ms",
                "{:g}–{:g} s".format(*summary["max_between"]),
                f"{summary['share_within_target'] * 100:.2f} %",
                f"{shares['cpu_share_of_one_core'][name]:.2f}",
                f"{shares['cpu_share_of_one_core_drain'][name]:.2f}",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |" for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    proxy, tee, drain = results["proxy"], results["tee"], results["drain"]
    main = results["main_bench_proxy"]
    end = results["backlog_at_end_of_load"] or {"unprocessed": 0, "pending": 0}
    lines += [
        "",
        "lag: from the tee's write of an entry (its stream id) to a worker having processed it; p50/p99 "
        "interpolated inside the workers' histogram buckets, max: the bucket holding it; ≤ 1 s: exact share",
        f"proxy: {proxy['throughput_msgs_per_s']:,.0f} CALLs/s answered (closed loop, {results['chargers']} chargers, "
        f"{proxy['call_errors']} CALLERRORs); tee {tee['written']:,} envelopes written, {tee['dropped']:,} dropped"
        + (
            f"; the main bench's proxy scenario ({main['timestamp'][:10]}): {main['msgs_per_s']:,.0f} CALLs/s, "
            f"×{proxy['throughput_msgs_per_s'] / main['msgs_per_s']:.2f} here: the workers share the 2 cores"
            if main
            else ""
        ),
        f"backlog: at most {results['unprocessed_max']:,} tee entries written and not processed yet "
        f"({end['unprocessed']:,} when the load stopped), at most {results['pending_max']:,} read and not "
        f"acknowledged (XINFO GROUPS pending; {end['pending']:,} when the load stopped); oldest entry not delivered "
        f"to a worker: at most {results['oldest_undelivered_max_s']:.2f} s old",
        (
            f"drain: caught up {drain['seconds']:.2f} s after the load stopped"
            if drain["caught_up"]
            else f"drain: NOT caught up; left {drain['left']}"
        ),
        "unprocessed / pending over time (every second): "
        + ", ".join(f"{s['t']:.0f}s {s['unprocessed']:,}/{s['pending']:,}" for s in every_second(results["samples"])),
        "CPU share of one core during the load: "
        + ", ".join(f"{who.replace('_', ' ')} {share:.2f}" for who, share in results["cpu_share_of_one_core"].items()),
        f"shadow workers: {results['shadow_cpu_us_per_entry']} µs of CPU per tee entry"
        + (
            f"; at the main bench's proxy rate ({main['tee_entries_per_s']:,.0f} tee entries/s) they would need "
            f"{results['shadow_cores_at_main_bench_rate']:.2f} of a core in all (each worker can use one)"
            if main
            else ""
        ),
        catch_up_line(results["catch_up"], main),
        "",
        f"target shadow lag p99 < 1 s with {results['shadow_workers']} workers: "
        f"{'met' if results['target']['met'] else 'MISSED'} (measured {results['target']['measured']:.3f} s)",
    ]
    return "\n".join(lines)


def catch_up_line(catch_up: dict[str, Any], main: dict[str, Any] | None) -> str:
    drain = catch_up["drain"]
    line = (
        f"catch-up: the proxy alone (workers stopped) for {catch_up['load_seconds']:.1f} s: "
        f"{catch_up['proxy_throughput_msgs_per_s']:,.0f} CALLs/s, {catch_up['tee_entries_per_s']:,.0f} tee entries/s; "
        f"then the workers alone: {catch_up['backlog_at_resume']['unprocessed']:,} entries to process "
    )
    if not drain["caught_up"] or not catch_up["entries_per_s"]:
        return line + f"NOT drained (left {drain['left']})"
    rate = catch_up["entries_per_s"]
    return line + (
        f"drained in {drain['seconds']:.2f} s (sampled every {CATCH_UP_SAMPLE_EVERY:g} s): {rate:,.0f} entries/s, "
        f"×{rate / catch_up['tee_entries_per_s']:.2f} the tee's rate meanwhile"
        + (f", ×{rate / main['tee_entries_per_s']:.2f} the main bench's proxy's" if main else "")
        + " (CPU: "
        + ", ".join(
            f"{name.replace('_', ' ')} {share:.2f}" for name, share in catch_up["cpu_share_of_one_core"].items()
        )
        + ")"
    )


def every_second(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = []
    for sample in samples:
        if not shown or sample["t"] >= shown[-1]["t"] + 1.0:
            shown.append(sample)
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shadow_lag", description=__doc__)
    parser.add_argument("--chargers", type=int, default=100, help="simulated 2.0.1 chargers (default 100)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds (default 10)")
    parser.add_argument("--workers", type=int, default=2, help="shadow worker processes (default 2)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args()
    measured = uvloop.run(run(args.chargers, args.duration, args.workers))
    results = report(measured, args.chargers, args.duration, args.workers)
    publish(results, args.output, table(results))


if __name__ == "__main__":
    main()
