"""Automatic rollback rules for stations cut over to the new 2.0.1 CSMS.

Each rule watches what a proxy (or a shadow worker) sees of a cut-over station and, when it fires, moves
the station back to `legacy` — immediately when the station cannot charge on the new CSMS anyway, drained
otherwise — with the rule as the audited reason and `cutover_rollbacks_total{rule}` counted.

- `native_unreachable`: the new CSMS could not be reached for `unreachable_seconds` (immediate);
- `native_tls_failed`: `tls_failures` TLS handshakes in a row with the new CSMS failed — its certificate
  did not verify, or it refused the proxy's client certificate (immediate);
- `boot_rejected`: the new CSMS answered the station's BootNotification with Rejected (immediate);
- `callerror_rate`: more than `max_error_rate` of the station's last `window` CALLs were answered with a
  CALLERROR by the new CSMS (drained: transactions finish where they started);
- `divergence_rate` (shadow workers): more than `divergence_rate` of the station's last `divergence_window`
  comparisons diverged (drained).

Thresholds are the deployment's flags, overridden per named group (`cutover rules set GROUP ...`, kept in
the `cutover:rules` hash). A station in several groups with rules gets the most cautious value of each
threshold (the smallest), and its rules stay on unless every one of those groups turns them off.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections import deque
from dataclasses import dataclass, field, fields, replace
from typing import Any

import orjson
import redis.asyncio as redis

from proxy import metrics, routing

log = logging.getLogger("cutover.rollback")

RULES = "cutover:rules"  # hash: group name → JSON object of the thresholds that group overrides
RULE_NAMES = ("native_unreachable", "native_tls_failed", "boot_rejected", "callerror_rate", "divergence_rate")


@dataclass(frozen=True)
class Thresholds:
    """When the automatic rules fire for one station."""

    unreachable_seconds: float = 30.0
    tls_failures: int = 3
    max_error_rate: float = 0.2
    window: int = 20
    divergence_rate: float = 0.5
    divergence_window: int = 50
    enabled: bool = True

    def overridden(self, overrides: dict[str, Any]) -> Thresholds:
        return replace(self, **overrides)


# What each threshold may be: (type, lower bound, upper bound, inclusive lower bound).
LIMITS: dict[str, tuple[type, float, float, bool]] = {
    "unreachable_seconds": (float, 0.0, 86_400.0, False),
    "tls_failures": (int, 1, 1_000, True),
    "max_error_rate": (float, 0.0, 1.0, True),
    "window": (int, 1, 10_000, True),
    "divergence_rate": (float, 0.0, 1.0, True),
    "divergence_window": (int, 1, 100_000, True),
}


def overrides_schema() -> dict[str, Any]:
    """The JSON schema of a group's overrides, from LIMITS (what `check_overrides` enforces)."""
    properties: dict[str, Any] = {"enabled": {"type": "boolean"}}
    for name, (kind, low, high, inclusive) in LIMITS.items():
        properties[name] = {
            "type": "integer" if kind is int else "number",
            "minimum" if inclusive else "exclusiveMinimum": low,
            "maximum": high,
        }
    return {"type": "object", "minProperties": 1, "additionalProperties": False, "properties": properties}


