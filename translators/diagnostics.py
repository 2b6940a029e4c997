"""Diagnostics and logs (2.0.1 functional block N): GetLog ⇄ GetDiagnostics / GetLog, LogStatusNotification.

A 1.6 core GetDiagnostics has no requestId; the proxy issues one and remembers it (`StationState.requests`),
so the station's LogStatusNotifications go back as core DiagnosticsStatusNotification for a GetDiagnostics
and as Security-Whitepaper LogStatusNotification (with the legacy's own requestId) for a GetLog.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from translators.bridge import Context, Disposition, Request
from translators.rpc import at_most

# OCPP 2.0.1 LogParametersType.remoteLocation: string[512]; 1.6 GetDiagnostics.location is an unbounded URI.
MAX_REMOTE_LOCATION = 512
CORE_DIAGNOSTICS = "GetDiagnostics"
SECURITY_GET_LOG = "GetLog"

# messages.md §2.15: 1.6 GetDiagnostics.req → 2.0.1 LogParametersType.
DIAGNOSTICS_TO_LOG_PARAMETERS = {
    "location": "remoteLocation",
    "startTime": "oldestTimestamp",
    "stopTime": "latestTimestamp",
}
# messages.md §2.15: 2.0.1 UploadLogStatusEnumType → 1.6 core DiagnosticsStatus. Every way an upload can end
# without a file is UploadFailed; AcceptedCanceled (this upload was given up for a newer request) too.
UPLOAD_STATUS_TO_DIAGNOSTICS_16 = {
    "Idle": "Idle",
    "Uploading": "Uploading",
    "Uploaded": "Uploaded",
    "UploadFailure": "UploadFailed",
    "BadMessage": "UploadFailed",
    "NotSupportedOperation": "UploadFailed",
    "PermissionDenied": "UploadFailed",
    "AcceptedCanceled": "UploadFailed",
}
# messages.md §2.15: 2.0.1 UploadLogStatusEnumType → Security-Whitepaper UploadLogStatusEnumType (no
# AcceptedCanceled there).
UPLOAD_STATUS_TO_SECURITY_16 = {
    "Idle": "Idle",
    "Uploading": "Uploading",
    "Uploaded": "Uploaded",
    "UploadFailure": "UploadFailure",
    "BadMessage": "BadMessage",
    "NotSupportedOperation": "NotSupportedOperation",
    "PermissionDenied": "PermissionDenied",
    "AcceptedCanceled": "UploadFailure",
}
# messages.md §3: the SWP GetLog status set is the 2.0.1 set.
LOG_STATUS = {s: s for s in ("Accepted", "Rejected", "AcceptedCanceled")}


def get_diagnostics(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """A 1.6 core GetDiagnostics as a 2.0.1 GetLog of the DiagnosticsLog under a requestId the proxy issues."""
    at_most(payload, "location", "log.remoteLocation", MAX_REMOTE_LOCATION)
    request_id = ctx.state.on_request_issued(CORE_DIAGNOSTICS)
    ctx.touch()
    log = {target: payload[source] for source, target in DIAGNOSTICS_TO_LOG_PARAMETERS.items() if source in payload}
    request: dict[str, Any] = {"logType": "DiagnosticsLog", "requestId": request_id, "log": log}
    for key in ("retries", "retryInterval"):
        if key in payload:
            request[key] = payload[key]
    answer = yield Request("GetLog", request)
    # OCPP 1.6 §6.26 GetDiagnostics.conf: fileName is "not present when no diagnostic information is
    # available", the only 1.6 way to say nothing will be uploaded; a Rejected GetLog answers that.
    if answer["status"] == "Rejected":
        ctx.lossy("GetDiagnostics", "the charger rejected GetLog: answered without fileName")
        return {}
    return {"fileName": answer["filename"]} if "filename" in answer else {}


def get_log(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """A Security-Whitepaper GetLog as the 2.0.1 GetLog (same fields, under a requestId the proxy issues)."""
    request_id = ctx.state.on_request_issued(SECURITY_GET_LOG, payload["requestId"])
    ctx.touch()
    answer = yield Request("GetLog", {**payload, "requestId": request_id})
    response: dict[str, Any] = {"status": LOG_STATUS[answer["status"]]}
    if "filename" in answer:
        response["filename"] = answer["filename"]
    return response


def log_status_notification(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """The station's upload progress, to the 1.6 message of the request it belongs to."""
    request_id = payload.get("requestId")
    status = payload["status"]
    # No requestId: a triggered report with no upload going on (2.0.1 LogStatusNotificationRequest.requestId);
    # it goes the core way, like a triggered FirmwareStatusNotification.
    origin = None if request_id is None else ctx.state.request_of(request_id)
    if request_id is None or (origin is not None and origin[0] == CORE_DIAGNOSTICS):
        status_16 = UPLOAD_STATUS_TO_DIAGNOSTICS_16[status]
        if status_16 != status:
            ctx.lossy("LogStatusNotification", f"{status} sent as DiagnosticsStatus {status_16}")
        yield Request("DiagnosticsStatusNotification", {"status": status_16})
        return {}
    status_16 = UPLOAD_STATUS_TO_SECURITY_16[status]
    if status_16 != status:
        ctx.lossy("LogStatusNotification", f"{status} sent as {status_16}")
    # The legacy's own requestId of its GetLog (an id the proxy never issued is passed on as it is).
    legacy_request_id = origin[1] if origin is not None and origin[1] is not None else request_id
    yield Request("LogStatusNotification", {"status": status_16, "requestId": legacy_request_id})
    return {}


CHARGER_CALLS = {
    "LogStatusNotification": Disposition(
        "translated",
        ("DiagnosticsStatusNotification", "LogStatusNotification"),
        log_status_notification,
        lossy=(
            "to DiagnosticsStatusNotification: the requestId; UploadFailure, BadMessage, NotSupportedOperation,"
            " PermissionDenied and AcceptedCanceled are sent as UploadFailed",
            "to Security-Whitepaper LogStatusNotification: AcceptedCanceled is sent as UploadFailure",
        ),
    ),
}
LEGACY_CALLS = {
    "GetDiagnostics": Disposition(
        "translated",
        ("GetLog",),
        get_diagnostics,
        lossy=(
            "the 2.0.1 answer's status: Rejected is answered without fileName (1.6: no diagnostics available),"
            " AcceptedCanceled as accepted",
            "the 2.0.1 answer's statusInfo",
        ),
    ),
    "GetLog": Disposition("translated", ("GetLog",), get_log, lossy=("the 2.0.1 answer's statusInfo",)),
}
