"""Every dashboard query names only metrics the code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import proxy.metrics  # noqa: F401  (registers the metrics)

DASHBOARDS = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"


def exported_names() -> set[str]:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("cutover_")
        for suffix in suffixes.get(family.type, ("",))
    }


def test_dashboard_queries_use_exported_metrics() -> None:
    exported = exported_names()
    queries = [
        target["expr"]
        for path in DASHBOARDS.glob("*.json")
        for panel in json.loads(path.read_text())["panels"]
        for target in panel["targets"]
    ]
    assert queries
    for query in queries:
        for name in re.findall(r"\bcutover_[a-z_]+", query):
            assert name in exported, f"{name} in {query!r} is not exported"
