"""Local authorization list (2.0.1 functional block D): SendLocalList, GetLocalListVersion."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from translators.authorization import to_id_token, to_id_token_info
from translators.bridge import Context, Disposition, Request

# messages.md §3: 2.0.1 SendLocalListStatusEnumType → 1.6 UpdateStatus (1.6 NotSupported has no 2.0.1 value, so
# it is never produced).
SEND_LOCAL_LIST_STATUS_TO_16 = {"Accepted": "Accepted", "Failed": "Failed", "VersionMismatch": "VersionMismatch"}


def send_local_list(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """The legacy's list, version and update type as the charger's 2.0.1 local authorization list."""
    request: dict[str, Any] = {"versionNumber": payload["listVersion"], "updateType": payload["updateType"]}
    entries = []
    for entry in payload.get("localAuthorizationList", []):
        converted: dict[str, Any] = {"idToken": to_id_token(ctx, entry["idTag"])}
        # Without idTagInfo a differential update deletes the entry, in both versions.
        if "idTagInfo" in entry:
            converted["idTokenInfo"] = to_id_token_info(entry["idTagInfo"])
        entries.append(converted)
    if entries:  # 2.0.1 localAuthorizationList has minItems 1: an empty 1.6 list is no list
        request["localAuthorizationList"] = entries
    answer = yield Request("SendLocalList", request)
    return {"status": SEND_LOCAL_LIST_STATUS_TO_16[answer["status"]]}


def get_local_list_version(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """The charger's list version as the 1.6 listVersion."""
    answer = yield Request("GetLocalListVersion", {})
    return {"listVersion": answer["versionNumber"]}


CHARGER_CALLS: dict[str, Disposition] = {}
LEGACY_CALLS = {
    "SendLocalList": Disposition(
        "translated",
        ("SendLocalList",),
        send_local_list,
        lossy=(
            "idTag has no type: the type the station last showed for it, else the configured default",
            "the 2.0.1 answer's statusInfo is dropped",
        ),
    ),
    "GetLocalListVersion": Disposition("translated", ("GetLocalListVersion",), get_local_list_version),
}
