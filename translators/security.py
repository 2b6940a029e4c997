"""Security (2.0.1 functional block A and M; OCPP 1.6 Security Whitepaper): certificates, security events."""

from __future__ import annotations

from typing import Any

CHARGER_CALLS: dict[str, Any] = {}
LEGACY_CALLS: dict[str, Any] = {}
