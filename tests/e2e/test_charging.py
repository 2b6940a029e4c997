"""A 2.0.1 charger charges through the proxy against the reference legacy 1.6 CSMS, over real sockets."""

from __future__ import annotations

from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms
from proxy.app import RunningProxy
from tests.conftest import proxy_url


async def test_authorized_session_becomes_one_legacy_transaction(proxy: RunningProxy, legacy: LegacyCsms) -> None:
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
    assert len(tx.meter_values) == 3
    assert [r.get("idTokenInfo", {}).get("status") for r in charger.tx_responses if "idTokenInfo" in r][0] == "Accepted"
    statuses = [s["status"] for s in legacy.statuses["CP001"]]
    assert statuses[:2] == ["Available", "Preparing"] and "Charging" in statuses and "Finishing" in statuses
