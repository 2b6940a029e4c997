"""The demo fleet against the tiny `ocpp`-library CSMS of native_csms.py."""

from __future__ import annotations

import asyncio

from peers.fleet import run_fleet
from tests.peers.native_csms import NativeCsms


async def test_a_short_fleet_run_starts_and_ends_sessions(native_csms: NativeCsms) -> None:
    lines: list[str] = []
    summary = await run_fleet(native_csms.url, 3, duration=2.0, on_event=lines.append, seed=1)

    assert summary["chargers"] == 3 and summary["errors"] == 0, summary
    assert summary["sessions_started"] >= 1
    assert summary["sessions_ended"] == summary["sessions_started"]  # sessions in progress are finished
    assert summary["undelivered_events"] == 0
    assert sorted(native_csms.sessions) == ["SIM201-001", "SIM201-002", "SIM201-003"]
    assert any(" ended " in line for line in lines)
    ended = [e for e in native_csms.events if e["eventType"] == "Ended"]
    assert len(ended) == summary["sessions_ended"]


async def test_the_fleet_stops_when_told(native_csms: NativeCsms) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, stop.set)
    summary = await asyncio.wait_for(run_fleet(native_csms.url, 2, duration=None, stop=stop), 5)
    assert summary["sessions_ended"] == summary["sessions_started"]
