"""Monitoring, display and customer information (2.0.1 functional blocks N and O): messages with no 1.6
counterpart, answered by the proxy so that the tee carries them to the shadow."""

from __future__ import annotations

from typing import Any

CHARGER_CALLS: dict[str, Any] = {}
LEGACY_CALLS: dict[str, Any] = {}
