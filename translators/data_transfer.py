"""DataTransfer in both directions (2.0.1 functional block P). Plug & Charge messages, which OCPP 1.6
carries in DataTransfer (vendorId `org.openchargealliance.iso15118pnc`), are routed to `iso15118`."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import orjson

from translators import iso15118
from translators.bridge import Context, Disposition, Request

DATA_TRANSFER_STATUS = {s: s for s in ("Accepted", "Rejected", "UnknownMessageId", "UnknownVendorId")}


def data_string(data: Any) -> str:
    """1.6 DataTransfer data is a string; 2.0.1 data is any JSON, serialised when it is not a string."""
    return data if isinstance(data, str) else orjson.dumps(data).decode()


def data_transfer_up(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """A charger's 2.0.1 DataTransfer to the legacy."""
    request: dict[str, Any] = {key: payload[key] for key in ("vendorId", "messageId") if key in payload}
    if "data" in payload:
        request["data"] = data_string(payload["data"])
    answer = yield Request("DataTransfer", request)
    response: dict[str, Any] = {"status": DATA_TRANSFER_STATUS[answer["status"]]}
    if "data" in answer:
        response["data"] = answer["data"]
    return response


def data_transfer_down(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """The legacy's 1.6 DataTransfer to the charger (a 1.6 string stays a string)."""
    if payload["vendorId"] == iso15118.PNC_VENDOR_ID:
        return (yield from iso15118.from_legacy(ctx, payload))
    answer = yield Request("DataTransfer", dict(payload))
    response: dict[str, Any] = {"status": DATA_TRANSFER_STATUS[answer["status"]]}
    if "data" in answer:
        response["data"] = data_string(answer["data"])
    return response


CHARGER_CALLS = {
    "DataTransfer": Disposition(
        "translated",
        ("DataTransfer",),
        data_transfer_up,
        lossy=("2.0.1 data that is not a string is sent as its JSON text",),
    ),
}
LEGACY_CALLS = {
    "DataTransfer": Disposition(
        "translated",
        ("DataTransfer", "Plug & Charge messages of the OCA application note"),
        data_transfer_down,
        lossy=("a 2.0.1 answer's data that is not a string is sent as its JSON text",),
    ),
}
