"""ISO 15118 Plug & Charge over OCPP 1.6 DataTransfer (OCA application note "Using ISO 15118 Plug & Charge
with OCPP 1.6", v1.0): vendorId `org.openchargealliance.iso15118pnc`. Written by the PnC work."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from translators.bridge import Context, Request
from translators.rpc import NotSupported

PNC_VENDOR_ID = "org.openchargealliance.iso15118pnc"


def from_legacy(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """A legacy DataTransfer of the PnC vendor, by messageId."""
    raise NotSupported(f"Plug & Charge message {payload.get('messageId')!r} is not translated yet")
    yield  # pragma: no cover


def authorize(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """A 2.0.1 Authorize carrying certificate data: DataTransfer messageId `Authorize` (application note §5)."""
    raise NotSupported("Plug & Charge authorization is not translated yet")
    yield  # pragma: no cover


CHARGER_CALLS: dict[str, Any] = {}
LEGACY_CALLS: dict[str, Any] = {}
