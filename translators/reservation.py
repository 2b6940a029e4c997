"""Reservation (2.0.1 functional block H): ReserveNow, CancelReservation, ReservationStatusUpdate."""

from __future__ import annotations

from typing import Any

CHARGER_CALLS: dict[str, Any] = {}
LEGACY_CALLS: dict[str, Any] = {}
