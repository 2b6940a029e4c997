"""Per-station translation state in Redis, with an in-process copy for when Redis is away.

A state change is in Redis before the frames that depend on it are sent (a restart or another proxy
instance then continues the station where this one left off): `persist()` calls the caller back once Redis
acknowledged it. On a plain Redis the state writes of one event-loop pass go out together, in one write on
a connection held for them (`redis_batch.Pipelined`), and the replies release the frames that waited: a
group commit, one Redis round trip of latency and no task per write. On a Redis Cluster (or while that
connection is being made) each is an ordinary write (`save()`): saves made while a write is in flight go
out together in the next one (a station saved twice meanwhile is written once, in its latest state). When
Redis is unavailable, refuses a write or does not answer within REPLY_TIMEOUT, the state is deferred,
counted and retried in the background, and the caller is called back at once, so charging goes on; the
in-process copy serves a reconnecting station meanwhile. When Redis comes back without its data (a restart
without persistence, a flush), every state this process holds is written again: a sentinel key of this
process, absent again once set, tells that it happened. A Redis Cluster has one on every master, kept so as
the masters change: a master loses its own keys, not the others'. A master of a Redis Cluster that leaves
the slot map (failed over: its replica serves its slots now) may have acknowledged writes its replica never
got (replication is asynchronous), and no sentinel tells: every state is written again then too.

Writes are fenced by the station's epoch: a session claims its station (`claim()`, a higher epoch set in the
station's hash) as it loads the state, and its writes go through only while no later claim was made.
A session superseded by a newer connection of its station on another proxy instance (a charger back through
another path while its old connection still looks open) cannot write its older state over the newer one's:
its write is refused and the session is told (`superseded`), instead of frames leaving on a stale state.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from proxy import metrics, redis_batch
from proxy.redis_client import UNAVAILABLE, UNAVAILABLE_OR_UNREADABLE
from proxy.routing import station_key
from translators.state import DeviceModel, StationState

log = logging.getLogger("cutover.state")

SAVE_TIMEOUT = 0.5
LOAD_TIMEOUT = 5.0  # read once per connection: in a reconnect storm the lookups queue behind its handshakes
RETRY_AFTER = 1.0
WATCH_SECONDS = 0.25  # how often an idle proxy checks the sentinel (every state write checks it too)
SENTINEL_TTL = 30  # seconds: a sentinel outlives a missed check or two, not a dead proxy for long
RESTORE_CHUNK = 500
SENTINEL_SEARCH = 1 << 16  # tags tried to find a key in a master's slots (a master among n owns ~1/n of them)
# State writes left without a reply this long: the connection is dropped, the states deferred, the frames sent.
REPLY_TIMEOUT = SAVE_TIMEOUT
SENTINEL_EVERY = 0.1  # seconds between sentinel checks on the pipelined connection, under load
LOG_EVERY = 1.0  # seconds: failed state writes are logged together
EPOCH_FIELD = b"epoch"  # in the station's hash (`routing.station_key`), the same Redis Cluster slot as its state
# KEYS: the station's hash. A new epoch above the last one: Redis's clock in microseconds, so that a Redis that
# lost its data (the last epoch with it) still gives a newer claim a higher epoch than older sessions hold.
CLAIM = (
    b"local now = redis.call('TIME') "
    b"local epoch = tonumber(now[1]) * 1000000 + tonumber(now[2]) "
    b"local last = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') "
    b"if epoch <= last then epoch = last + 1 end "
    b"epoch = string.format('%d', epoch) redis.call('HSET', KEYS[1], 'epoch', epoch) return epoch"
)
# KEYS: the station's hash, its state; ARGV: the writer's epoch, the state. 1 written, 0 a later claim was made.
# An epoch below the writer's was lost with Redis's data (a restart without persistence, a failover that lost the
# last writes): the writer's is set again, so the fence holds against the older sessions from then on.
FENCED_SET = (
    b"local claimed = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') "
    b"local mine = tonumber(ARGV[1]) "
    b"if claimed > mine then return 0 end "
    b"if claimed < mine then redis.call('HSET', KEYS[1], 'epoch', ARGV[1]) end "
    b"redis.call('SET', KEYS[2], ARGV[2]) return 1"
)


def fenced_set(station_id: str, epoch: int, packed: bytes) -> redis_batch.Command:
    """The state write of a session that claimed the station at `epoch`."""
    return (*_fenced_head(station_id), b"%d" % epoch, packed)


def _fenced_head(station_id: str) -> redis_batch.Command:
    return b"EVAL", FENCED_SET, b"2", station_key(station_id).encode(), state_key(station_id).encode()


@functools.lru_cache(maxsize=1 << 16)
def _packed_fenced_head(station_id: str) -> bytes:
    """A station's fenced write but for its epoch and state, packed once: the script and keys are the same for
    every write of the station."""
    return redis_batch.pack_head(_fenced_head(station_id), 7)


def pack_fenced_set(station_id: str, epoch: int, packed: bytes) -> bytes:
    """`redis_batch.pack(*fenced_set(...))`, the hot path's way."""
    return _packed_fenced_head(station_id) + redis_batch.pack_arguments(b"%d" % epoch, packed)


