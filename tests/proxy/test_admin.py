"""The admin plane: Prometheus metrics and health over real HTTP."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms
from proxy.app import RunningProxy
from tests.conftest import proxy_url


async def test_metrics_and_health(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = Charger201("MET01", proxy_url(proxy))
    await charger.connect()
    await charger.boot()
    assert proxy.admin is not None
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.admin.url + "/healthz") as response:
            health = await response.json()
        async with http.get(proxy.admin.url + "/metrics") as response:
            assert response.status == 200
            text = await response.text()
    await charger.close()
    assert health["status"] == "ok" and health["stations"]["ocpp2.0.1"] == 1
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("cutover_connected_stations", (("subprotocol", "ocpp2.0.1"),))] >= 1
    boot_in = (
        "cutover_frames_total",
        (("action", "BootNotification"), ("direction", "in"), ("leg", "charger"), ("message_type", "call")),
    )
    assert samples[boot_in] >= 1
    assert any(
        name == "cutover_call_duration_seconds_count" and dict(labels)["leg"] == "legacy" for name, labels in samples
    )
    for name in ("cutover_tee_dropped_frames_total", "cutover_tee_queue_depth", "cutover_translation_errors_total"):
        assert f"# TYPE {name.removesuffix('_total')}" in text
