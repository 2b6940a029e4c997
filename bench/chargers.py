"""Chargers for the soak, storm and idle scenarios: raw-websocket 2.0.1 chargers like `bench/load.py`'s, each
from a loopback source address of its own, booting and then charging at a paced rate instead of a closed loop.

Each charger has its own source address (127.1.x.y) because a fleet reaches the proxy from many addresses: from
one, a storm would mostly measure the proxy's per-address admission limit (200 at once, then 50/s).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection, connect

from bench.frames import boot_calls, session_calls
from bench.load import CHARGER_ANSWER_BYTES

Frame = tuple[bytes, bytes]
BOOT = boot_calls()


def source_address(index: int) -> str:
    """A distinct loopback address for charger `index` (Linux routes all of 127.0.0.0/8 to lo)."""
    return f"127.{1 + index // 62_500}.{1 + index // 250 % 250}.{1 + index % 250}"


@dataclass
class Tally:
    """What a fleet of chargers saw."""

    calls: int = 0
    call_errors: int = 0
    sessions: int = 0
    connects: int = 0
    clean_closes: int = 0
    aborted_mid_session: int = 0  # sockets dropped with a CALL in flight (the CALL is sent again after reconnect)
    unexpected_closes: int = 0  # connections the far side closed, or that failed to open
    latencies_ns: array[int] = field(default_factory=lambda: array("q"))
    error_samples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ns)

        def percentile(fraction: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e6, 3)

        return {
            "calls": self.calls,
            "call_errors": self.call_errors,
            "sessions": self.sessions,
            "connects": self.connects,
            "clean_closes": self.clean_closes,
            "aborted_mid_session": self.aborted_mid_session,
            "unexpected_closes": self.unexpected_closes,
            "latency_ms": {"p50": percentile(0.5), "p99": percentile(0.99), "max": percentile(1.0)},
            "error_samples": self.error_samples,
        }


class Charger:
    """One 2.0.1 charger with its own source address; CALLs one at a time, the proxy's CALLs answered."""

    def __init__(self, base_url: str, station_id: str, index: int, tls: ssl.SSLContext | None = None) -> None:
        self.url = f"{base_url}/ocpp/{station_id}"
        self.station_id = station_id
        self.index = index
        self.tls = tls
        self.connection: ClientConnection | None = None
        self._message_ids = 0

    async def connect(self, tally: Tally | None = None) -> None:
        self.connection = await connect(
            self.url, subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            compression=None, ping_interval=None, open_timeout=120, ssl=self.tls,
            local_addr=(source_address(self.index), 0),
        )  # fmt: skip
        if tally is not None:
            tally.connects += 1

    async def call(self, frame: Frame, tally: Tally) -> None:
        """Send one CALL and wait for its answer (answering what the far side asks meanwhile)."""
        connection = self.connection
        assert connection is not None
        self._message_ids += 1
        wanted = str(self._message_ids)
        sent = time.perf_counter_ns()
        await connection.send(frame[0] + wanted.encode() + frame[1], text=True)
        while True:
            answer = orjson.loads(await connection.recv())
            if answer[0] == 2:
                payload = CHARGER_ANSWER_BYTES.get(str(answer[2]), b"{}")
                await connection.send(b'[3,"' + str(answer[1]).encode() + b'",' + payload + b"]", text=True)
            elif answer[1] == wanted:
                break
        tally.latencies_ns.append(time.perf_counter_ns() - sent)
        tally.calls += 1
        if answer[0] == 4:
            tally.call_errors += 1
            if len(tally.error_samples) < 5:
                tally.error_samples.append(orjson.dumps(answer).decode()[:300])

    async def boot(self, tally: Tally) -> None:
        """BootNotification and StatusNotification Available, answered."""
        for frame in BOOT:
            await self.call(frame, tally)

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake, as a charger losing power or signal does."""
        if self.connection is not None:
            self.connection.transport.abort()
            self.connection = None

    async def close(self) -> None:
        if self.connection is not None:
            connection, self.connection = self.connection, None
            await connection.close()


@dataclass
class Pace:
    """How a soak charger behaves: a session every `period` seconds (staggered across the fleet), `gap`
    seconds between its CALLs; after `reconnect_every` sessions it reconnects. Its first connection, and every
    `abort_every`-th after it (0: none), ends with the socket dropped while a CALL is in flight, so that the
    first such wave falls in the soak's warm-up: it raises the proxy's RSS high-water mark once (by ~17 KiB
    per charger, measured), the later waves do not."""

    period: float = 60.0
    gap: float = 1.0
    reconnect_every: int = 2
    abort_every: int = 2


async def soak_charger(charger: Charger, pace: Pace, offset: float, until: float, tally: Tally) -> None:
    """Run one charger until `until` (loop time): connect and boot at once (the whole fleet together, as after a
    proxy restart), then a session every period, the first `offset` seconds after the start."""
    loop = asyncio.get_running_loop()
    next_session = loop.time() + offset - pace.period
    session = 0
    connections = 0
    resume: list[Frame] = []  # the rest of a session interrupted by an abort, sent again first
    # A charger that dropped mid-CALL comes back to send it again, even when the run is over.
    while loop.time() < until or (resume and loop.time() < until + 30):
        try:
            await charger.connect(tally)
            connections += 1
            await charger.boot(tally)
            if resume:
                for frame in resume:
                    await charger.call(frame, tally)
                    await asyncio.sleep(pace.gap)
                resume = []
                tally.sessions += 1
            abort_this_time = pace.abort_every > 0 and (connections - 1) % pace.abort_every == 0
            for in_this_connection in range(pace.reconnect_every):
                next_session += pace.period
                await asyncio.sleep(max(0.0, next_session - loop.time()))
                if loop.time() >= until:
                    break
                session += 1
                frames = session_calls(f"{charger.station_id}-{session}")
                last = in_this_connection == pace.reconnect_every - 1
                resume = await run_session(
                    charger, frames, pace.gap, tally, len(frames) // 2 if last and abort_this_time else None
                )
                if resume:
                    break
            if not resume:
                await charger.close()
                tally.clean_closes += 1
        except (websockets.ConnectionClosed, OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            tally.unexpected_closes += 1
            if len(tally.error_samples) < 5:
                tally.error_samples.append(f"{charger.station_id}: {exc!r}"[:300])
            charger.abort()
            await asyncio.sleep(1.0)
    await charger.close()


async def run_session(
    charger: Charger, frames: list[Frame], gap: float, tally: Tally, abort_at: int | None
) -> list[Frame]:
    """One session's CALLs; with `abort_at`, the socket is dropped right after sending that CALL, and the
    CALLs still to send (that one first: it was never answered) are returned."""
    for position, frame in enumerate(frames):
        if position == abort_at:
            assert charger.connection is not None
            await charger.connection.send(frame[0] + b"aborted" + frame[1], text=True)
            charger.abort()
            tally.aborted_mid_session += 1
            return frames[position:]
        await charger.call(frame, tally)
        await asyncio.sleep(gap)
    tally.sessions += 1
    return []
