"""The benchmark's server processes, one role each: `python -m bench.servers stub|relay|proxy ...`.

Each prints one JSON line (`{"port": ...}`) once it listens, then serves until its stdin closes, so the
parent measures it as a process of its own (CPU time and RSS from /proc/<pid>). They run on uvloop, as
`cutover` does; `BENCH_LOOP=asyncio` in the environment puts the relays and the proxy (what is measured, not
the stub) on the standard library's event loop instead (`python -m bench --loop asyncio`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import orjson
import uvloop
import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from bench.frames import ANSWERS_16, ANSWERS_201

SUBPROTOCOLS = ["ocpp2.0.1", "ocpp1.6"]
MAX_FRAME_BYTES = 256 * 1024  # the proxy's own default


def _answer_16(action: str, transaction_ids: itertools.count[int]) -> bytes:
    if action == "StartTransaction":
        return orjson.dumps({"transactionId": next(transaction_ids), "idTagInfo": {"status": "Accepted"}})
    return ANSWER_BYTES_16.get(action, b"{}")


ANSWER_BYTES_16 = {action: orjson.dumps(payload) for action, payload in ANSWERS_16.items()}
ANSWER_BYTES_201 = {action: orjson.dumps(payload) for action, payload in ANSWERS_201.items()}


async def run_stub() -> None:
    """A fast CSMS: answers every CALL with a canned CALLRESULT in the version the connection speaks."""
    transaction_ids = itertools.count(1)

    async def handle(connection: ServerConnection) -> None:
        is_16 = connection.subprotocol == "ocpp1.6"
        try:
            async for raw in connection:
                frame = orjson.loads(raw)
                if frame[0] != 2:
                    continue  # a CALLRESULT to nothing we asked: ignore
                action = frame[2]
                payload = _answer_16(action, transaction_ids) if is_16 else ANSWER_BYTES_201.get(action, b"{}")
                await connection.send(b'[3,"' + frame[1].encode() + b'",' + payload + b"]", text=True)
        except websockets.ConnectionClosed:
            pass

    async with serve(
        handle, "127.0.0.1", 0, subprotocols=SUBPROTOCOLS, compression=None,  # type: ignore[arg-type]
        max_size=MAX_FRAME_BYTES, ping_interval=None,
    ) as server:  # fmt: skip
        await _serve_until_stdin_closes(server.sockets[0].getsockname()[1])


async def run_relay(upstream: str) -> None:
    """A bare relay: each charger connection gets its own upstream one; frames are copied, not parsed."""

    async def pump(source: Any, sink: Any) -> None:
        try:
            async for raw in source:
                await sink.send(raw)
        except websockets.ConnectionClosed:
            pass

    async def handle(charger: ServerConnection) -> None:
        path = charger.request.path if charger.request else "/"
        async with connect(
            upstream + path, subprotocols=[charger.subprotocol or "ocpp1.6"],  # type: ignore[list-item]
            compression=None, max_size=MAX_FRAME_BYTES, ping_interval=20, ping_timeout=20,
        ) as legacy:  # fmt: skip
            tasks = [asyncio.create_task(pump(charger, legacy)), asyncio.create_task(pump(legacy, charger))]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()

    async with serve(
        handle, "127.0.0.1", 0, subprotocols=SUBPROTOCOLS, compression=None,  # type: ignore[arg-type]
        max_size=MAX_FRAME_BYTES, ping_interval=20, ping_timeout=20,
    ) as server:  # fmt: skip
        await _serve_until_stdin_closes(server.sockets[0].getsockname()[1])


async def run_picows_relay(upstream: str) -> None:
    """The bare relay on picows (bench/picows_relay.py): the charger-side library choice, measured."""
    from bench import picows_relay

    server = await picows_relay.serve(upstream)
    async with server:
        await _serve_until_stdin_closes(server.sockets[0].getsockname()[1])


async def run_proxy(
    legacy_url: str, redis_url: str, admin_port: int, tls_dir: str | None = None, profile: int | None = None
) -> None:
    """The full proxy: translation, schema validation, state store and tee to Redis, admin /healthz on; with
    `tls_dir` (a `cutover certs` PKI) wss and security profile 3 (a client certificate per station), or `profile`."""
    from proxy.app import start_proxy
    from proxy.security import TlsFiles
    from proxy.server import ProxySettings

    settings = ProxySettings(
        listen_host="127.0.0.1", listen_port=0, legacy_url=legacy_url + "/ocpp/{station}", security_profile=0
    )
    if tls_dir is not None:
        pki = Path(tls_dir)
        settings.tls = TlsFiles(pki / "server.pem", pki / "server.key", pki / "ca.pem", pki / "crl.pem")
        settings.security_profile = 3
    if profile is not None:
        settings.security_profile = profile
    running = await start_proxy(settings, redis_url, admin_listen=("127.0.0.1", admin_port))
    try:
        await _serve_until_stdin_closes(running.proxy.port)
    finally:
        await running.stop()


async def _serve_until_stdin_closes(port: int) -> None:
    sys.stdout.write(orjson.dumps({"port": port}).decode() + "\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("role", choices=["stub", "relay", "relay-picows", "proxy"])
    parser.add_argument("--upstream", help="the stub's ws:// base URL (relay, proxy)")
    parser.add_argument("--redis", help="Redis URL (proxy)")
    parser.add_argument("--admin-port", type=int, help="admin /healthz port (proxy)")
    parser.add_argument("--tls-dir", help="a `cutover certs` PKI: wss with security profile 3 (proxy)")
    parser.add_argument("--security-profile", type=int, choices=range(4), help="instead of 0, or 3 with --tls-dir")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.role == "stub":
        uvloop.run(run_stub())
    elif args.role == "relay":
        measured(run_relay(args.upstream))
    elif args.role == "relay-picows":
        measured(run_picows_relay(args.upstream))
    else:
        measured(run_proxy(args.upstream, args.redis, args.admin_port, args.tls_dir, args.security_profile))


def measured(server: Coroutine[Any, Any, None]) -> None:
    """Run a measured server on the event loop BENCH_LOOP names (uvloop unless it says asyncio)."""
    loop = os.environ.get("BENCH_LOOP", "uvloop")
    if loop not in ("uvloop", "asyncio"):
        raise SystemExit(f"BENCH_LOOP={loop!r}: expected uvloop or asyncio")
    (uvloop.run if loop == "uvloop" else asyncio.run)(server)


if __name__ == "__main__":
    main()
