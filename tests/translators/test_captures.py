"""Real traffic of real 2.0.1 charger simulators (../shared/captures) replays through the translation core:
every charger CALL is translated without error and everything emitted validates against the schemas."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.translators.conversation import new_bridge
from translators import schemas

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "captures"
LEGACY_ANSWERS = {
    "BootNotification": {"status": "Accepted", "currentTime": "2026-11-24T19:43:22.853Z", "interval": 300},
    "Heartbeat": {"currentTime": "2026-11-24T19:43:22.853Z"},
    "Authorize": {"idTagInfo": {"status": "Accepted"}},
    "StatusNotification": {},
    "MeterValues": {},
    "StopTransaction": {"idTagInfo": {"status": "Accepted"}},
    "DataTransfer": {"status": "Accepted"},
}


def charger_calls(path: Path) -> dict[str, list[list[Any]]]:
    by_station: dict[str, list[list[Any]]] = {}
    for line in path.read_text().splitlines():
        record = orjson.loads(line)
        frame = record["frame"]
        if record["dir"] == "cp->csms" and isinstance(frame, list) and frame[0] == 2:
            by_station.setdefault(record["cp"], []).append(frame)
    return by_station


@pytest.mark.parametrize("capture", ["sap-ocpp201.jsonl", "citrineos-ocpp201.jsonl"])
def test_capture_replays_to_schema_valid_16(capture: str) -> None:
    compiled = schemas.load()
    legacy_ids = itertools.count(1000)
    translated: list[str] = []
    for _station, calls in charger_calls(CAPTURES / capture).items():
        bridge = new_bridge()
        now = 0.0
        for call in calls:
            now += 1
            outcome = bridge.receive("charger", orjson.dumps(call), now)
            while outcome.to_legacy:
                (request,) = (orjson.loads(frame) for frame in outcome.to_legacy)
                _, message_id, action, payload = request
                compiled.validate("1.6", "request", action, payload)
                if action == "StartTransaction":
                    answer = {"transactionId": next(legacy_ids), "idTagInfo": {"status": "Accepted"}}
                else:
                    answer = LEGACY_ANSWERS[action]
                outcome = bridge.receive("legacy", orjson.dumps([3, message_id, answer]), now)
                translated.append(action)
            frames = [orjson.loads(frame) for frame in outcome.to_charger]
            (reply,) = (frame for frame in frames if frame[0] != 2)  # the proxy's own CALLs aside
            for own in (frame for frame in frames if frame[0] == 2):
                compiled.validate("2.0.1", "request", own[2], own[3])
            assert reply[0] == 3, f"{call[2]} answered with {reply}"
            compiled.validate("2.0.1", "response", call[2], reply[2])
    assert translated.count("StartTransaction") == translated.count("StopTransaction") > 0