def check_overrides(overrides: Any) -> dict[str, Any]:
    """The overrides, checked; ValueError naming the first bad field."""
    if not isinstance(overrides, dict) or not overrides:
        raise ValueError("rules: an object with at least one threshold")
    known = {f.name for f in fields(Thresholds)}
    checked: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in known:
            raise ValueError(f"{name}: not a rollback threshold (one of {', '.join(sorted(known))})")
        if name == "enabled":
            if not isinstance(value, bool):
                raise ValueError("enabled: must be true or false")
            checked[name] = value
            continue
        kind, low, high, inclusive = LIMITS[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
            raise ValueError(f"{name}: must be a {'whole number' if kind is int else 'number'}")
        if not (low <= value if inclusive else low < value) or value > high:
            bound = f"{'from' if inclusive else 'above'} {low:g} to {high:g}"
            raise ValueError(f"{name}: {value!r} is out of range ({bound})")
        checked[name] = kind(value)
    return checked


async def set_group_rules(client: redis.Redis, group: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Merge checked overrides into a group's rules; the group's rules as they now stand."""
    current = (await group_rules(client)).get(group, {})
    merged = {**current, **check_overrides(overrides)}
    await client.hset(RULES, group, orjson.dumps(merged))
    return merged


async def clear_group_rules(client: redis.Redis, group: str) -> bool:
    return bool(await client.hdel(RULES, group))


async def group_rules(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """Every group's overrides (entries that no longer read as thresholds are skipped, logged)."""
    found: dict[str, dict[str, Any]] = {}
    raw: Any = await client.hgetall(RULES)
    for group, value in raw.items():
        name = routing.text(group)
        try:
            found[name] = check_overrides(orjson.loads(value))
        except (ValueError, orjson.JSONDecodeError) as exc:
            log.error("rollback_rules_unreadable group=%s error=%s; the group's rules are ignored", name, exc)
    return found


def most_cautious(defaults: Thresholds, applicable: list[dict[str, Any]]) -> Thresholds:
    """The defaults overridden by every applicable group: the smallest value of each threshold wins."""
    if not applicable:
        return defaults
    merged: dict[str, Any] = {}
    for overrides in applicable:
        for name, value in overrides.items():
            if name != "enabled":
                merged[name] = min(merged.get(name, value), value)
    merged["enabled"] = any(o.get("enabled", defaults.enabled) for o in applicable)
    return defaults.overridden(merged)


async def thresholds_for(client: redis.Redis | None, station_id: str, defaults: Thresholds) -> Thresholds:
    """The station's thresholds: the defaults, overridden by the rules of the groups it belongs to."""
    if client is None:
        return defaults
    rules = await group_rules(client)
    applicable = [
        overrides for group, overrides in sorted(rules.items())
        if await client.sismember(routing.group_key(group), station_id)
    ]  # fmt: skip
    return most_cautious(defaults, applicable)


@dataclass
class RollbackRules:
    """A proxy's view of its cut-over stations: the state each rule keeps, per station."""

    defaults: Thresholds = field(default_factory=Thresholds)  # the deployment's flags
    _stations: dict[str, Thresholds] = field(default_factory=dict)
    _down_since: dict[str, float] = field(default_factory=dict)
    _tls_failed: dict[str, int] = field(default_factory=dict)
    _answers: dict[str, deque[bool]] = field(default_factory=dict)  # per station: was each answer an error

    def configure(self, station_id: str, thresholds: Thresholds) -> None:
        """Use the station's own thresholds (its groups' rules) from now on."""
        if self._stations.get(station_id) != thresholds:
            self._stations[station_id] = thresholds
            self._answers.pop(station_id, None)

    def of(self, station_id: str) -> Thresholds:
        return self._stations.get(station_id) or self.defaults

    def native_unreachable(self, station_id: str, now: float) -> bool:
        """Record a failed connection; True when the rule fires."""
        since = self._down_since.setdefault(station_id, now)
        rules = self.of(station_id)
        return rules.enabled and now - since >= rules.unreachable_seconds

    def native_tls_failed(self, station_id: str) -> bool:
        """Record a failed TLS handshake with the new CSMS; True when the rule fires."""
        failures = self._tls_failed[station_id] = self._tls_failed.get(station_id, 0) + 1
        rules = self.of(station_id)
        if failures < rules.tls_failures:
            return False
        del self._tls_failed[station_id]
        return rules.enabled

    def native_reached(self, station_id: str) -> None:
        self._down_since.pop(station_id, None)
        self._tls_failed.pop(station_id, None)

    def answered(self, station_id: str, error: bool) -> bool:
        """Record one answer of the new CSMS to the station; True when the error-rate rule fires."""
        rules = self.of(station_id)
        answers = self._answers.setdefault(station_id, deque(maxlen=rules.window))
        answers.append(error)
        fired = len(answers) == rules.window and sum(answers) / rules.window > rules.max_error_rate
        if fired:
            answers.clear()
        return rules.enabled and fired

    def forget(self, station_id: str) -> None:
        for per_station in (self._stations, self._down_since, self._tls_failed, self._answers):
            per_station.pop(station_id, None)


def tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a failed connection (the library may wrap it), if a TLS error caused it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class GroupThresholds:
    """Per-station thresholds looked up through the group rules, remembered for `ttl` seconds."""

    def __init__(self, client: redis.Redis | None, defaults: Thresholds, ttl: float = 10.0) -> None:
        self.client, self.defaults, self.ttl = client, defaults, ttl
        self._cache: dict[str, tuple[float, Thresholds]] = {}

    async def of(self, station_id: str) -> Thresholds:
        now = time.monotonic()
        cached = self._cache.get(station_id)
        if cached is None or now - cached[0] > self.ttl:
            cached = (now, await thresholds_for(self.client, station_id, self.defaults))
            self._cache[station_id] = cached
        return cached[1]


async def roll_back(client: redis.Redis | None, station_id: str, rule: str, *, immediate: bool) -> None:
    """Move one station back to legacy because `rule` fired (audited, counted)."""
    metrics.ROLLBACKS.labels(rule).inc()
    log.warning("rollback station_id=%s rule=%s immediate=%s", station_id, rule, immediate)
    if client is None:
        return
    await routing.switch(
        client, [station_id], "legacy", force=immediate, reason=f"automatic rollback: {rule}", actor=f"rule:{rule}",
        dry_run=False,
    )  # fmt: skip
