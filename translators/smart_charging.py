"""Smart charging (2.0.1 functional block K): SetChargingProfile, ClearChargingProfile and GetCompositeSchedule
from the legacy, and the 2.0.1-only charging-limit and ISO 15118 messages a charger sends.

A 1.6 charging profile names a flat connector and, for a TxProfile, the legacy's integer transaction id; the
2.0.1 profile names an EVSE and the charger's own transaction id. Whatever cannot be placed on this station
(a connector it never showed, a transaction it does not have) is answered `Rejected` (or `Unknown`) by the
proxy, as a 1.6 charge point would answer it.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from translators.availability import evse_ref
from translators.bridge import Context, Disposition, Request
from translators.rpc import OccurrenceConstraintViolation
from translators.state import StationState, Transaction

# OCPP 1.6 §7.13 ChargingProfilePurposeType → 2.0.1 ChargingProfilePurposeEnumType (renamed).
PURPOSE_16_TO_201 = {
    "ChargePointMaxProfile": "ChargingStationMaxProfile",
    "TxDefaultProfile": "TxDefaultProfile",
    "TxProfile": "TxProfile",
}
# messages.md §3: 2.0.1 ChargingProfileStatusEnumType → 1.6 ChargingProfileStatus (1.6 NotSupported is never
# produced: a 2.0.1 station has no such answer).
PROFILE_STATUS_TO_16 = {"Accepted": "Accepted", "Rejected": "Rejected"}
# messages.md §3: ClearChargingProfileStatus, the same set in both versions.
CLEAR_STATUS_TO_16 = {"Accepted": "Accepted", "Unknown": "Unknown"}
# messages.md §3: GetCompositeSchedule status, the same set in both versions.
COMPOSITE_STATUS_TO_16 = {"Accepted": "Accepted", "Rejected": "Rejected"}
# OCPP 2.0.1 ChargingScheduleType.chargingSchedulePeriod: maxItems 1024 (1.6 sets no upper bound).
MAX_SCHEDULE_PERIODS_201 = 1024
# OCPP 2.0.1 Part 2 Appendices, status reason codes: "This request is not supported" (generic).
REASON_UNSUPPORTED = "UnsupportedRequest"


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


def evse_id_for(state: StationState, connector_id: int) -> int | None:
    """The 2.0.1 evseId of a 1.6 connectorId (0, the whole charge point, is evseId 0), None if never shown."""
    if connector_id == 0:
        return 0
    evse = evse_ref(state, connector_id)
    return None if evse is None else evse["id"]


def transaction_for_profile(state: StationState, connector_id: int, legacy_id: int | None) -> Transaction | None:
    """The open transaction a 1.6 TxProfile is for, or None when there is none to apply it to."""
    # A 1.6 charge point rejects a TxProfile when no transaction runs (OCPP 1.6 test case TC_058_1_CS); without
    # a transactionId it is for the transaction on its connector (messages.md §2.11, design).
    if legacy_id is None:
        return state.transaction_on(connector_id) if connector_id != 0 else None
    tx = state.by_legacy_id(legacy_id)
    if tx is None or (connector_id != 0 and tx.connector_id != connector_id):
        return None
    return tx


def set_charging_profile(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """The legacy's profile on the charger's EVSE (and transaction), or `Rejected` when it has no place there."""
    profile = payload["csChargingProfiles"]
    periods = profile["chargingSchedule"]["chargingSchedulePeriod"]
    if not periods:
        # OCPP 1.6 §7.13: chargingSchedulePeriod is 1..* (the OCA 1.6 schema does not say so; 2.0.1's does).
        raise OccurrenceConstraintViolation(
            "csChargingProfiles.chargingSchedule.chargingSchedulePeriod: empty, OCPP 1.6 §7.13 requires at least one",
            {"field": "csChargingProfiles.chargingSchedule.chargingSchedulePeriod"},
        )
    if len(periods) > MAX_SCHEDULE_PERIODS_201:
        ctx.lossy("SetChargingProfile", f"{len(periods)} schedule periods, OCPP 2.0.1 carries at most 1024")
        return {"status": "Rejected"}
    evse_id = evse_id_for(ctx.state, payload["connectorId"])
    if evse_id is None:
        return {"status": "Rejected"}
    transaction_id = None
    if profile["chargingProfilePurpose"] == "TxProfile":
        tx = transaction_for_profile(ctx.state, payload["connectorId"], profile.get("transactionId"))
        if tx is None:
            return {"status": "Rejected"}
        evse_id, transaction_id = tx.evse_id, tx.transaction_id
    elif "transactionId" in profile:
        # 2.0.1 ChargingProfileType.transactionId: "SHALL only be included if ChargingProfilePurpose is TxProfile".
        ctx.lossy("SetChargingProfile", f"transactionId dropped from a {profile['chargingProfilePurpose']}")
    request = {"evseId": evse_id, "chargingProfile": to_charging_profile_201(profile, transaction_id)}
    answer = yield Request("SetChargingProfile", request)
    return {"status": PROFILE_STATUS_TO_16[answer["status"]]}


def clear_charging_profile(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """The legacy's id and criteria as 2.0.1 ones; `Accepted` if the charger cleared anything."""
    criteria: dict[str, Any] = {}
    if "connectorId" in payload:
        evse_id = evse_id_for(ctx.state, payload["connectorId"])
        if evse_id is None:
            return {"status": "Unknown"}  # no profile can be on a connector the station never showed
        criteria["evseId"] = evse_id
    if "chargingProfilePurpose" in payload:
        criteria["chargingProfilePurpose"] = PURPOSE_16_TO_201[payload["chargingProfilePurpose"]]
    if "stackLevel" in payload:
        criteria["stackLevel"] = payload["stackLevel"]
    request: dict[str, Any] = {}
    if "id" in payload:
        request["chargingProfileId"] = payload["id"]
    if criteria:
        request["chargingProfileCriteria"] = criteria
    if request:
        answer = yield Request("ClearChargingProfile", request)
        return {"status": CLEAR_STATUS_TO_16[answer["status"]]}
    # A 1.6 request without fields clears every profile; 2.0.1 K10.FR.02 wants an id or at least one criterion,
    # so it is one request per purpose a 1.6 CSMS can have set.
    cleared = False
    for purpose in PURPOSE_16_TO_201.values():
        answer = yield Request("ClearChargingProfile", {"chargingProfileCriteria": {"chargingProfilePurpose": purpose}})
        cleared = cleared or answer["status"] == "Accepted"
    return {"status": "Accepted" if cleared else "Unknown"}


