"""Which handler serves each action on each leg: the functional blocks' tables, merged."""

from __future__ import annotations

from translators import authorization, availability, meter_values, provisioning, remote_control, transactions
from translators.bridge import Disposition

# 2.0.1 CALLs a charger sends, by action.
CHARGER_CALLS: dict[str, Disposition] = {
    **provisioning.CHARGER_CALLS,
    **authorization.CHARGER_CALLS,
    **availability.CHARGER_CALLS,
    **transactions.CHARGER_CALLS,
    **meter_values.CHARGER_CALLS,
    **remote_control.CHARGER_CALLS,
}
# 1.6 CALLs the legacy CSMS sends, by action.
LEGACY_CALLS: dict[str, Disposition] = {
    **provisioning.LEGACY_CALLS,
    **authorization.LEGACY_CALLS,
    **availability.LEGACY_CALLS,
    **transactions.LEGACY_CALLS,
    **remote_control.LEGACY_CALLS,
}
