"""Firmware management (2.0.1 functional block L): UpdateFirmware, FirmwareStatusNotification, PublishFirmware."""

from __future__ import annotations

from typing import Any

CHARGER_CALLS: dict[str, Any] = {}
LEGACY_CALLS: dict[str, Any] = {}
