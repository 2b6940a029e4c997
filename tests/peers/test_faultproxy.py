"""The loopback fault proxy between an echo server and its clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from peers.faultproxy import FaultProxy


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def roundtrip(port: int, data: bytes = b"ping", timeout: float = 2.0) -> bytes:  # noqa: ASYNC109
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(data)), timeout)
    finally:
        writer.close()


async def test_forwards_both_ways(echo_port: int) -> None:
    async with FaultProxy(echo_port) as proxy:
        assert await roundtrip(proxy.port) == b"ping"
        assert proxy.state == "pass"


async def test_blackhole_holds_bytes_until_healed(echo_port: int) -> None:
    async with FaultProxy(echo_port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"a")
        assert await asyncio.wait_for(reader.readexactly(1), 2) == b"a"
        proxy.blackhole()
        writer.write(b"b")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(1), 0.3)
        proxy.heal()
        assert await asyncio.wait_for(reader.readexactly(1), 2) == b"b"
        writer.close()


async def test_delay_delivers_later_in_order(echo_port: int) -> None:
    async with FaultProxy(echo_port) as proxy:
        proxy.delay(0.2)
        started = asyncio.get_running_loop().time()
        assert await roundtrip(proxy.port, b"abcdef") == b"abcdef"
        assert asyncio.get_running_loop().time() - started >= 0.4  # both directions


async def test_reset_aborts_open_and_new_connections(echo_port: int) -> None:
    async with FaultProxy(echo_port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"a")
        await asyncio.wait_for(reader.readexactly(1), 2)
        proxy.reset()
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 2)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await roundtrip(proxy.port)
        proxy.heal()
        assert await roundtrip(proxy.port) == b"ping"
