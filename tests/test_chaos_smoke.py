"""Four chaos scenarios, small and short, over real processes: the billing ledger must come out clean."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bench.chaos import QUICK, run

SMOKE = replace(QUICK, chargers=4, warmup=1.0, fault=2.0, cooldown=1.0, recovery_timeout=20.0)
# Faults the proxy must ride out without a single billing difference: no answer of the legacy can be lost in
# them (those scenarios count in-doubt StartTransactions instead, see `python -m bench.chaos`).
SCENARIOS = ["legacy_restart", "redis_restart", "retransmit", "cluster_failover"]


@pytest.mark.timeout(150)
async def test_chaos_scenarios_leave_the_ledger_clean(tmp_path: Path) -> None:
    rows = await run(SCENARIOS, SMOKE, seed=7, log_root=tmp_path)

    for row in rows:
        assert "failed" not in row, row
        where = f"{row['scenario']} (proxy logs: {row['logs']})"
        assert row["transactions"] > 0, where
        assert row["clean"], f"{where}: {row['details']}"
        assert row["undelivered"] == 0, where
        assert row["hangs"] == 0 and row["max_recovery_s"] is not None, f"{where}: {row['notes']}"
        assert row["proxy_crashes"] == [], where
