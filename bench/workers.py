"""`python -m bench.workers`: the closed-loop proxy workload of `python -m bench` through `cutover proxy` with one
worker, then with `--workers 2` (two processes on one port, SO_REUSEPORT) — same frames, load generator, stub
CSMS and embedded Redis, tee on — reporting throughput, latency, CPU per frame summed over every proxy process,
how the kernel spread the chargers over the workers, and the 2-worker / 1-worker throughput ratio. Results go to
bench/results/workers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import uvloop

from bench.__main__ import CLOCK_TICKS, Child, healthz, measure, publish, run_header, tee_drop_reasons
from bench.soak import proxy_fds, redis_pid, stop_process, tcp_ports
from proxy.redis_embedded import EmbeddedRedis, free_port

RESULTS = Path(__file__).parent / "results" / "workers.json"
WORKER_COUNTS = (1, 2)
STALL_SECONDS = 60.0  # beyond the measured duration: a proxy that stopped answering ends the run with an error
SAMPLE_EVERY = 1.0  # seconds between counts of each worker's charger sockets (in the load generator's process)
NOTES = (
    "Both rows run the real `cutover proxy` CLI (security profile 0, log level WARNING) toward the stub CSMS, its "
    "state and tee in an embedded Redis of its own; `--workers 1` is one process, `--workers 2` a supervising "
    "parent and two worker processes (prometheus_client multiprocess mode), all counted in the CPU figures.",
    "SO_REUSEPORT picks a worker per connection by a hash of the connection's addresses and ports, so the split "
    "is random, not round-robin: 'chargers per worker' is what each worker held during the window.",
    "This box has 2 cores and the load generator, the stub CSMS and redis-server share them with the proxy: one "
    "worker already takes about one core, so a second can add at most what the others leave free, and 2 workers "
    "cannot double the throughput here. The ratio measures this machine, not the proxy's scaling.",
    "'other load cores': the whole machine's busy cores (/proc/stat, sampled every second while every charger was "
    "connected) minus this benchmark's processes (the window's CPU times): other jobs sharing the machine; "
    "about ±0.1 from the two windows differing.",
)


def children(parent: int) -> list[int]:
    """Pids of the processes whose parent is `parent`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry))
    return sorted(found)


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` holds a listening TCP socket on `port`."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:  # it ended meanwhile
        return False
    ports = tcp_ports(pid)
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(f"/proc/{pid}/fd/{name}")
            if target.startswith("socket:[") and ports.get(int(target[8:-1])) == (port, 0):
                return True
    return False


def tee_frames(admin_port: int) -> tuple[float, float]:
    """(written, dropped) tee frames from /metrics: with --workers, the sum over every worker."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    written = dropped = 0.0
    for line in text.splitlines():
        if line.startswith("cutover_tee_frames_total "):
            written += float(line.rsplit(" ", 1)[1])
        elif line.startswith("cutover_tee_dropped_frames_total{"):
            dropped += float(line.rsplit(" ", 1)[1])
    return written, dropped


class CutoverProxy:
    """`cutover proxy --workers N` as a child process: its listen and admin ports and its processes by role."""

    def __init__(self, workers: int, stub_url: str, redis_url: str) -> None:
        self.workers = workers
        self.admin_port = free_port()
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "proxy", "--workers", str(workers), "--listen", f"127.0.0.1:{port}",
             "--legacy-url", stub_url + "/ocpp/{station}", "--redis-url", redis_url,
             "--admin-listen", f"127.0.0.1:{self.admin_port}", "--security-profile", "0", "--log-level", "WARNING"],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.child = Child(process, port)
        self.processes: dict[str, int] = {}

    def wait_until_listening(self, within: float = 60.0) -> None:
        """Until every worker listens on the port and /healthz answers; then names the processes by role."""
        parent = self.child.process.pid
        deadline = time.monotonic() + within
        while True:
            if self.child.process.poll() is not None:
                raise RuntimeError(
                    f"cutover proxy --workers {self.workers} exited with {self.child.process.returncode}"
                )
            serving = [parent] if self.workers == 1 else children(parent)
            listening = [pid for pid in serving if listens_on(pid, self.child.port)]
            if len(listening) == self.workers:
                with contextlib.suppress(OSError):
                    healthz(self.admin_port)
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"cutover proxy --workers {self.workers}: {len(listening)} processes listening")
            time.sleep(0.1)
        if self.workers == 1:
            self.processes = {"proxy": parent}
            return
        # Worker 0 is the one serving the admin listener; a child that does not listen is multiprocessing's
        # resource tracker (its CPU is counted too: every process of the proxy is).
        admin = [pid for pid in listening if listens_on(pid, self.admin_port)]
        others = sorted(set(listening) - set(admin))
        self.processes = {"proxy_parent": parent}
        self.processes |= {f"proxy_worker{index}": pid for index, pid in enumerate(admin + others)}
        self.processes |= {
            f"proxy_helper{index}": pid
            for index, pid in enumerate(pid for pid in children(parent) if pid not in listening)
        }

    def worker_pids(self) -> dict[str, int]:
        return {name: pid for name, pid in self.processes.items() if name == "proxy" or "worker" in name}

    def workers_alive(self) -> int:
        """How many of the processes that serve chargers are still running."""
        running = 0
        for pid in self.worker_pids().values():
            with contextlib.suppress(OSError):
                running += Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        return running

    def stop(self) -> None:
        stop_process(self.child.process)


def machine_ticks() -> tuple[int, int, int]:
    """(busy, stolen, total) CPU ticks of the whole machine so far, all cores (the first line of /proc/stat)."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    total = user + nice + system + idle + iowait + irq + softirq + steal  # guest time is already in user
    return total - idle - iowait - steal, steal, total


async def watch(
    proxy: CutoverProxy, chargers: int, stub_port: int, redis_port: int, stop: asyncio.Event
) -> dict[str, Any]:
    """Every SAMPLE_EVERY s until `stop`: the charger connections each worker held (the most seen), and the whole
    machine's busy and stolen (hypervisor) cores between the first and last sample with every charger connected."""
    most = dict.fromkeys(proxy.worker_pids(), 0)
    connected: list[tuple[int, int, int]] = []
    while not stop.is_set():
        held = 0
        for name, pid in proxy.worker_pids().items():
            with contextlib.suppress(OSError):
                kinds = await asyncio.to_thread(proxy_fds, pid, proxy.child.port, stub_port, redis_port)
                most[name] = max(most[name], kinds["proxy_fds_charger"])
                held += kinds["proxy_fds_charger"]
        if held == chargers:
            connected.append(await asyncio.to_thread(machine_ticks))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)
    machine = None
    if len(connected) >= 2:
        busy, stolen, total = (last - first for first, last in zip(connected[0], connected[-1], strict=True))
        cores = os.cpu_count() or 1
        machine = {
            "cores": cores,
            "busy_cores": round(busy / total * cores, 2),
            "stolen_cores": round(stolen / total * cores, 2),
            "seconds": round(total / cores / CLOCK_TICKS, 1),
        }
    return {"chargers_per_worker": most, "machine_while_connected": machine}


async def tee_after_load(admin_port: int, written_before: float) -> dict[str, Any]:
    """The tee's counters (summed over workers) once the load stopped, and how long it kept writing after."""
    written_at_end, _ = await asyncio.to_thread(tee_frames, admin_port)
    ended = quiet_since = time.perf_counter()
    last = written_at_end
    while time.perf_counter() - quiet_since < 0.5 and time.perf_counter() - ended < 30:
        await asyncio.sleep(0.05)
        written, dropped = await asyncio.to_thread(tee_frames, admin_port)
        if written != last:
            quiet_since = time.perf_counter()
        last = written
    return {
        "written_during_load": int(written_at_end - written_before),
        "written_total": int(last),
        "dropped": int(dropped),
        "dropped_by_reason": await asyncio.to_thread(tee_drop_reasons, admin_port),
        "backlog_at_end_of_load": int(last - written_at_end),
        "drain_seconds": round(max(0.0, quiet_since - ended), 3),
    }


async def run_one(workers: int, stub: Child, chargers: int, duration: float) -> dict[str, Any]:
    with EmbeddedRedis() as redis_server:
        proxy = CutoverProxy(workers, stub.url, redis_server.url)
        try:
            await asyncio.to_thread(proxy.wait_until_listening)
            print(f"--workers {workers}: {chargers} chargers → proxy (tee → Redis) → stub, {duration:g} s "
                  f"(processes {proxy.processes})", file=sys.stderr)  # fmt: skip
            others = proxy.processes | {"stub": stub.process.pid, "redis": redis_pid(redis_server)}
            written_before, _ = await asyncio.to_thread(tee_frames, proxy.admin_port)
            sampling = asyncio.Event()
            sampler = asyncio.create_task(watch(proxy, chargers, stub.port, redis_server.port, sampling))
            try:
                async with asyncio.timeout(duration + STALL_SECONDS):
                    run = await measure(proxy.child.url, chargers, duration, None, others, f"W{workers}P")
            except TimeoutError:
                written, _ = await asyncio.to_thread(tee_frames, proxy.admin_port)
                raise RuntimeError(
                    f"--workers {workers}: the load did not end within {duration + STALL_SECONDS:g} s (a charger's "
                    f"CALL went unanswered; tee frames written {written - written_before:,.0f})"
                ) from None
            finally:
                sampling.set()
                watched = await sampler
            run["tee"] = await tee_after_load(proxy.admin_port, written_before)
            run["workers_alive_after"] = proxy.workers_alive()
        finally:
            proxy.stop()
    run["workers"] = workers
    run["proxy_processes"] = proxy.processes
    run |= watched
    if run["machine_while_connected"] is not None:  # busy cores the benchmark's own processes do not account for
        ours = sum(run["cpu_share_of_one_core"].values())
        run["machine_while_connected"]["other_cores"] = round(run["machine_while_connected"]["busy_cores"] - ours, 2)
    frames = 2 * run["calls"]
    proxy_cpu = sum(run["cpu_seconds"][name] for name in proxy.processes)
    run["proxy_cpu_us_per_frame"] = round(proxy_cpu * 1e6 / frames, 1) if frames else None
    run["proxy_cpu_share_of_cores"] = round(proxy_cpu / run["elapsed_s"], 2)
    return run


async def run(chargers: int, duration: float, rounds: int) -> list[dict[str, dict[str, Any]]]:
    """`rounds` times: one worker, then two (alternating, so that slow drifts of the machine's load hit both)."""
    stub = Child.start("stub")
    results = []
    try:
        for index in range(rounds):
            runs = {}
            for workers in WORKER_COUNTS:
                runs[str(workers)] = await run_one(workers, stub, chargers, duration) | {"round": index + 1}
            results.append(runs)
    finally:
        stub.stop()
    return results


def report(
    rounds: list[dict[str, dict[str, Any]]], chargers: int, duration: float, load: list[float]
) -> dict[str, Any]:
    throughput = [runs["2"]["throughput_msgs_per_s"] / runs["1"]["throughput_msgs_per_s"] for runs in rounds]
    cpu = [runs["2"]["proxy_cpu_us_per_frame"] / runs["1"]["proxy_cpu_us_per_frame"] for runs in rounds]
    header = run_header()
    header["machine"]["load_average_1min_before_and_after"] = load
    return {
        **header,
        "chargers": chargers,
        "duration_s": duration,
        # Ratios of the two runs of one round; with several rounds, their median.
        "throughput_ratio_2_to_1": round(statistics.median(throughput), 3),
        "cpu_per_frame_ratio_2_to_1": round(statistics.median(cpu), 2),
        "throughput_ratios_by_round": [round(ratio, 3) for ratio in throughput],
        "cpu_per_frame_ratios_by_round": [round(ratio, 2) for ratio in cpu],
        "notes": NOTES,
        "rounds": rounds,
    }


def table(results: dict[str, Any]) -> str:
    header = ("round", "workers", "msgs/s", "p50", "p99", "proxy CPU µs/frame", "proxy cores", "other load cores",
              "chargers per worker", "tee written", "tee dropped", "errors")  # fmt: skip
    rows = [header]
    runs = [run for runs in results["rounds"] for run in runs.values()]
    for run in runs:
        latency, machine = run["latency_ms"], run["machine_while_connected"]
        rows.append((
            str(run["round"]), str(run["workers"]), f"{run['throughput_msgs_per_s']:,.0f}",
            f"{latency['p50']:.3f} ms", f"{latency['p99']:.3f} ms", f"{run['proxy_cpu_us_per_frame']:.1f}",
            f"{run['proxy_cpu_share_of_cores']:.2f}", f"{machine['other_cores']:.2f}" if machine else "-",
            " + ".join(str(held) for held in run["chargers_per_worker"].values()),
            f"{run['tee']['written_total']:,}", f"{run['tee']['dropped']:,}", str(run["call_errors"]),
        ))  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    several = len(results["rounds"]) > 1
    lines += [
        "",
        f"2 workers / 1 worker ({'median of the rounds' if several else 'same run'}): "
        f"throughput ×{results['throughput_ratio_2_to_1']:.3f}, "
        f"proxy CPU per frame ×{results['cpu_per_frame_ratio_2_to_1']:.2f}"
        + (
            f" (by round: throughput {', '.join(f'×{r:.3f}' for r in results['throughput_ratios_by_round'])}; "
            f"CPU {', '.join(f'×{r:.2f}' for r in results['cpu_per_frame_ratios_by_round'])})"
            if several
            else ""
        ),
        *(
            f"CPU share of one core, round {run['round']}, --workers {run['workers']}: "
            + ", ".join(f"{who} {share:.2f}" for who, share in run["cpu_share_of_one_core"].items())
            + machine_text(run["machine_while_connected"])
            for run in runs
        ),
        "load average (1 min) before and after: "
        + " / ".join(f"{value:.2f}" for value in results["machine"]["load_average_1min_before_and_after"]),
        "",
        *NOTES,
    ]
    return "\n".join(lines)


def machine_text(machine: dict[str, Any] | None) -> str:
    if machine is None:
        return ""
    return (
        f"; whole machine {machine['busy_cores']:.2f} of {machine['cores']} cores busy "
        f"({machine['other_cores']:.2f} by processes not of this benchmark), "
        f"{machine['stolen_cores']:.2f} stolen by the hypervisor"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__)
    parser.add_argument("--chargers", type=int, default=100, help="simulated 2.0.1 chargers (default 100)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (default 10)")
    parser.add_argument("--rounds", type=int, default=1, help="1-worker, 2-worker pairs to run (default 1)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    rounds = uvloop.run(run(args.chargers, args.duration, args.rounds))
    results = report(rounds, args.chargers, args.duration, [load_before, os.getloadavg()[0]])
    publish(results, args.output, table(results))


if __name__ == "__main__":
    main()
