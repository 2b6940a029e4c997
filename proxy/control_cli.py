"""`cutover switch`, `status`, `audit`, `group`, `enroll`, `rules`: the cutover control plane from a shell.

`cutover switch --to legacy --all` is the fleet-wide rollback.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
from datetime import datetime
from typing import Any

import orjson
import redis.asyncio as redis

from proxy import config, redis_client, rollback, routing


def percent(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 100:
        raise ValueError("must be a percentage from 0 to 100")
    return value


def add_commands(commands: Any) -> None:
    switch = commands.add_parser("switch", help="move stations between the legacy and the new 2.0.1 CSMS")
    config.add(switch, "--redis-url", config.redis_url, None, "the proxies' Redis (required)")
    switch.add_argument("--to", choices=routing.MODES, required=True, help="legacy (rollback) or cutover")
    switch.add_argument("--station", action="append", default=[], help="a station id (repeatable)")
    switch.add_argument("--group", help="a named group (cutover group add NAME ID ...)")
    switch.add_argument("--glob", help="station ids matching a shell pattern, e.g. 'KEBA-*'")
    switch.add_argument("--model", help="chargers whose BootNotification model matches, e.g. 'KC-P30*'")
    switch.add_argument("--firmware", help="chargers whose firmware version matches a pattern")
    switch.add_argument("--percent", type=percent, help="a stable share of the selection (10%% ⊂ 20%%)")
    switch.add_argument("--all", action="store_true", help="every known station")
    switch.add_argument("--force", action="store_true", help="do not wait for transactions to end (audited)")
    switch.add_argument("--dry-run", action="store_true", help="list what would move, move nothing")
    switch.add_argument("--reason", default="", help="why, for the audit trail")

    enroll = commands.add_parser("enroll", help="enroll stations in the shadow comparison, or take them out")
    config.add(enroll, "--redis-url", config.redis_url, None, "the proxies' Redis (required)")
    enroll.add_argument("shadow", choices=("on", "off"))
    enroll.add_argument("stations", nargs="+")

    status = commands.add_parser("status", help="every station: mode, pending switch, connection, transactions")
    config.add(status, "--redis-url", config.redis_url, None, "the proxies' Redis (required)")
    status.add_argument("--format", choices=("text", "json"), default="text")

    audit = commands.add_parser("audit", help="the switch audit trail, newest first")
    config.add(audit, "--redis-url", config.redis_url, None, "the proxies' Redis (required)")
    audit.add_argument("--station")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--format", choices=("text", "json"), default="text")

    group = commands.add_parser("group", help="named groups of stations for rollouts")
    config.add(group, "--redis-url", config.redis_url, None, "the proxies' Redis (required)")
    group.add_argument("action", choices=("add", "remove", "list"))
    group.add_argument("name")
    group.add_argument("stations", nargs="*")

    rules = commands.add_parser("rules", help="automatic rollback thresholds per group (over the proxies' flags)")
    config.add(rules, "--redis-url", config.redis_url, None, "the proxies' Redis (required)")
    rules.add_argument("action", choices=("set", "clear", "list"))
    rules.add_argument("group", nargs="?", help="the group whose rules to set or clear")
    for flag, name, kind, meaning in RULE_FLAGS:
        rules.add_argument(flag, dest=name, type=kind, help=meaning)
    rules.add_argument("--auto-rollback", dest="enabled", choices=("on", "off"), help="the group's rules on or off")
    rules.add_argument("--format", choices=("text", "json"), default="text")


RULE_FLAGS = (
    ("--unreachable-seconds", "unreachable_seconds", float, "new CSMS unreachable this long"),
    ("--tls-failures", "tls_failures", int, "failed TLS handshakes in a row with the new CSMS"),
    ("--error-rate", "max_error_rate", float, "share of CALLERROR answers (0-1) ..."),
    ("--window", "window", int, "... over this many CALLs"),
    ("--divergence-rate", "divergence_rate", float, "share of diverging shadow comparisons (0-1) ..."),
    ("--divergence-window", "divergence_window", int, "... over this many comparisons"),
)


async def run_rules(args: argparse.Namespace, client: redis.Redis) -> int:
    if args.action != "list" and not args.group:
        print(f"cutover rules {args.action}: name the group, e.g. cutover rules {args.action} beta")
        return 2
    if args.action == "set":
        overrides: dict[str, Any] = {name: getattr(args, name) for _, name, _, _ in RULE_FLAGS
                                     if getattr(args, name) is not None}  # fmt: skip
        if args.enabled is not None:
            overrides["enabled"] = args.enabled == "on"
        if not overrides:
            flags = ", ".join(flag for flag, _, _, _ in RULE_FLAGS)
            print(f"cutover rules set: give at least one threshold ({flags} or --auto-rollback)")
            return 2
        try:
            await rollback.set_group_rules(client, args.group, overrides)
        except ValueError as exc:
            flag = {name: flag for flag, name, _, _ in RULE_FLAGS}
            field, _, why = str(exc).partition(": ")
            print(f"cutover rules set: {flag.get(field, '--' + field.replace('_', '-'))}: {why}")
            return 2
    elif args.action == "clear" and not await rollback.clear_group_rules(client, args.group):
        print(f"cutover rules clear: group {args.group!r} has no rules of its own")
        return 2
    rules = await rollback.group_rules(client)
    if args.format == "json":
        print(orjson.dumps(rules, option=orjson.OPT_INDENT_2).decode())
    else:
        for group, overrides in sorted(rules.items()):
            print(f"{group:<20} " + " ".join(f"{k}={v}" for k, v in sorted(overrides.items())))
    return 0


def actor() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


async def run(args: argparse.Namespace, client: redis.Redis) -> int:
    if args.command == "rules":
        return await run_rules(args, client)
    if args.command == "switch":
        selection = routing.Selection(
            tuple(args.station), args.group, args.glob, args.model, args.firmware, args.percent, args.all
        )
        if selection == routing.Selection():
            print("cutover switch: name what to move: --station, --group, --glob, --model, --percent or --all")
            return 2
        stations = await routing.select(client, selection)
        results = await routing.switch(
            client, stations, args.to, force=args.force, reason=args.reason, actor=actor(), dry_run=args.dry_run
        )
        for result in results:
            forced = " (forced: a transaction was running)" if result.forced else ""
            print(f"{result.station:<24} {result.previous} → {result.target}: {result.outcome}{forced}")
        counts = {o: sum(1 for r in results if r.outcome == o) for o in ("switched", "pending", "unchanged")}
        print(("dry run: " if args.dry_run else "") + ", ".join(f"{n} {o}" for o, n in counts.items()))
        return 0
    if args.command == "enroll":
        await routing.enroll(client, args.stations, args.shadow == "on", actor())
        print(f"shadow {args.shadow} for {', '.join(args.stations)}")
        return 0
    if args.command == "status":
        rows = await routing.status(client)
        if args.format == "json":
            print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
            return 0
        print(f"{'station':<24} {'mode':<8} {'pending':<8} {'connected':<9} {'tx':>3}  protocol   model")
        for row in rows:
            print(f"{row['station']:<24} {row['mode']:<8} {row['pending'] or '-':<8} "
                  f"{'yes' if row['connected'] else 'no':<9} {row['active_transactions']:>3}  "
                  f"{row['protocol'] or '-':<10} {row['model'] or '-'}")  # fmt: skip
        return 0
    if args.command == "audit":
        entries = await routing.audit_entries(client, args.limit, args.station)
        if args.format == "json":
            print(orjson.dumps(entries, option=orjson.OPT_INDENT_2).decode())
            return 0
        for entry in entries:
            when = datetime.fromtimestamp(entry["at"]).isoformat(timespec="seconds")
            print(f"{when}  {entry['station']:<24} {entry['from']} → {entry['to']}  {entry['outcome']:<11} "
                  f"{'forced ' if entry['forced'] else ''}by {entry['by']}  {entry['reason']}")  # fmt: skip
        return 0
    key = routing.group_key(args.name)
    if args.action == "add":
        await client.sadd(key, *args.stations)
    elif args.action == "remove":
        await client.srem(key, *args.stations)
    members: Any = await client.smembers(key)
    print(" ".join(sorted(routing.text(m) for m in members)))
    return 0


def main(args: argparse.Namespace, values: dict[str, Any]) -> int:
    if values["redis_url"] is None:
        raise config.ConfigError("--redis-url (CUTOVER_REDIS_URL) is required: the Redis the proxies share")

    async def with_client() -> int:
        client = redis_client.connect(values["redis_url"])
        try:
            return await run(args, client)
        finally:
            await client.aclose()

    return asyncio.run(with_client())
