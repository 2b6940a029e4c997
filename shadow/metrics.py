"""Prometheus metrics of the shadow workers (labels: action, kind, rule, backend, model; never a station)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

COMPARISONS = Counter("cutover_shadow_comparisons_total", "Charger CALLs compared with the shadow's answer", ["action"])
DIVERGENCES = Counter("cutover_divergences_total", "Divergences found, by action and kind", ["action", "kind"])
LAG = Histogram(
    "cutover_shadow_lag_seconds",
    "Age of a tee entry when a shadow worker processed it",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
# From the tee's write of an entry (its stream id: Redis's clock when the proxy appended it) to the end of its
# processing here; finer buckets than LAG's around the one-second target of the shadow (bench/shadow_lag.py).
PROCESSED_LAG = Histogram(
    "cutover_shadow_processed_lag_seconds",
    "Time from a tee entry's write to a shadow worker having processed it",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30, 60, 300),
)
PENDING = Gauge("cutover_shadow_pending_entries", "Tee entries read but not yet acknowledged by this worker")
BACKEND_LATENCY = Histogram(
    "cutover_shadow_backend_seconds",
    "Time the shadow backend took to answer a CALL",
    ["backend"],
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
)
TRANSACTIONS = Counter(
    "cutover_transactions_reconciled_total", "Ended transactions reconciled with the legacy's view", ["result"]
)
SHARDS = Gauge("cutover_shadow_shards_owned", "Tee shards this worker owns")
LINT_VIOLATIONS = Counter(
    "cutover_lint_violations_total", "Conformance lint violations by rule and charger model", ["rule", "model"]
)
