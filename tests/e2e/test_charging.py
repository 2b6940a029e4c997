"""A 2.0.1 charger charges through the proxy against the reference legacy 1.6 CSMS, over real sockets."""

from __future__ import annotations

from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms
from proxy.app import RunningProxy
from tests.conftest import proxy_url


async def test_authorized_session_becomes_one_legacy_transaction(
    proxy: RunningProxy, legacy: LegacyCsms
) -> None:
    charger = Charger201("CP001", proxy_url(proxy))
    await charger.connect()
    boot = await charger.boot()
    assert boot["status"] == "Accepted"
    await charger.status(1, 1, "Available")
    tx_id = await charger.run_session(id_token="TAG0001", samples=3, wh_per_sample=1500, interval=0.01)
    await charger.close()

    assert len(legacy.transactions) == 1
    tx = next(iter(legacy.transactions.values()))
    reported = charger.transactions[tx_id]
    assert tx.station_id == "CP001"
    assert tx.id_tag == "TAG0001"
    assert tx.meter_start == reported["meter_start_wh"]
    assert tx.meter_stop == reported["meter_stop_wh"] == reported["meter_start_wh"] + 4500
    assert tx.stop_reason == "Local"
    assert (tx.start_timestamp, tx.stop_timestamp) == (reported["started"], reported["ended"])
    assert len(tx.meter_values) == 3
    first_answer = next(r for r in charger.tx_responses if "idTokenInfo" in r)
    assert first_answer["idTokenInfo"]["status"] == "Accepted"
    statuses = [s["status"] for s in legacy.statuses["CP001"]]
    assert statuses[:2] == ["Available", "Preparing"] and "Charging" in statuses and "Finishing" in statuses


async def booted(proxy: RunningProxy, station_id: str) -> Charger201:
    charger = Charger201(station_id, proxy_url(proxy))
    await charger.connect()
    assert (await charger.boot())["status"] == "Accepted"
    await charger.status(1, 1, "Available")
    return charger


async def test_transaction_started_before_authorization(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = await booted(proxy, "CP002")
    tx_id = await charger.start_transaction(1, None)  # plugged in: Started without idToken
    await charger.sample(1, 700)
    assert legacy.transactions == {}  # 1.6 StartTransaction needs an idTag: it waits
    await charger.authorize(id_token="TAG0002")
    response = await charger.authorize_transaction(1, "TAG0002")
    assert response["idTokenInfo"]["status"] == "Accepted"
    await charger.charging(1)
    await charger.sample(1, 1000)
    await charger.stop_transaction(1, "EVDisconnected", "EVCommunicationLost")
    await charger.close()

    (tx,) = legacy.transactions.values()
    reported = charger.transactions[tx_id]
    assert (tx.id_tag, tx.meter_start, tx.meter_stop) == (
        "TAG0002",
        reported["meter_start_wh"],
        reported["meter_stop_wh"],
    )
    assert tx.start_timestamp == reported["started"]  # the 2.0.1 transaction's own start
    assert tx.stop_reason == "EVDisconnected"
    # the sample taken before authorization was buffered and delivered after StartTransaction
    assert len(tx.meter_values) == 2


async def test_transaction_never_authorized_reaches_no_legacy_transaction(
    proxy: RunningProxy, legacy: LegacyCsms
) -> None:
    charger = await booted(proxy, "CP003")
    await charger.start_transaction(1, None)
    await charger.stop_transaction(1, "EVDisconnected", "EVCommunicationLost")
    await charger.close()
    assert legacy.transactions == {}
    assert [s["status"] for s in legacy.statuses["CP003"]] == ["Available", "Preparing", "Available"]


async def test_rejected_token_is_answered_with_the_legacy_verdict(
    proxy: RunningProxy, legacy: LegacyCsms
) -> None:
    charger = await booted(proxy, "CP004")
    answer = await charger.authorize("UNKNOWN-TAG")
    await charger.close()
    assert answer["idTokenInfo"]["status"] == "Invalid"


async def test_remote_start_and_stop_from_the_legacy(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = await booted(proxy, "CP005")
    started = await legacy.remote_start("CP005", "TAG0003", connector_id=1)
    assert started["status"] == "Accepted"
    await legacy.wait_for(lambda: len(legacy.open_transactions("CP005")) == 1)
    (tx,) = legacy.open_transactions("CP005")
    assert tx.id_tag == "TAG0003"
    stopped = await legacy.remote_stop("CP005", tx.transaction_id)
    assert stopped["status"] == "Accepted"
    await legacy.wait_for(lambda: tx.ended)
    assert tx.stop_reason == "Remote"
    (request_start,) = [p for action, p in charger.received_calls if action == "RequestStartTransaction"]
    assert request_start["idToken"] == {"idToken": "TAG0003", "type": "Central"}
    assert request_start["evseId"] == 1
    (record,) = charger.transactions.values()
    assert record["remote_start_id"] == request_start["remoteStartId"]
    # an id the legacy never assigned is refused by the proxy itself
    assert (await legacy.remote_stop("CP005", 999_999))["status"] == "Rejected"
    await charger.close()


async def test_legacy_commands_reach_the_charger(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = await booted(proxy, "CP007")
    assert (await legacy.reset("CP007", "Soft"))["status"] == "Accepted"
    assert (await legacy.change_availability("CP007", 1, "Inoperative"))["status"] == "Accepted"
    assert (await legacy.change_availability("CP007", 7, "Inoperative"))["status"] == "Rejected"
    assert (await legacy.unlock_connector("CP007", 1))["status"] == "Unlocked"
    assert (await legacy.clear_cache("CP007"))["status"] == "Accepted"
    assert (await legacy.data_transfer("CP007", "com.example", "hello", "{}"))["status"] == "UnknownVendorId"
    assert (await legacy.trigger_message("CP007", "Heartbeat"))["status"] == "Accepted"
    calls = [action for action, _ in charger.received_calls if action != "GetBaseReport"]
    assert calls == [
        "Reset",
        "ChangeAvailability",
        "UnlockConnector",
        "ClearCache",
        "DataTransfer",
        "TriggerMessage",
    ]
    reset = dict(charger.received_calls)["Reset"]
    assert reset == {"type": "Immediate"}
    await charger.close()
