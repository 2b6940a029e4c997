"""The reference legacy (OCPP 1.6) CSMS against a simulated 1.6 charge point, on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from ocpp.exceptions import OCPPError
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from peers.charger16 import Charger16
from peers.legacy_csms import LegacyCsms, LegacyFaults, wait_for


@pytest.fixture
async def csms() -> AsyncIterator[LegacyCsms]:
    async with LegacyCsms(heartbeat_interval=60) as csms:
        yield csms


@pytest.fixture
async def charger(csms: LegacyCsms) -> AsyncIterator[Charger16]:
    charger = Charger16("CP 16/1", csms.url)
    await charger.connect()
    yield charger
    await charger.close()


async def test_boot_authorize_and_a_recorded_transaction(csms: LegacyCsms, charger: Charger16) -> None:
    boot = await charger.boot()
    assert boot["status"] == "Accepted" and boot["interval"] == 60 and boot["currentTime"].endswith("Z")
    assert csms.url.endswith("/ocpp") and csms.connected == {"CP 16/1"}  # percent-decoded station id
    assert csms.boots["CP 16/1"] == {"chargePointVendor": "ocpp-cutover", "chargePointModel": "SIM-16"}

    assert await charger.authorize("TAG0001") == {"idTagInfo": {"status": "Accepted"}}
    assert await charger.authorize("NOPE") == {"idTagInfo": {"status": "Invalid"}}

    await charger.status(1, "Preparing")
    transaction_id = await charger.start_transaction(1, "TAG0002", meter_start=1000)
    assert transaction_id == 1
    await charger.meter_values(1, 2500, transaction_id=transaction_id)
    await charger.meter_values(1, 2600)  # outside the transaction
    stop = await charger.stop_transaction(
        transaction_id, meter_stop=4000, reason="EVDisconnected", id_tag="TAG0002"
    )
    assert stop == {"idTagInfo": {"status": "Accepted"}}

    tx = csms.transactions[transaction_id]
    assert (tx.station_id, tx.connector_id, tx.id_tag) == ("CP 16/1", 1, "TAG0002")
    assert (tx.meter_start, tx.meter_stop) == (1000, 4000)
    assert isinstance(tx.meter_start, int) and isinstance(tx.meter_stop, int)
    assert tx.ended and tx.stop_reason == "EVDisconnected" and tx.stop_id_tag == "TAG0002"
    assert [mv["sampledValue"][0]["value"] for mv in tx.meter_values] == ["2500"]
    assert [s["status"] for s in csms.statuses["CP 16/1"]] == ["Preparing"]
    actions = [frame[2] for station, frame in csms.received if station == "CP 16/1" and frame[0] == 2]
    assert actions == [
        "BootNotification",
        "Authorize",
        "Authorize",
        "StatusNotification",
        "StartTransaction",
        "MeterValues",
        "MeterValues",
        "StopTransaction",
    ]


async def test_remote_start_and_stop_reach_the_charge_point(csms: LegacyCsms, charger: Charger16) -> None:
    await charger.boot()
    assert await csms.remote_start("CP 16/1", "TAG0003", connector_id=1) == {"status": "Accepted"}
    await wait_for(lambda: len(csms.transactions) == 1)
    (transaction_id,) = csms.transactions
    assert charger.received_calls[0] == ("RemoteStartTransaction", {"idTag": "TAG0003", "connectorId": 1})

    assert await csms.remote_stop("CP 16/1", 999) == {"status": "Rejected"}
    assert await csms.remote_stop("CP 16/1", transaction_id) == {"status": "Accepted"}
    await wait_for(lambda: csms.transactions[transaction_id].ended)
    assert csms.transactions[transaction_id].stop_reason == "Remote"

    config = await csms.get_configuration("CP 16/1", ["HeartbeatInterval", "Nope"])
    assert config == {
        "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}],
        "unknownKey": ["Nope"],
    }
    assert await csms.change_configuration("CP 16/1", "HeartbeatInterval", "30") == {"status": "Accepted"}
    assert await csms.change_configuration("CP 16/1", "NumberOfConnectors", "2") == {"status": "Rejected"}
    assert charger.configuration["HeartbeatInterval"] == ("30", False)

    with pytest.raises(OCPPError):  # Charger16 has no Reset handler: a CALLERROR comes back
        await csms.reset("CP 16/1", "Soft")
    with pytest.raises(ConnectionError, match="not connected"):
        await csms.clear_cache("CP-unknown")


async def test_restart_on_the_same_port(csms: LegacyCsms) -> None:
    charger = Charger16("CP-R", csms.url)
    await charger.connect()
    await charger.boot()
    assert await charger.start_transaction(1, "TAG0001", 0) == 1
    port = csms.port
    await csms.disconnect("CP-R")
    await wait_for(lambda: not charger.connected and not csms.connected, timeout=2)
    await charger.connect()

    await csms.stop()
    await wait_for(lambda: not charger.connected, timeout=2)
    assert csms.connected == set()

    await csms.start(port=port)
    assert csms.port == port
    await charger.connect()
    await charger.boot()
    assert await charger.start_transaction(1, "TAG0001", 10) == 2  # the counter survives the restart
    assert csms.connected == {"CP-R"}
    await charger.close()


async def test_only_the_ocpp16_subprotocol_is_accepted(csms: LegacyCsms) -> None:
    with pytest.raises(InvalidStatus):
        await connect(csms.url + "/CP-X", subprotocols=[Subprotocol("ocpp2.0.1")])


async def test_schema_invalid_frames_get_a_callerror_and_are_not_recorded(csms: LegacyCsms) -> None:
    async with connect(csms.url + "/CP-RAW", subprotocols=[Subprotocol("ocpp1.6")]) as ws:
        await ws.send('[2,"m1","BootNotification",{"chargePointVendor":"x"}]')
        reply = await ws.recv()
    assert isinstance(reply, str) and reply.startswith('[4,"m1","ProtocolError"')
    assert "CP-RAW" not in csms.boots
    assert csms.received == [("CP-RAW", [2, "m1", "BootNotification", {"chargePointVendor": "x"}])]


async def test_a_timestamp_that_is_not_a_date_time_is_refused(csms: LegacyCsms) -> None:
    async with connect(csms.url + "/CP-RAW", subprotocols=[Subprotocol("ocpp1.6")]) as ws:
        payload = '{"connectorId":1,"idTag":"TAG0001","meterStart":0,"timestamp":"2024-01-01 12:00"}'
        await ws.send(f'[2,"m1","StartTransaction",{payload}]')
        reply = await ws.recv()
    assert isinstance(reply, str) and reply.startswith('[4,"m1","TypeConstraintViolation"')
    assert "timestamp" in reply and csms.transactions == {}


async def test_callerrors_use_the_ocpp16_spellings(csms: LegacyCsms) -> None:
    async with connect(csms.url + "/CP-RAW", subprotocols=[Subprotocol("ocpp1.6")]) as ws:
        await ws.send('[2,"m1","Heartbeat",{"extra":1}]')
        reply = await ws.recv()
    assert isinstance(reply, str) and reply.startswith('[4,"m1","FormationViolation"')  # OCPP-J 1.6 errata §5


async def test_faults_refuse_or_cut_calls_as_told(csms: LegacyCsms, charger: Charger16) -> None:
    await charger.boot()
    csms.faults = LegacyFaults(error_rate=1.0, actions=frozenset({"StartTransaction"}))
    with pytest.raises(OCPPError):
        await charger.start_transaction(1, "TAG0001", meter_start=0)
    assert csms.transactions == {} and csms.faults.errors == 1  # refused: nothing recorded
    csms.faults = LegacyFaults(drop_rate=1.0, seed=1)
    with pytest.raises(ConnectionError):
        await charger.heartbeat()
    assert csms.faults.drops_before + csms.faults.drops_after == 1
    await wait_for(lambda: not csms.connected, timeout=2)
