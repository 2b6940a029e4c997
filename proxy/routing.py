"""The cutover control plane in Redis: each station's routing mode, pending switches, the station registry
the proxies keep, and the audit trail.

`legacy`: a 2.0.1 charger is translated to the legacy 1.6 CSMS (the default). `cutover`: it passes through
to the new 2.0.1 CSMS. 1.6 chargers always go to the legacy. A switch takes effect only when the station has
no active transaction (drain then switch) unless forced; until then it is pending. Every switch, pending,
effective or forced, is appended to the audit stream. Proxies learn of switches on a pub/sub channel and
close the charger's socket, so it reconnects to its new target.
"""

from __future__ import annotations

import fnmatch
import hashlib
import time
from dataclasses import dataclass
from typing import Any, Literal

import msgpack
import redis.asyncio as redis

Mode = Literal["legacy", "cutover"]
MODES: tuple[Mode, ...] = ("legacy", "cutover")
STATIONS = "cutover:stations"  # set of every station a proxy has seen
AUDIT = "cutover:audit"
AUDIT_MAXLEN = 100_000
CHANNEL = "cutover:switches"  # station ids whose mode changed, and stations claimed by a new session


def route_key(station_id: str) -> str:
    """Hash: mode, pending (the mode a drained switch will set), pending_reason, pending_by."""
    return f"cutover:route:{{{station_id}}}"


def station_key(station_id: str) -> str:
    """Hash kept by the proxies: protocol, model, firmware, connected (proxy instance), active_transactions."""
    return f"cutover:station:{{{station_id}}}"


def group_key(name: str) -> str:
    return f"cutover:group:{name}"


def percent_bucket(station_id: str) -> int:
    """A stable place for the station in 0..9999: `--percent 10` takes buckets below 1000, so every larger
    percentage contains every smaller one."""
    return int.from_bytes(hashlib.sha256(station_id.encode()).digest()[:4], "big") % 10_000


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def claim_message(station_id: str, epoch: int) -> str:
    """What a session that claimed its station (`StateStore.claim`) announces on CHANNEL, so that an older
    session of the station on another instance ends at once: "claim STATION EPOCH" (a station id has no space)."""
    return f"claim {station_id} {epoch}"


def parse_claim(message: str) -> tuple[str, int] | None:
    """(station, epoch) of a claim announcement; None for a switch's message (a bare station id)."""
    parts = message.split(" ")
    if len(parts) != 3 or parts[0] != "claim" or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


async def mode_of(client: redis.Redis, station_id: str) -> Mode:
    raw = await client.hget(route_key(station_id), "mode")
    mode = text(raw) if raw is not None else "legacy"
    return "cutover" if mode == "cutover" else "legacy"


@dataclass(frozen=True)
class Selection:
    stations: tuple[str, ...] = ()
    group: str | None = None
    glob: str | None = None
    model: str | None = None
    firmware: str | None = None
    percent: float | None = None
    all: bool = False


async def select(client: redis.Redis, selection: Selection) -> list[str]:
    """The known stations a selection names (explicit ids count even if no proxy has seen them yet)."""
    known = sorted(text(s) for s in await client.smembers(STATIONS))
    chosen = set(selection.stations)
    candidates = known if (selection.all or selection.glob or selection.model or selection.firmware
                           or selection.percent is not None or selection.group) else []  # fmt: skip
    if selection.group:
        members = {text(s) for s in await client.smembers(group_key(selection.group))}
        candidates = [s for s in candidates if s in members] + sorted(members - set(known))
    result = []
    for station in candidates:
        if selection.glob and not fnmatch.fnmatchcase(station, selection.glob):
            continue
        if selection.percent is not None and percent_bucket(station) >= selection.percent * 100:
            continue
        if selection.model or selection.firmware:
            info = await client.hgetall(station_key(station))
            model, firmware = text(info.get(b"model", b"")), text(info.get(b"firmware", b""))
            if selection.model and not fnmatch.fnmatchcase(model, selection.model):
                continue
            if selection.firmware and not fnmatch.fnmatchcase(firmware, selection.firmware):
                continue
        result.append(station)
    return sorted(chosen | set(result))


@dataclass(frozen=True)
class SwitchResult:
    station: str
    previous: str
    target: str
    outcome: Literal["switched", "pending", "unchanged"]
    forced: bool = False


