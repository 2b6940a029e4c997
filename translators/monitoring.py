"""Monitoring, display and customer information (2.0.1 functional blocks N and O): messages with no 1.6
counterpart. The proxy answers them as a 2.0.1 CSMS would; the tee carries them to the shadow."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from translators.bridge import Context, Disposition, Request


def acknowledge(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    """The empty response these notifications take (their responses have no required field)."""
    return {}
    yield  # pragma: no cover - makes this a handler generator


NO_16_COUNTERPART = "no OCPP 1.6 message carries it; answered by the proxy, seen by the shadow"

CHARGER_CALLS = {
    # 1.6 reports faults in StatusNotification.errorCode; 2.0.1 events are richer and not mapped back.
    "NotifyEvent": Disposition("mirror-only", (), acknowledge, NO_16_COUNTERPART),
    "NotifyMonitoringReport": Disposition("mirror-only", (), acknowledge, NO_16_COUNTERPART),
    "NotifyCustomerInformation": Disposition("mirror-only", (), acknowledge, NO_16_COUNTERPART),
    "NotifyDisplayMessages": Disposition("mirror-only", (), acknowledge, NO_16_COUNTERPART),
}
LEGACY_CALLS: dict[str, Disposition] = {}
