"""ISO 15118 Plug & Charge between a 2.0.1 charger and a legacy 1.6 CSMS speaking the OCA application note
(DataTransfer vendorId `org.openchargealliance.iso15118pnc`) through the proxy, over real sockets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import call_result as call_result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action

from peers import legacy_csms
from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms
from proxy.app import RunningProxy
from tests.conftest import proxy_url

PNC = "org.openchargealliance.iso15118pnc"
EMAID = "DEABCC12345678"
OCSP_REQUEST_DATA = {
    "hashAlgorithm": "SHA256",
    "issuerNameHash": "3f1c0a9be2d4",
    "issuerKeyHash": "9a8b7c6d5e4f",
    "serialNumber": "5e1f00d2",
    "responderURL": "http://ocsp.mo.example.com",
}
CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIIBDjCBtQIBADBTV2GSecc\n-----END CERTIFICATE REQUEST-----\n"
SECC_CHAIN = "-----BEGIN CERTIFICATE-----\nMIIB2TCCAX+gAwIBAgIUSeccLeaf\n-----END CERTIFICATE-----\n"


class PncSession(legacy_csms._LegacySession):
    """A legacy station session answering the application note's wrapped Authorize and SignCertificate."""

    @on(Action16.data_transfer)
    def on_data_transfer(
        self, call_unique_id: str, vendor_id: str, message_id: str | None = None, data: str | None = None, **_: Any
    ) -> call_result16.DataTransfer:
        self.csms.data_transfers.append((self.id, self._payload(call_unique_id)))
        if vendor_id != PNC:
            return call_result16.DataTransfer(status="UnknownVendorId")
        request = json.loads(data or "{}")
        if message_id == "Authorize":
            status = "Accepted" if self.csms.is_accepted(request["idToken"]["idToken"]) else "Invalid"
            response = {"idTokenInfo": {"status": status}, "certificateStatus": "Accepted"}
        elif message_id == "SignCertificate":
            response = {"status": "Accepted"}
        else:
            return call_result16.DataTransfer(status="UnknownMessageId")
        return call_result16.DataTransfer(status="Accepted", data=json.dumps(response))


@pytest.fixture
async def legacy(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LegacyCsms]:
    # LegacyCsms builds one `_LegacySession` per station; this module's stations get the subclass.
    monkeypatch.setattr(legacy_csms, "_LegacySession", PncSession)
    async with LegacyCsms(accepted_id_tags=(EMAID,)) as csms:
        yield csms


class PncCharger(Charger201):
    """A charger with an ISO 15118 stack: it takes the SECC certificate chain it is sent."""

    @on(Action.certificate_signed)
    def on_certificate_signed(self, **_: Any) -> call_result.CertificateSigned:
        return call_result.CertificateSigned(status="Accepted")


async def booted(proxy: RunningProxy, station_id: str) -> PncCharger:
    charger = PncCharger(station_id, proxy_url(proxy), id_token_type="eMAID")
    await charger.connect()
    assert (await charger.boot())["status"] == "Accepted"
    await charger.status(1, 1, "Available")
    return charger


async def test_plug_and_charge_authorization_and_its_transaction(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = await booted(proxy, "CPPC01")
    authorize = call.Authorize(
        id_token={"id_token": EMAID, "type": "eMAID"}, iso15118_certificate_hash_data=[OCSP_REQUEST_DATA]
    )
    answer = await charger._call(authorize)
    assert answer == {"idTokenInfo": {"status": "Accepted"}, "certificateStatus": "Accepted"}
    ((station_id, transfer),) = legacy.data_transfers
    assert (station_id, transfer["vendorId"], transfer["messageId"]) == ("CPPC01", PNC, "Authorize")
    assert json.loads(transfer["data"]) == {
        "idToken": {"idToken": EMAID, "type": "eMAID"},
        "iso15118CertificateHashData": [OCSP_REQUEST_DATA],
    }
    # OCA application note §5: no regular Authorize.req for Plug & Charge ...
    assert not [frame for _, frame in legacy.received if frame[0] == 2 and frame[2] == "Authorize"]

    # ... and the session's StartTransaction carries the eMAID as its idTag.
    await charger.start_transaction(1, EMAID)
    await charger.charging(1)
    await charger.sample(1, 2000)
    await charger.stop_transaction(1, "Local", "StopAuthorized", EMAID)
    await charger.close()
    (tx,) = legacy.transactions.values()
    assert (tx.station_id, tx.id_tag, tx.stop_reason) == ("CPPC01", EMAID, "Local")
    assert tx.meter_stop == tx.meter_start + 2000


async def test_secc_certificate_through_wrapped_messages(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = await booted(proxy, "CPPC02")
    signing = await charger._call(call.SignCertificate(csr=CSR, certificate_type="V2GCertificate"))
    assert signing == {"status": "Accepted"}
    ((_, transfer),) = legacy.data_transfers
    assert (transfer["vendorId"], transfer["messageId"]) == (PNC, "SignCertificate")
    assert json.loads(transfer["data"]) == {"csr": CSR, "certificateType": "V2GCertificate"}

    wrapped = json.dumps({"certificateChain": SECC_CHAIN})
    answer = await legacy.data_transfer("CPPC02", PNC, "CertificateSigned", wrapped)
    assert answer["status"] == "Accepted"
    assert json.loads(answer["data"]) == {"status": "Accepted"}
    (received,) = [payload for action, payload in charger.received_calls if action == "CertificateSigned"]
    assert received == {"certificateChain": SECC_CHAIN, "certificateType": "V2GCertificate"}
    await charger.close()