async def switch(
    client: redis.Redis, stations: list[str], target: Mode, *, force: bool, reason: str, actor: str, dry_run: bool
) -> list[SwitchResult]:
    """Move stations to `target`: at once when idle (or forced), else pending until their transactions end."""
    results = []
    for station in stations:
        previous = await mode_of(client, station)
        active = int(await client.hget(station_key(station), "active_transactions") or 0)
        if previous == target:
            result = SwitchResult(station, previous, target, "unchanged")
        elif active and not force:
            result = SwitchResult(station, previous, target, "pending")
        else:
            result = SwitchResult(station, previous, target, "switched", forced=bool(active))
        results.append(result)
        if dry_run:
            continue
        if result.outcome == "pending":
            await client.hset(route_key(station), mapping={"pending": target, "pending_reason": reason,
                                                           "pending_by": actor})  # fmt: skip
        else:
            await client.hdel(route_key(station), "pending", "pending_reason", "pending_by")
        if result.outcome == "switched":
            await client.hset(route_key(station), "mode", target)
            await client.publish(CHANNEL, station)
        if result.outcome != "unchanged":
            # A forced switch splits the station's open transactions between the two CSMSs: say how many.
            await audit(client, station, previous, target, result.outcome, reason, actor, forced=result.forced,
                        split_transactions=active if result.forced else 0)  # fmt: skip
    return results


async def enroll(client: redis.Redis, stations: list[str], enrolled: bool, actor: str) -> None:
    """Per-station shadow enrollment: the shadow workers compare only enrolled stations (all, by default)."""
    for station in stations:
        if enrolled:
            await client.hdel(route_key(station), "shadow")
        else:
            await client.hset(route_key(station), "shadow", "off")
        await audit(client, station, "", "", "shadow_on" if enrolled else "shadow_off", "", actor, forced=False)


async def is_enrolled(client: redis.Redis, station: str) -> bool:
    return await client.hget(route_key(station), "shadow") != b"off"


async def on_idle(client: redis.Redis, station: str) -> Mode | None:
    """The station's transactions all ended: apply its pending switch, if any (the new mode, else None)."""
    route = await client.hgetall(route_key(station))
    pending = text(route[b"pending"]) if b"pending" in route else None
    if pending not in MODES:
        return None
    previous = text(route.get(b"mode", b"legacy"))
    await client.hset(route_key(station), "mode", pending)
    await client.hdel(route_key(station), "pending", "pending_reason", "pending_by")
    await audit(client, station, previous, pending, "took_effect", text(route.get(b"pending_reason", b"")),
                text(route.get(b"pending_by", b"")), forced=False)  # fmt: skip
    await client.publish(CHANNEL, station)
    return "cutover" if pending == "cutover" else "legacy"


async def audit(
    client: redis.Redis,
    station: str,
    previous: str,
    target: str,
    outcome: str,
    reason: str,
    actor: str,
    *,
    forced: bool,
    split_transactions: int = 0,
) -> None:
    entry = {"at": time.time(), "station": station, "from": previous, "to": target, "outcome": outcome,
             "reason": reason, "by": actor, "forced": forced, "split_transactions": split_transactions}  # fmt: skip
    await client.xadd(AUDIT, {"a": msgpack.packb(entry, use_bin_type=True)}, maxlen=AUDIT_MAXLEN)


async def audit_entries(client: redis.Redis, limit: int = 100, station: str | None = None) -> list[dict[str, Any]]:
    found = []
    entries: Any = await client.xrevrange(AUDIT, count=limit * (10 if station else 1))
    for entry_id, fields in entries:
        entry = msgpack.unpackb(fields[b"a"], raw=False)
        if station is None or entry["station"] == station:
            entry["id"] = text(entry_id)
            found.append(entry)
    return found[:limit]


async def status(client: redis.Redis) -> list[dict[str, Any]]:
    """Every known station: mode, pending switch, connection, active transactions, protocol, model."""
    rows = []
    for station in sorted(text(s) for s in await client.smembers(STATIONS)):
        route = await client.hgetall(route_key(station))
        info = await client.hgetall(station_key(station))
        rows.append({
            "station": station,
            "mode": text(route.get(b"mode", b"legacy")),
            "pending": text(route[b"pending"]) if b"pending" in route else None,
            "connected": b"connected" in info,
            "active_transactions": int(info.get(b"active_transactions", 0)),
            "protocol": text(info.get(b"protocol", b"")),
            "model": text(info.get(b"model", b"")),
            "firmware": text(info.get(b"firmware", b"")),
            "shadow": route.get(b"shadow") != b"off",
        })  # fmt: skip
    return rows
