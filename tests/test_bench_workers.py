"""`python -m bench.workers` run end to end on a few chargers: both rows measured, every charger served by a worker,
and the 2-worker run had two worker processes listening and alive. No timing is asserted (the machine is shared),
nor that the kernel's SO_REUSEPORT hash gave each worker a charger (with six, all on one worker happens)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHARGERS = 6


@pytest.mark.timeout(120)
def test_one_and_two_workers_carry_the_load(tmp_path: Path) -> None:
    output = tmp_path / "workers.json"
    command = ["-m", "bench.workers", "--chargers", str(CHARGERS), "--duration", "2", "--output", str(output)]
    completed = subprocess.run(
        [sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = orjson.loads(output.read_bytes())
    (runs,) = results["rounds"]
    assert set(runs) == {"1", "2"}
    for workers, run in runs.items():
        assert run["throughput_msgs_per_s"] > 0 and run["call_errors"] == 0, (workers, run["error_samples"])
        assert sum(run["chargers_per_worker"].values()) == CHARGERS, run["chargers_per_worker"]
        assert run["workers_alive_after"] == int(workers)
        assert run["proxy_cpu_us_per_frame"] > 0 and run["tee"]["dropped"] == 0
    assert set(runs["2"]["chargers_per_worker"]) == {"proxy_worker0", "proxy_worker1"}
    assert results["throughput_ratio_2_to_1"] > 0
