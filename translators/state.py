"""Per-station translation state: the facts that must survive a proxy restart.

One small class with named fields; each transition is a method named for the event. It serialises to
msgpack so the proxy can keep it in Redis (written before a frame that depends on it is acknowledged).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack

STATE_VERSION = 1
# Remembered id-token types (1.6 idTag → 2.0.1 IdTokenEnumType) per station; the oldest are forgotten.
MAX_TOKEN_TYPES = 64
# Meter values a transaction may buffer while its 1.6 StartTransaction waits for an id token.
MAX_BUFFERED_METER_VALUES = 32
MAX_PENDING_REMOTE_STARTS = 16
MAX_RECENTLY_ENDED = 16
MAX_PENDING_REQUESTS = 32
_PACKER = msgpack.Packer(use_bin_type=True)  # reused: `packb` builds a Packer per call


@dataclass
class Transaction:
    """One 2.0.1 transaction and what the legacy CSMS knows of it."""

    transaction_id: str  # the charger's 2.0.1 id
    evse_id: int
    connector_id: int  # the flat 1.6 connector id
    started_at: str
    meter_start_wh: int | None = None
    last_register_wh: int | None = None
    seq_no: int = -1  # highest seqNo translated
    id_tag: str | None = None
    id_token_type: str | None = None
    id_tag_info: dict[str, Any] | None = None  # the legacy's last answer for this transaction's token
    legacy_id: int | None = None  # the legacy's 1.6 transactionId, once StartTransaction was answered
    charging_state: str | None = None
    remote_start_id: int | None = None
    reservation_id: int | None = None
    buffered_meter_values: list[dict[str, Any]] = field(default_factory=list)
    # The 1.6 stop reason the proxy itself caused (UnlockCommand: it stopped the transaction to unlock).
    stop_reason_16: str | None = None
    # StartTransaction CALLs sent whose answer was not recorded yet: more than one means the legacy may hold
    # the transaction twice (an answer lost with a proxy that died, or a timeout, before it was persisted).
    start_requests: int = 0

    @property
    def started_at_legacy(self) -> bool:
        return self.legacy_id is not None


@dataclass
class RemoteStart:
    remote_start_id: int
    id_tag: str
    connector_id: int | None


@dataclass
class StationState:
    """Everything the translator must remember about one station between frames."""

    station_id: str
    transactions: dict[str, Transaction] = field(default_factory=dict)
    # "evseId/connectorId" → flat 1.6 connectorId (OCPP 1.6 numbers connectors 1..n per charge point).
    connectors: dict[str, int] = field(default_factory=dict)
    remote_starts: dict[int, RemoteStart] = field(default_factory=dict)
    next_remote_start_id: int = 1
    token_types: dict[str, str] = field(default_factory=dict)
    # 20-character aliases the proxy sent the legacy for longer 2.0.1 idTokens → the tokens themselves.
    aliases: dict[str, str] = field(default_factory=dict)
    # Per 1.6 connector: the charger's last 2.0.1 connectorStatus and the last 1.6 status the legacy got.
    connector_status: dict[int, str] = field(default_factory=dict)
    legacy_status: dict[int, str] = field(default_factory=dict)
    finishing: list[int] = field(default_factory=list)  # connectors whose 1.6 transaction just stopped
    # 2.0.1 ids of the last transactions that ended, so a retransmitted Ended is not billed twice.
    recently_ended: list[str] = field(default_factory=list)
    last_reset_type: str | None = None  # the 1.6 Reset type last requested by the legacy
    # 2.0.1 requestIds the proxy issued (GetLog, UpdateFirmware, GetBaseReport, ...) → [the 1.6 operation
    # they stand for, the legacy's own requestId if it gave one], so the station's status notifications go
    # back as the right 1.6 message. The proxy always issues its own ids: a legacy's could collide with them.
    requests: dict[int, list[Any]] = field(default_factory=dict)
    next_request_id: int = 1

    # -- connectors ------------------------------------------------------------------------------
    def connector_for(self, evse_id: int, connector_id: int | None) -> int:
        """The flat 1.6 connector id of a 2.0.1 EVSE/connector, allocating one on first sight."""
        if evse_id == 0:
            return 0
        if connector_id is None:
            for key, known in self.connectors.items():
                if key.startswith(f"{evse_id}/"):
                    return known
            connector_id = 1
        key = f"{evse_id}/{connector_id}"
        flat = self.connectors.get(key)
        if flat is None:
            used = set(self.connectors.values())
            # One connector per EVSE (the common case) keeps 1.6 connectorId == evseId.
            flat = evse_id if connector_id == 1 and evse_id not in used else max(used | {evse_id}) + 1
            self.connectors[key] = flat
        return flat

    def evse_for(self, flat_connector_id: int) -> tuple[int, int] | None:
        """The 2.0.1 (evseId, connectorId) of a flat 1.6 connector id, if the station has shown it."""
        for key, flat in self.connectors.items():
            if flat == flat_connector_id:
                evse, connector = key.split("/")
                return int(evse), int(connector)
        return None

    # -- transactions ----------------------------------------------------------------------------
    def transaction_on(self, connector_id: int) -> Transaction | None:
        for tx in self.transactions.values():
            if tx.connector_id == connector_id:
                return tx
        return None

    def by_legacy_id(self, legacy_id: int) -> Transaction | None:
        for tx in self.transactions.values():
            if tx.legacy_id == legacy_id:
                return tx
        return None

    def on_transaction_seen(self, tx: Transaction) -> None:
        self.transactions[tx.transaction_id] = tx
        if tx.connector_id in self.finishing:
            self.finishing.remove(tx.connector_id)

    def on_transaction_started(self, tx: Transaction, legacy_id: int, id_tag_info: dict[str, Any]) -> None:
        tx.legacy_id = legacy_id
        tx.id_tag_info = id_tag_info
        tx.buffered_meter_values = []

    def on_transaction_ended(self, tx: Transaction) -> None:
        self.transactions.pop(tx.transaction_id, None)
        self.recently_ended.append(tx.transaction_id)
        del self.recently_ended[:-MAX_RECENTLY_ENDED]
        if tx.started_at_legacy and tx.connector_id not in self.finishing:
            self.finishing.append(tx.connector_id)

    def on_token_seen(self, id_tag: str, token_type: str) -> None:
        self.token_types.pop(id_tag, None)
        self.token_types[id_tag] = token_type
        while len(self.token_types) > MAX_TOKEN_TYPES:
            del self.token_types[next(iter(self.token_types))]

    def on_alias(self, alias: str, id_token: str) -> None:
        self.aliases.pop(alias, None)
        self.aliases[alias] = id_token
        while len(self.aliases) > MAX_TOKEN_TYPES:
            del self.aliases[next(iter(self.aliases))]

    def on_remote_start_requested(self, id_tag: str, connector_id: int | None) -> RemoteStart:
        remote = RemoteStart(self.next_remote_start_id, id_tag, connector_id)
        self.next_remote_start_id += 1
        self.remote_starts[remote.remote_start_id] = remote
        while len(self.remote_starts) > MAX_PENDING_REMOTE_STARTS:
            del self.remote_starts[next(iter(self.remote_starts))]
        return remote

    def new_request_id(self) -> int:
        """A fresh 2.0.1 requestId for a request whose answers nothing needs to trace back (the proxy's own
        GetBaseReport: its NotifyReports are matched by the device model)."""
        request_id = self.next_request_id
        self.next_request_id += 1
        return request_id

    def on_request_issued(self, operation: str, legacy_request_id: int | None = None) -> int:
        """A fresh 2.0.1 requestId standing for `operation`, remembered for the status notifications that
        will carry it (the oldest are forgotten)."""
        request_id = self.new_request_id()
        self.requests[request_id] = [operation, legacy_request_id]
        while len(self.requests) > MAX_PENDING_REQUESTS:
            del self.requests[next(iter(self.requests))]
        return request_id

    def request_of(self, request_id: int) -> tuple[str, int | None] | None:
        """The 1.6 operation a requestId the proxy issued stands for, and the legacy's own requestId."""
        entry = self.requests.get(request_id)
        return None if entry is None else (entry[0], entry[1])

    def on_connector_status(self, connector_id: int, connector_status: str) -> None:
        self.connector_status[connector_id] = connector_status
        if connector_status != "Occupied" and connector_id in self.finishing:
            self.finishing.remove(connector_id)

    # -- serialisation ---------------------------------------------------------------------------
    def dumps(self) -> bytes:
        """The state as msgpack, written on every change: packed straight from the objects' own dicts
        (`dataclasses.asdict` deep-copies everything first, and cost ten times more)."""
        data = dict(vars(self))
        data["transactions"] = {key: vars(tx) for key, tx in self.transactions.items()}
        data["remote_starts"] = {key: vars(remote) for key, remote in self.remote_starts.items()}
        data["v"] = STATE_VERSION
        return _PACKER.pack(data)

    @classmethod
    def loads(cls, raw: bytes) -> StationState:
        data = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        version = data.pop("v", None)
        if version != STATE_VERSION:
            raise ValueError(f"station state version {version!r} is not {STATE_VERSION}")
        data["transactions"] = {k: Transaction(**v) for k, v in data["transactions"].items()}
        data["remote_starts"] = {int(k): RemoteStart(**v) for k, v in data["remote_starts"].items()}
        data["connector_status"] = {int(k): v for k, v in data["connector_status"].items()}
        data["legacy_status"] = {int(k): v for k, v in data["legacy_status"].items()}
        data["requests"] = {int(k): v for k, v in data["requests"].items()}
        return cls(**data)


