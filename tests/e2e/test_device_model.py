"""The device model: reported after boot, cached in Redis, and the legacy's 1.6 configuration keys
answered through it."""

from __future__ import annotations

import redis.asyncio as redis

from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms
from proxy.app import RunningProxy
from proxy.state_store import device_model_key
from tests.conftest import proxy_url
from translators.state import DeviceModel


async def reported(proxy: RunningProxy, legacy: LegacyCsms, station_id: str) -> Charger201:
    charger = Charger201(station_id, proxy_url(proxy))
    await charger.connect()
    await charger.boot()
    await charger.status(1, 1, "Available")

    def complete() -> bool:
        session = proxy.proxy.sessions.get(station_id)
        return session is not None and session.engine.device_model.complete  # type: ignore[union-attr]

    await legacy.wait_for(complete)
    return charger


async def test_report_after_boot_is_cached_in_redis(
    proxy: RunningProxy, legacy: LegacyCsms, redis_client: redis.Redis
) -> None:
    charger = await reported(proxy, legacy, "DM01")
    await charger.close()
    (request,) = [p for action, p in charger.received_calls if action == "GetBaseReport"]
    assert request["reportBase"] == "FullInventory"
    model = DeviceModel.loads(await redis_client.get(device_model_key("DM01")))
    assert model.complete and model.report_request_id == request["requestId"]
    assert model.get("OCPPCommCtrlr", "HeartbeatInterval") == {
        "value": "300", "mutability": "ReadWrite", "dataType": "integer",
    }  # fmt: skip


async def test_get_configuration_with_keys(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = await reported(proxy, legacy, "DM02")
    answer = await legacy.get_configuration(
        "DM02",
        ["HeartbeatInterval", "StopTransactionOnEVSideDisconnect", "NumberOfConnectors", "BlinkRepeat",
         "ChargingScheduleAllowedChargingRateUnit", "MeterValuesSampledDataMaxLength", "LocalAuthListMaxLength"],
    )  # fmt: skip
    await charger.close()
    assert answer["configurationKey"] == [
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
        {"key": "StopTransactionOnEVSideDisconnect", "readonly": True, "value": "true"},  # ReadOnly in its report
        {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current,Power"},
        {"key": "NumberOfConnectors", "readonly": True, "value": "1"},
        {"key": "MeterValuesSampledDataMaxLength", "readonly": True, "value": "8"},
    ]
    assert answer["unknownKey"] == ["BlinkRepeat", "LocalAuthListMaxLength"]


async def test_get_configuration_without_keys_lists_what_the_station_has(
    proxy: RunningProxy, legacy: LegacyCsms
) -> None:
    charger = await reported(proxy, legacy, "DM03")
    answer = await legacy.get_configuration("DM03")
    await charger.close()
    keys = {entry["key"]: entry for entry in answer["configurationKey"]}
    assert keys["HeartbeatInterval"]["value"] == "300"
    assert (
        keys["SupportedFeatureProfiles"]["value"] == "Core,FirmwareManagement,RemoteTrigger,Reservation,SmartCharging"
    )
    assert keys["GetConfigurationMaxKeys"]["readonly"] is True
    assert "ClockAlignedDataInterval" in keys  # AlignedDataCtrlr.Interval is in the report
    # a mapped key whose variable the station did not report is not listed as configured
    assert "AllowOfflineTxForUnknownId" not in keys and "unknownKey" not in answer
    # more keys than the station's ItemsPerMessage (10): several GetVariables
    batches = [len(p["getVariableData"]) for action, p in charger.received_calls if action == "GetVariables"]
    assert len(batches) > 1 and max(batches) <= 10


async def test_change_configuration_follows_the_report(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = await reported(proxy, legacy, "DM04")
    assert (await legacy.change_configuration("DM04", "HeartbeatInterval", "120"))["status"] == "Accepted"
    assert charger.variables[("OCPPCommCtrlr", "HeartbeatInterval")] == "120"
    assert (await legacy.change_configuration("DM04", "MeterValueSampleInterval", "30"))["status"] == "Accepted"
    assert (await legacy.change_configuration("DM04", "HeartbeatInterval", "often"))["status"] == "Rejected"
    assert (await legacy.change_configuration("DM04", "StopTransactionOnEVSideDisconnect", "false"))[
        "status"
    ] == "Rejected"
    assert (await legacy.change_configuration("DM04", "NumberOfConnectors", "3"))["status"] == "Rejected"
    assert (await legacy.change_configuration("DM04", "AllowOfflineTxForUnknownId", "true"))["status"] == "NotSupported"
    assert (await legacy.change_configuration("DM04", "BlinkRepeat", "3"))["status"] == "NotSupported"
    await charger.close()
    sets = [p["setVariableData"] for action, p in charger.received_calls if action == "SetVariables"]
    assert sets == [
        [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}, "attributeValue": "120"}],
        [
            {
                "component": {"name": "SampledDataCtrlr"},
                "variable": {"name": "TxUpdatedInterval"},
                "attributeValue": "30",
            },
        ],
    ]
