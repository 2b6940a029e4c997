"""A charger that stops answering WebSocket pings is cut off, and the tee tells the shadow's lint."""

from __future__ import annotations

import asyncio
import base64
import os

import redis.asyncio as redis

from peers.legacy_csms import LegacyCsms
from proxy.app import start_proxy
from proxy.server import MISSED_PONG_EVENT
from shadow.processor import ReferenceBackend, ShardProcessor
from shadow.reference_csms import ReferenceCsms
from shadow.streams import read_envelopes
from tests.conftest import settings_for


async def silent_charger(port: int, station: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw WebSocket client that completes the handshake and then never answers anything."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /ocpp/{station} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp2.0.1\r\n\r\n".encode()
    )
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 101")
    return reader, writer


async def test_missed_pongs_close_the_charger_and_reach_the_lint(
    legacy: LegacyCsms, redis_url: str, redis_client: redis.Redis
) -> None:
    settings = settings_for(legacy)
    settings.ping_interval = settings.ping_timeout = 0.2
    running = await start_proxy(settings, redis_url, None)
    try:
        reader, writer = await silent_charger(running.proxy.port, "MUTE01")
        await asyncio.wait_for(reader.read(), 10)  # read until the proxy closes the connection
        writer.close()
        await asyncio.sleep(0.1)
        await running.tee.flush()
    finally:
        await running.stop()
    envelopes = await read_envelopes(redis_client, "MUTE01")
    (event,) = [e for e in envelopes if e["dir"] == "event"]
    assert event["frame"] == MISSED_PONG_EVENT and event["leg"] == "charger"
    step = await ShardProcessor(ReferenceBackend(ReferenceCsms(set()))).process("1-0", event)
    assert [v.rule for v in step.violations] == ["missed_pong"] and step.acks == ["1-0"]


async def test_slow_and_oversized_handshakes_are_cut_off(
    legacy: LegacyCsms, redis_url: str, redis_client: redis.Redis
) -> None:
    settings = settings_for(legacy)
    settings.handshake_timeout = 0.5
    running = await start_proxy(settings, redis_url, None)
    try:
        # slowloris: a request line, then nothing: closed after the handshake timeout
        reader, writer = await asyncio.open_connection("127.0.0.1", running.proxy.port)
        writer.write(b"GET /ocpp/SLOW01 HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(reader.read(), 5)
        assert asyncio.get_running_loop().time() - started < 3
        writer.close()
        # a header far over the size limit: refused, never upgraded
        reader, writer = await asyncio.open_connection("127.0.0.1", running.proxy.port)
        writer.write(b"GET /ocpp/BIG01 HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 20_000 + b"\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        assert not answer.startswith(b"HTTP/1.1 101")
        writer.close()
    finally:
        await running.stop()
    assert "SLOW01" not in running.proxy.sessions and "BIG01" not in running.proxy.sessions
