"""Passthrough for chargers that already speak the legacy's version: frames relayed byte for byte.

Still sans-I/O and still strict: a CALL that does not validate against its OCA schema is answered with
the CALLERROR OCPP-J prescribes and not relayed; a CALLRESULT that does not validate reaches the caller
as a CALLERROR instead. Valid frames are relayed unchanged.
"""

from __future__ import annotations

from translators import rpc
from translators.bridge import CHARGER, LEGACY, Event, LegName, Outcome, parse_or_refuse
from translators.rpc import Call, CallError, NotImplementedAction, OcppError, Version
from translators.schemas import Schemas


class Passthrough:
    """Relays one station's frames between a charger and a CSMS of the same OCPP version."""

    def __init__(self, schemas: Schemas, version: Version) -> None:
        self.schemas = schemas
        self.version = version
        # Per leg: message id → action of the CALLs that leg sent and the other leg has not answered.
        self._open: dict[LegName, dict[str, str]] = {CHARGER: {}, LEGACY: {}}

    def receive(self, leg: LegName, raw: str | bytes, now: float) -> Outcome:
        out = Outcome()
        other: LegName = LEGACY if leg == CHARGER else CHARGER
        message = parse_or_refuse(leg, raw, self.version, out)
        if message is None:
            return out
        if isinstance(message, Call):
            out.received_call = message
            try:
                if not self.schemas.knows(self.version, message.action):
                    raise NotImplementedAction(f"{message.action} is not an OCPP {self.version} action")
                self.schemas.validate(self.version, "request", message.action, message.payload)
            except OcppError as error:
                out.events.append(Event("refused", leg, message.action, error.code))
                out.send(leg, rpc.dump_error(message.message_id, error, self.version))
                return out
            self._open[leg][message.message_id] = message.action
            out.send(other, raw if isinstance(raw, bytes) else raw.encode())
            return out
        action = self._open[other].pop(message.message_id, None)
        if action is not None and not isinstance(message, CallError):
            try:
                self.schemas.validate(self.version, "response", action, message.payload)
            except OcppError as error:
                out.events.append(Event("invalid_response", leg, action, error.code))
                error.description = f"the peer answered with an invalid {error.description}"
                out.send(other, rpc.dump_error(message.message_id, error, self.version))
                return out
        out.send(other, raw if isinstance(raw, bytes) else raw.encode())
        return out
