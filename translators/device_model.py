"""Device model (2.0.1 functional block B, reporting): GetBaseReport after boot, NotifyReport into the
cache, and the 1.6 configuration keys answered from it."""

from __future__ import annotations

from typing import Any

CHARGER_CALLS: dict[str, Any] = {}
LEGACY_CALLS: dict[str, Any] = {}
