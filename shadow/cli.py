"""`cutover shadow` (run workers) and `cutover divergences` (query what they found)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from datetime import datetime
from typing import Any

import orjson

from proxy import config, redis_batch, redis_client

log = logging.getLogger("cutover.shadow")


def since_value(text: str) -> float:
    """An ISO 8601 time, or a duration back from now: 90s, 15m, 2h, 1d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * units[text[-1]]
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError("must be an ISO 8601 time or a duration like 15m, 2h, 1d") from None


def token_list(text: str) -> set[str]:
    return {token.strip() for token in text.split(",") if token.strip()}


def add_commands(commands: Any) -> None:
    shadow = commands.add_parser("shadow", help="run shadow workers comparing a 2.0.1 backend with the legacy")
    config.add(shadow, "--redis-url", config.redis_url, None, "the proxies' Redis (required)")
    config.add(shadow, "--tokens", token_list, set(), "id tokens the shadow backend accepts, comma-separated")
    config.add(shadow, "--tokens-redis-set", str, None, "a Redis set of accepted id tokens (read every 10 s)")
    config.add(shadow, "--boot-policy", config.choice("accept", "pending", "reject"), "accept", "shadow boot answer")
    config.add(shadow, "--heartbeat-interval", config.positive_int, 300, "interval the shadow gives at boot")
    config.add(
        shadow, "--shadow-url", config.ws_url, None,
        "replay to this external 2.0.1 CSMS instead of the built-in one: a ws:// or wss:// URL with {station}, "
        "else the station id is appended as the last path segment",
    )  # fmt: skip
    config.add(
        shadow, "--shadow-url-stations", token_list, set(),
        "with --shadow-url: only these stations (shell patterns, comma-separated, e.g. KEBA-*) are replayed, "
        "the others go to the built-in backend",
    )  # fmt: skip
    config.add(
        shadow, "--rollback-divergence-rate", config.positive_float, 0.5,
        "roll a cut-over station back when more than this share of its comparisons diverge (1 turns it off)",
    )  # fmt: skip
    config.add(shadow, "--rollback-divergence-window", config.positive_int, 50, "comparisons the share is taken over")
    config.add(shadow, "--admin-listen", config.host_port, None, "HOST:PORT of the worker's /metrics")
    config.add(shadow, "--log-level", config.choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", "log level")

    divergences = commands.add_parser("divergences", help="list divergences the shadow workers recorded")
    config.add(divergences, "--redis-url", config.redis_url, None, "the proxies' Redis (required)")
    config.add(divergences, "--station", str, None, "only this station")
    config.add(divergences, "--action", str, None, "only this action (Transaction: reconciliations)")
    config.add(divergences, "--kind", str, None, "only this kind (status_mismatch, value_mismatch, ...)")
    config.add(divergences, "--since", since_value, None, "only since: ISO 8601 time or 15m, 2h, 1d")
    config.add(divergences, "--limit", config.positive_int, 50, "at most this many, newest first")
    divergences.add_argument("--format", choices=("text", "json"), default="text")


async def run_shadow(values: dict[str, Any]) -> int:
    from proxy.admin import AdminServer
    from shadow.processor import ReferenceBackend, RoutedBackend, ShadowBackend
    from shadow.reference_csms import ReferenceCsms
    from shadow.replay import ReplayBackend, log_exchange, redis_device_models
    from shadow.worker import ShadowWorker

    client = redis_client.connect(values["redis_url"])
    tokens: set[str] = set(values["tokens"])

    async def refresh_tokens() -> None:
        while True:
            try:
                members: Any = await client.smembers(values["tokens_redis_set"])
                tokens.clear()
                tokens.update(member.decode() for member in members)
            except redis_client.UNAVAILABLE as exc:
                log.warning("shadow_tokens_refresh_failed key=%s error=%r", values["tokens_redis_set"], exc)
            await asyncio.sleep(10)

    # One replay backend for every shard this worker owns: one connection per station to the external CSMS,
    # all closed at exit (a backend per shard would leave a lost shard's connections open).
    replay = None
    if values["shadow_url"] is not None:
        replay = ReplayBackend(values["shadow_url"], device_model=redis_device_models(client), record=log_exchange)

    def backend() -> ShadowBackend:
        reference = ReferenceBackend(
            ReferenceCsms(
                lambda: tokens, boot_policy=values["boot_policy"], heartbeat_interval=values["heartbeat_interval"]
            )
        )
        if replay is None:
            return reference
        if values["shadow_url_stations"]:
            return RoutedBackend(sorted(values["shadow_url_stations"]), replay, reference)
        return replay

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    background = [asyncio.create_task(refresh_tokens())] if values["tokens_redis_set"] else []
    admin = None
    if values["admin_listen"] is not None:
        host, port = values["admin_listen"]
        admin = AdminServer(host, port, lambda: {"role": "shadow"}, client)
        await admin.start()
    try:
        rule = None
        if values["rollback_divergence_rate"] < 1:
            rule = (values["rollback_divergence_rate"], values["rollback_divergence_window"])
        label = "reference" if replay is None else "replay"
        await ShadowWorker(client, backend, backend_label=label, divergence_rule=rule).run(stop)
    finally:
        if replay is not None:
            await replay.close()
        for task in background:
            task.cancel()
        if admin is not None:
            await admin.stop()
        await redis_batch.Masters.release(client)  # a Redis Cluster's: its masters' own connections
        await client.aclose()
    return 0


async def list_divergences(values: dict[str, Any], output_format: str) -> int:
    from shadow import records

    client = redis_client.connect(values["redis_url"])
    try:
        found, _ = await records.query(
            client,
            station=values["station"],
            action=values["action"],
            kind=values["kind"],
            since=values["since"],
            limit=values["limit"],
        )
    finally:
        await client.aclose()
    if output_format == "json":
        print(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
        return 0
    for record in found:
        when = datetime.fromtimestamp(record["at"]).isoformat(timespec="seconds")
        print(
            f"{when}  {record['station']:<20} {record['action']:<20} {record['kind']:<22} {record['path'] or '-':<28}"
            f" live={orjson.dumps(record['live']).decode()} shadow={orjson.dumps(record['shadow']).decode()}"
        )
    if not found:
        print("no divergences")
    return 0


def main(args: argparse.Namespace, values: dict[str, Any]) -> int:
    if values["redis_url"] is None:
        raise config.ConfigError("--redis-url (CUTOVER_REDIS_URL) is required: the Redis the proxies tee into")
    if args.command == "shadow":
        logging.basicConfig(level=values["log_level"], format="%(asctime)s %(levelname)s %(name)s %(message)s")
        return asyncio.run(run_shadow(values))
    return asyncio.run(list_divergences(values, args.format))
