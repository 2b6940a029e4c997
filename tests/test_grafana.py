"""Dashboards: every query names only metrics the code exports, and a real Prometheus scraping a running
demo evaluates every panel's PromQL to data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import proxy.metrics  # noqa: F401  (registers the metrics)
import shadow.metrics  # noqa: F401
from proxy.redis_embedded import free_port

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


def panel_queries() -> list[str]:
    return [
        target["expr"]
        for path in sorted(DASHBOARDS.glob("*.json"))
        for panel in json.loads(path.read_text())["panels"]
        for target in panel["targets"]
    ]


@pytest.fixture
def demo_admin_port() -> Iterator[int]:
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "proxy", "demo", "--chargers", "3", "--duration", "120",
         "--admin-listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    yield port
    demo.terminate()
    demo.wait(timeout=30)


@pytest.fixture
def prometheus(demo_admin_port: int, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "the prometheus binary is missing: `apt-get install prometheus` (.ci/run installs it)"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: demo, static_configs: [{{targets: ['127.0.0.1:{demo_admin_port}']}}]}}]\n"
    )
    port = free_port()
    server = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


def evaluate(prometheus: str, query: str) -> tuple[str, list[object]]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = json.loads(error.read())
    except OSError:
        return "unreachable", []
    return body["status"], body.get("data", {}).get("result", []) if body["status"] == "success" else [body]


def test_every_panel_evaluates_to_data_on_a_running_demo(prometheus: str) -> None:
    queries = panel_queries()
    missing = queries
    deadline = time.monotonic() + 90
    while missing and time.monotonic() < deadline:
        time.sleep(2)
        results = {query: evaluate(prometheus, query) for query in missing}
        errors = {q: r for q, (status, r) in results.items() if status == "error"}
        assert not errors, f"queries Prometheus cannot parse: {errors}"
        missing = [query for query, (status, result) in results.items() if not result]
    assert missing == [], f"panels without data after 90 s of demo traffic: {missing}"
