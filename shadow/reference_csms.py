"""The built-in reference OCPP 2.0.1 CSMS of the shadow backend: what a native, spec-following 2.0.1 CSMS would
have answered each CALL a charger really sent, and what it would know afterwards (transactions rebuilt from the
TransactionEvent stream, gaps in the device model a station reported).

Sans-I/O like h11's `Connection`: `ReferenceCsms.handle(station_id, action, payload, now)` takes one charger
CALL and the time and returns the CALLRESULT payload, or raises the `OcppError` whose code the CALLERROR
carries. No sockets, Redis, asyncio or clock. Per-station state is plain data that round-trips through
msgpack (`state_of`, `dumps`, `loads`), so any shadow worker can carry on any station; the same sequence of
calls always gives the same answers and the same bytes.

It is the CSMS of an operator with a token list and nothing else: no Plug & Charge PKI (no CA, no OCSP
responder, no contract-certificate pool), no tariffs, no smart charging, no vendor extensions. Where OCPP
2.0.1 leaves the CSMS a choice it answers as follows:
- BootNotification: the configured policy for every station; `interval` is the heartbeat interval, and for
  Pending/Rejected the wait before the next BootNotification (B02/B03). A station left Pending or Rejected
  gets `SecurityError` for any other CALL (B02.FR.09, B03.FR.07); a station whose BootNotification this CSMS
  never answered (e.g. it reconnected without rebooting) is served, as those rules bind only a station that
  received Pending or Rejected.
- Authorization (C01, E01–E03): `Accepted` for a token in the list (idToken is case-insensitive, per the
  IdTokenType schema), or of type NoAuthorization; `Invalid` otherwise. No cache expiry, group or priority.
- Plug & Charge without a PKI: an Authorize with certificate data gets certificateStatus
  `NoCertificateAvailable` and idTokenInfo `Invalid`, whatever the list says: a contract it cannot verify is
  no authorization (a choice: C07 presumes a CSMS with OCSP access). Get15118EVCertificate `Failed` (empty
  exiResponse), GetCertificateStatus `Failed`, SignCertificate `Rejected` — each with statusInfo saying why.
- NotifyEVChargingNeeds `Rejected` ("service not available": no schedule will follow), NotifyEVChargingSchedule
  `Accepted` (received; it imposes no limits the schedule could break), DataTransfer `UnknownVendorId`,
  TransactionEvent without totalCost (no tariffs); every notification `{}`.
- A CALL that is not a charger's (e.g. Reset) is `NotSupported`, an unknown action `NotImplemented`, a payload
  that breaks the OCA schema the schema's error; none of them changes any state.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

import msgpack

from translators import schemas
from translators.rpc import V201, NotImplementedAction, NotSupported, SecurityError

BootPolicy = Literal["accept", "pending", "reject"]
TokenSource = AbstractSet[str] | Callable[[], AbstractSet[str]]
Reading = tuple[str, int]  # (meterValue timestamp, energy register in Wh)

STATE_VERSION = 1

# OCPP 2.0.1 B01 (Accepted), B02 (Pending), B03 (Rejected): the registration status of each boot policy.
BOOT_POLICY_STATUS: dict[str, str] = {"accept": "Accepted", "pending": "Pending", "reject": "Rejected"}
# B02.FR.09 / B03.FR.07: while a station is in one of these, it may send only BootNotification.
NOT_REGISTERED = frozenset({"Pending", "Rejected"})

# StatusInfoType.reasonCode is free text of at most 20 characters; the same code translators/ uses.
NO_PKI: dict[str, str] = {
    "reasonCode": "UnsupportedRequest",
    "additionalInfo": "this CSMS has no Plug & Charge PKI connection (no CA, OCSP responder or contract "
    "certificate pool)",
}
NO_SMART_CHARGING: dict[str, str] = {
    "reasonCode": "UnsupportedRequest",
    "additionalInfo": "this CSMS does no smart charging: no charging schedule will follow",
}

# Answers that depend on nothing but the action, by OCPP 2.0.1 functional block (Part 2): the CALLRESULT of a
# CSMS with a token list and no PKI, tariffs, smart charging or vendor extensions.
FIXED_ANSWERS: dict[str, dict[str, Any]] = {
    "ClearedChargingLimit": {},  # K
    "DataTransfer": {"status": "UnknownVendorId"},  # P: it knows no vendor
    "FirmwareStatusNotification": {},  # L
    "Get15118EVCertificate": {"status": "Failed", "exiResponse": "", "statusInfo": NO_PKI},  # M01/M02
    "GetCertificateStatus": {"status": "Failed", "statusInfo": NO_PKI},  # M06
    "LogStatusNotification": {},  # N
    "MeterValues": {},  # J
    "NotifyChargingLimit": {},  # K
    "NotifyCustomerInformation": {},  # N
    "NotifyDisplayMessages": {},  # O
    "NotifyEVChargingNeeds": {"status": "Rejected", "statusInfo": NO_SMART_CHARGING},  # K15
    "NotifyEVChargingSchedule": {"status": "Accepted"},  # K15/K17
    "NotifyEvent": {},  # N
    "NotifyMonitoringReport": {},  # N
    "PublishFirmwareStatusNotification": {},  # L
    "ReportChargingProfiles": {},  # K
    "ReservationStatusUpdate": {},  # H
    "SecurityEventNotification": {},  # A
    "SignCertificate": {"status": "Rejected", "statusInfo": NO_PKI},  # A02/A03
}

# The station-tier variables every station must report, as `Component.Variable[instance]`. Source:
# shared/reference/config-keys.md §2 — "Required? = yes" in OCPP 2.0.1 Part 2 Appendices v1.4
# dm_components_vars.csv — for the ChargingStation component and the controllers that are not an optional
# functional block (DisplayMessage-, ISO15118-, LocalAuthList-, Monitoring-, SmartCharging- and TariffCostCtrlr
# are required only where implemented); plus the four OCPPCommCtrlr variables Part 4 §8 requires although the
# CSV says "no" (§2 records the conflict; every station here speaks OCPP-J, so Part 4 governs).
MANDATORY_VARIABLES: tuple[str, ...] = (
    "AlignedDataCtrlr.Interval",
    "AlignedDataCtrlr.Measurands",
    "AlignedDataCtrlr.TxEndedInterval",
    "AlignedDataCtrlr.TxEndedMeasurands",
    "AuthCtrlr.AuthorizeRemoteStart",
    "AuthCtrlr.LocalAuthorizeOffline",
    "AuthCtrlr.LocalPreAuthorize",
    "ChargingStation.AvailabilityState",
    "ChargingStation.Available",
    "ChargingStation.SupplyPhases",
    "ClockCtrlr.DateTime",
    "ClockCtrlr.TimeSource",
    "DeviceDataCtrlr.BytesPerMessage[GetReport]",
    "DeviceDataCtrlr.BytesPerMessage[GetVariables]",
    "DeviceDataCtrlr.BytesPerMessage[SetVariables]",
    "DeviceDataCtrlr.ItemsPerMessage[GetReport]",
    "DeviceDataCtrlr.ItemsPerMessage[GetVariables]",
    "DeviceDataCtrlr.ItemsPerMessage[SetVariables]",
    "OCPPCommCtrlr.FileTransferProtocols",
    "OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]",
    "OCPPCommCtrlr.MessageAttempts[TransactionEvent]",
    "OCPPCommCtrlr.MessageTimeout[Default]",
    "OCPPCommCtrlr.NetworkConfigurationPriority",
    "OCPPCommCtrlr.NetworkProfileConnectionAttempts",
    "OCPPCommCtrlr.OfflineThreshold",
    "OCPPCommCtrlr.ResetRetries",
    "OCPPCommCtrlr.RetryBackOffRandomRange",  # Part 4 §8.2
    "OCPPCommCtrlr.RetryBackOffRepeatTimes",  # Part 4 §8.1
    "OCPPCommCtrlr.RetryBackOffWaitMinimum",  # Part 4 §8.3
    "OCPPCommCtrlr.UnlockOnEVSideDisconnect",
    "OCPPCommCtrlr.WebSocketPingInterval",  # Part 4 §8.4
    "SampledDataCtrlr.TxEndedInterval",
    "SampledDataCtrlr.TxEndedMeasurands",
    "SampledDataCtrlr.TxStartedMeasurands",
    "SampledDataCtrlr.TxUpdatedInterval",
    "SampledDataCtrlr.TxUpdatedMeasurands",
    "SecurityCtrlr.CertificateEntries",
    "SecurityCtrlr.OrganizationName",
    "SecurityCtrlr.SecurityProfile",
    "TxCtrlr.EVConnectionTimeOut",
    "TxCtrlr.StopTxOnEVSideDisconnect",
    "TxCtrlr.StopTxOnInvalidId",
    "TxCtrlr.TxStartPoint",
    "TxCtrlr.TxStopPoint",
)

ENERGY_REGISTER = "Energy.Active.Import.Register"
# OCPP 2.0.1 SampledValueType defaults when a field is absent (schema descriptions / Part 2 §2): measurand
# Energy.Active.Import.Register, context Sample.Periodic, location Outlet, unit Wh, multiplier 0.
DEFAULT_CONTEXT = "Sample.Periodic"
DEFAULT_LOCATION = "Outlet"
WH_PER_UNIT = {"Wh": Decimal(1), "kWh": Decimal(1000)}
# Readings beyond this are corrupt (and beyond what a msgpack / JSON integer carries safely).
MAX_REGISTER_WH = Decimal(2**53)

# Bounds on what one station's state may hold, so a misbehaving station cannot grow it without limit.
MAX_TRANSACTIONS = 64  # beyond it the oldest ended transaction (else the oldest) is forgotten
# Ended transactions kept (for retransmitted events, which come soon): more only grew the shadow's memory with
# every session (the soak saw ~2 KiB a session until 64 per station).
MAX_ENDED_TRANSACTIONS = 4
MAX_OPEN_REPORTS = 4  # NotifyReport requestIds still collecting parts; the oldest is dropped
MAX_LISTED_MISSING = 1000  # seqNo gaps listed per transaction


def instant(timestamp: str) -> datetime:
    """An OCPP timestamp as an aware datetime (no offset means UTC), for ordering readings and events."""
    try:
        moment = datetime.fromisoformat(timestamp.upper())
    except ValueError:
        # The OCA schema's date-time check admits a few RFC 3339 forms Python does not parse (leap seconds):
        # order such a reading first rather than fail the station's whole stream on it.
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def register_wh(sampled: dict[str, Any]) -> int | None:
    """A sampled value as the station's total active import register in integer Wh, or None if it is not one.

    Phase readings and readings at another location than the Outlet are not the transaction's register;
    unit multipliers (10^n) and kWh are applied; half a Wh rounds to even, as the translation to 1.6 does.
    """
    if sampled.get("measurand", ENERGY_REGISTER) != ENERGY_REGISTER or "phase" in sampled:
        return None
    if sampled.get("location", DEFAULT_LOCATION) != DEFAULT_LOCATION:
        return None
    unit = sampled.get("unitOfMeasure", {})
    factor = WH_PER_UNIT.get(unit.get("unit", "Wh"))
    if factor is None:
        return None
    try:
        wh = (Decimal(str(sampled["value"])).scaleb(unit.get("multiplier", 0)) * factor).quantize(
            Decimal(1), rounding=ROUND_HALF_EVEN
        )
    except ArithmeticError:  # a multiplier no meter has
        return None
    return int(wh) if abs(wh) <= MAX_REGISTER_WH else None


@dataclass
class ShadowTransaction:
    """One transaction as its TransactionEvent stream tells it (the derived fields are kept current).

    `started` is the Started event's timestamp, or while no Started was seen (`started_seen` False) the
    earliest event's; `ended` the first Ended event's timestamp, None while the transaction runs. Meter
    start/stop come from the Transaction.Begin / Transaction.End energy register readings, else the earliest /
    latest reading (by meterValue timestamp); meter stop is set once Ended.
    `missing_seq_nos` lists the seqNos not received between the first (the Started's seqNo, 0 while no
    Started was seen) and the highest received.
    """

    transaction_id: str
    evse_id: int | None = None
    connector_id: int | None = None
    id_token: str | None = None  # the first one seen
    id_token_type: str | None = None
    remote_start_id: int | None = None
    started: str | None = None
    ended: str | None = None
    meter_start_wh: int | None = None
    meter_stop_wh: int | None = None
    stopped_reason: str | None = None  # once Ended; an absent stoppedReason means Local
    started_seen: bool = False
    event_count: int = 0  # distinct events (a retransmitted seqNo counts once)
    missing_seq_nos: list[int] = field(default_factory=list)
    offline_events: int = 0
    event_after_ended: bool = False
    # What the derived fields are computed from.
    seq_nos: list[int] = field(default_factory=list)  # sorted
    start_seq_no: int | None = None
    begin_reading: Reading | None = None
    end_reading: Reading | None = None
    first_reading: Reading | None = None
    last_reading: Reading | None = None

    def on_event(self, payload: dict[str, Any]) -> bool:
        """Apply one TransactionEventRequest; False, changing nothing, if its seqNo was received already."""
        seq_no = payload["seqNo"]
        index = bisect.bisect_left(self.seq_nos, seq_no)
        if index < len(self.seq_nos) and self.seq_nos[index] == seq_no:
            return False
        self.seq_nos.insert(index, seq_no)
        self.event_count += 1
        if self.ended is not None:
            self.event_after_ended = True
        if payload.get("offline", False):
            self.offline_events += 1

        event_type = payload["eventType"]
        timestamp = payload["timestamp"]
        info = payload["transactionInfo"]
        if event_type == "Started" and not self.started_seen:
            self.started_seen = True
            self.started = timestamp
            self.start_seq_no = seq_no
        elif not self.started_seen and (self.started is None or instant(timestamp) < instant(self.started)):
            self.started = timestamp
        evse = payload.get("evse")
        if evse is not None and (self.evse_id is None or event_type == "Started"):
            self.evse_id = evse["id"]
            self.connector_id = evse.get("connectorId", self.connector_id)
        if "idToken" in payload and self.id_token is None:
            self.id_token = payload["idToken"]["idToken"]
            self.id_token_type = payload["idToken"]["type"]
        if self.remote_start_id is None:
            self.remote_start_id = info.get("remoteStartId")
        for meter_value in payload.get("meterValue", []):
            for sampled in meter_value["sampledValue"]:
                wh = register_wh(sampled)
                if wh is not None:
                    self.on_reading((meter_value["timestamp"], wh), sampled.get("context", DEFAULT_CONTEXT))
        if event_type == "Ended" and self.ended is None:
            self.ended = timestamp
            self.stopped_reason = info.get("stoppedReason", "Local")
        self.derive()
        return True

    def on_reading(self, reading: Reading, context: str) -> None:
        at = instant(reading[0])
        if context == "Transaction.Begin" and (self.begin_reading is None or at < instant(self.begin_reading[0])):
            self.begin_reading = reading
        if context == "Transaction.End" and (self.end_reading is None or at >= instant(self.end_reading[0])):
            self.end_reading = reading
        if self.first_reading is None or at < instant(self.first_reading[0]):
            self.first_reading = reading
        if self.last_reading is None or at >= instant(self.last_reading[0]):
            self.last_reading = reading

    def derive(self) -> None:
        start = self.begin_reading or self.first_reading
        self.meter_start_wh = None if start is None else start[1]
        stop = self.end_reading or self.last_reading
        self.meter_stop_wh = None if stop is None or self.ended is None else stop[1]
        received = set(self.seq_nos)
        missing: list[int] = []
        seq_no = 0 if self.start_seq_no is None else self.start_seq_no
        highest = self.seq_nos[-1]
        while seq_no < highest and len(missing) < MAX_LISTED_MISSING:
            if seq_no not in received:
                missing.append(seq_no)
            seq_no += 1
        self.missing_seq_nos = missing

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShadowTransaction:
        fields = dict(data)
        for key in ("begin_reading", "end_reading", "first_reading", "last_reading"):
            if fields[key] is not None:
                fields[key] = tuple(fields[key])  # msgpack gives back a list
        return cls(**fields)


def variable_id(component: dict[str, Any], variable: dict[str, Any]) -> str:
    """`Component[instance].Variable[instance]`, the way MANDATORY_VARIABLES names variables."""
    name = component["name"] + (f"[{component['instance']}]" if "instance" in component else "")
    return f"{name}.{variable['name']}" + (f"[{variable['instance']}]" if "instance" in variable else "")


@dataclass
class DeviceReport:
    """The parts of one NotifyReport (one requestId) received so far: seqNos and station-tier variables."""

    request_id: int
    generated_at: str
    seq_nos: list[int] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)  # sorted variable_id()s of components without an EVSE
    complete: bool = False

    def on_part(self, payload: dict[str, Any]) -> bool:
        """Add one NotifyReportRequest part; False, changing nothing, if its seqNo was received already."""
        seq_no = payload["seqNo"]
        if seq_no in self.seq_nos:
            return False
        bisect.insort(self.seq_nos, seq_no)
        reported = {
            variable_id(item["component"], item["variable"])
            for item in payload.get("reportData", [])
            if "evse" not in item["component"]
        }
        self.variables = sorted(reported.union(self.variables))
        if not payload.get("tbc", False):
            self.complete = True
        return True


@dataclass
class StationState:
    """What the reference CSMS knows of one station."""

    registration: str | None = None  # the status of the last BootNotificationResponse it gave
    connectors: dict[str, str] = field(default_factory=dict)  # "evseId/connectorId" → last connectorStatus
    transactions: dict[str, ShadowTransaction] = field(default_factory=dict)  # in order of first sight
    open_reports: dict[int, DeviceReport] = field(default_factory=dict)
    last_report: DeviceReport | None = None  # the last report whose final part (tbc false) arrived

    def on_boot(self, status: str) -> None:
        self.registration = status

    def on_status(self, payload: dict[str, Any]) -> None:
        self.connectors[f"{payload['evseId']}/{payload['connectorId']}"] = payload["connectorStatus"]

    def on_transaction_event(self, payload: dict[str, Any]) -> None:
        transaction_id = payload["transactionInfo"]["transactionId"]
        tx = self.transactions.get(transaction_id)
        if tx is None:
            tx = self.transactions[transaction_id] = ShadowTransaction(transaction_id)
            ended = [t.transaction_id for t in self.transactions.values() if t.ended is not None]
            for forgotten in ended[: max(len(ended) - MAX_ENDED_TRANSACTIONS, 0)]:
                del self.transactions[forgotten]
            if len(self.transactions) > MAX_TRANSACTIONS:
                oldest = next((t for t in self.transactions.values() if t.ended is not None), None)
                del self.transactions[(oldest or next(iter(self.transactions.values()))).transaction_id]
        tx.on_event(payload)

    def on_report_part(self, payload: dict[str, Any]) -> None:
        request_id = payload["requestId"]
        if self.last_report is not None and self.last_report.request_id == request_id:
            if payload["seqNo"] in self.last_report.seq_nos:
                return  # a retransmitted part of the report already completed
        report = self.open_reports.get(request_id)
        if report is None:
            report = self.open_reports[request_id] = DeviceReport(request_id, payload["generatedAt"])
            if len(self.open_reports) > MAX_OPEN_REPORTS:
                del self.open_reports[next(iter(self.open_reports))]
        report.on_part(payload)
        if report.complete:
            del self.open_reports[request_id]
            self.last_report = report

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StationState:
        return cls(
            registration=data["registration"],
            connectors=dict(data["connectors"]),
            transactions={key: ShadowTransaction.from_dict(value) for key, value in data["transactions"].items()},
            open_reports={int(key): DeviceReport(**value) for key, value in data["open_reports"].items()},
            last_report=None if data["last_report"] is None else DeviceReport(**data["last_report"]),
        )


Handler = Callable[[StationState, dict[str, Any], str], dict[str, Any]]


class ReferenceCsms:
    """A spec-following OCPP 2.0.1 CSMS, sans-I/O, answering every charger-initiated CALL (see the module doc)."""

    def __init__(
        self,
        accepted_tokens: TokenSource,
        *,
        boot_policy: BootPolicy = "accept",
        heartbeat_interval: int = 300,
    ) -> None:
        if boot_policy not in BOOT_POLICY_STATUS:
            raise ValueError(f"boot_policy: {boot_policy!r}, expected one of {', '.join(BOOT_POLICY_STATUS)}")
        if heartbeat_interval < 0:
            raise ValueError(f"heartbeat_interval: {heartbeat_interval}, expected seconds >= 0")
        self.accepted_tokens = accepted_tokens
        self.boot_status = BOOT_POLICY_STATUS[boot_policy]
        self.heartbeat_interval = heartbeat_interval
        self.schemas = schemas.load()  # compiled here, at start-up, never inside a worker's loop
        self.stations: dict[str, StationState] = {}
        self.handlers: dict[str, Handler] = {
            "Authorize": self.on_authorize,
            "BootNotification": self.on_boot_notification,
            "Heartbeat": self.on_heartbeat,
            "NotifyReport": self.on_notify_report,
            "StatusNotification": self.on_status_notification,
            "TransactionEvent": self.on_transaction_event,
        } | {action: self.fixed_answer(action) for action in FIXED_ANSWERS}

    # -- the protocol --------------------------------------------------------------------------------
    def handle(self, station_id: str, action: str, payload: dict[str, Any], now: str) -> dict[str, Any]:
        """The CALLRESULT payload this CSMS answers `action` with at `now` (ISO 8601 UTC), valid against its
        OCA response schema; or raises the `OcppError` of the CALLERROR, leaving every state as it was."""
        handler = self.handlers.get(action)
        if handler is None:
            if self.schemas.knows(V201, action):
                raise NotSupported(f"{action} is sent by a CSMS to a charging station, not by a charging station")
            raise NotImplementedAction(f"{action} is not an OCPP 2.0.1 action")
        station = self.stations.get(station_id)
        if action != "BootNotification" and station is not None and station.registration in NOT_REGISTERED:
            raise SecurityError(
                f"{action} from {station_id}, which this CSMS answered {station.registration}: until it is "
                "Accepted a station may send only BootNotification (OCPP 2.0.1 B02.FR.09, B03.FR.07)"
            )
        self.schemas.validate(V201, "request", action, payload)
        if station is None:
            station = self.stations[station_id] = StationState()
        return handler(station, payload, now)

    def is_authorized(self, id_token: dict[str, Any]) -> bool:
        """Whether an IdTokenType is accepted: NoAuthorization, or in the token list (case-insensitively)."""
        if id_token["type"] == "NoAuthorization":
            return True
        tokens = self.accepted_tokens() if callable(self.accepted_tokens) else self.accepted_tokens
        token = id_token["idToken"]
        if token in tokens:
            return True
        folded = token.casefold()
        return any(candidate.casefold() == folded for candidate in tokens)

    def id_token_info(self, id_token: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Accepted" if self.is_authorized(id_token) else "Invalid"}

    def on_authorize(self, station: StationState, payload: dict[str, Any], now: str) -> dict[str, Any]:
        if "certificate" in payload or "iso15118CertificateHashData" in payload:
            # C07 without a PKI: the contract certificate can be neither validated nor checked over OCSP.
            return {"idTokenInfo": {"status": "Invalid"}, "certificateStatus": "NoCertificateAvailable"}
        return {"idTokenInfo": self.id_token_info(payload["idToken"])}

    def on_boot_notification(self, station: StationState, payload: dict[str, Any], now: str) -> dict[str, Any]:
        station.on_boot(self.boot_status)
        return {"status": self.boot_status, "currentTime": now, "interval": self.heartbeat_interval}

    def on_heartbeat(self, station: StationState, payload: dict[str, Any], now: str) -> dict[str, Any]:
        return {"currentTime": now}

    def on_notify_report(self, station: StationState, payload: dict[str, Any], now: str) -> dict[str, Any]:
        station.on_report_part(payload)
        return {}

    def on_status_notification(self, station: StationState, payload: dict[str, Any], now: str) -> dict[str, Any]:
        station.on_status(payload)
        return {}

    def on_transaction_event(self, station: StationState, payload: dict[str, Any], now: str) -> dict[str, Any]:
        station.on_transaction_event(payload)
        # E01–E03: an event carrying an idToken is answered with that token's authorization.
        return {"idTokenInfo": self.id_token_info(payload["idToken"])} if "idToken" in payload else {}

    @staticmethod
    def fixed_answer(action: str) -> Handler:
        answer = FIXED_ANSWERS[action]
        return lambda station, payload, now: copy.deepcopy(answer)

    # -- what it knows -------------------------------------------------------------------------------
    def transactions(self, station_id: str) -> list[ShadowTransaction]:
        """The station's transactions in order of first sight (copies: changing them changes no state)."""
        station = self.stations.get(station_id)
        return [] if station is None else copy.deepcopy(list(station.transactions.values()))

    def device_model_findings(self, station_id: str) -> list[str]:
        """The mandatory variables (MANDATORY_VARIABLES) the station's last complete NotifyReport lacks;
        empty while no report has completed."""
        station = self.stations.get(station_id)
        if station is None or station.last_report is None:
            return []
        reported = set(station.last_report.variables)
        return [name for name in MANDATORY_VARIABLES if name not in reported]

    # -- state ---------------------------------------------------------------------------------------
    def state_of(self, station_id: str) -> bytes:
        """One station's state as msgpack, in the format of `dumps` (so `loads` takes it over)."""
        return self.pack({station_id: self.stations.get(station_id, StationState())})

    def dumps(self) -> bytes:
        """Every station's state as msgpack; the same calls in the same order give the same bytes."""
        return self.pack(self.stations)

    def loads(self, raw: bytes) -> None:
        """Take over the stations in a `dumps` or `state_of` blob, replacing what this CSMS knew of them."""
        data = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        version = data.get("v") if isinstance(data, dict) else None
        if version != STATE_VERSION:
            raise ValueError(f"reference CSMS state version {version!r} is not {STATE_VERSION}")
        for station_id, state in data["stations"].items():
            self.stations[station_id] = StationState.from_dict(state)

    def forget(self, station_id: str) -> None:
        """Drop the state of a station another worker has taken over."""
        self.stations.pop(station_id, None)

    @staticmethod
    def pack(stations: dict[str, StationState]) -> bytes:
        body = {station_id: state.to_dict() for station_id, state in stations.items()}
        return msgpack.packb({"v": STATE_VERSION, "stations": body}, use_bin_type=True)
