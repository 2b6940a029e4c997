"""A charger CALL whose live answer never comes is not held for ever (found by the soak benchmark: one entry
in memory and in the consumer group's pending list per charger that dropped its socket mid-CALL)."""

from __future__ import annotations

from typing import Any

import orjson

from shadow.processor import UNANSWERED_SECONDS, ReferenceBackend, ShardProcessor
from shadow.reference_csms import ReferenceCsms

HEARTBEAT: tuple[str, dict[str, Any]] = ("Heartbeat", {})
T0 = 1_700_000_000 * 10**9


def charger_frame(
    station: str, conn: str, seq: int, direction: str, frame: list[Any], t_ns: int = T0
) -> dict[str, Any]:
    return {
        "v": 1, "station": station, "conn": conn, "seq": seq, "leg": "charger", "dir": direction,
        "proto": "ocpp2.0.1", "t_ns": t_ns, "frame": orjson.dumps(frame),
    }  # fmt: skip


def processor() -> ShardProcessor:
    return ShardProcessor(ReferenceBackend(ReferenceCsms(set())))


async def test_a_call_is_compared_when_its_answer_comes() -> None:
    shard = processor()
    first = await shard.process("1-0", charger_frame("CP1", "a-1", 0, "in", [2, "m1", *HEARTBEAT]))
    assert first.acks == [] and len(shard.pending) == 1
    second = await shard.process("2-0", charger_frame("CP1", "a-1", 1, "out", [3, "m1", {"currentTime": "x"}]))
    assert sorted(second.acks) == ["1-0", "2-0"] and not shard.pending


async def test_a_call_of_a_replaced_connection_is_acknowledged_when_the_station_reconnects() -> None:
    shard = processor()
    await shard.process("1-0", charger_frame("CP1", "a-1", 0, "in", [2, "m1", *HEARTBEAT]))
    await shard.process("2-0", charger_frame("CP2", "a-2", 0, "in", [2, "m1", *HEARTBEAT]))
    step = await shard.process("3-0", charger_frame("CP1", "a-3", 0, "in", [2, "m1", *HEARTBEAT]))
    assert "1-0" in step.acks
    assert set(shard.pending) == {("a-2", "m1"), ("a-3", "m1")}  # another station's CALL is still awaited


async def test_a_call_nobody_answers_is_forgotten_after_a_while() -> None:
    shard = processor()
    await shard.process("1-0", charger_frame("CP1", "a-1", 0, "in", [2, "m1", *HEARTBEAT]))
    later = T0 + int((UNANSWERED_SECONDS + 1) * 1e9)
    step = await shard.process("2-0", charger_frame("CP2", "a-2", 0, "in", [2, "m1", *HEARTBEAT], later))
    assert "1-0" in step.acks and set(shard.pending) == {("a-2", "m1")}
