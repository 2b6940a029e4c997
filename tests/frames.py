"""Checks over frames the proxy emitted: read back from the tee streams and validated against the OCA
schemas of their version (CALLRESULTs are paired with their CALL by message id to know the action)."""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as redis

from shadow.streams import read_envelopes
from translators import schemas

VERSION_OF = {"ocpp2.0.1": "2.0.1", "ocpp1.6": "1.6"}


async def tee_envelopes(client: redis.Redis) -> list[dict[str, Any]]:
    return await read_envelopes(client)


def invalid_emitted_frames(envelopes: list[dict[str, Any]]) -> list[str]:
    """Every frame the proxy sent ("out") that does not validate, described; [] when all are valid."""
    compiled = schemas.load()
    actions: dict[tuple[str, str, str], str] = {}  # (conn, leg, message id) → action of a CALL on that leg
    problems = []
    for envelope in envelopes:
        try:
            frame = orjson.loads(envelope["frame"])
        except orjson.JSONDecodeError:
            assert envelope["dir"] == "in", envelope  # what the proxy emits is always JSON
            continue
        if not isinstance(frame, list):
            continue
        key = (envelope["conn"], envelope["leg"], frame[1] if len(frame) > 1 else "")
        if frame[0] == 2:
            actions[key] = frame[2]
        if envelope["dir"] != "out":
            continue
        version = VERSION_OF[envelope["proto"]]
        if frame[0] == 2:
            ok = compiled.is_valid(version, "request", frame[2], frame[3])  # type: ignore[arg-type]
        elif frame[0] == 3:
            action = actions.get(key)
            ok = action is not None and compiled.is_valid(version, "response", action, frame[2])  # type: ignore[arg-type]
        else:
            codes = {"1.6": "FormationViolation", "2.0.1": "FormatViolation"}
            ok = len(frame) == 5 and isinstance(frame[2], str) and isinstance(frame[4], dict)
            ok = ok and frame[2] != codes["2.0.1" if version == "1.6" else "1.6"]
        if not ok:
            problems.append(f"{envelope['leg']} {version} {frame}")
    return problems
