"""The disposition of every action of both versions on the leg it arrives on, from the functional blocks'
tables; what a block does not declare is an action the other side sends, refused as such."""

from __future__ import annotations

from translators import (
    authorization,
    availability,
    data_transfer,
    device_model,
    diagnostics,
    firmware,
    iso15118,
    local_auth_list,
    meter_values,
    monitoring,
    provisioning,
    remote_control,
    reservation,
    security,
    smart_charging,
    transactions,
)
from translators.bridge import Disposition, refused

BLOCKS = (
    provisioning, authorization, availability, transactions, meter_values, remote_control, data_transfer,
    device_model, smart_charging, reservation, local_auth_list, firmware, diagnostics, security, iso15118,
    monitoring,
)  # fmt: skip

# messages.md §1 (direction from EVerest's ChargePoint::handle_message): what a charging station sends.
STATION_ACTIONS_201 = frozenset(
    {
        "Authorize", "BootNotification", "ClearedChargingLimit", "DataTransfer", "FirmwareStatusNotification",
        "Get15118EVCertificate", "GetCertificateStatus", "Heartbeat", "LogStatusNotification", "MeterValues",
        "NotifyChargingLimit", "NotifyCustomerInformation", "NotifyDisplayMessages", "NotifyEVChargingNeeds",
        "NotifyEVChargingSchedule", "NotifyEvent", "NotifyMonitoringReport", "NotifyReport",
        "PublishFirmwareStatusNotification", "ReportChargingProfiles", "ReservationStatusUpdate",
        "SecurityEventNotification", "SignCertificate", "StatusNotification", "TransactionEvent",
    }
)  # fmt: skip
# messages.md §1.1: what a 1.6 charge point sends (DataTransfer goes both ways).
STATION_ACTIONS_16 = frozenset(
    {
        "Authorize", "BootNotification", "DataTransfer", "DiagnosticsStatusNotification",
        "FirmwareStatusNotification", "Heartbeat", "LogStatusNotification", "MeterValues",
        "SecurityEventNotification", "SignCertificate", "SignedFirmwareStatusNotification", "StartTransaction",
        "StatusNotification", "StopTransaction",
    }
)  # fmt: skip
CSMS_ACTIONS_16 = frozenset(
    {
        "CancelReservation", "ChangeAvailability", "ChangeConfiguration", "ClearCache", "ClearChargingProfile",
        "DataTransfer", "GetCompositeSchedule", "GetConfiguration", "GetDiagnostics", "GetLocalListVersion",
        "RemoteStartTransaction", "RemoteStopTransaction", "ReserveNow", "Reset", "SendLocalList",
        "SetChargingProfile", "TriggerMessage", "UnlockConnector", "UpdateFirmware", "CertificateSigned",
        "DeleteCertificate", "ExtendedTriggerMessage", "GetInstalledCertificateIds", "GetLog",
        "InstallCertificate", "SignedUpdateFirmware",
    }
)  # fmt: skip
ALL_ACTIONS_201 = STATION_ACTIONS_201 | frozenset(
    {
        "CancelReservation", "CertificateSigned", "ChangeAvailability", "ClearCache", "ClearChargingProfile",
        "ClearDisplayMessage", "ClearVariableMonitoring", "CostUpdated", "CustomerInformation", "DeleteCertificate",
        "GetBaseReport", "GetChargingProfiles", "GetCompositeSchedule", "GetDisplayMessages",
        "GetInstalledCertificateIds", "GetLocalListVersion", "GetLog", "GetMonitoringReport", "GetReport",
        "GetTransactionStatus", "GetVariables", "InstallCertificate", "PublishFirmware", "RequestStartTransaction",
        "RequestStopTransaction", "ReserveNow", "Reset", "SendLocalList", "SetChargingProfile",
        "SetDisplayMessage", "SetMonitoringBase", "SetMonitoringLevel", "SetNetworkProfile",
        "SetVariableMonitoring", "SetVariables", "TriggerMessage", "UnlockConnector", "UnpublishFirmware",
        "UpdateFirmware",
    }
)  # fmt: skip
ALL_ACTIONS_16 = STATION_ACTIONS_16 | CSMS_ACTIONS_16


def merged(tables: list[dict[str, Disposition]]) -> dict[str, Disposition]:
    result: dict[str, Disposition] = {}
    for table in tables:
        for action, disposition in table.items():
            if action in result:
                raise RuntimeError(f"{action} is declared by two functional blocks")
            result[action] = disposition
    return result


# 2.0.1 CALLs a charger sends, by action; the CSMS-to-station ones are refused as such.
CHARGER_CALLS: dict[str, Disposition] = merged([block.CHARGER_CALLS for block in BLOCKS]) | {
    action: refused(f"{action} is sent by a CSMS to a charging station, not by a charging station")
    for action in ALL_ACTIONS_201 - STATION_ACTIONS_201
}
# 1.6 CALLs the legacy CSMS sends, by action; the charge-point-to-CSMS ones are refused as such.
LEGACY_CALLS: dict[str, Disposition] = merged([block.LEGACY_CALLS for block in BLOCKS]) | {
    action: refused(f"{action} is sent by a charge point to a central system, not by a central system")
    for action in ALL_ACTIONS_16 - CSMS_ACTIONS_16
}
