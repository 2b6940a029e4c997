"""A StartTransaction the proxy had to send again (its first answer was lost) becomes a divergence record."""

from __future__ import annotations

import orjson
import redis.asyncio as redis

from shadow import records
from shadow.processor import ReferenceBackend, ShardProcessor
from shadow.reference_csms import ReferenceCsms

DETAIL = "transaction tx-1 on connector 1 (idTag TAG0001): StartTransaction sent again after 1 unanswered"


async def test_an_uncertain_start_is_recorded_as_a_possible_duplicate(redis_client: redis.Redis) -> None:
    shard = ShardProcessor(ReferenceBackend(ReferenceCsms(set())))
    envelope = {
        "v": 1, "station": "CP1", "conn": "a-1", "seq": 7, "leg": "charger", "dir": "event", "proto": "ocpp2.0.1",
        "t_ns": 1_700_000_000 * 10**9, "frame": orjson.dumps(["uncertain", "StartTransaction", DETAIL]),
    }  # fmt: skip
    step = await shard.process("5-0", envelope)
    assert step.acks == ["5-0"]
    (comparison,) = step.comparisons
    (record,) = comparison.records
    assert (record.station, record.action, record.kind, record.live) == (
        "CP1", "StartTransaction", "possible_duplicate", DETAIL,
    )  # fmt: skip
    assert await records.write(redis_client, comparison.comparison_id, comparison.action, comparison.records)
    assert not await records.write(redis_client, comparison.comparison_id, comparison.action, comparison.records)
    found, _ = await records.query(redis_client, station="CP1", kind="possible_duplicate", limit=10)
    assert [item["live"] for item in found] == [DETAIL]
