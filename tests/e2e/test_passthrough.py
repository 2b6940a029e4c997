"""A 1.6 charger passes through the proxy to the legacy CSMS unchanged (and still tee'd)."""

from __future__ import annotations

import orjson
import redis.asyncio as redis
from websockets.asyncio.client import connect

from peers.charger16 import Charger16
from peers.legacy_csms import LegacyCsms
from proxy.app import RunningProxy
from shadow.streams import read_envelopes
from tests.conftest import proxy_url
from tests.frames import tee_envelopes


async def test_16_charger_session_passes_through(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = Charger16("CP16A", proxy_url(proxy))
    await charger.connect()
    assert (await charger.boot())["status"] == "Accepted"
    await charger.status(1, "Available")
    tx_id = await charger.start_transaction(1, "TAG0001", meter_start=100)
    await charger.meter_values(1, 600, tx_id)
    await charger.stop_transaction(tx_id, 2100, "Local")
    started = await legacy.remote_start("CP16A", "TAG0002", connector_id=1)
    assert started["status"] == "Accepted"
    await legacy.wait_for(lambda: len(legacy.transactions) == 2)
    await charger.close()

    first = legacy.transactions[tx_id]
    assert (first.meter_start, first.meter_stop, first.id_tag) == (100, 2100, "TAG0001")
    assert charger.frames_out == [frame for station, frame in legacy.received if station == "CP16A"]


async def test_16_frames_are_relayed_byte_for_byte(
    proxy: RunningProxy, legacy: LegacyCsms, redis_client: redis.Redis
) -> None:
    raw = '[2, "odd-spacing-1" ,"Heartbeat",  {}  ]'
    async with connect(proxy_url(proxy) + "/CP16B", subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "ocpp1.6"
        await ws.send(raw)
        answer = orjson.loads(await ws.recv())
    assert answer[:2] == [3, "odd-spacing-1"] and "currentTime" in answer[2]
    await proxy.tee.flush()
    envelopes = [e for e in await tee_envelopes(redis_client) if e["station"] == "CP16B"]
    (charger_in,) = [e for e in envelopes if e["leg"] == "charger" and e["dir"] == "in"]
    (legacy_out,) = [e for e in envelopes if e["leg"] == "legacy" and e["dir"] == "out"]
    assert charger_in["frame"] == legacy_out["frame"] == raw.encode()
    assert [e["proto"] for e in envelopes] == ["ocpp1.6"] * 4
    assert [e["seq"] for e in envelopes] == [0, 1, 2, 3]


async def test_tee_envelopes_carry_the_documented_fields(
    proxy: RunningProxy, legacy: LegacyCsms, redis_client: redis.Redis
) -> None:
    async with connect(proxy_url(proxy) + "/TEE01", subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        await ws.send('[2, "hb", "Heartbeat", {}]')
        await ws.recv()
    await proxy.tee.flush()
    envelopes = await read_envelopes(redis_client, "TEE01")
    assert [(e["leg"], e["dir"], e["proto"]) for e in envelopes] == [
        ("charger", "in", "ocpp2.0.1"),
        ("legacy", "out", "ocpp1.6"),
        ("legacy", "in", "ocpp1.6"),
        ("charger", "out", "ocpp2.0.1"),
    ]
    first = envelopes[0]
    assert set(first) == {"v", "station", "conn", "seq", "leg", "dir", "proto", "t_ns", "frame"}
    assert first["v"] == 1 and first["station"] == "TEE01" and first["frame"] == b'[2, "hb", "Heartbeat", {}]'
    assert envelopes[0]["t_ns"] <= envelopes[-1]["t_ns"]