def variable_key(component: dict[str, Any], variable: dict[str, Any]) -> str:
    """A device-model variable's key: `Component[instance]@evse.connector/Variable[instance]`."""
    key = component["name"]
    if "instance" in component:
        key += f"[{component['instance']}]"
    evse = component.get("evse")
    if evse is not None:
        key += f"@{evse['id']}" + (f".{evse['connectorId']}" if "connectorId" in evse else "")
    key += "/" + variable["name"]
    if "instance" in variable:
        key += f"[{variable['instance']}]"
    return key


@dataclass
class DeviceModel:
    """The station's device model as its NotifyReports described it (kept apart from `StationState`:
    it is large, written once per report, and read far more often than written)."""

    # variable key → {"value", "mutability", "dataType", "maxLimit", "valuesList"} (what was reported)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    report_request_id: int | None = None
    complete: bool = False

    def on_report_requested(self, request_id: int) -> None:
        self.report_request_id = request_id
        self.complete = False

    def on_report_data(self, report_data: list[dict[str, Any]], last_part: bool) -> None:
        for item in report_data:
            entry: dict[str, Any] = {}
            for attribute in item.get("variableAttribute", []):
                if attribute.get("type", "Actual") == "Actual":
                    for field_name in ("value", "mutability"):
                        if field_name in attribute:
                            entry[field_name] = attribute[field_name]
            characteristics = item.get("variableCharacteristics", {})
            for field_name in ("dataType", "maxLimit", "valuesList"):
                if field_name in characteristics:
                    entry[field_name] = characteristics[field_name]
            self.variables[variable_key(item["component"], item["variable"])] = entry
        if last_part:
            self.complete = True

    def get(self, component: str, variable: str, instance: str | None = None) -> dict[str, Any] | None:
        """A station-wide variable (no EVSE) as reported, or None."""
        ref: dict[str, Any] = {"name": variable} if instance is None else {"name": variable, "instance": instance}
        return self.variables.get(variable_key({"name": component}, ref))

    def count(self, component: str) -> int:
        """How many distinct instances of a component (e.g. Connector, per EVSE) the station reported."""
        return len({key.split("/", 1)[0] for key in self.variables if key.split("/", 1)[0].split("@")[0] == component})

    def dumps(self) -> bytes:
        data = asdict(self)
        data["v"] = STATE_VERSION
        return msgpack.packb(data, use_bin_type=True)

    @classmethod
    def loads(cls, raw: bytes) -> DeviceModel:
        data = msgpack.unpackb(raw, raw=False)
        if data.pop("v", None) != STATE_VERSION:
            raise ValueError("device model version mismatch")
        return cls(**data)
