"""`cutover proxy --workers N`: N proxy processes on one listen port, supervised by this one.

Each worker is a whole proxy (its own event loop, Redis clients, tee and sessions) bound to the port with
SO_REUSEPORT, so the kernel spreads new charger connections over them; state and routing are in Redis, as
between proxy instances. The parent starts the embedded Redis when no `--redis-url` is given (one for all
workers), restarts a worker that dies (after 0.5 s, doubling up to 10 s while workers keep dying young),
passes SIGHUP on (TLS reload) and on SIGTERM or SIGINT stops every worker and exits.

Worker 0 alone serves the admin listener (API, `/healthz`, `/metrics`) and `--metrics-listen`; its `/metrics`
is the sum over all workers (prometheus_client's multiprocess mode, one scrape target per host or pod), its
`/healthz` counts the stations and tee frames of every worker (from the same metric files) and the live
workers, and its `POST /tls/reload` re-reads worker 0's TLS material (the answer says whether it loaded) then
signals this supervisor, which passes a SIGHUP on to every worker.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

log = logging.getLogger("cutover.workers")

FIRST_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 10.0
HEALTHY_AFTER = 10.0  # a worker that ran this long resets the restart delay
STOP_GRACE = 20.0  # seconds workers get to close their sessions before they are killed
POLL = 0.1


def worker_main(values: dict[str, Any], index: int, parent: int) -> None:
    """Run one worker (in a spawned process) until SIGTERM, SIGINT, or its parent's death."""
    # A SIGHUP before the proxy is up has nothing to reload (it reads its TLS files as it starts): ignore it,
    # and let through what the parent held back while starting this process.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    from proxy import cli

    logging.basicConfig(
        level=values["log_level"], stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s %(name)s worker={index} %(message)s",
    )  # fmt: skip
    if values["log_level"] != "DEBUG":
        logging.getLogger("websockets").setLevel(logging.WARNING)
    sys.exit(cli.run(cli.serve_proxy(values, worker=index, parent=parent)))


class Supervisor:
    def __init__(self, values: dict[str, Any], count: int) -> None:
        self.values = values
        self.count = count
        self.metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        self.processes: list[BaseProcess | None] = [None] * count
        self.started_at = [0.0] * count
        self.restart_at = [0.0] * count
        self.delay = [FIRST_RESTART_DELAY] * count
        self.stopping = False
        self._context = multiprocessing.get_context("spawn")  # no inherited event loop, sockets or locks

    def start(self, index: int) -> None:
        process = self._context.Process(
            target=worker_main, args=(self.values, index, os.getpid()), name=f"cutover-proxy-{index}", daemon=False
        )
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})  # until the worker ignores it
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        self.processes[index] = process
        self.started_at[index] = time.monotonic()
        log.info("proxy_worker_started index=%d pid=%d", index, process.pid)

    def reap(self, index: int) -> None:
        """A worker ended: forget its live gauges and schedule its restart."""
        from prometheus_client import multiprocess

        process = self.processes[index]
        assert process is not None and process.pid is not None
        self.processes[index] = None
        multiprocess.mark_process_dead(process.pid, self.metrics_dir)
        if self.stopping:
            return
        now = time.monotonic()
        if now - self.started_at[index] >= HEALTHY_AFTER:
            self.delay[index] = FIRST_RESTART_DELAY
        self.restart_at[index] = now + self.delay[index]
        log.error(
            "proxy_worker_died index=%d pid=%d exitcode=%s; restarting it in %.1f s (its chargers reconnect to the "
            "other workers meanwhile); if this repeats, see the worker's last log lines",
            index, process.pid, process.exitcode, self.delay[index],
        )  # fmt: skip
        self.delay[index] = min(self.delay[index] * 2, MAX_RESTART_DELAY)

    def signal_workers(self, signum: int) -> None:
        for process in self.processes:
            if process is not None and process.pid is not None and process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    def run(self) -> int:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.stopping = True

        def hang_up(signum: int, frame: FrameType | None) -> None:
            log.info("proxy_workers_sighup; passing it on to every worker (TLS reload)")
            self.signal_workers(signal.SIGHUP)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hang_up)
        for index in range(self.count):
            self.start(index)
        while not self.stopping:
            for index, process in enumerate(self.processes):
                if process is not None and not process.is_alive():
                    self.reap(index)
                elif process is None and time.monotonic() >= self.restart_at[index]:
                    self.start(index)
            time.sleep(POLL)
        log.info("proxy_workers_stopping workers=%d", sum(p is not None for p in self.processes))
        self.signal_workers(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for process in self.processes:
            if process is not None:
                process.join(max(deadline - time.monotonic(), 0))
                if process.is_alive():
                    log.warning("proxy_worker_kill pid=%s; it did not stop within %.0f s", process.pid, STOP_GRACE)
                    process.kill()
                    process.join()
        log.info("proxy_workers_stopped")
        return 0


def run_workers(values: dict[str, Any], count: int) -> int:
    """Supervise `count` workers until SIGTERM or SIGINT; 0 on a clean stop."""
    from proxy.redis_embedded import redis_or_embedded

    with redis_or_embedded(values["redis_url"]) as (redis_url, embedded):
        if embedded:
            log.info("embedded_redis url=%s (no persistence; shared by the workers)", redis_url)
        with tempfile.TemporaryDirectory(prefix="cutover-metrics-") as metrics_dir:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before the workers import prometheus_client
            return Supervisor({**values, "redis_url": redis_url}, count).run()