# A state write's token on a pipelined connection: the station, and whom to call when the write is acknowledged,
# refused by a later claim, or deferred (`persist()`).
_Callbacks = tuple[str, Callable[[], None], Callable[[], None], Callable[[], None]]


@dataclass(frozen=True)
class _Control:
    """The token of a control-plane write on a pipelined connection (`write_now`)."""

    command: redis_batch.Command


@functools.lru_cache(maxsize=1 << 16)
def _state_slot(station_id: str) -> int:
    """The Redis Cluster slot of the station's keys (all hash-tagged with its id)."""
    return key_slot(state_key(station_id).encode())


def _sentinel_check(key: str) -> tuple[redis_batch.Command, redis_batch.Command]:
    """Set the sentinel if it is absent (the reply: None when it was there), and keep it alive."""
    encoded = key.encode()
    return (b"SET", encoded, b"1", b"NX", b"EX", b"%d" % SENTINEL_TTL), (b"EXPIRE", encoded, b"%d" % SENTINEL_TTL)


def _call(then: Callable[[], None]) -> None:
    """A caller's continuation, run from the reply reader: its failure is its own, never the connection's."""
    try:
        then()
    except Exception:
        log.exception("state_continuation_failed")


class StateUnavailable(Exception):
    """A station's state can be neither read from Redis nor taken from this process."""


def state_key(station_id: str) -> str:
    return f"cutover:state:{{{station_id}}}"


def device_model_key(station_id: str) -> str:
    return f"cutover:dm:{{{station_id}}}"


