"""ISO 15118 Plug & Charge over OCPP 1.6 DataTransfer (OCA application note "Using ISO 15118 Plug & Charge
with OCPP 1.6", v1.0, cited SPNC): vendorId `org.openchargealliance.iso15118pnc`, messageId the 2.0.1 message
name, data the 2.0.1 request as a JSON string, and the DataTransfer.conf data the 2.0.1 response as a JSON
string (SPNC §2.2). Wrapped payloads are checked against the 2.0.1 schema of their message before use.

Answers the legacy gives: a DataTransfer status other than Accepted, or Accepted without data, is a refusal
and becomes the 2.0.1 message's own negative answer; data that is not a valid 2.0.1 response is a broken
answer and becomes a CALLERROR, as any invalid CALLRESULT of the legacy does.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import orjson

from translators import schemas
from translators.bridge import Context, Disposition, PeerError, Request
from translators.rpc import V16, V201, OcppError, PropertyConstraintViolation

log = logging.getLogger("cutover.translators")

PNC_VENDOR_ID = "org.openchargealliance.iso15118pnc"
# OCPP 1.6 §7.17 IdToken: CiString20. SPNC §5: the StartTransaction of a Plug & Charge session carries the
# eMAID as its idTag (authorization.MAX_ID_TAG; not imported: authorization imports this module).
MAX_ID_TAG = 20

# SPNC §2.2, §6: what the legacy may wrap towards the station; each is the 2.0.1 CALL of the same name.
LEGACY_MESSAGES = frozenset(
    {"CertificateSigned", "DeleteCertificate", "GetInstalledCertificateIds", "InstallCertificate", "TriggerMessage"}
)
# SPNC §6.2.1 and §6.9.1: fields the note's simplified payloads leave out, with the value the note implies
# (its wrapped messages serve ISO 15118 only, SPNC §2.3); a value the legacy does write is kept.
LEGACY_REQUEST_DEFAULTS: dict[str, dict[str, Any]] = {
    "CertificateSigned": {"certificateType": "V2GCertificate"},
    "TriggerMessage": {"requestedMessage": "SignV2GCertificate"},
}
# pnc-16.md §7 (design): the station's answer when the legacy refuses a wrapped request or sends no data.
REFUSED_ANSWER: dict[str, dict[str, Any]] = {
    "Get15118EVCertificate": {"status": "Failed", "exiResponse": ""},
    "GetCertificateStatus": {"status": "Failed"},
    "SignCertificate": {"status": "Rejected"},
}
# pnc-16.md §7 (design): a refused Plug & Charge Authorize, by DataTransfer status. Rejected is the legacy's
# verdict on the token; the others mean it has none (it does not speak the application note).
AUTHORIZE_REFUSED_STATUS = {
    "Accepted": "Unknown",  # Accepted without data
    "Rejected": "Invalid",
    "UnknownMessageId": "Unknown",
    "UnknownVendorId": "Unknown",
}


def json_string(payload: dict[str, Any]) -> str:
    """The JSON text of a 2.0.1 payload, as SPNC §2.2 puts it in the 1.6 DataTransfer `data` string."""
    return orjson.dumps(payload).decode()


def wrapped(message_id: str, payload: dict[str, Any]) -> Request:
    """The 1.6 DataTransfer.req carrying a 2.0.1 request (SPNC §2.2)."""
    return Request("DataTransfer", {"vendorId": PNC_VENDOR_ID, "messageId": message_id, "data": json_string(payload)})


def unwrapped(message_id: str, answer: dict[str, Any]) -> dict[str, Any] | None:
    """The valid 2.0.1 response a DataTransfer.conf carries, None if it is a refusal; raise if it is broken."""
    if answer["status"] != "Accepted" or not answer.get("data"):
        return None
    try:
        response = orjson.loads(answer["data"])
    except orjson.JSONDecodeError as exc:
        raise PeerError(
            "FormationViolation",
            f"legacy CSMS answered the Plug & Charge {message_id} with data that is not JSON: {exc}",
        ) from None
    if not isinstance(response, dict):
        raise PeerError(
            "FormationViolation",
            f"legacy CSMS answered the Plug & Charge {message_id} with data that is not a JSON object",
        )
    try:
        schemas.load().validate(V201, "response", message_id, response)
    except OcppError as exc:
        raise PeerError(
            exc.code_for(V16), f"legacy CSMS answered the Plug & Charge {message_id} with an invalid {exc.description}"
        ) from None
    return response


def refusal_info(message_id: str, answer: dict[str, Any]) -> dict[str, str]:
    """A 2.0.1 StatusInfoType saying how the legacy refused a wrapped request."""
    status = answer["status"]
    if status == "Accepted":
        return {"reasonCode": "NoData", "additionalInfo": f"legacy CSMS accepted {message_id} but sent no data"}
    return {
        "reasonCode": status,
        "additionalInfo": f"legacy CSMS answered the Plug & Charge {message_id} with {status}",
    }


def relay(message_id: str, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """A charger's 2.0.1 request through the legacy as SPNC DataTransfer; its 2.0.1 response or refusal."""
    answer = yield wrapped(message_id, payload)
    response = unwrapped(message_id, answer)
    if response is None:
        return REFUSED_ANSWER[message_id] | {"statusInfo": refusal_info(message_id, answer)}
    return response


