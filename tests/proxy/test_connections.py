"""The hot path's WebSocket connections (`proxy.connections`) and the writes of one event-loop pass
(`proxy.writes`), on real websockets servers and clients over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import websockets.frames
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.utils import apply_mask

from proxy import connections
from proxy.connections import EARLY_MESSAGES, ChargerConnection, UpstreamConnection
from proxy.writes import WRITES, PassWrites

pytestmark = pytest.mark.timeout(90)

DEADLINE = 20.0  # seconds: generous, the machine is shared with benchmark runs


async def until(predicate: Callable[[], object], seconds: float = DEADLINE) -> None:
    """Wait until `predicate()` holds, polling; fails the test past `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {predicate}")
        await asyncio.sleep(0.01)


async def processed(peer: ClientConnection | ServerConnection) -> None:
    """Returns once the other side has handled everything `peer` sent before (a ping's pong comes back after)."""
    pong = await peer.ping()
    await asyncio.wait_for(pong, DEADLINE)


@contextlib.asynccontextmanager
async def charger_server(**options: Any) -> AsyncIterator[tuple[str, asyncio.Queue[ChargerConnection]]]:
    """A websockets server whose connections are `ChargerConnection`s, handed out unattached; no compression,
    as the proxy serves chargers (a compressed frame would hide how many bytes reach the socket)."""
    options.setdefault("compression", None)
    accepted: asyncio.Queue[ChargerConnection] = asyncio.Queue()

    async def handler(connection: ServerConnection) -> None:
        assert isinstance(connection, ChargerConnection)
        accepted.put_nowait(connection)
        await connection.wait_closed()

    async with serve(handler, "127.0.0.1", 0, create_connection=ChargerConnection, **options) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ocpp/CP1", accepted


@contextlib.asynccontextmanager
async def charger_and_proxy(**options: Any) -> AsyncIterator[tuple[ClientConnection, ChargerConnection]]:
    """A plain websockets client (the charger) and the proxy's side of its connection."""
    options.setdefault("compression", None)
    async with charger_server(**options) as (url, accepted), connect(url, **options) as client:
        yield client, await asyncio.wait_for(accepted.get(), DEADLINE)


# -- messages in ----------------------------------------------------------------------------------


async def test_whole_messages_arrive_in_order_as_bytes_text_and_binary() -> None:
    async with charger_and_proxy() as (client, charger):
        received: list[bytes] = []
        charger.attach(received.append)
        await client.send('[2,"1","Heartbeat",{}]')
        await client.send(b"\x00\x01binary\xff")
        await client.send("héllo ⚡")
        await until(lambda: len(received) == 3)
        assert received == [b'[2,"1","Heartbeat",{}]', b"\x00\x01binary\xff", "héllo ⚡".encode()]
        assert all(type(message) is bytes for message in received)
        await processed(client)
        assert len(received) == 3  # each delivered once


async def test_upstream_connection_delivers_what_the_csms_sends() -> None:
    async def csms(connection: ServerConnection) -> None:
        for index in range(5):
            await connection.send(f'[2,"{index}","Reset",{{}}]')
        await connection.send(b"last")
        await connection.wait_closed()

    async with serve(csms, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/legacy", create_connection=UpstreamConnection) as upstream:
            assert isinstance(upstream, UpstreamConnection)
            received: list[bytes] = []
            upstream.attach(received.append)
            await until(lambda: len(received) == 6)
            assert received == [f'[2,"{index}","Reset",{{}}]'.encode() for index in range(5)] + [b"last"]


async def test_a_fragmented_message_is_delivered_once_and_joined() -> None:
    async with charger_and_proxy() as (client, charger):
        received: list[bytes] = []
        charger.attach(received.append)
        await client.send('[2,"1","Heartbeat",{}]')
        await client.send(['[2,"2",', '"BootNotification",', "{}]"])
        await client.send([b"\x01\x02", b"", b"\x03"])
        await client.send("after")
        await until(lambda: len(received) == 4)
        assert received == [
            b'[2,"1","Heartbeat",{}]',
            b'[2,"2","BootNotification",{}]',
            b"\x01\x02\x03",
            b"after",
        ]
        await processed(client)
        assert len(received) == 4


async def test_a_ping_between_fragments_leaves_the_message_whole() -> None:
    async with charger_and_proxy() as (client, charger):
        received: list[bytes] = []
        charger.attach(received.append)

        async def fragments_with_a_ping() -> AsyncIterator[str]:
            yield '[2,"7",'
            await processed(client)  # a ping and its pong while the message is half sent
            assert received == []
            yield '"Heartbeat",{}]'

        await client.send(fragments_with_a_ping())
        await until(lambda: len(received) == 1)
        assert received == [b'[2,"7","Heartbeat",{}]']


async def test_messages_before_attach_come_first_in_order() -> None:
    async with charger_and_proxy() as (client, charger):
        for index in range(3):
            await client.send(f"early {index}")
        await processed(client)  # the proxy side has read them, with nothing attached
        received: list[bytes] = []
        charger.attach(received.append)
        assert received == [b"early 0", b"early 1", b"early 2"]  # delivered by attach() itself
        await client.send("late 0")
        await client.send("late 1")
        await until(lambda: len(received) == 5)
        assert received == [b"early 0", b"early 1", b"early 2", b"late 0", b"late 1"]


async def test_more_early_messages_than_held_pause_reading_and_all_arrive_on_attach() -> None:
    count = EARLY_MESSAGES * 4
    async with charger_and_proxy() as (client, charger):
        for index in range(count):
            await client.send(f"message {index}")
        await until(lambda: not charger.transport.is_reading())  # held messages stop the reading
        received: list[bytes] = []
        charger.attach(received.append)
        assert charger.transport.is_reading()
        await until(lambda: len(received) == count)
        assert received == [f"message {index}".encode() for index in range(count)]
        await client.send("after attach")
        await until(lambda: len(received) == count + 1)
        assert received[-1] == b"after attach"


async def test_a_connection_closed_before_attach_with_reading_paused_closes_at_once() -> None:
    # A session refusing a charger (legacy unreachable, state unavailable) closes it without ever attaching:
    # the charger's close frame must not wait behind the reading paused by what it had sent meanwhile.
    async with charger_and_proxy(close_timeout=5) as (client, charger):
        for index in range(4 * EARLY_MESSAGES):
            await client.send(f"m{index}")
        await until(lambda: not charger.transport.is_reading())
        started = asyncio.get_running_loop().time()
        await charger.close(1011, "legacy CSMS unreachable")
        await client.wait_closed()
        assert asyncio.get_running_loop().time() - started < 2.5  # not the close timeout
        assert (charger.close_code, client.close_code) == (1011, 1011)


async def test_after_detach_messages_are_dropped_and_the_connection_still_sends() -> None:
    async with charger_and_proxy() as (client, charger):
        received: list[bytes] = []
        charger.attach(received.append)
        await client.send("before")
        await until(lambda: received == [b"before"])
        charger.detach()
        await client.send("after 1")
        await client.send(["after", " 2"])
        await processed(client)
        assert received == [b"before"]
        assert charger.send_now(b"still open")
        assert await asyncio.wait_for(client.recv(), DEADLINE) == "still open"


# -- messages out ---------------------------------------------------------------------------------


async def test_send_now_writes_text_messages_in_order_at_the_end_of_the_pass() -> None:
    async with charger_and_proxy() as (client, charger):
        assert all(charger.send_now(f'[3,"{index}",{{}}]'.encode()) for index in range(20))
        for index in range(20):
            message = await asyncio.wait_for(client.recv(), DEADLINE)
            assert message == f'[3,"{index}",{{}}]'  # a str: sent as a text frame


async def test_send_now_on_a_closed_connection_returns_false() -> None:
    async with charger_and_proxy() as (client, charger):
        assert charger.send_now(b"open")
        assert await asyncio.wait_for(client.recv(), DEADLINE) == "open"
        await client.close()
        await asyncio.wait_for(charger.wait_closed(), DEADLINE)
        assert charger.protocol.state is State.CLOSED
        assert charger.send_now(b"too late") is False


async def test_send_now_on_a_closed_upstream_connection_returns_false() -> None:
    async def csms(connection: ServerConnection) -> None:
        await connection.close(1000, "done")

    async with serve(csms, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/legacy", create_connection=UpstreamConnection) as upstream:
            assert isinstance(upstream, UpstreamConnection)
            await asyncio.wait_for(upstream.wait_closed(), DEADLINE)
            assert upstream.send_now(b"too late") is False


# -- websockets' own frames ----------------------------------------------------------------------


async def test_pings_pongs_and_the_close_handshake_work_on_a_charger_connection() -> None:
    async with charger_and_proxy() as (client, charger):
        charger.attach(lambda message: None)
        await processed(client)  # the proxy side answers a ping
        await processed(charger)  # the proxy side's ping is answered
        await charger.close(4001, "proxy going away")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(client.recv(), DEADLINE)
        assert client.close_code == 4001
        assert client.close_reason == "proxy going away"
        assert charger.close_code == 4001  # the client echoed it: the handshake completed


async def test_the_close_code_and_reason_of_the_charger_reach_the_proxy_side() -> None:
    async with charger_and_proxy() as (client, charger):
        charger.attach(lambda message: None)
        await client.close(4002, "charger rebooting")
        await asyncio.wait_for(charger.wait_closed(), DEADLINE)
        assert charger.close_code == 4002
        assert charger.close_reason == "charger rebooting"


async def test_pings_pongs_and_the_close_handshake_work_on_an_upstream_connection() -> None:
    accepted: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def csms(connection: ServerConnection) -> None:
        accepted.put_nowait(connection)
        await connection.wait_closed()

    async with serve(csms, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/legacy", create_connection=UpstreamConnection) as upstream:
            assert isinstance(upstream, UpstreamConnection)
            csms_side = await asyncio.wait_for(accepted.get(), DEADLINE)
            upstream.attach(lambda message: None)
            await processed(upstream)
            await processed(csms_side)
            await csms_side.close(1001, "csms restarting")
            await asyncio.wait_for(upstream.wait_closed(), DEADLINE)
            assert upstream.close_code == 1001
            assert upstream.close_reason == "csms restarting"


# -- a peer that stops reading -------------------------------------------------------------------


async def test_a_peer_that_stops_reading_is_cut_off_past_the_write_buffer_limit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(connections, "WRITE_BUFFER_LIMIT", 64 * 1024)
    caplog.set_level(logging.WARNING, logger="cutover.proxy")
    chunk = b"x" * (128 * 1024)
    async with charger_and_proxy(ping_interval=None, max_size=None) as (client, charger):
        client.transport.pause_reading()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        sent = 0
        while charger.send_now(chunk):  # the kernel's socket buffers fill first, then the transport's
            sent += len(chunk)
            assert loop.time() < deadline and sent < 256 * 1024 * 1024, f"still open after {sent} bytes unread"
            await asyncio.sleep(0)
        await asyncio.wait_for(charger.wait_closed(), DEADLINE)
        assert charger.protocol.state is State.CLOSED
        assert any("peer_not_reading" in record.getMessage() for record in caplog.records)
        client.transport.resume_reading()
        with pytest.raises(ConnectionClosed):  # what was written before arrives, then the cut
            while True:
                await asyncio.wait_for(client.recv(), DEADLINE)
        assert client.close_code == 1006  # no close frame: aborted


async def test_a_peer_that_reads_is_not_cut_off_by_the_write_buffer_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "WRITE_BUFFER_LIMIT", 64 * 1024)
    chunk = b"y" * (48 * 1024)
    async with charger_and_proxy(ping_interval=None) as (client, charger):
        for _ in range(50):
            assert charger.send_now(chunk)
            assert await asyncio.wait_for(client.recv(), DEADLINE) == chunk.decode()
        assert charger.protocol.state is State.OPEN


# -- the writes of one pass ---------------------------------------------------------------------


class RecordingWriter:
    def __init__(self, name: str, calls: list[str], writes: PassWrites | None = None) -> None:
        self.name = name
        self.calls = calls
        self.writes = writes

    def write_frames(self) -> None:
        if self.writes is not None:  # as a connection does before writing: flushes handed over go first
            self.writes.flush_first()
        self.calls.append(self.name)


async def next_pass() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_flush_handed_over_after_a_frame_was_queued_still_runs_first() -> None:
    writes, calls = PassWrites(), list[str]()
    writes.frames(RecordingWriter("frames A", calls))
    writes.first(lambda: calls.append("state 1"))
    writes.frames(RecordingWriter("frames B", calls))
    writes.first(lambda: calls.append("state 2"))
    assert calls == []  # nothing before the end of the pass
    await next_pass()
    assert calls == ["state 1", "state 2", "frames A", "frames B"]


async def test_each_flush_and_each_writer_runs_once_per_pass() -> None:
    writes, calls = PassWrites(), list[str]()

    def flush() -> None:
        calls.append("state")

    writer = RecordingWriter("frames", calls)
    for _ in range(3):
        writes.first(flush)
        writes.frames(writer)
    await next_pass()
    assert calls == ["state", "frames"]
    writes.frames(writer)
    writes.first(flush)
    await next_pass()
    assert calls == ["state", "frames", "state", "frames"]


async def test_a_flush_handed_over_while_frames_are_written_runs_before_the_next_writer_writes() -> None:
    writes, calls = PassWrites(), list[str]()

    class HandsOverState:
        def write_frames(self) -> None:
            calls.append("frames A")
            writes.first(lambda: calls.append("state from A"))

    writes.frames(HandsOverState())
    writes.frames(RecordingWriter("frames B", calls, writes))
    await next_pass()
    assert calls == ["frames A", "state from A", "frames B"]


async def test_flush_first_runs_the_flushes_handed_over_so_far_and_only_once() -> None:
    writes, calls = PassWrites(), list[str]()
    writes.first(lambda: calls.append("state 1"))
    writes.first(lambda: writes.first(lambda: calls.append("state 2")))  # a flush that hands over another
    writes.flush_first()
    assert calls == ["state 1", "state 2"]
    await next_pass()
    assert calls == ["state 1", "state 2"]


def test_a_loop_closed_mid_pass_does_not_wedge_the_next_loop() -> None:
    writes, calls = PassWrites(), list[str]()

    async def hand_over_and_stop() -> None:
        writes.first(lambda: calls.append("old loop's state"))
        writes.frames(RecordingWriter("old loop's frames", calls))
        asyncio.get_running_loop().stop()  # the pass's end never comes on this loop

    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(hand_over_and_stop())
    finally:
        first.close()
    assert calls == []

    async def hand_over_and_wait() -> None:
        writes.first(lambda: calls.append("new loop's state"))
        await next_pass()

    second = asyncio.new_event_loop()
    try:
        second.run_until_complete(hand_over_and_wait())
    finally:
        second.close()
    assert calls == ["old loop's state", "new loop's state", "old loop's frames"]


async def test_a_state_handed_over_after_send_now_reaches_its_socket_before_the_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with charger_and_proxy() as (client, charger):
        order: list[str] = []
        write = charger.transport.write

        def recording_write(data: bytes) -> None:
            order.append("frame")
            write(data)

        monkeypatch.setattr(charger.transport, "write", recording_write)
        assert charger.send_now(b'[3,"1",{}]')
        WRITES.first(lambda: order.append("state"))  # handed over after the frame was queued, same pass
        assert order == []
        assert await asyncio.wait_for(client.recv(), DEADLINE) == '[3,"1",{}]'
        assert order == ["state", "frame"]


def record_writes(monkeypatch: pytest.MonkeyPatch, connection: ChargerConnection, order: list[str]) -> None:
    """Every write to the connection's socket appends "frame" to `order`."""
    write = connection.transport.write

    def recording_write(data: bytes) -> None:
        order.append("frame")
        write(data)

    monkeypatch.setattr(connection.transport, "write", recording_write)


async def test_a_state_handed_over_by_an_earlier_writer_of_the_pass_goes_before_the_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with charger_and_proxy() as (client, charger):
        order: list[str] = []
        record_writes(monkeypatch, charger, order)

        class HandsOverState:  # another station's connection, written first in this pass, persisting a state
            def write_frames(self) -> None:
                WRITES.first(lambda: order.append("state"))

        WRITES.frames(HandsOverState())
        assert charger.send_now(b'[3,"2",{}]')
        assert await asyncio.wait_for(client.recv(), DEADLINE) == '[3,"2",{}]'
        assert order == ["state", "frame"]


async def test_websockets_own_frames_leave_after_a_state_handed_over_before(monkeypatch: pytest.MonkeyPatch) -> None:
    async with charger_and_proxy() as (client, charger):
        charger.attach(lambda message: None)
        order: list[str] = []
        record_writes(monkeypatch, charger, order)
        WRITES.first(lambda: order.append("state before the ping"))
        pong = await charger.ping()
        await asyncio.wait_for(pong, DEADLINE)
        assert order[:2] == ["state before the ping", "frame"]
        order.clear()
        WRITES.first(lambda: order.append("state before the close"))
        await charger.close(1001, "proxy stopping")
        assert order[:2] == ["state before the close", "frame"]
        assert client.close_code == 1001


async def test_a_failing_write_of_the_pass_keeps_the_others_going(caplog: pytest.LogCaptureFixture) -> None:
    done: list[str] = []

    class Writer:
        def __init__(self, name: str, fails: bool = False) -> None:
            self.name, self.fails = name, fails

        def write_frames(self) -> None:
            if self.fails:
                raise RuntimeError("a bug")
            done.append(self.name)

    def broken_flush() -> None:
        raise RuntimeError("a bug in a flush")

    WRITES.first(broken_flush)
    WRITES.first(lambda: done.append("state"))
    for writer in (Writer("a"), Writer("b", fails=True), Writer("c")):
        WRITES.frames(writer)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert done == ["state", "a", "c"]
    assert sum("pass_write_failed" in record.message for record in caplog.records) == 2


# -- the upstream leg's masking keys ------------------------------------------------------------


def test_masking_keys_come_from_the_kernel_in_pooled_reads_and_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    real_urandom = os.urandom

    def counting_urandom(n: int) -> bytes:
        reads.append(n)
        return real_urandom(n)

    monkeypatch.setattr(connections.os, "urandom", counting_urandom)
    entropy = connections.MaskEntropy()
    monkeypatch.setattr(websockets.frames, "secrets", entropy)
    payload = b'[2,"1","Heartbeat",{}]'
    frame = websockets.frames.Frame(websockets.frames.Opcode.TEXT, payload)
    count = 3 * connections.MaskEntropy.POOL // 4
    serialized = [frame.serialize(mask=True, extensions=[]) for _ in range(count)]
    assert reads == [connections.MaskEntropy.POOL] * 3  # one read per 1,024 frames, not one per frame
    masks = [data[2:6] for data in serialized]  # RFC 6455 §5.2: 2 header bytes, then the masking key
    assert len(set(masks)) > count - 5  # 32-bit keys from the kernel: a repeat or two at most by chance
    assert all(apply_mask(data[6:], data[2:6]) == payload for data in serialized)


def test_the_websockets_frames_module_masks_with_the_pooled_entropy() -> None:
    assert isinstance(websockets.frames.secrets, connections.MaskEntropy)
