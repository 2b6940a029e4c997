"""Security (2.0.1 functional blocks A and M; OCPP 1.6 Security Whitepaper, cited SWP): certificates,
security events. The ISO 15118 certificates travel in Plug & Charge DataTransfers instead (`iso15118`)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from translators import iso15118
from translators.bridge import Context, Disposition, Request
from translators.remote_control import trigger

# messages.md §3 CertificateUse: SWP CertificateUseEnumType → 2.0.1 InstallCertificateUseEnumType and
# GetCertificateIdUseEnumType (the SWP values are the two non-ISO-15118 roots).
CERTIFICATE_USE_16_TO_201 = {
    "CentralSystemRootCertificate": "CSMSRootCertificate",
    "ManufacturerRootCertificate": "ManufacturerRootCertificate",
}
# messages.md §3.1 (SWP §8 vs 2.0.1 Part 2 Appendices security_events.csv): the 2.0.1 names of SWP events that
# were renamed; any other event type (the lists are recommendations) keeps its name.
SECURITY_EVENT_201_TO_16 = {
    "FailedToAuthenticateAtCsms": "FailedToAuthenticateAtCentralSystem",
    "CsmsFailedToAuthenticate": "CentralSystemFailedToAuthenticate",
    "InvalidCsmsCertificate": "InvalidCentralSystemCertificate",
    "InvalidChargingStationCertificate": "InvalidChargePointCertificate",
}
# messages.md §2.10: SWP ExtendedTriggerMessage MessageTriggerEnumType → 2.0.1 MessageTriggerEnumType.
EXTENDED_TRIGGER_16_TO_201 = {
    "BootNotification": "BootNotification",
    "LogStatusNotification": "LogStatusNotification",
    "FirmwareStatusNotification": "FirmwareStatusNotification",
    "Heartbeat": "Heartbeat",
    "MeterValues": "MeterValues",
    "SignChargePointCertificate": "SignChargingStationCertificate",
    "StatusNotification": "StatusNotification",
}
# The status enums of these responses are the same sets in SWP and 2.0.1 (messages.md §3).
CERTIFICATE_SIGNED_STATUS = {s: s for s in ("Accepted", "Rejected")}
INSTALL_CERTIFICATE_STATUS = {s: s for s in ("Accepted", "Failed", "Rejected")}
DELETE_CERTIFICATE_STATUS = {s: s for s in ("Accepted", "Failed", "NotFound")}
GET_INSTALLED_CERTIFICATE_STATUS = {s: s for s in ("Accepted", "NotFound")}
SIGN_CERTIFICATE_STATUS = {s: s for s in ("Accepted", "Rejected")}


def certificate_signed(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """SWP CertificateSigned: the station's own (ChargingStationCertificate) chain."""
    request = {"certificateChain": payload["certificateChain"], "certificateType": "ChargingStationCertificate"}
    answer = yield Request("CertificateSigned", request)
    return {"status": CERTIFICATE_SIGNED_STATUS[answer["status"]]}


def install_certificate(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    request = {
        "certificateType": CERTIFICATE_USE_16_TO_201[payload["certificateType"]],
        "certificate": payload["certificate"],
    }
    answer = yield Request("InstallCertificate", request)
    return {"status": INSTALL_CERTIFICATE_STATUS[answer["status"]]}


def delete_certificate(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    answer = yield Request("DeleteCertificate", {"certificateHashData": payload["certificateHashData"]})
    return {"status": DELETE_CERTIFICATE_STATUS[answer["status"]]}


def get_installed_certificate_ids(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """SWP asks for one certificate type and gets a flat list; 2.0.1 answers with chains."""
    request = {"certificateType": [CERTIFICATE_USE_16_TO_201[payload["certificateType"]]]}
    answer = yield Request("GetInstalledCertificateIds", request)
    response: dict[str, Any] = {"status": GET_INSTALLED_CERTIFICATE_STATUS[answer["status"]]}
    chains = answer.get("certificateHashDataChain", [])
    if chains:
        response["certificateHashData"] = [chain["certificateHashData"] for chain in chains]
    children = sum(len(chain.get("childCertificateHashData", [])) for chain in chains)
    if children:
        ctx.lossy("GetInstalledCertificateIds", f"{children} childCertificateHashData left out")
    return response


def extended_trigger_message(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    return (yield from trigger(ctx, payload, EXTENDED_TRIGGER_16_TO_201))


def security_event_notification(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    request: dict[str, Any] = {"type": SECURITY_EVENT_201_TO_16.get(payload["type"], payload["type"])}
    request["timestamp"] = payload["timestamp"]
    if "techInfo" in payload:
        request["techInfo"] = payload["techInfo"]
    yield Request("SecurityEventNotification", request)
    return {}


def sign_certificate(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """A CSR: the station's own certificate through SWP, its ISO 15118 certificate through Plug & Charge."""
    if payload.get("certificateType") == "V2GCertificate":
        return (yield from iso15118.sign_certificate(ctx, payload))
    answer = yield Request("SignCertificate", {"csr": payload["csr"]})
    return {"status": SIGN_CERTIFICATE_STATUS[answer["status"]]}


CHARGER_CALLS = {
    "SecurityEventNotification": Disposition("translated", ("SecurityEventNotification",), security_event_notification),
    "SignCertificate": Disposition(
        "translated",
        ("SignCertificate", "DataTransfer (Plug & Charge SignCertificate, for certificateType V2GCertificate)"),
        sign_certificate,
        lossy=(
            "no certificateType (2.0.1: a certificate for both the CSMS connection and ISO 15118) is sent"
            " as the SWP SignCertificate of the station's own certificate",
        ),
    ),
}
LEGACY_CALLS = {
    "CertificateSigned": Disposition("translated", ("CertificateSigned",), certificate_signed),
    "InstallCertificate": Disposition("translated", ("InstallCertificate",), install_certificate),
    "DeleteCertificate": Disposition("translated", ("DeleteCertificate",), delete_certificate),
    "GetInstalledCertificateIds": Disposition(
        "translated",
        ("GetInstalledCertificateIds",),
        get_installed_certificate_ids,
        lossy=(
            "the 2.0.1 answer's chains are flattened: each chain's certificateType and childCertificateHashData"
            " are left out",
        ),
    ),
    "ExtendedTriggerMessage": Disposition("translated", ("TriggerMessage",), extended_trigger_message),
}
