"""Firmware management (2.0.1 functional block L): UpdateFirmware, FirmwareStatusNotification, PublishFirmware.

A 1.6 core UpdateFirmware has no requestId; the proxy issues one and remembers it (`StationState.requests`),
so the station's FirmwareStatusNotifications go back as core FirmwareStatusNotification for a core update
and as Security-Whitepaper SignedFirmwareStatusNotification (with the legacy's own requestId) for a
SignedUpdateFirmware.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from translators.bridge import Context, Disposition, Request
from translators.rpc import GenericError, at_most

# OCPP 2.0.1 FirmwareType.location: string[512]; 1.6 UpdateFirmware.location is an unbounded URI.
MAX_LOCATION = 512
CORE_UPDATE = "UpdateFirmware"
SIGNED_UPDATE = "SignedUpdateFirmware"

# messages.md §2.14: the 2.0.1 UpdateFirmware statuses answered with the (fieldless) 1.6 UpdateFirmware.conf;
# the others become a CALLERROR, 1.6 having no other way to say that the update will not happen.
UPDATE_ACCEPTED_16 = frozenset({"Accepted", "AcceptedCanceled"})
# messages.md §2.14: 2.0.1 FirmwareStatusEnumType → 1.6 core FirmwareStatus; None: not sent to the legacy
# (a waiting or verification step 1.6 has no word for; the next status it has a word for follows).
FIRMWARE_STATUS_201_TO_16: dict[str, str | None] = {
    "Downloaded": "Downloaded",
    "DownloadFailed": "DownloadFailed",
    "Downloading": "Downloading",
    "DownloadScheduled": None,
    "DownloadPaused": None,
    "Idle": "Idle",
    "InstallationFailed": "InstallationFailed",
    "Installing": "Installing",
    "Installed": "Installed",
    "InstallRebooting": "Installing",
    "InstallScheduled": None,
    "InstallVerificationFailed": "InstallationFailed",
    "InvalidSignature": "InstallationFailed",
    "SignatureVerified": None,
}
# messages.md §3: the SWP SignedUpdateFirmware status set is the 2.0.1 set.
UPDATE_FIRMWARE_STATUS = {
    s: s for s in ("Accepted", "Rejected", "AcceptedCanceled", "InvalidCertificate", "RevokedCertificate")
}


def publish_firmware_status_notification(
    ctx: Context, payload: dict[str, Any]
) -> Generator[Request, Any, dict[str, Any]]:
    """Answered by the proxy (the response has no fields): 1.6 has no Local Controller messages."""
    return {}
    yield  # pragma: no cover - makes this a handler generator


def update_firmware(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """A 1.6 core UpdateFirmware as a 2.0.1 UpdateFirmware under a requestId the proxy issues."""
    location = at_most(payload, "location", "firmware.location", MAX_LOCATION)
    request_id = ctx.state.on_request_issued(CORE_UPDATE)
    ctx.touch()
    request: dict[str, Any] = {
        "requestId": request_id,
        "firmware": {"location": location, "retrieveDateTime": payload["retrieveDate"]},
    }
    for key in ("retries", "retryInterval"):
        if key in payload:
            request[key] = payload[key]
    answer = yield Request("UpdateFirmware", request)
    status = answer["status"]
    if status not in UPDATE_ACCEPTED_16:
        raise GenericError(f"the charger answered UpdateFirmware with {status}: the firmware will not be updated")
    if status == "AcceptedCanceled":
        ctx.lossy("UpdateFirmware", "AcceptedCanceled: the update in progress was cancelled for this one")
    return {}


def signed_update_firmware(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """A Security-Whitepaper SignedUpdateFirmware as the 2.0.1 UpdateFirmware (under a requestId the proxy issues)."""
    request_id = ctx.state.on_request_issued(SIGNED_UPDATE, payload["requestId"])
    ctx.touch()
    answer = yield Request("UpdateFirmware", {**payload, "requestId": request_id})
    return {"status": UPDATE_FIRMWARE_STATUS[answer["status"]]}


def firmware_status_notification(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """The station's progress, to the 1.6 message of the update it belongs to."""
    request_id = payload.get("requestId")
    origin = None if request_id is None else ctx.state.request_of(request_id)
    if request_id is not None and (origin is None or origin[0] != CORE_UPDATE):
        # A SignedUpdateFirmware's, or a requestId the proxy does not know: the Security-Whitepaper message
        # carries the requestId (the legacy's own) and all 14 statuses.
        legacy_request_id = origin[1] if origin is not None and origin[1] is not None else request_id
        yield Request("SignedFirmwareStatusNotification", {"status": payload["status"], "requestId": legacy_request_id})
        return {}
    status = FIRMWARE_STATUS_201_TO_16[payload["status"]]
    if status is None:
        ctx.lossy("FirmwareStatusNotification", f"{payload['status']}: no OCPP 1.6 FirmwareStatus, not sent")
        return {}
    if status != payload["status"]:
        ctx.lossy("FirmwareStatusNotification", f"{payload['status']} sent as {status}")
    yield Request("FirmwareStatusNotification", {"status": status})
    return {}


CHARGER_CALLS = {
    "FirmwareStatusNotification": Disposition(
        "translated",
        ("FirmwareStatusNotification", "SignedFirmwareStatusNotification"),
        firmware_status_notification,
        lossy=(
            "to core FirmwareStatusNotification: DownloadScheduled, DownloadPaused, InstallScheduled and"
            " SignatureVerified are not sent; InstallRebooting is sent as Installing; InstallVerificationFailed"
            " and InvalidSignature as InstallationFailed",
        ),
    ),
    # OCPP 2.0.1 L03/L04: a Local Controller's firmware publication.
    "PublishFirmwareStatusNotification": Disposition(
        "mirror-only",
        (),
        publish_firmware_status_notification,
        "no OCPP 1.6 message carries it; answered by the proxy, seen by the shadow",
    ),
}
LEGACY_CALLS = {
    "UpdateFirmware": Disposition(
        "translated",
        ("UpdateFirmware",),
        update_firmware,
        lossy=(
            "the 2.0.1 answer's status: Rejected, InvalidCertificate and RevokedCertificate become a CALLERROR"
            " GenericError (1.6 UpdateFirmware.conf is empty); AcceptedCanceled is answered as accepted",
            "the 2.0.1 answer's statusInfo",
        ),
    ),
    "SignedUpdateFirmware": Disposition(
        "translated",
        ("UpdateFirmware",),
        signed_update_firmware,
        lossy=("the 2.0.1 answer's statusInfo",),
    ),
}
