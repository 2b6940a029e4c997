"""The fuzz target's checks on every regression input and every conversation vector, and a brief fuzzing run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.fuzz_bridge import REGRESSIONS, run_one, seeds

TARGET = Path(__file__).parent / "fuzz_bridge.py"


@pytest.mark.parametrize("path", sorted(REGRESSIONS.iterdir()), ids=lambda path: path.name)
def test_regression(path: Path) -> None:
    run_one(path.read_bytes())


@pytest.mark.parametrize(("name", "data"), seeds(), ids=[name for name, _ in seeds()])
def test_vector_holds_the_invariants(name: str, data: bytes) -> None:
    run_one(data)


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
def test_fuzzer_finds_nothing_briefly(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, data in seeds():
        (corpus / name).write_bytes(data)
    for path in REGRESSIONS.iterdir():
        (corpus / f"regression-{path.name}").write_bytes(path.read_bytes())
    command = [
        sys.executable, str(TARGET), "-runs=4000", "-max_total_time=15", "-seed=1",
        f"-artifact_prefix={tmp_path}/", str(corpus),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    crashes = [path.name for path in tmp_path.iterdir() if path.name.startswith(("crash-", "timeout-", "oom-"))]
    assert done.returncode == 0 and not crashes, f"{crashes}; copy them to {REGRESSIONS}\n{done.stderr[-4000:]}"
