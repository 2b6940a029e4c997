"""Diagnostics and logs (2.0.1 functional block N): GetLog ⇄ GetDiagnostics / GetLog, LogStatusNotification."""

from __future__ import annotations

from typing import Any

CHARGER_CALLS: dict[str, Any] = {}
LEGACY_CALLS: dict[str, Any] = {}
