"""Drives a `Bridge` through a scripted conversation (a vector) and checks what it emits.

A vector is one JSON object: `name`, optional `config` (TranslationConfig fields), and `steps`; each step
delivers `frame` from `from` ("charger" or "legacy") — or advances the clock with `expire` — and lists
the frames it must emit per leg under `expect` (a leg left out must emit nothing). The bridge's own
message ids are "p1", "p2", ... in order. Every emitted frame is also checked against the OCA schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson

from translators import schemas
from translators.bridge import Bridge, Outcome, TranslationConfig
from translators.dispatch import CHARGER_CALLS, LEGACY_CALLS
from translators.state import StationState

VECTORS = Path(__file__).parent.parent / "vectors"


def load_vectors(name: str) -> list[dict[str, Any]]:
    lines = (VECTORS / name).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip() and not line.startswith("//")]


def new_bridge(config: dict[str, Any] | None = None) -> Bridge:
    return Bridge(
        StationState("CS-VECTOR"), schemas.load(), CHARGER_CALLS, LEGACY_CALLS,
        TranslationConfig(**(config or {})), id_prefix="p",
    )  # fmt: skip


def emitted(outcome: Outcome) -> dict[str, list[Any]]:
    return {
        leg: [orjson.loads(frame) for frame in frames]
        for leg, frames in (("charger", outcome.to_charger), ("legacy", outcome.to_legacy))
        if frames
    }


def run_conversation(vector: dict[str, Any], bridge: Bridge | None = None) -> Bridge:
    bridge = bridge or new_bridge(vector.get("config"))
    now = 0.0
    calls: dict[tuple[str, str], str] = {}  # (leg, message id) → action, to validate CALLRESULTs
    for number, step in enumerate(vector["steps"], 1):
        now += 0.001
        if "expire" in step:
            now += step["expire"]
            outcome = bridge.expire(now)
        else:
            frame = step["frame"]
            raw = frame.encode() if isinstance(frame, str) else orjson.dumps(frame)
            if isinstance(frame, list) and frame[0] == 2:
                calls[(step["from"], frame[1])] = frame[2]
            outcome = bridge.receive(step["from"], raw, now)
        got = emitted(outcome)
        context = f"{vector['name']}, step {number}"
        assert got == step.get("expect", {}), f"{context}: emitted {json.dumps(got)}"
        for leg, frames in got.items():
            version = "2.0.1" if leg == "charger" else "1.6"
            other = "legacy" if leg == "charger" else "charger"
            for frame in frames:
                if frame[0] == 2:
                    calls[(other, frame[1])] = frame[2]
                    schemas.load().validate(version, "request", frame[2], frame[3])  # type: ignore[arg-type]
                elif frame[0] == 3:
                    action = calls[(leg, frame[1])]
                    schemas.load().validate(version, "response", action, frame[2])  # type: ignore[arg-type]
    return bridge
