"""Smart charging (2.0.1 functional block K): charging profile conversion 1.6 → 2.0.1."""

from __future__ import annotations

from typing import Any

# OCPP 1.6 §7.13 ChargingProfilePurposeType → 2.0.1 ChargingProfilePurposeEnumType (renamed).
PURPOSE_16_TO_201 = {
    "ChargePointMaxProfile": "ChargingStationMaxProfile",
    "TxDefaultProfile": "TxDefaultProfile",
    "TxProfile": "TxProfile",
}


def to_charging_profile_201(profile: dict[str, Any], transaction_id: str | None = None) -> dict[str, Any]:
    """A 2.0.1 ChargingProfileType for a 1.6 ChargingProfile (1.6's single schedule gets the profile's id)."""
    schedule_16 = profile["chargingSchedule"]
    schedule: dict[str, Any] = {
        "id": profile["chargingProfileId"],
        "chargingRateUnit": schedule_16["chargingRateUnit"],
        "chargingSchedulePeriod": [dict(period) for period in schedule_16["chargingSchedulePeriod"]],
    }
    for key in ("duration", "startSchedule", "minChargingRate"):
        if key in schedule_16:
            schedule[key] = schedule_16[key]
    converted: dict[str, Any] = {
        "id": profile["chargingProfileId"],
        "stackLevel": profile["stackLevel"],
        "chargingProfilePurpose": PURPOSE_16_TO_201[profile["chargingProfilePurpose"]],
        "chargingProfileKind": profile["chargingProfileKind"],
        "chargingSchedule": [schedule],
    }
    for key in ("recurrencyKind", "validFrom", "validTo"):
        if key in profile:
            converted[key] = profile[key]
    if transaction_id is not None:
        converted["transactionId"] = transaction_id
    return converted


CHARGER_CALLS: dict[str, Any] = {}
LEGACY_CALLS: dict[str, Any] = {}
