"""A fleet of simulated OCPP 2.0.1 stations charging in a loop, for the demo."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from typing import Any

from ocpp.exceptions import OCPPError

from peers._wire import Credentials
from peers.charger201 import Charger201

__all__ = ["run_fleet"]

# Short enough that a demo shows many sessions, long enough that a fault injected mid-session is visible.
PAUSE_SECONDS = (0.3, 1.5)
SAMPLES = (2, 4)
SAMPLE_INTERVAL_SECONDS = 0.25
WH_PER_SAMPLE = (300, 1500)
# Sessions in progress when the fleet is told to stop get this long to end cleanly.
STOP_GRACE_SECONDS = 10.0


async def run_fleet(
    csms_url: str,
    count: int,
    *,
    duration: float | None,
    prefix: str = "SIM201-",
    id_tokens: Sequence[str] = ("TAG0001", "TAG0002"),
    on_event: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    seed: int | None = None,
    credentials_for: Callable[[str], Credentials] | None = None,
) -> dict[str, Any]:
    """Run `count` auto-reconnecting stations until `duration` seconds pass or `stop` is set; summarise.

    Each station boots, reports its status, then charges in a loop with short random pauses, mixing
    authorize-first and plug-in-first sessions. Sessions in progress at the end are finished first.
    """
    stop = stop or asyncio.Event()
    rng = random.Random(seed)
    emit = on_event or (lambda _line: None)
    names = [f"{prefix}{n:03d}" for n in range(1, count + 1)]
    chargers = [
        Charger201(
            name, csms_url, serial_number=name, auto_reconnect=True,
            credentials=credentials_for(name) if credentials_for else None,
        )
        for name in names
    ]  # fmt: skip
    errors: list[str] = []
    drivers = [
        asyncio.create_task(_drive(charger, random.Random(rng.random()), id_tokens, stop, emit, errors))
        for charger in chargers
    ]
    timer = asyncio.create_task(_set_after(stop, duration)) if duration is not None else None
    try:
        await stop.wait()
        _, unfinished = await asyncio.wait(drivers, timeout=STOP_GRACE_SECONDS)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
    finally:
        for task in [*drivers, *([timer] if timer else [])]:
            task.cancel()
        await asyncio.gather(*drivers, *([timer] if timer else []), return_exceptions=True)
        await asyncio.gather(*(charger.close() for charger in chargers), return_exceptions=True)
    records = [record for charger in chargers for record in charger.transactions.values()]
    return {
        "chargers": count,
        "sessions_started": sum(1 for record in records if record["started"]),
        "sessions_ended": sum(1 for record in records if record["ended"]),
        "energy_wh": sum((r["meter_stop_wh"] or 0) - r["meter_start_wh"] for r in records if r["ended"]),
        "reconnects": sum(max(charger.connects - 1, 0) for charger in chargers),
        "undelivered_events": sum(charger.queued for charger in chargers),
        "errors": len(errors),
        "error_samples": errors[:10],
    }


async def _set_after(event: asyncio.Event, seconds: float) -> None:
    await asyncio.sleep(seconds)
    event.set()


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _drive(
    charger: Charger201,
    rng: random.Random,
    id_tokens: Sequence[str],
    stop: asyncio.Event,
    emit: Callable[[str], None],
    errors: list[str],
) -> None:
    name = charger.station_id
    await _pause(stop, rng.uniform(0, 0.5))  # stagger the fleet's first connections
    booted = False
    while not stop.is_set() and not booted:
        try:
            boot = await charger.reconnect(retries=0)
        except (ConnectionError, TimeoutError, OCPPError) as exc:
            errors.append(f"{name}: boot: {exc}")
            await _pause(stop, 1.0)
        else:
            booted = True
            emit(f"{name} booted: {boot.get('status')}")
    while not stop.is_set():
        await _pause(stop, rng.uniform(*PAUSE_SECONDS))
        if stop.is_set():
            break
        if not charger.connected:
            continue  # auto-reconnect is at work
        try:
            await _session(charger, rng, rng.choice(list(id_tokens)), emit)
        except (ConnectionError, TimeoutError, OCPPError, LookupError) as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            emit(f"{name} error: {type(exc).__name__}: {exc}")


async def _session(
    charger: Charger201, rng: random.Random, id_token: str, emit: Callable[[str], None]
) -> None:
    name, evse_id = charger.station_id, 1
    if charger.transaction_id(evse_id) is not None:  # left open by an error in the previous session
        await charger.stop_transaction(evse_id, "Other", "AbnormalCondition")
    if rng.random() < 0.5:
        response = await charger.authorize(id_token)
        status = response.get("idTokenInfo", {}).get("status")
        if status != "Accepted":
            emit(f"{name} {id_token} not authorized: {status}")
            return
        transaction_id = await charger.start_transaction(evse_id, id_token)
        emit(f"{name} started {transaction_id[:8]} for {id_token} (authorized first)")
    else:
        transaction_id = await charger.start_transaction(evse_id, None)
        emit(f"{name} started {transaction_id[:8]} on cable, authorizing {id_token}")
        response = await charger.authorize(id_token)
        status = response.get("idTokenInfo", {}).get("status")
        if status != "Accepted":
            await charger.stop_transaction(evse_id, "DeAuthorized", "Deauthorized")
            emit(f"{name} ended {transaction_id[:8]}: {id_token} not authorized ({status})")
            return
        await charger.authorize_transaction(evse_id, id_token)
    await charger.charging(evse_id)
    for _ in range(rng.randint(*SAMPLES)):
        await asyncio.sleep(SAMPLE_INTERVAL_SECONDS)
        await charger.sample(evse_id, rng.randint(*WH_PER_SAMPLE))
    stopped_reason = rng.choice(["Local", "EVDisconnected"])
    if stopped_reason == "Local":
        await charger.stop_transaction(evse_id, "Local", "StopAuthorized", id_token)
    else:
        await charger.stop_transaction(evse_id, "EVDisconnected", "EVCommunicationLost")
    record = charger.transactions[transaction_id]
    energy = record["meter_stop_wh"] - record["meter_start_wh"]
    emit(f"{name} ended {transaction_id[:8]}: {energy} Wh, {stopped_reason}")