def get_15118_ev_certificate(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """SPNC §6.4: the EV's certificate installation or update request, through the legacy."""
    return (yield from relay("Get15118EVCertificate", payload))


def get_certificate_status(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """SPNC §6.5: an OCSP status request for a certificate of the contract chain, through the legacy."""
    return (yield from relay("GetCertificateStatus", payload))


def sign_certificate(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """SPNC §6.8: a CSR for the station's ISO 15118 (V2G) certificate, through the legacy."""
    return (yield from relay("SignCertificate", payload))


def authorize(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """A 2.0.1 Authorize carrying certificate data: DataTransfer messageId `Authorize` (application note §5)."""
    id_token = payload["idToken"]["idToken"]
    if len(id_token) > MAX_ID_TAG and ctx.config.long_id_token == "reject":
        # Refused before charging starts: once authorized, the session's StartTransaction could not carry it.
        raise PropertyConstraintViolation(
            f"idToken.idToken: {len(id_token)} characters, the legacy CSMS accepts at most {MAX_ID_TAG}",
            {"field": "idToken.idToken"},
        )
    answer = yield wrapped("Authorize", payload)
    response = unwrapped("Authorize", answer)
    if response is None:
        return {"idTokenInfo": {"status": AUTHORIZE_REFUSED_STATUS[answer["status"]]}}
    return response


def from_legacy(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """A legacy DataTransfer of the PnC vendor, by messageId."""
    message_id = payload.get("messageId")
    if message_id not in LEGACY_MESSAGES:
        # Also the note's messages a central system receives rather than sends (EVerest answers the same).
        return {"status": "UnknownMessageId"}
    request = wrapped_request(ctx, message_id, payload.get("data"))
    if request is None:
        return {"status": "Rejected"}
    answer = yield Request(message_id, request)
    return {"status": "Accepted", "data": json_string(answer)}


def wrapped_request(ctx: Context, message_id: str, data: str | None) -> dict[str, Any] | None:
    """The valid 2.0.1 request a legacy DataTransfer's data carries, or None (logged) if it carries none."""
    try:
        request = orjson.loads(data) if data else {}
        if not isinstance(request, dict):
            raise ValueError("data is not a JSON object")
        request = LEGACY_REQUEST_DEFAULTS.get(message_id, {}) | request
        schemas.load().validate(V201, "request", message_id, request)
    except (ValueError, OcppError) as exc:  # orjson.JSONDecodeError is a ValueError
        reason = exc.description if isinstance(exc, OcppError) else str(exc)
        # The legacy only sees DataTransfer Rejected: the operator needs the reason.
        log.warning(
            "pnc_request_rejected station_id=%s message_id=%s error=%s hint=the legacy CSMS's DataTransfer data"
            " must be a valid OCPP 2.0.1 %sRequest (OCA Plug & Charge application note §2.2)",
            ctx.state.station_id,
            message_id,
            reason,
            message_id,
        )
        return None
    return request


CHARGER_CALLS = {
    "Get15118EVCertificate": Disposition("translated", ("DataTransfer",), get_15118_ev_certificate),
    "GetCertificateStatus": Disposition("translated", ("DataTransfer",), get_certificate_status),
}
# The legacy's wrapped messages arrive as DataTransfer, which translators/data_transfer.py declares.
LEGACY_CALLS: dict[str, Disposition] = {}
