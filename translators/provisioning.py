"""Provisioning (2.0.1 functional block B): BootNotification, Heartbeat, Reset."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from translators.bridge import Context, Disposition, Request
from translators.device_model import request_base_report

# 2.0.1 ResetStatusEnumType → 1.6 ResetStatus: a scheduled reset is an accepted one.
RESET_STATUS_TO_16 = {"Accepted": "Accepted", "Rejected": "Rejected", "Scheduled": "Accepted"}


def boot_notification(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    station = payload["chargingStation"]
    request = {
        "chargePointVendor": fit(ctx, station["vendorName"], 20, "chargingStation.vendorName"),
        "chargePointModel": station["model"],
    }
    for source, target in (
        ("serialNumber", "chargePointSerialNumber"),
        ("firmwareVersion", "firmwareVersion"),
    ):
        if source in station:
            request[target] = station[source]
    modem = station.get("modem", {})
    for key in ("iccid", "imsi"):
        if key in modem:
            request[key] = modem[key]
    answer = yield Request("BootNotification", request)
    if answer["status"] == "Accepted":
        ctx.spawn(request_base_report, {})  # the device model the 1.6 configuration keys are answered from
    return {"status": answer["status"], "currentTime": answer["currentTime"], "interval": answer["interval"]}


def fit(ctx: Context, value: str, limit: int, field: str) -> str:
    """`value` cut to a 1.6 field's limit, reported as lossy (a vendor name is not worth refusing a boot)."""
    if len(value) <= limit:
        return value
    ctx.lossy("BootNotification", f"{field}: {len(value)} characters cut to {limit}")
    return value[:limit]


def heartbeat(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    answer = yield Request("Heartbeat", {})
    return {"currentTime": answer["currentTime"]}


def reset(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    ctx.state.last_reset_type = payload["type"]
    ctx.touch()
    answer = yield Request("Reset", {"type": ctx.config.reset_types[payload["type"]]})
    return {"status": RESET_STATUS_TO_16[answer["status"]]}


CHARGER_CALLS = {
    "BootNotification": Disposition(
        "translated",
        ("BootNotification",),
        boot_notification,
        lossy=("reason is dropped", "a vendorName over 1.6's 20 characters is cut to 20 (logged)"),
    ),
    "Heartbeat": Disposition("translated", ("Heartbeat",), heartbeat),
}
LEGACY_CALLS = {
    "Reset": Disposition(
        "translated",
        ("Reset",),
        reset,
        lossy=("Hard and Soft both become Immediate (both end transactions in 1.6); Scheduled is answered Accepted",),
    ),
}
