"""The local authorization list through the proxy over real sockets: the legacy 1.6 CSMS sends a list to a
2.0.1 charger and reads its version back."""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms
from proxy.app import RunningProxy
from tests.conftest import proxy_url

EXPIRY = "2030-01-01T00:00:00.000Z"


class ListCharger(Charger201):
    """A 2.0.1 charger with a local authorization list (OCPP 2.0.1 D01/D02, simplified)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.list_version = 0
        self.local_list: dict[str, str] = {}  # idToken → status

    @on(Action.send_local_list)
    def on_send_local_list(
        self,
        version_number: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> call_result.SendLocalList:
        if update_type == "Differential" and version_number <= self.list_version:
            return call_result.SendLocalList(status="VersionMismatch")
        if update_type == "Full":
            self.local_list.clear()
        for entry in local_authorization_list or []:
            token = entry["id_token"]["id_token"]
            if "id_token_info" in entry:
                self.local_list[token] = entry["id_token_info"]["status"]
            else:
                self.local_list.pop(token, None)
        self.list_version = version_number
        return call_result.SendLocalList(status="Accepted")

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self, **_: Any) -> call_result.GetLocalListVersion:
        return call_result.GetLocalListVersion(version_number=self.list_version)


async def test_send_local_list_and_read_its_version(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = ListCharger("CP-LL1", proxy_url(proxy))
    await charger.connect()
    assert (await charger.boot())["status"] == "Accepted"
    assert await legacy._call("CP-LL1", call16.GetLocalListVersion()) == {"listVersion": 0}

    full = call16.SendLocalList(
        list_version=3,
        update_type="Full",
        local_authorization_list=[
            {
                "id_tag": "TAG0001",
                "id_tag_info": {"status": "Accepted", "expiry_date": EXPIRY, "parent_id_tag": "FLEET-7"},
            },
            {"id_tag": "TAG0002", "id_tag_info": {"status": "Blocked"}},
        ],
    )
    assert await legacy._call("CP-LL1", full) == {"status": "Accepted"}
    (sent,) = [p for action, p in charger.received_calls if action == "SendLocalList"]
    assert sent == {
        "versionNumber": 3,
        "updateType": "Full",
        "localAuthorizationList": [
            {
                "idToken": {"idToken": "TAG0001", "type": "Central"},
                "idTokenInfo": {
                    "status": "Accepted",
                    "cacheExpiryDateTime": EXPIRY,
                    "groupIdToken": {"idToken": "FLEET-7", "type": "Central"},
                },
            },
            {"idToken": {"idToken": "TAG0002", "type": "Central"}, "idTokenInfo": {"status": "Blocked"}},
        ],
    }
    assert charger.local_list == {"TAG0001": "Accepted", "TAG0002": "Blocked"}
    assert await legacy._call("CP-LL1", call16.GetLocalListVersion()) == {"listVersion": 3}

    # a differential update without idTagInfo deletes the entry; a stale version is a VersionMismatch
    delete = call16.SendLocalList(
        list_version=4, update_type="Differential", local_authorization_list=[{"id_tag": "TAG0002"}]
    )
    assert await legacy._call("CP-LL1", delete) == {"status": "Accepted"}
    assert charger.local_list == {"TAG0001": "Accepted"}
    stale = call16.SendLocalList(
        list_version=2, update_type="Differential", local_authorization_list=[{"id_tag": "TAG0003"}]
    )
    assert await legacy._call("CP-LL1", stale) == {"status": "VersionMismatch"}
    assert await legacy._call("CP-LL1", call16.GetLocalListVersion()) == {"listVersion": 4}
    await charger.close()
