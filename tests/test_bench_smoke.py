"""`python -m bench --quick` runs end to end and writes its results; no timing is asserted. It runs with
`--loop asyncio` (the measured servers on the standard library's loop); the other benchmark tests run them on
uvloop, the default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench.__main__ import report, verdict

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(180)
def test_quick_bench_writes_results_of_every_scenario(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--loop", "asyncio", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = orjson.loads(output.read_bytes())
    for key in ("throughput_ratio", "added_p99_ms", "rss_kib_per_charger", "tee_dropped", "machine", "timestamp"):
        assert key in results, key
    assert {"platform", "cpu_count", "python"} <= results["machine"].keys()
    assert results["loop"] == "asyncio"
    for name in (
        "direct", "bare_relay", "proxy", "bare_relay_picows", "bare_relay_paced", "proxy_paced", "bare_relay_16",
        "proxy_16",
    ):  # fmt: skip
        scenario = results["scenarios"][name]
        assert scenario["calls"] > 0, name
        assert scenario["call_errors"] == 0, scenario["error_samples"]  # 1.6 frames the proxy validates too
    assert results["passthrough_throughput_ratio"] > 0
    assert results["scenarios"]["proxy"]["tee"]["written_total"] > 0
    assert set(results["targets"]) == {"throughput_ratio", "added_p99_ms_paced", "rss_kib_per_charger", "tee_dropped"}
    assert all(isinstance(target["met"], bool) for target in results["targets"].values())

    # A paced p99 below the bare relay's is noise in the relay's measurement: not a target met.
    scenarios = results["scenarios"]
    scenarios["proxy_paced"]["latency_ms"]["p99"] = scenarios["bare_relay_paced"]["latency_ms"]["p99"] - 0.5
    target = report(scenarios, 20, 3.0)["targets"]["added_p99_ms_paced"]
    assert target["met"] is False and target["inconclusive"] is True
    assert verdict(target).startswith("INCONCLUSIVE")
