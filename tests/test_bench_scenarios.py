"""`python -m bench --scenario storm|idle` run end to end on a few chargers and write their results; no timing
is asserted (the machine is shared), only that every charger booted and TLS sessions were resumed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_bench(*args: str, output: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    results: dict[str, Any] = orjson.loads(output.read_bytes())
    return results


@pytest.mark.timeout(180)
def test_storm_boots_every_charger_on_every_security_profile_with_and_without_tls_resumption(tmp_path: Path) -> None:
    results = run_bench("--scenario", "storm", "--chargers", "10", output=tmp_path / "storm.json")
    storms = results["storms"]
    assert set(storms) == {
        "ws_cold", "ws", "basic_cold", "basic", "tls_basic_cold", "tls_basic", "mtls_full_cold", "mtls_full",
        "mtls_resumed",
    }  # fmt: skip
    for name, storm in storms.items():
        assert storm["booted"] == 10 and storm["call_errors"] == 0, (name, storm["failure_samples"])
    assert storms["mtls_full"]["tls_sessions_resumed"] == 0
    assert storms["mtls_resumed"]["tls_sessions_resumed"] == 10


@pytest.mark.timeout(180)
def test_idle_measures_memory_per_charger_through_relay_and_proxy(tmp_path: Path) -> None:
    results = run_bench("--scenario", "idle", "--chargers", "50", "--hold", "1", output=tmp_path / "idle.json")
    for name in ("bare_relay", "proxy"):
        server = results["servers"][name]
        assert server["booted"] == 50 and server["still_open_after_hold"] == 50, server["failure_samples"]
        assert server["rss_kib_per_charger"] > 0
    assert results["servers"]["proxy"]["stations_connected"] == 50
