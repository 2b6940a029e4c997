"""Divergence records written in batches (`records.write_many`) count exactly as one `records.write` each."""

from __future__ import annotations

import redis.asyncio as redis

from shadow import records
from shadow.records import Record


def record(station: str, kind: str, comparison: str) -> Record:
    return Record(station, "Authorize", kind, "idTokenInfo.status", "Accepted", "Invalid", comparison, 1.7e9)


async def test_a_batch_writes_each_comparison_once_like_single_writes(redis_client: redis.Redis) -> None:
    batch = [
        ("c:1", "Authorize", [record("CP1", "value_mismatch", "c:1")]),
        ("c:2", "Authorize", []),  # agreed: counted as a comparison, no record
        ("c:3", "Authorize", [record("CP2", "value_mismatch", "c:3"), record("CP2", "status_mismatch", "c:3")]),
    ]
    assert await records.write_many(redis_client, batch, 5.0) == [True, True, True]
    # Redelivered (a worker died before acknowledging): nothing counted twice, in a batch or alone.
    assert await records.write_many(redis_client, [*batch[1:], ("c:4", "Authorize", [])], 5.0) == [False, False, True]
    assert not await records.write(redis_client, "c:1", "Authorize", batch[0][2])

    assert await redis_client.hgetall(records.COMPARISONS) == {b"Authorize": b"4"}
    assert await records.station_counts(redis_client, "CP2") == {"value_mismatch": 1, "status_mismatch": 1}
    assert await records.station_counts(redis_client, "CP1") == {"value_mismatch": 1}
    found, _ = await records.query(redis_client, limit=10)
    assert sorted((item["station"], item["kind"]) for item in found) == [
        ("CP1", "value_mismatch"), ("CP2", "status_mismatch"), ("CP2", "value_mismatch"),
    ]  # fmt: skip
