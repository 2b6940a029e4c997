"""Prometheus metrics of the proxy (`cutover_` prefix, base units, small closed label sets only)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess

# With `cutover proxy --workers N` every worker writes its metrics under PROMETHEUS_MULTIPROC_DIR and /metrics
# shows their sum: a gauge counts the live workers only (a dead worker's stations are gone with it).
LIVE_SUM: Final = "livesum"

CONNECTED_STATIONS = Gauge(
    "cutover_connected_stations",
    "Stations connected to this proxy, by negotiated subprotocol",
    ["subprotocol"],
    multiprocess_mode=LIVE_SUM,
)
FRAMES = Counter(
    "cutover_frames_total",
    "OCPP-J frames on each leg; action is set for CALLs only",
    ["leg", "direction", "message_type", "action"],
)
TRANSLATION_ERRORS = Counter(
    "cutover_translation_errors_total",
    "CALLs answered with a CALLERROR by the proxy, by action and OCPP error code",
    ["action", "reason"],
)
LOSSY_TRANSLATIONS = Counter(
    "cutover_lossy_translations_total", "Translations that had to drop or approximate a value", ["action"]
)
CALL_DURATION = Histogram(
    "cutover_call_duration_seconds",
    "Time from sending a CALL on a leg to its answer",
    ["leg", "action"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CALL_TIMEOUTS = Counter(
    "cutover_call_timeouts_total", "CALLs the peer did not answer in time", ["leg", "action"]
)
HANDSHAKE_REFUSALS = Counter(
    "cutover_handshake_refusals_total", "WebSocket handshakes refused, by reason", ["reason"]
)
UPSTREAM_FAILURES = Counter(
    "cutover_upstream_failures_total",
    "Upstream connections that could not be opened or dropped (the CSMS; state_unavailable: Redis could not give a "
    "station's state at connect, or take it under --state-durability strict: the charger closed with 1013)",
    ["event"],
)
TEE_FRAMES = Counter("cutover_tee_frames_total", "Frames written to the Redis tee streams")
TEE_DROPPED = Counter(
    "cutover_tee_dropped_frames_total", "Frames the tee dropped (queue full or Redis unavailable)", ["reason"]
)
TEE_QUEUE_DEPTH = Gauge("cutover_tee_queue_depth", "Frames waiting in the tee queue", multiprocess_mode=LIVE_SUM)
STATE_PERSIST_FAILURES = Counter(
    "cutover_state_persist_failures_total", "Station state writes to Redis that failed or were deferred"
)
STATE_WRITES_SUPERSEDED = Counter(
    "cutover_state_writes_superseded_total",
    "Station state writes refused because a newer connection of the station claimed it (its session is ended)",
)
TRANSACTIONS = Counter(
    "cutover_transactions_total", "2.0.1 transactions seen by the translator, by event", ["event"]
)
AUTH_FAILURES = Counter(
    "cutover_auth_failures_total", "Charger connections refused at the handshake, by reason", ["reason"]
)
STATE_RESTORES = Counter(
    "cutover_state_restores_total",
    "Times Redis lost this proxy's writes (came back without its data, or a Redis Cluster master failed over) and it "
    "wrote its station states again",
)
UNCERTAIN_CALLS = Counter(
    "cutover_uncertain_calls_total",
    "CALLs sent to the legacy again although it may have acted on the first (a StartTransaction whose answer was "
    "lost): the legacy may hold a duplicate; each is a divergence record",
    ["action"],
)
MISSED_PONGS = Counter(
    "cutover_missed_pongs_total", "Charger connections closed because the charger stopped answering WebSocket pings"
)
TLS_HANDSHAKES = Counter(
    "cutover_tls_handshakes_total",
    "Charger TLS handshakes started, and completed up to the WebSocket handshake; the gap is what TLS refused",
    ["stage"],
)
STATIONS_BY_MODE = Gauge(
    "cutover_stations_by_mode",
    "Stations connected to this proxy by routing mode (1.6 ones count as legacy)",
    ["mode"],
    multiprocess_mode=LIVE_SUM,
)
PENDING_SWITCHES = Gauge(
    "cutover_pending_switches",
    "Connected stations with a switch waiting for their transactions to end",
    multiprocess_mode=LIVE_SUM,
)
SWITCHES_APPLIED = Counter(
    "cutover_switches_applied_total", "Stations this proxy moved to another target (closing their socket)", ["to"]
)
ROLLBACKS = Counter("cutover_rollbacks_total", "Stations moved back to legacy by an automatic rule", ["rule"])


def registry() -> CollectorRegistry:
    """What /metrics shows: this process's metrics, or under `--workers` the sum over every worker."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined, path=directory)
    return combined


@dataclass(frozen=True)
class WorkerTotals:
    """Under `--workers`, what `/healthz` reports for the whole proxy: the stations of every live worker, the
    tee frames of every worker since the supervisor started (as /metrics sums them), and the live workers."""

    stations: dict[str, int]
    tee_written: int
    tee_dropped: int
    workers: int


def worker_totals() -> WorkerTotals | None:
    """The sums over every worker of `--workers` (from their metric files); None for a single process."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return None
    stations: dict[str, int] = {}
    written = dropped = 0.0
    for metric in registry().collect():
        for sample in metric.samples:
            if sample.name == "cutover_connected_stations":
                protocol = sample.labels["subprotocol"]
                stations[protocol] = stations.get(protocol, 0) + int(sample.value)
            elif sample.name == "cutover_tee_frames_total":
                written += sample.value
            elif sample.name == "cutover_tee_dropped_frames_total":
                dropped += sample.value
    # A live worker has a file of live-summed gauges (`gauge_livesum_<pid>.db`); the supervisor removes a dead one's.
    workers = {name for name in os.listdir(directory) if name.startswith("gauge_livesum_")}
    return WorkerTotals(stations, int(written), int(dropped), len(workers))
