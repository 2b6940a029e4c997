"""Reading the tee: the msgpack envelopes the proxy appended to the Redis streams, in order."""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis

from proxy.tee import STREAM_PREFIX, stream_key, unpack


async def read_envelopes(client: redis.Redis, station_id: str | None = None, shards: int = 16) -> list[dict[str, Any]]:
    """Every envelope in the tee streams (or in one station's shard, filtered to it), ordered per connection."""
    if station_id is not None:
        keys = [stream_key(station_id, shards)]
    else:
        keys = [key.decode() async for key in client.scan_iter(match=STREAM_PREFIX + "*")]
    envelopes = []
    for key in keys:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(key)  # type: ignore[assignment]
        for _entry_id, fields in entries:
            envelope = unpack(fields[b"e"])
            if station_id is None or envelope["station"] == station_id:
                envelopes.append(envelope)
    envelopes.sort(key=lambda e: (e["conn"], e["seq"]))
    return envelopes