class StateStore:
    def __init__(self, client: redis.Redis | None) -> None:
        self.client = client
        self._local: dict[str, StationState] = {}
        self._epochs: dict[str, int] = {}  # the epoch of each station's latest write from this process
        self._models: dict[str, DeviceModel] = {}
        self._deferred: dict[str, StationState] = {}
        self._down_until = 0.0  # a plain Redis failed a write: its writes are deferred until then
        # On a Redis Cluster, per master: one master failing defers its own stations' writes, not the others'.
        self._masters_down: dict[str, float] = {}
        self._logged_at, self._not_logged = -LOG_EVERY, 0  # failed writes not in a warning yet
        self._task: asyncio.Task[None] | None = None
        # The next write: station → (the latest state packed, its epoch, the saves waiting: True once written,
        # False when a later claim refused it).
        self._batch: dict[str, tuple[bytes, int, list[asyncio.Future[bool]]]] = {}
        self._writer: asyncio.Task[None] | None = None
        self._sentinel_base = f"cutover:sentinel:{os.urandom(6).hex()}"
        self._sentinel = f"{self._sentinel_base}:{{0}}"  # on a plain Redis, the only one
        # Sentinel key → a check found or set it since this process started (its absence is then a loss).
        self._sentinels: dict[str, bool] = {} if isinstance(client, RedisCluster) else {self._sentinel: False}
        self._watcher: asyncio.Task[None] | None = None
        self._restorer: asyncio.Task[None] | None = None
        self._saving: set[asyncio.Task[None]] = set()
        self._sentinel_command = redis_batch.pack(*_sentinel_check(self._sentinel)[0])
        self._next_sentinel = 0.0
        self._pipelined = (
            redis_batch.Pipelined(client, self._acknowledged, self._not_written, REPLY_TIMEOUT)
            if isinstance(client, redis.Redis)
            else None
        )
        # On a Redis Cluster, the same on a connection to each master: a station's writes go to its own.
        self._masters = redis_batch.Masters.of(client) if isinstance(client, RedisCluster) else None
        self._by_master: dict[str, redis_batch.Pipelined] = {}
        # Called when Redis may have lost this process's control-plane writes (the proxy's open-transaction counts):
        # once its station states are written again (Redis came back empty, a cluster master failed over), or when
        # a connection carrying `write_now` writes failed. The proxy then writes its counts again.
        self.writes_lost: Callable[[], None] | None = None

    def _pipelined_to(self, slot: int) -> redis_batch.Pipelined | None:
        """On a Redis Cluster, the pipelined connection a write of this slot goes on (None: the ordinary way,
        for now)."""
        assert self._masters is not None
        found = self._masters.master_for(slot)
        if found is None:
            return None  # the slot map not read yet: the ordinary write reads it
        name, client = found
        pipelined = self._by_master.get(name)
        if pipelined is None:
            replied = functools.partial(self._acknowledged, master=name)
            failed = functools.partial(self._not_written, master=name)
            pipelined = redis_batch.Pipelined(client, replied, failed, REPLY_TIMEOUT)
            self._by_master[name] = pipelined
        return pipelined

    def _watch_for_data_loss(self) -> None:
        if self.client is not None and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.create_task(self._watch(), name="state-watch")

    async def _watch(self) -> None:
        assert self.client is not None
        while True:
            pause = WATCH_SECONDS
            try:
                if self._masters is not None:
                    if not self._masters.cluster.get_primaries():  # no command yet
                        await asyncio.wait_for(self._masters.cluster.initialize(), SAVE_TIMEOUT)
                    self._failed_over(self._masters.lost())
                keys = self._sentinel_keys()
                commands = [command for key in keys for command in _sentinel_check(key)]
                replies = await redis_batch.execute(self.client, commands, SAVE_TIMEOUT)
                for key, created in zip(keys, replies[::2], strict=True):
                    self._sentinel_checked(key, created=created is not None)
            except UNAVAILABLE as exc:
                log.debug("state_watch_failed error=%r", exc)
                pause = WATCH_SECONDS / 5  # Redis is coming back, maybe empty: look again soon
            await asyncio.sleep(pause)

    def _sentinel_keys(self) -> list[str]:
        """The sentinels to check: this process's one on a plain Redis; on a Redis Cluster one on each master
        (as the cluster client knows them now), a new one for a master that has none."""
        masters = self._masters
        if masters is None:
            return list(self._sentinels)
        by_master: dict[str, str] = {}
        for key in self._sentinels:
            master = masters.name_for(key_slot(key.encode()))
            if master is not None:
                by_master.setdefault(master, key)  # two on one master (slots moved): one is enough
        for node in masters.cluster.get_primaries():
            if node.name not in by_master:
                found = self._sentinel_on(masters, node.name)
                if found is not None:
                    by_master[node.name] = found
        self._sentinels = {key: self._sentinels.get(key, False) for key in by_master.values()}
        return list(self._sentinels)

    def _sentinel_on(self, masters: redis_batch.Masters, master: str) -> str | None:
        """A sentinel key of this process in a slot the master owns."""
        for tag in range(SENTINEL_SEARCH):
            key = f"{self._sentinel_base}:{{{tag}}}"
            if masters.name_for(key_slot(key.encode())) == master:
                return key
        return None

    def _sentinel_checked(self, key: str, *, created: bool) -> None:
        """A sentinel had to be created again: Redis (that master) lost its data since this process set it."""
        if created and self._sentinels.get(key):
            self._write_again("redis_data_lost")
        if key in self._sentinels:
            self._sentinels[key] = True

    def _failed_over(self, masters: set[str]) -> None:
        """Masters of a Redis Cluster left the slot map: their replicas, serving their slots now, may lack the
        last writes they acknowledged."""
        if not masters:
            return
        for name in masters:
            pipelined = self._by_master.pop(name, None)
            if pipelined is not None:
                self._in_background(pipelined.close())
        self._write_again("redis_failed_over", sorted(masters))

    def _write_again(self, reason: str, masters: list[str] | None = None) -> None:
        if self._restorer is None or self._restorer.done():
            self._restorer = asyncio.create_task(self._restore(reason, masters), name="state-restore")

    async def _restore(self, reason: str, masters: list[str] | None) -> None:
        """Redis lost what this process wrote (came back empty, or failed over): write every station state it holds
        again, fenced by the epoch of its session (never over the state of a newer session elsewhere; the epoch is
        set again if it was lost), and every device model (`SET NX`: never over one written meanwhile)."""
        assert self.client is not None
        stations = list(self._local.items())
        entries: list[redis_batch.Command] = [
            fenced_set(station_id, self._epochs.get(station_id, 0), state.dumps()) for station_id, state in stations
        ]
        entries += [
            (b"SET", device_model_key(station_id).encode(), model.dumps(), b"NX")
            for station_id, model in self._models.items()
        ]
        log.warning(
            "%s%s states=%d; writing this proxy's station states again",
            reason, "" if masters is None else f" masters={','.join(masters)}", len(stations),
        )  # fmt: skip
        metrics.STATE_RESTORES.inc()
        try:
            for start in range(0, len(entries), RESTORE_CHUNK):
                end = start + RESTORE_CHUNK
                replies = await redis_batch.execute(self.client, entries[start:end], SAVE_TIMEOUT * 4)
                for (station_id, state), reply in zip(stations[start:end], replies, strict=False):  # states first
                    if reply == 0 and self._local.get(station_id) is state:  # a newer session's state stands
                        self._refused(station_id)
        except UNAVAILABLE as exc:
            # Not all written: lose the sentinels so that the next check finds the loss again.
            log.warning("state_restore_failed error=%r; trying again at the next check", exc)
            with contextlib.suppress(*UNAVAILABLE):
                lost = [(b"DEL", key.encode()) for key in self._sentinels]
                await redis_batch.execute(self.client, lost, SAVE_TIMEOUT)
            return
        if self.writes_lost is not None:
            _call(self.writes_lost)

    def _in_background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    async def claim(self, station_id: str, *, from_memory: bool = True) -> tuple[int, StationState]:
        """Claim the station for a new session and load its state, in one round trip: the epoch the session's
        writes carry (writes of an earlier claim are refused from now on), and the state as `load()` gives it.
        When Redis cannot be reached, or this process holds a state of the station Redis does not have yet
        (deferred): the epoch this process last wrote with (its writes then go through unless another instance
        claimed meanwhile) and this process's copy — or `StateUnavailable`, without a copy or `from_memory`."""
        self._watch_for_data_loss()
        epoch = self._epochs.get(station_id, 0)
        if self.client is None:
            return epoch, self._local.setdefault(station_id, StationState(station_id))
        if station_id in self._deferred:
            if not from_memory:
                raise StateUnavailable(f"{station_id}: its translation state is not in Redis yet")
            return epoch, self._local.setdefault(station_id, StationState(station_id))
        commands = [
            (b"EVAL", CLAIM, b"1", station_key(station_id).encode()),
            (b"GET", state_key(station_id).encode()),
        ]
        try:
            claimed, raw = await redis_batch.execute(self.client, commands, LOAD_TIMEOUT)
        except UNAVAILABLE as exc:
            log.warning("station_claim_failed station_id=%s error=%r", station_id, exc)
            if not from_memory:
                raise StateUnavailable(f"{station_id}: its station could not be claimed: {exc!r}") from exc
            return epoch, self._local_or_fail(station_id, exc)
        self._epochs[station_id] = int(claimed)
        return int(claimed), self._loaded(station_id, raw)

    async def load(self, station_id: str) -> StationState:
        """The station's last saved state (Redis first, then this process's copy), or a fresh one when Redis
        has none; `StateUnavailable` when Redis cannot be read and this process holds no copy."""
        self._watch_for_data_loss()
        if self.client is None or station_id in self._deferred:
            return self._local.setdefault(station_id, StationState(station_id))
        try:
            raw = await asyncio.wait_for(self.client.get(state_key(station_id)), LOAD_TIMEOUT)
        except UNAVAILABLE as exc:
            return self._local_or_fail(station_id, exc)
        return self._loaded(station_id, raw)

    def _local_or_fail(self, station_id: str, exc: BaseException) -> StationState:
        """Redis could not be read: this process's copy, or `StateUnavailable`."""
        if station_id not in self._local:
            # A fresh state could open its running transactions at the legacy a second time.
            raise StateUnavailable(f"{station_id}: its translation state could not be read: {exc!r}") from exc
        log.warning("state_load_failed station_id=%s error=%r; using this proxy's copy", station_id, exc)
        return self._local[station_id]

    def _loaded(self, station_id: str, raw: bytes | str | None) -> StationState:
        """The state read from Redis; a fresh one (or this process's copy) when there is none or it is unreadable."""
        if raw is not None:
            try:
                state = StationState.loads(raw if isinstance(raw, bytes) else raw.encode())
            except (ValueError, TypeError, KeyError) as exc:
                log.error("state_unreadable station_id=%s error=%r; starting afresh", station_id, exc)
            else:
                self._local[station_id] = state
                return state
        return self._local.setdefault(station_id, StationState(station_id))

    async def load_device_model(self, station_id: str) -> DeviceModel:
        """The station's cached device model, or an empty one (the next boot reports it again)."""
        if self.client is not None:
            try:
                raw = await asyncio.wait_for(self.client.get(device_model_key(station_id)), SAVE_TIMEOUT)
                if raw is not None:
                    return DeviceModel.loads(raw if isinstance(raw, bytes) else raw.encode())
            except UNAVAILABLE_OR_UNREADABLE as exc:
                log.warning("device_model_load_failed station_id=%s error=%r", station_id, exc)
        return self._models.get(station_id) or DeviceModel()

    async def save_device_model(self, station_id: str, model: DeviceModel) -> None:
        """Best effort: a device model lost with Redis is reported again at the station's next boot."""
        self._models[station_id] = model
        if self.client is None or time.monotonic() < self._down_until:
            return
        try:
            await asyncio.wait_for(self.client.set(device_model_key(station_id), model.dumps()), SAVE_TIMEOUT)
        except UNAVAILABLE as exc:
            log.warning("device_model_save_failed station_id=%s error=%r", station_id, exc)

    def persist(
        self,
        state: StationState,
        then: Callable[[], None],
        *,
        epoch: int = 0,
        superseded: Callable[[], None] | None = None,
        unavailable: Callable[[], None] | None = None,
    ) -> None:
        """Write the state to Redis, then call `then` (the caller's frames that depend on it go out then):
        once Redis acknowledged it, or once it was deferred because Redis is unavailable or did not answer
        within REPLY_TIMEOUT (charging goes on; the state is retried in the background) — or, on a deferral,
        `unavailable` if given (the state is retried all the same). When a later claim than `epoch` refused the
        write, call `superseded` instead (`then` when none is given). Never raises."""
        self._local[state.station_id] = state
        self._epochs[state.station_id] = epoch
        if self.client is None:
            then()
            return
        now = time.monotonic()
        slot = _state_slot(state.station_id) if self._masters is not None else 0
        if self._waits(slot, now):
            self._defer(state)
            _call(unavailable or then)
            return
        pipelined = self._pipelined
        if self._masters is not None:
            pipelined = self._pipelined_to(slot)
        elif pipelined is not None and now >= self._next_sentinel and pipelined.send(self._sentinel_command, None):
            # Under load a Redis that lost its data is seen within a tenth of a second (a cluster's masters: by
            # the watcher, four times a second).
            self._next_sentinel = now + SENTINEL_EVERY
        callbacks = (state.station_id, then, superseded or then, unavailable or then)
        if pipelined is not None and pipelined.send(pack_fenced_set(state.station_id, epoch, state.dumps()), callbacks):
            return
        # The pipelined connection still being made (or a cluster's slot map not read yet): an ordinary write.
        self._in_background(self._save_then(state, epoch, callbacks))

    async def _save_then(self, state: StationState, epoch: int, callbacks: _Callbacks) -> None:
        """`save()`, then the callback its outcome calls for: written, refused by a later claim, or deferred."""
        _, then, superseded, unavailable = callbacks
        outcome = then
        try:
            written = await self.save(state, epoch)
            deferred = self._deferred.get(state.station_id) is state
            outcome = superseded if not written else unavailable if deferred else then
        finally:
            _call(outcome)

    def write_now(self, *command: bytes) -> bool:
        """Hand a control-plane write to Redis on the state connection, ahead of the state writes that follow
        (and so of the frames that wait for them); False when it cannot be done so (the caller writes it the
        ordinary way)."""
        key = redis_batch.command_key(command)
        slot = key_slot(key) if key is not None and self._masters is not None else 0
        if self._waits(slot, time.monotonic()):
            return False
        pipelined = self._pipelined if key is None or self._masters is None else self._pipelined_to(slot)
        if pipelined is None:
            return False
        return pipelined.send(redis_batch.pack(*command), _Control(command))

    def _acknowledged(self, token: object, reply: Any, master: str | None = None) -> None:
        if self._masters is not None and redis_batch.is_redirection(reply):
            self._redirected(token)
        elif isinstance(reply, Exception):  # refused (out of memory; a cluster down until a replica is elected)
            self._not_written([token], reply, master)
        elif token is None:
            self._sentinel_checked(self._sentinel, created=reply is not None)
        elif isinstance(token, tuple):
            station_id, then, superseded, _ = token
            self._deferred.pop(station_id, None)
            if reply == 0:
                self._refused(station_id)
                _call(superseded)
            else:
                _call(then)

    def _redirected(self, token: object) -> None:
        """A Redis Cluster master no longer serves the slot (resharded, failed over): the write did not run.
        It is made again the ordinary way (which follows the redirection), its caller still waiting."""
        assert self._masters is not None
        self._masters.refresh()
        if isinstance(token, tuple):
            state = self._local.get(token[0])
            if state is None:  # superseded meanwhile: nothing of this process's to write
                _call(token[2])
                return
            again = self._save_then(state, self._epochs.get(token[0], 0), token)
        elif isinstance(token, _Control):
            again = self._control_again(token.command)
        else:
            return
        self._in_background(again)

    async def _control_again(self, command: redis_batch.Command) -> None:
        assert self.client is not None
        try:
            await redis_batch.execute(self.client, [command], SAVE_TIMEOUT)
        except UNAVAILABLE as exc:
            log.warning("control_write_failed command=%s error=%r", command[0].decode(), exc)

    def _refused(self, station_id: str) -> None:
        """A later claim refused a write: this process's copy is stale (the newer session's is in Redis)."""
        metrics.STATE_WRITES_SUPERSEDED.inc()
        log.warning("state_write_superseded station_id=%s; a newer connection of the station claimed it", station_id)
        self._local.pop(station_id, None)

    def _not_written(self, tokens: list[object], error: BaseException, master: str | None = None) -> None:
        writes = [token for token in tokens if isinstance(token, tuple)]
        self._warn_not_written(len(writes), error)
        self._failed(master)
        for station_id, _, _, unavailable in writes:
            state = self._local.get(station_id)
            if state is not None:
                self._defer(state)
            _call(unavailable)
        if self.writes_lost is not None and any(isinstance(token, _Control) for token in tokens):
            _call(self.writes_lost)  # the proxy writes them again, the ordinary way, until Redis takes them

    def _warn_not_written(self, writes: int, error: BaseException) -> None:
        """A warning a second at most (`writes`: the failed writes since the last one): a Redis that fails under
        load fails every write, one reply each."""
        self._not_logged += writes
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            log.warning("state_save_failed writes=%d error=%r; kept in memory, retrying", self._not_logged, error)
            self._logged_at, self._not_logged = now, 0

    def _waits(self, slot: int, now: float) -> bool:
        """Writes to the slot are deferred for now: Redis (on a Redis Cluster, the slot's master) failed one within
        RETRY_AFTER."""
        if now < self._down_until:
            return True
        masters = self._masters
        return masters is not None and now < self._masters_down.get(masters.name_for(slot) or "", 0.0)

    def _failed(self, master: str | None) -> None:
        """Redis failed a write: its writes are deferred for RETRY_AFTER; on a Redis Cluster, those to that master
        only (None: none, the failure not being one master's), and the slot map is read again (failed over?)."""
        until = time.monotonic() + RETRY_AFTER
        if self._masters is None:
            self._down_until = until
            return
        self._masters.refresh()
        if master is not None:
            self._masters_down[master] = until

    def _master_of(self, station_id: str) -> str | None:
        return None if self._masters is None else self._masters.name_for(_state_slot(station_id))

    async def save(self, state: StationState, epoch: int = 0) -> bool:
        """Write the state to Redis, or defer it (counted) when Redis is unavailable; False when a later claim
        than `epoch` refused it. Never raises."""
        self._local[state.station_id] = state
        self._epochs[state.station_id] = epoch
        if self.client is None:
            return True
        if self._waits(_state_slot(state.station_id), time.monotonic()):
            self._defer(state)
            return True
        try:
            written = await self._write(state.station_id, epoch, state.dumps())
        except UNAVAILABLE as exc:
            self._warn_not_written(1, exc)
            self._failed(self._master_of(state.station_id))
            self._defer(state)
            return True
        self._deferred.pop(state.station_id, None)
        if not written:
            self._refused(state.station_id)
        return written

    def _write(self, station_id: str, epoch: int, packed: bytes) -> asyncio.Future[bool]:
        """A future that resolves once `packed` (or a later state of the same station) is in Redis: True,
        or False when a later claim than `epoch` refused it."""
        written: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiting = self._batch.get(station_id)
        self._batch[station_id] = (packed, epoch, [*waiting[2], written] if waiting else [written])
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches(), name="state-writer")
        return written

    async def _write_batches(self) -> None:
        assert self.client is not None
        while self._batch:
            batch, self._batch = self._batch, {}
            try:
                # Every write also checks the sentinel: under load, a Redis that lost its data is noticed at
                # the first write after, not at the next poll.
                keys = self._sentinel_keys()
                sentinels = [_sentinel_check(key)[0] for key in keys]
                sets = [fenced_set(station_id, epoch, packed) for station_id, (packed, epoch, _) in batch.items()]
                replies = await redis_batch.execute(self.client, [*sentinels, *sets], SAVE_TIMEOUT)
                for key, created in zip(keys, replies, strict=False):
                    self._sentinel_checked(key, created=created is not None)
                replies = replies[len(keys) :]
            except BaseException as exc:
                failure = exc if isinstance(exc, Exception) else ConnectionError("state store closing")
                for _, _, waiting in batch.values():
                    for written in waiting:
                        if not written.done():
                            written.set_exception(failure)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, _, waiting), reply in zip(batch.values(), replies, strict=True):
                for written in waiting:
                    if not written.done():
                        written.set_result(reply != 0)

    def _defer(self, state: StationState) -> None:
        metrics.STATE_PERSIST_FAILURES.inc()
        self._deferred[state.station_id] = state
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._retry_deferred(), name="state-retry")

    async def _retry_deferred(self) -> None:
        assert self.client is not None
        while self._deferred:
            now = time.monotonic()
            self._masters_down = {name: until for name, until in self._masters_down.items() if until > now}
            wake = max(self._down_until, min(self._masters_down.values(), default=0.0))
            await asyncio.sleep(max(wake - now, 0.05))
            for station_id, state in list(self._deferred.items()):
                if self._waits(_state_slot(station_id), time.monotonic()):
                    continue  # its master failed again: the others' go on
                try:
                    (written,) = await redis_batch.execute(
                        self.client, [fenced_set(station_id, self._epochs.get(station_id, 0), state.dumps())],
                        SAVE_TIMEOUT,
                    )  # fmt: skip
                except UNAVAILABLE:
                    master = self._master_of(station_id)
                    self._failed(master)
                    if master is None:  # a plain Redis (or no slot map): all of them wait
                        break
                    continue
                if self._deferred.get(station_id) is state:
                    del self._deferred[station_id]
                    if written == 0:  # claimed meanwhile by a newer session, elsewhere: its state stands
                        self._refused(station_id)
        log.info("state_store_recovered")

    async def close(self) -> None:
        for pipelined in (self._pipelined, *self._by_master.values()):
            if pipelined is not None:
                await pipelined.close()
        for task in (self._task, self._writer, self._watcher, self._restorer):
            if task is not None:
                task.cancel()