def get_composite_schedule(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """The charger's composite schedule for the EVSE of the legacy's connector, answered in 1.6 terms."""
    connector_id = payload["connectorId"]
    evse_id = evse_id_for(ctx.state, connector_id)
    if evse_id is None:
        return {"status": "Rejected"}
    request: dict[str, Any] = {"evseId": evse_id, "duration": payload["duration"]}
    if "chargingRateUnit" in payload:
        request["chargingRateUnit"] = payload["chargingRateUnit"]
    answer = yield Request("GetCompositeSchedule", request)
    return composite_schedule_16(ctx, connector_id, answer)


def composite_schedule_16(ctx: Context, connector_id: int, answer: dict[str, Any]) -> dict[str, Any]:
    """The 1.6 GetCompositeSchedule.conf for a 2.0.1 answer, naming the 1.6 connector the legacy asked for."""
    status = COMPOSITE_STATUS_TO_16[answer["status"]]
    schedule = answer.get("schedule")
    if status != "Accepted" or schedule is None:
        return {"status": status}
    periods = []
    for period in schedule["chargingSchedulePeriod"]:
        converted = {"startPeriod": period["startPeriod"], "limit": limit_16(ctx, period["limit"])}
        if "numberPhases" in period:
            converted["numberPhases"] = period["numberPhases"]
        if "phaseToUse" in period:
            ctx.lossy("GetCompositeSchedule", "phaseToUse dropped (no 1.6 field)")
        periods.append(converted)
    return {
        "status": status,
        "connectorId": connector_id,
        "scheduleStart": schedule["scheduleStart"],
        # OCPP 1.6 §7.14: a composite schedule is relative to scheduleStart; startSchedule says so in the
        # schedule itself for CSMSs that read only chargingSchedule.
        "chargingSchedule": {
            "duration": schedule["duration"],
            "startSchedule": schedule["scheduleStart"],
            "chargingRateUnit": schedule["chargingRateUnit"],
            "chargingSchedulePeriod": periods,
        },
    }


def limit_16(ctx: Context, limit: float) -> float:
    """A 2.0.1 schedule limit as 1.6 takes it: a multiple of 0.1 (OCA 1.6 schema `multipleOf: 0.1`)."""
    rounded = round(limit, 1)
    if rounded != limit:
        ctx.lossy("GetCompositeSchedule", f"limit {limit} rounded to {rounded}")
    return rounded


def notify_charging_limit(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """An external limit (EMS, SO, CSO) set at the station: 1.6 has no message for it; answered `{}`."""
    return {}
    yield  # pragma: no cover - makes this a handler that sends nothing


def cleared_charging_limit(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """An external limit released at the station: 1.6 has no message for it; answered `{}`."""
    return {}
    yield  # pragma: no cover - makes this a handler that sends nothing


def report_charging_profiles(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """Profiles reported for a GetChargingProfiles, which a 1.6 CSMS cannot send; answered `{}`."""
    return {}
    yield  # pragma: no cover - makes this a handler that sends nothing


def notify_ev_charging_schedule(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """The schedule an ISO 15118 EV negotiated: received (`Accepted` is no approval, per the 2.0.1 schema)."""
    return {"status": "Accepted"}
    yield  # pragma: no cover - makes this a handler that sends nothing


def notify_ev_charging_needs(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """An ISO 15118 EV's charging needs: `Rejected`, since no one behind the proxy will send a schedule for them."""
    return {
        "status": "Rejected",
        "statusInfo": {
            "reasonCode": REASON_UNSUPPORTED,
            "additionalInfo": "the CSMS speaks OCPP 1.6 and cannot compute an ISO 15118 charging schedule",
        },
    }
    yield  # pragma: no cover - makes this a handler that sends nothing


NO_16_MESSAGE = "OCPP 1.6 has no message for it (messages.md §2.11); answered by the proxy, the legacy never sees it"

CHARGER_CALLS = {
    "NotifyChargingLimit": Disposition(
        "mirror-only", (), notify_charging_limit, reason=f"an external charging limit: {NO_16_MESSAGE}"
    ),
    "ClearedChargingLimit": Disposition(
        "mirror-only", (), cleared_charging_limit, reason=f"an external charging limit released: {NO_16_MESSAGE}"
    ),
    "ReportChargingProfiles": Disposition(
        "mirror-only",
        (),
        report_charging_profiles,
        reason=f"answers GetChargingProfiles, which a 1.6 CSMS cannot send: {NO_16_MESSAGE}",
    ),
    "NotifyEVChargingSchedule": Disposition(
        "mirror-only",
        (),
        notify_ev_charging_schedule,
        reason=f"an ISO 15118 EV's schedule, answered Accepted (received, not approved): {NO_16_MESSAGE}",
    ),
    "NotifyEVChargingNeeds": Disposition(
        "mirror-only",
        (),
        notify_ev_charging_needs,
        reason=(
            "ISO 15118 charging needs: the 1.6 legacy cannot compute a schedule (the OCA 1.6 Plug & Charge note "
            "leaves ISO 15118 smart charging out), so it is answered Rejected, reasonCode UnsupportedRequest; "
            "the legacy never sees it"
        ),
    ),
}
LEGACY_CALLS = {
    "SetChargingProfile": Disposition(
        "translated",
        ("SetChargingProfile",),
        set_charging_profile,
        lossy=(
            "a transactionId on a profile other than TxProfile is dropped (2.0.1 allows it only on TxProfile)",
            "the 2.0.1 answer's statusInfo is dropped",
        ),
    ),
    "ClearChargingProfile": Disposition(
        "translated",
        ("ClearChargingProfile",),
        clear_charging_profile,
        lossy=("the 2.0.1 answer's statusInfo is dropped",),
    ),
    "GetCompositeSchedule": Disposition(
        "translated",
        ("GetCompositeSchedule",),
        get_composite_schedule,
        lossy=(
            "phaseToUse of each schedule period is dropped (no 1.6 field)",
            "a limit with more than one decimal is rounded to one (1.6 limits are multiples of 0.1)",
            "the 2.0.1 answer's statusInfo is dropped",
        ),
    ),
}
