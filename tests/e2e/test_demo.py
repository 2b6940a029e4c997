"""`cutover demo` runs everything embedded and shows it working."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("profile", ["0", "3"])
def test_demo_runs_sessions_and_leaves_nothing_open(profile: str) -> None:
    """Profile 3: TLS with a dev PKI, every simulated station presenting its own certificate."""
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "demo", "--duration", "4", "--chargers", "3", "--admin-listen", "127.0.0.1:0",
         "--security-profile", profile],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(embedded)" in out and "/metrics" in out
    assert f"(security profile {profile})" in out and ("wss://" in out) == (profile == "3")
    assert "stations ocpp2.0.1=3 ocpp1.6=1" in out
    final = next(line for line in out.splitlines() if line.startswith("fleet:"))
    assert "errors=0" in final and "legacy transactions still open=0" in final
    started = int(final.split("sessions started=")[1].split()[0])
    assert started >= 3
