"""The load generator: raw-websocket 2.0.1 (or 1.6) chargers in a closed loop, one outstanding CALL each."""

from __future__ import annotations

import asyncio
import time
from array import array
from dataclasses import dataclass, field

import orjson
import websockets
from websockets.asyncio.client import ClientConnection, connect

from bench.frames import CHARGER_ANSWERS, boot_calls, boot_calls_16, session_calls, session_calls_16

CHARGER_ANSWER_BYTES = {action: orjson.dumps(payload) for action, payload in CHARGER_ANSWERS.items()}


@dataclass
class LoadResult:
    """What the chargers saw in one measured window."""

    calls: int = 0  # CALLs answered (by a CALLRESULT or a CALLERROR)
    call_errors: int = 0  # of which answered by a CALLERROR
    calls_from_server: int = 0  # CALLs the far side sent the chargers (the proxy's GetBaseReport)
    sessions: int = 0  # charging sessions completed (Authorize … Heartbeat)
    latencies_ns: array[int] = field(default_factory=lambda: array("q"))
    elapsed: float = 0.0
    error_samples: list[str] = field(default_factory=list)


WORKLOADS = {"2.0.1": (boot_calls, session_calls), "1.6": (boot_calls_16, session_calls_16)}


class Charger:
    """One charger (OCPP 2.0.1, or 1.6): connects idle, then runs boot and charging sessions until a deadline."""

    def __init__(self, base_url: str, station_id: str, protocol: str = "2.0.1") -> None:
        self.url = f"{base_url}/ocpp/{station_id}"
        self.station_id = station_id
        self.protocol = protocol
        self.connection: ClientConnection | None = None

    async def connect(self) -> None:
        self.connection = await connect(
            self.url, subprotocols=[f"ocpp{self.protocol}"],  # type: ignore[list-item]
            compression=None, ping_interval=None, open_timeout=30,
        )  # fmt: skip

    async def run(
        self, deadline: float, result: LoadResult, interval: float | None = None, first: float = 0.0
    ) -> None:
        """Send CALLs until `deadline` (perf_counter): back to back, or with `interval` one every `interval`
        seconds from `first` (open loop: a late answer delays nothing but its own CALL's next slot); the last
        one in flight is waited for."""
        connection = self.connection
        assert connection is not None
        message_id = 0
        boot, sessions = WORKLOADS[self.protocol]
        calls = boot()
        session = 0
        latencies = result.latencies_ns
        next_send = first
        while True:
            for prefix, suffix in calls:
                if interval is not None:
                    wait = next_send - time.perf_counter()
                    next_send = max(next_send + interval, time.perf_counter())
                    if wait > 0:
                        await asyncio.sleep(wait)
                if time.perf_counter() >= deadline:
                    return
                message_id += 1
                wanted = str(message_id)
                sent = time.perf_counter_ns()
                await connection.send(prefix + wanted.encode() + suffix, text=True)
                while True:
                    frame = orjson.loads(await connection.recv())
                    if frame[0] == 2:
                        await self._answer(connection, frame, result)
                        continue
                    if frame[1] == wanted:
                        break
                latencies.append(time.perf_counter_ns() - sent)
                result.calls += 1
                if frame[0] == 4:
                    result.call_errors += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(orjson.dumps(frame).decode()[:300])
            if session > 0:
                result.sessions += 1
            session += 1
            calls = sessions(f"{self.station_id}-{session}")

    @staticmethod
    async def _answer(connection: ClientConnection, frame: list[object], result: LoadResult) -> None:
        result.calls_from_server += 1
        payload = CHARGER_ANSWER_BYTES.get(str(frame[2]), b"{}")
        await connection.send(b'[3,"' + str(frame[1]).encode() + b'",' + payload + b"]", text=True)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()


async def connect_all(base_url: str, count: int, prefix: str, protocol: str = "2.0.1") -> list[Charger]:
    """`count` chargers connected (WebSocket open, nothing sent yet)."""
    chargers = [Charger(base_url, f"{prefix}{index:05d}", protocol) for index in range(count)]
    await asyncio.gather(*(charger.connect() for charger in chargers))
    return chargers


async def run_all(chargers: list[Charger], duration: float, calls_per_second: float | None = None) -> LoadResult:
    """Every charger in a closed loop for `duration` seconds, or together sending `calls_per_second` CALLs
    evenly spread (each charger its share, staggered); returns the chargers' combined view."""
    result = LoadResult()
    started = time.perf_counter()
    interval = len(chargers) / calls_per_second if calls_per_second else None
    outcomes = await asyncio.gather(
        *(
            charger.run(started + duration, result, interval, started + (interval or 0) * index / len(chargers))
            for index, charger in enumerate(chargers)
        ),
        return_exceptions=True,
    )
    result.elapsed = time.perf_counter() - started
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    if failures:
        closed = sum(isinstance(failure, websockets.ConnectionClosed) for failure in failures)
        raise RuntimeError(f"{len(failures)} of {len(chargers)} chargers failed ({closed} closed): {failures[0]!r}")
    return result


async def close_all(chargers: list[Charger]) -> None:
    await asyncio.gather(*(charger.close() for charger in chargers), return_exceptions=True)
