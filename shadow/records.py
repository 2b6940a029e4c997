"""Divergence records in Redis: a capped stream of every divergence (both answers and the field path) and
per-station and per-action counters; written idempotently (a redelivered comparison counts once)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import redis.asyncio as redis

from proxy import redis_batch

# One hash tag for the keys a comparison writes in one MULTI, so they share a Redis Cluster slot.
STREAM = "cutover:{divergences}"
STREAM_MAXLEN = 100_000
BY_STATION = "cutover:{divergences}:station:"  # + station id: hash kind → count
BY_ACTION = "cutover:{divergences}:action"  # hash "action|kind" → count
COMPARISONS = "cutover:{divergences}:comparisons"  # hash action → comparisons made
# + comparison id: marker, so a redelivered comparison is not counted twice (in the same slot: written together)
DONE = "cutover:{divergences}:done:"
DONE_TTL_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Record:
    station: str
    action: str
    kind: str
    path: str
    live: Any
    shadow: Any
    comparison: str  # connection id and message id (or transaction id) of what was compared
    at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "station": self.station, "action": self.action, "kind": self.kind, "path": self.path,
            "live": self.live, "shadow": self.shadow, "comparison": self.comparison, "at": self.at,
        }  # fmt: skip


# The marker, the counters and the records of one comparison in one atomic step: a worker killed between
# setting the marker and counting lost the comparison for good (its successor found it marked done).
WRITE = """
if not redis.call('set', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('hincrby', KEYS[2], ARGV[2], 1)
for i = 0, (#ARGV - 3) / 3 - 1 do
  redis.call('xadd', KEYS[3], 'MAXLEN', ARGV[3], '*', 'd', ARGV[4 + 3 * i])
  redis.call('hincrby', KEYS[5 + i], ARGV[5 + 3 * i], 1)
  redis.call('hincrby', KEYS[4], ARGV[6 + 3 * i], 1)
end
return 1
"""


WRITE_SCRIPT = WRITE.encode()


def write_arguments(comparison: str, action: str, records: list[Record]) -> tuple[list[bytes], list[bytes]]:
    """WRITE's keys and arguments for one comparison."""
    keys = [DONE + comparison, COMPARISONS, STREAM, BY_ACTION, *(BY_STATION + record.station for record in records)]
    args = [b"%d" % DONE_TTL_SECONDS, action.encode(), b"%d" % STREAM_MAXLEN]
    for record in records:
        args += [
            msgpack.packb(record.as_dict(), use_bin_type=True), record.kind.encode(),
            f"{record.action}|{record.kind}".encode(),
        ]  # fmt: skip
    return [key.encode() for key in keys], args


async def write(client: redis.Redis, comparison: str, action: str, records: list[Record]) -> bool:
    """Write one comparison's records and counters once, atomically; False if it was already written."""
    keys, args = write_arguments(comparison, action, records)
    written: Any = await client.eval(WRITE, len(keys), *keys, *args)
    return bool(written)


async def write_many(
    client: redis.Redis, comparisons: Sequence[tuple[str, str, list[Record]]], within: float
) -> list[bool]:
    """Write several comparisons (id, action, records) as `write` does, each atomically, in one round trip
    (within `within` seconds; raises if one fails); for each, False if it was already written."""
    commands = []
    for comparison in comparisons:
        keys, args = write_arguments(*comparison)
        commands.append((b"EVAL", WRITE_SCRIPT, b"%d" % len(keys), *keys, *args))
    return [bool(written) for written in await redis_batch.execute(client, commands, within)]


async def query(
    client: redis.Redis,
    *,
    station: str | None = None,
    action: str | None = None,
    kind: str | None = None,
    since: float | None = None,
    limit: int = 100,
    before: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, filtered; and the cursor (`before`) for the next page, None at the end."""
    low = f"{int(since * 1000)}-0" if since is not None else "-"
    high = f"({before}" if before else "+"
    found: list[dict[str, Any]] = []
    while len(found) < limit:
        entries: Any = await client.xrevrange(STREAM, max=high, min=low, count=500)
        if not entries:
            return found, None
        for entry_id, fields in entries:
            record = msgpack.unpackb(fields[b"d"], raw=False)
            if (station and record["station"] != station) or (action and record["action"] != action):
                continue
            if kind and record["kind"] != kind:
                continue
            record["id"] = entry_id.decode()
            found.append(record)
            if len(found) == limit:
                return found, record["id"]
        high = f"({entries[-1][0].decode()}"
    return found, None


async def station_counts(client: redis.Redis, station: str) -> dict[str, int]:
    counts: Any = await client.hgetall(BY_STATION + station)
    return {kind.decode(): int(count) for kind, count in counts.items()}


LINT_BY_STATION = "cutover:lint:station:"  # + station id: the station's last violations (newest first)
LINT_PER_STATION = 100


async def write_violation(client: redis.Redis, violation: Any, entry_id: str) -> None:
    """List a lint violation under its station (bounded; a redelivered entry may list it again)."""
    record = {
        "rule": violation.rule, "action": violation.action, "detail": violation.detail, "model": violation.model,
        "firmware": violation.firmware, "entry": entry_id, "at": time.time(),
    }  # fmt: skip
    async with client.pipeline(transaction=True) as pipe:
        pipe.lpush(LINT_BY_STATION + violation.station_id, msgpack.packb(record, use_bin_type=True))
        pipe.ltrim(LINT_BY_STATION + violation.station_id, 0, LINT_PER_STATION - 1)
        await pipe.execute()


async def station_violations(client: redis.Redis, station: str) -> list[dict[str, Any]]:
    return [msgpack.unpackb(raw, raw=False) for raw in await client.lrange(LINT_BY_STATION + station, 0, -1)]
