"""Security Whitepaper flows between a 2.0.1 charger and a legacy 1.6 CSMS through the proxy, over real
sockets: the charger's CSR reaches the legacy as SignCertificate, the signed chain comes back as a 2.0.1
CertificateSigned of the station's own certificate; security events reach the legacy with their 1.6 names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as call_result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action

from peers import legacy_csms
from peers._wire import utc_now
from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms
from proxy.app import RunningProxy
from tests.conftest import proxy_url

CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIIBCjCBsQIBADBPMQswCQYDVQQGEwJOTDEP\n-----END CERTIFICATE REQUEST-----\n"
CHAIN = "-----BEGIN CERTIFICATE-----\nMIIBxTCCAWugAwIBAgIUCPSC01Leaf\n-----END CERTIFICATE-----\n"


class SecuritySession(legacy_csms._LegacySession):
    """A legacy station session that also takes the Security Whitepaper's charge-point messages."""

    @on(Action16.sign_certificate)
    def on_sign_certificate(self, **_: Any) -> call_result16.SignCertificate:
        return call_result16.SignCertificate(status="Accepted")

    @on(Action16.security_event_notification)
    def on_security_event_notification(self, **_: Any) -> call_result16.SecurityEventNotification:
        return call_result16.SecurityEventNotification()


@pytest.fixture
async def legacy(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LegacyCsms]:
    # LegacyCsms builds one `_LegacySession` per station; this module's stations get the subclass.
    monkeypatch.setattr(legacy_csms, "_LegacySession", SecuritySession)
    async with LegacyCsms() as csms:
        yield csms


class CertificateCharger(Charger201):
    """A charger that takes the certificate chain it is sent."""

    @on(Action.certificate_signed)
    def on_certificate_signed(self, **_: Any) -> call_result.CertificateSigned:
        return call_result.CertificateSigned(status="Accepted")


def legacy_calls(legacy: LegacyCsms, station_id: str, action: str) -> list[dict[str, Any]]:
    return [frame[3] for sid, frame in legacy.received if sid == station_id and frame[0] == 2 and frame[2] == action]


async def test_station_certificate_renewal(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = CertificateCharger("CPSC01", proxy_url(proxy))
    await charger.connect()
    assert (await charger.boot())["status"] == "Accepted"

    signing = await charger._call(call.SignCertificate(csr=CSR, certificate_type="ChargingStationCertificate"))
    assert signing == {"status": "Accepted"}
    assert legacy_calls(legacy, "CPSC01", "SignCertificate") == [{"csr": CSR}]

    signed = await legacy._call("CPSC01", call16.CertificateSigned(certificate_chain=CHAIN))
    assert signed == {"status": "Accepted"}
    (received,) = [payload for action, payload in charger.received_calls if action == "CertificateSigned"]
    assert received == {"certificateChain": CHAIN, "certificateType": "ChargingStationCertificate"}
    await charger.close()


async def test_security_event_reaches_the_legacy_with_its_1_6_name(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = CertificateCharger("CPSC02", proxy_url(proxy))
    await charger.connect()
    assert (await charger.boot())["status"] == "Accepted"
    timestamp = utc_now()
    event = call.SecurityEventNotification(type="InvalidCsmsCertificate", timestamp=timestamp, tech_info="CN mismatch")
    assert await charger._call(event) == {}
    assert legacy_calls(legacy, "CPSC02", "SecurityEventNotification") == [
        {"type": "InvalidCentralSystemCertificate", "timestamp": timestamp, "techInfo": "CN mismatch"}
    ]
    await charger.close()
