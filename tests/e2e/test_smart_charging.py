"""Smart charging through the proxy over real sockets: the legacy 1.6 CSMS sets a profile and asks for the
composite schedule of a 2.0.1 charger."""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms
from proxy.app import RunningProxy
from tests.conftest import proxy_url

SCHEDULE_START = "2026-11-24T20:00:00.000Z"


class SmartCharger(Charger201):
    """A 2.0.1 charger that accepts every charging profile and reports a fixed composite schedule."""

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, **_: Any) -> call_result.SetChargingProfile:
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(
        self, evse_id: int, duration: int, charging_rate_unit: str = "A", **_: Any
    ) -> call_result.GetCompositeSchedule:
        return call_result.GetCompositeSchedule(
            status="Accepted",
            schedule={
                "evse_id": evse_id,
                "duration": duration,
                "schedule_start": SCHEDULE_START,
                "charging_rate_unit": charging_rate_unit,
                "charging_schedule_period": [
                    {"start_period": 0, "limit": 16.1, "number_phases": 1, "phase_to_use": 2},
                    {"start_period": 900, "limit": 10.57, "number_phases": 3},
                ],
            },
        )


async def booted(proxy: RunningProxy, station_id: str) -> SmartCharger:
    charger = SmartCharger(station_id, proxy_url(proxy))
    await charger.connect()
    assert (await charger.boot())["status"] == "Accepted"
    await charger.status(1, 1, "Available")
    return charger


async def test_set_charging_profile_then_composite_schedule(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = await booted(proxy, "CP-SC1")
    profile = {
        "charging_profile_id": 8,
        "stack_level": 0,
        "charging_profile_purpose": "ChargePointMaxProfile",
        "charging_profile_kind": "Absolute",
        "charging_schedule": {
            "duration": 3600,
            "start_schedule": SCHEDULE_START,
            "charging_rate_unit": "A",
            "charging_schedule_period": [{"start_period": 0, "limit": 16.1, "number_phases": 3}],
        },
    }
    answer = await legacy._call("CP-SC1", call16.SetChargingProfile(connector_id=0, cs_charging_profiles=profile))
    assert answer == {"status": "Accepted"}
    (set_profile,) = [p for action, p in charger.received_calls if action == "SetChargingProfile"]
    assert set_profile == {
        "evseId": 0,
        "chargingProfile": {
            "id": 8,
            "stackLevel": 0,
            "chargingProfilePurpose": "ChargingStationMaxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": [
                {
                    "id": 8,
                    "duration": 3600,
                    "startSchedule": SCHEDULE_START,
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.1, "numberPhases": 3}],
                }
            ],
        },
    }

    schedule = await legacy._call(
        "CP-SC1", call16.GetCompositeSchedule(connector_id=1, duration=1800, charging_rate_unit="A")
    )
    assert [p for action, p in charger.received_calls if action == "GetCompositeSchedule"] == [
        {"evseId": 1, "duration": 1800, "chargingRateUnit": "A"}
    ]
    assert schedule == {
        "status": "Accepted",
        "connectorId": 1,
        "scheduleStart": SCHEDULE_START,
        "chargingSchedule": {
            "duration": 1800,
            "startSchedule": SCHEDULE_START,
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 16.1, "numberPhases": 1},  # phaseToUse dropped
                {"startPeriod": 900, "limit": 10.6, "numberPhases": 3},  # one decimal, as 1.6 wants
            ],
        },
    }
    # a connector the station never showed
    assert await legacy._call("CP-SC1", call16.GetCompositeSchedule(connector_id=5, duration=60)) == {
        "status": "Rejected"
    }
    await charger.close()


async def test_tx_profile_reaches_the_chargers_transaction(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = await booted(proxy, "CP-SC2")
    tx_id = await charger.start_transaction(1, "TAG0001")
    await legacy.wait_for(lambda: len(legacy.open_transactions("CP-SC2")) == 1)
    (legacy_tx,) = legacy.open_transactions("CP-SC2")
    profile = {
        "charging_profile_id": 30,
        "transaction_id": legacy_tx.transaction_id,
        "stack_level": 1,
        "charging_profile_purpose": "TxProfile",
        "charging_profile_kind": "Relative",
        "charging_schedule": {
            "charging_rate_unit": "W",
            "charging_schedule_period": [{"start_period": 0, "limit": 7400}],
        },
    }
    answer = await legacy._call("CP-SC2", call16.SetChargingProfile(connector_id=1, cs_charging_profiles=profile))
    assert answer == {"status": "Accepted"}
    (set_profile,) = [p for action, p in charger.received_calls if action == "SetChargingProfile"]
    assert set_profile["evseId"] == 1
    assert set_profile["chargingProfile"]["transactionId"] == tx_id
    # an id the legacy never assigned is refused by the proxy itself
    unknown = dict(profile, charging_profile_id=31, transaction_id=legacy_tx.transaction_id + 100)
    answer = await legacy._call("CP-SC2", call16.SetChargingProfile(connector_id=1, cs_charging_profiles=unknown))
    assert answer == {"status": "Rejected"}
    assert len([action for action, _ in charger.received_calls if action == "SetChargingProfile"]) == 1
    await charger.stop_transaction(1)
    await charger.close()


async def test_ev_charging_needs_are_answered_by_the_proxy(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = await booted(proxy, "CP-SC3")
    answer = await charger._call(
        call201.NotifyEVChargingNeeds(
            evse_id=1,
            charging_needs={
                "requested_energy_transfer": "AC_three_phase",
                "ac_charging_parameters": {
                    "energy_amount": 20000,
                    "ev_min_current": 6,
                    "ev_max_current": 32,
                    "ev_max_voltage": 400,
                },
            },
        )
    )
    assert answer["status"] == "Rejected"
    assert answer["statusInfo"]["reasonCode"] == "UnsupportedRequest"
    assert await charger._call(call201.ClearedChargingLimit(charging_limit_source="EMS", evse_id=1)) == {}
    await charger.close()
    actions_at_legacy = {frame[2] for station, frame in legacy.received if station == "CP-SC3" and frame[0] == 2}
    assert actions_at_legacy == {"BootNotification", "StatusNotification"}
