"""Shadow workers: a Redis consumer group over the tee streams.

Each tee shard (one stream) is owned by one worker at a time through a lease in Redis, which keeps every
station's frames in order; any number of workers share the shards. An entry is acknowledged only after
the divergence records it leads to are written (idempotently: a redelivered comparison counts once). When
a worker dies its leases lapse; the worker that takes a shard over first claims the dead worker's pending
entries (`XAUTOCLAIM`) and processes them, in order, before new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis

from proxy import redis_batch, rollback, routing
from proxy.redis_client import UNAVAILABLE, is_cluster_client
from proxy.tee import STREAM_PREFIX, unpack
from shadow import metrics, records
from shadow.lint import Violation
from shadow.processor import Comparison, ShadowBackend, ShardProcessor, Step

log = logging.getLogger("cutover.shadow")

GROUP = "shadow"
LEASE_PREFIX = "cutover:shadow:lease:"
# Live workers: a sorted set, name → when its heartbeat lapses (ms); counted without scanning the keyspace.
WORKERS = "cutover:shadow:workers"
# Renew a lease well before it lapses; a dead worker's shards move after LEASE_SECONDS.
LEASE_SECONDS = 6.0
RENEW_SECONDS = 2.0
READ_COUNT = 256
ENROLLMENT_SECONDS = 5.0
# How much of a shard's history a new owner replays to rebuild its stations' state.
WARM_UP_ENTRIES = 50_000
READ_BLOCK_MS = 200
# A batch's divergence records, then its acknowledgements, each in one round trip that must end within this.
WRITE_SECONDS = 30.0

RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


def observe_processed(entry_id: str) -> None:
    """Count an entry as processed, with its age since the tee wrote it (the stream id's milliseconds)."""
    metrics.PROCESSED_LAG.observe(max(time.time() - int(entry_id.split("-", 1)[0]) / 1000, 0.0))


class ShadowWorker:
    def __init__(
        self,
        client: redis.Redis,
        backend_factory: Callable[[], ShadowBackend],
        *,
        name: str | None = None,
        shards: int = 16,
        backend_label: str = "reference",
        divergence_rule: tuple[float, int] | None = None,
    ) -> None:
        # (rate, window): roll a cut-over station back when more than `rate` of its last `window` comparisons
        # diverged; None: the rule is off unless a group's rules (`cutover rules set`) turn it on.
        rate, window = divergence_rule or (1.0, 50)
        self.thresholds = rollback.GroupThresholds(
            client, rollback.Thresholds(divergence_rate=rate, divergence_window=window)
        )
        self._recent: dict[str, deque[bool]] = {}
        self._enrollment: dict[str, tuple[bool, float]] = {}
        self.client = client
        self.backend_factory = backend_factory
        self.name = name or f"{os.uname().nodename}-{os.getpid()}-{os.urandom(2).hex()}"
        self.shards = shards
        self.backend_label = backend_label
        self.owned: dict[int, ShardProcessor] = {}
        self._renew = client.register_script(RENEW)
        self._last_renew = 0.0
        self.processed = 0

    def key(self, shard: int) -> str:
        return f"{STREAM_PREFIX}{{{shard}}}"

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop`; a Redis that is unreachable (at start too) or fails is waited for, never fatal."""
        started = False
        try:
            while not stop.is_set():
                try:
                    if not started:
                        await self.ensure_groups()
                        log.info("shadow_worker_started name=%s shards=%d", self.name, self.shards)
                        started = True
                    if time.monotonic() - self._last_renew >= RENEW_SECONDS:
                        await self.balance()
                    await self.read_once()
                except UNAVAILABLE as exc:
                    # Unacknowledged entries stay pending; whoever owns the shard next processes them.
                    log.warning("shadow_redis_error name=%s error=%r; retrying in 1 s", self.name, exc)
                    self.owned.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
        finally:
            with contextlib.suppress(*UNAVAILABLE):
                await asyncio.wait_for(self.release(), 2.0)

    async def ensure_groups(self) -> None:
        for shard in range(self.shards):
            try:  # from the start of the stream: whatever the tee already holds is compared too
                await self.client.xgroup_create(self.key(shard), GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def renew(self, *, due_only: bool = True) -> int:
        """Renew this worker's heartbeat and the leases it holds (dropping lost ones), at most every
        RENEW_SECONDS when `due_only`: called between entries too, so a long batch or a shard's warm-up
        never lets the other leases lapse. The number of live workers."""
        now = time.monotonic()
        if due_only and now - self._last_renew < RENEW_SECONDS:
            return 0
        self._last_renew = now
        lease_ms = int(LEASE_SECONDS * 1000)
        now_ms = int(time.time() * 1000)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(WORKERS, {self.name: now_ms + lease_ms})
            pipe.zremrangebyscore(WORKERS, "-inf", now_ms)
            pipe.zcard(WORKERS)
            *_, workers = await pipe.execute()
        for shard in list(self.owned):
            if not await self._renew(keys=[LEASE_PREFIX + str(shard)], args=[self.name, lease_ms]):
                log.warning("shadow_lease_lost name=%s shard=%d", self.name, shard)
                del self.owned[shard]
        return int(workers)

    async def balance(self) -> None:
        """Renew the leases held, drop lost ones, take free shards up to a fair share."""
        workers = await self.renew(due_only=False)
        lease_ms = int(LEASE_SECONDS * 1000)
        fair = math.ceil(self.shards / max(workers, 1))
        for shard in range(self.shards):
            if len(self.owned) >= fair:
                break
            if shard not in self.owned and await self.client.set(
                LEASE_PREFIX + str(shard), self.name.encode(), nx=True, px=lease_ms
            ):
                self.owned[shard] = ShardProcessor(self.backend_factory())
                await self.take_over(shard)
        while len(self.owned) > fair:  # give back what a newcomer should have
            shard = max(self.owned)
            del self.owned[shard]
            await self.client.delete(LEASE_PREFIX + str(shard))
        metrics.SHARDS.set(len(self.owned))

    async def take_over(self, shard: int) -> None:
        """Rebuild what the previous owner knew, then process, in order, the entries other (dead) consumers
        read from this shard but never acknowledged."""
        await self.warm_up(shard)
        start = "0-0"
        while shard in self.owned:  # a lease lost meanwhile: the next owner claims what is left
            result = await self.client.xautoclaim(self.key(shard), GROUP, self.name, min_idle_time=0, start_id=start)
            start, entries = result[0], result[1]
            if entries:
                log.info("shadow_claimed name=%s shard=%d entries=%d", self.name, shard, len(entries))
                await self.apply([(shard, entry_id.decode(), fields) for entry_id, fields in entries if fields])
            if start in (b"0-0", "0-0") or not entries:
                return

    async def warm_up(self, shard: int) -> None:
        """Replay the shard's already acknowledged entries (the last WARM_UP_ENTRIES) into a fresh processor,
        comparing and recording nothing: transactions that began under the previous owner are then
        reconciled when they end. Only for a local backend: a replayed CSMS must not see CALLs twice."""
        processor = self.owned[shard]
        if not getattr(processor.backend, "local", False):
            return
        key = self.key(shard)
        groups: Any = await self.client.xinfo_groups(key)
        group = next((g for g in groups if g["name"] in (GROUP, GROUP.encode())), None)
        if group is None:
            return
        last = group["last-delivered-id"]
        pending: Any = await self.client.xpending_range(key, GROUP, min="-", max="+", count=100_000)
        unacknowledged = {p["message_id"] for p in pending}
        entries: Any = await self.client.xrevrange(key, max=last, min="-", count=WARM_UP_ENTRIES)
        replayed = 0
        for entry_id, fields in reversed(entries):
            if entry_id not in unacknowledged:
                await processor.process(entry_id.decode(), unpack(fields[b"e"]))
                replayed += 1
                await self.renew()
        if replayed:
            log.info("shadow_warm_up name=%s shard=%d entries=%d", self.name, shard, replayed)

    async def read_once(self) -> None:
        if not self.owned:
            await asyncio.sleep(READ_BLOCK_MS / 1000)
            return
        streams: Any = {self.key(shard): ">" for shard in self.owned}
        replies: Any
        if is_cluster_client(self.client):
            # Redis Cluster: one XREADGROUP names the streams of one slot, and each shard has its own slot.
            read = [self.client.xreadgroup(GROUP, self.name, {key: ">"}, count=READ_COUNT, block=READ_BLOCK_MS)
                    for key in streams]  # fmt: skip
            replies = [reply for replied in await asyncio.gather(*read) for reply in replied or []]
        else:
            replies = await self.client.xreadgroup(GROUP, self.name, streams, count=READ_COUNT, block=READ_BLOCK_MS)
        batch = []
        for stream, entries in replies or []:
            shard = int(stream.decode().rsplit("{", 1)[1].rstrip("}"))
            batch += [(shard, entry_id.decode(), fields) for entry_id, fields in entries]
        await self.apply(batch)

    async def enrolled(self, station: str) -> bool:
        """Whether the station is enrolled in the shadow (looked up at most every ENROLLMENT_SECONDS)."""
        cached = self._enrollment.get(station)
        now = time.monotonic()
        if cached is None or now - cached[1] > ENROLLMENT_SECONDS:
            cached = (await routing.is_enrolled(self.client, station), now)
            self._enrollment[station] = cached
        return cached[0]

    async def apply(self, entries: list[tuple[int, str, dict[bytes, bytes]]]) -> None:
        """Process entries (shard, entry id, fields), each shard's in stream order, then write the divergence
        records and lint violations they led to and, once those are written, acknowledge the entries: a batch
        costs two round trips to Redis (and one per lint violation), not two per entry. Entries of a shard whose
        lease was lost meanwhile are left to its next owner."""
        comparisons: list[Comparison] = []
        violations: list[tuple[Violation, str]] = []
        acks: dict[int, list[str]] = {}
        done: list[str] = []
        for shard, entry_id, fields in entries:
            processor = self.owned.get(shard)
            if processor is None:
                continue
            envelope = unpack(fields[b"e"])
            if not await self.enrolled(envelope["station"]):
                acks.setdefault(shard, []).append(entry_id)  # not enrolled: nothing to compare
            else:
                metrics.LAG.observe(max(time.time() - envelope["t_ns"] / 1e9, 0))
                started = time.perf_counter()
                step: Step = await processor.process(entry_id, envelope)
                metrics.BACKEND_LATENCY.labels(self.backend_label).observe(time.perf_counter() - started)
                comparisons += step.comparisons
                violations += [(violation, entry_id) for violation in step.violations]
                acks.setdefault(shard, []).extend(step.acks)
            done.append(entry_id)
            await self.renew()
        if comparisons:
            written = await records.write_many(
                self.client, [(c.comparison_id, c.action, c.records) for c in comparisons], WRITE_SECONDS
            )
            for comparison, first_time in zip(comparisons, written, strict=True):
                if first_time:
                    self.count(comparison.action, comparison.records)
                    if comparison.action != "Transaction":
                        await self.judge(comparison.station, bool(comparison.records))
        for violation, entry_id in violations:
            metrics.LINT_VIOLATIONS.labels(violation.rule, violation.model).inc()
            await records.write_violation(self.client, violation, entry_id)
        commands = [
            (b"XACK", self.key(shard).encode(), GROUP.encode(), *(entry_id.encode() for entry_id in ids))
            for shard, ids in acks.items()
            if ids
        ]
        if commands:
            await redis_batch.execute(self.client, commands, WRITE_SECONDS)
        self.processed += len(done)
        metrics.PENDING.set(sum(len(p.pending) for p in self.owned.values()))
        for entry_id in done:
            observe_processed(entry_id)

    async def judge(self, station: str, diverged: bool) -> None:
        """The divergence-rate rollback rule: a cut-over station whose answers diverge too often goes back."""
        rules = await self.thresholds.of(station)
        if not rules.enabled or rules.divergence_rate >= 1:
            self._recent.pop(station, None)
            return
        recent = self._recent.get(station)
        if recent is None or recent.maxlen != rules.divergence_window:
            recent = self._recent[station] = deque(maxlen=rules.divergence_window)
        recent.append(diverged)
        if len(recent) == rules.divergence_window and sum(recent) / rules.divergence_window > rules.divergence_rate:
            recent.clear()
            if await routing.mode_of(self.client, station) == "cutover":
                await rollback.roll_back(self.client, station, "divergence_rate", immediate=False)

    @staticmethod
    def count(action: str, found: list[records.Record]) -> None:
        if action == "Transaction":
            metrics.TRANSACTIONS.labels("diverged" if found else "agreed").inc()
        else:
            metrics.COMPARISONS.labels(action).inc()
        for record in found:
            metrics.DIVERGENCES.labels(record.action, record.kind).inc()

    async def release(self) -> None:
        for shard in list(self.owned):
            await self.client.delete(LEASE_PREFIX + str(shard))
        self.owned.clear()
        await self.client.zrem(WORKERS, self.name)
