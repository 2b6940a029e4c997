"""The sans-I/O heart of the proxy: one `Bridge` per charger connection and its legacy connection.

Bytes in (`receive(leg, raw, now)`), an `Outcome` out (frames for each leg, whether the station state
changed, events for metrics). Timeouts are `expire(now)`, called by the I/O layer at `next_deadline()`.
OCPP-J rules hold on both legs: CALLs received on a leg are handled one after another in arrival order;
the bridge has at most one CALL of its own outstanding per leg (others queue behind it); every CALL is
answered, with a CALLERROR when translation, validation, the peer or its timeout fails. Every payload
the bridge emits is validated against the OCA schema of the destination's version first.

A handler is a generator: it yields `Request`s for the other leg and receives their response payloads
(or a `PeerError` thrown in), and returns the response payload for the CALL it handles.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal

from translators import rpc
from translators.rpc import (
    V16,
    V201,
    Call,
    CallError,
    CallResult,
    FrameError,
    GenericError,
    InternalError,
    NotImplementedAction,
    NotSupported,
    OcppError,
    RpcFrameworkError,
    Version,
)
from translators.schemas import Schemas
from translators.state import DeviceModel, StationState

log = logging.getLogger("cutover.translators")

LegName = Literal["charger", "legacy"]
CHARGER: LegName = "charger"
LEGACY: LegName = "legacy"
# A peer that keeps sending CALLs without waiting for answers is cut off at this many.
MAX_QUEUED_CALLS = 32


@dataclass(slots=True)
class Request:
    """A CALL a handler wants sent to the other leg; the yield returns its response payload."""

    action: str
    payload: dict[str, Any]


class PeerError(OcppError):
    """The other leg answered a CALL with a CALLERROR, an invalid CALLRESULT, or not in time."""

    def __init__(self, code: str, description: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(description, details)
        self.peer_code = code


class PeerTimeout(PeerError):
    pass


class PeerRefused(PeerError):
    """The other leg answered with a CALLERROR: it did not act on the CALL."""


@dataclass
class TranslationConfig:
    call_timeout: float = 30.0
    # What to do with a 2.0.1 idToken longer than 1.6's 20-character idTag: "reject" answers a
    # CALLERROR, "alias" sends a deterministic 20-character alias (the legacy must know the alias).
    long_id_token: Literal["reject", "alias"] = "reject"
    # IdTokenEnumType for an idTag the legacy sends (RemoteStartTransaction) that this station never showed.
    default_id_token_type: str = "Central"
    # 1.6 Reset type → 2.0.1 ResetEnumType (both 1.6 types end transactions; 2.0.1 Immediate does too).
    reset_types: dict[str, str] = field(default_factory=lambda: {"Hard": "Immediate", "Soft": "Immediate"})


@dataclass(slots=True)
class Event:
    """Something the I/O layer counts or logs: a call completed, a translation failed, ..."""

    kind: str
    leg: str
    action: str
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Outcome:
    to_charger: list[bytes] = field(default_factory=list)
    to_legacy: list[bytes] = field(default_factory=list)
    state_changed: bool = False
    device_model_changed: bool = False
    events: list[Event] = field(default_factory=list)
    received_call: Call | None = None  # the CALL the frame carried, once parsed (what the proxy watches)

    def send(self, leg: LegName, frame: bytes) -> None:
        (self.to_charger if leg == CHARGER else self.to_legacy).append(frame)


def parse_or_refuse(leg: LegName, raw: str | bytes, version: Version, out: Outcome) -> rpc.Message | None:
    """The parsed frame, or None after answering an unreadable CALL with its CALLERROR in `out`."""
    try:
        return rpc.parse(raw)
    except FrameError as exc:
        out.events.append(Event("bad_frame", leg, "", exc.error.code))
        if exc.is_call:
            out.send(leg, rpc.dump_error(exc.message_id, exc.error, version))
        return None


@dataclass
class Context:
    """What a handler sees: the station state, the configuration and the time of the triggering frame."""

    state: StationState
    config: TranslationConfig
    now: float
    device_model: DeviceModel
    changed: bool = False
    device_model_changed: bool = False
    events: list[Event] = field(default_factory=list)
    spawned: list[tuple[Handler, dict[str, Any]]] = field(default_factory=list)

    def touch(self) -> None:
        """Mark the station state changed: the I/O layer persists it before sending the outcome."""
        self.changed = True

    def spawn(self, handler: Handler, payload: dict[str, Any]) -> None:
        """Run `handler` as the proxy's own exchange (e.g. GetBaseReport after a boot); nobody gets its result."""
        self.spawned.append((handler, payload))

    def lossy(self, action: str, detail: str) -> None:
        self.events.append(Event("lossy", "", action, detail))

    def uncertain(self, action: str, detail: str) -> None:
        """A CALL sent again although the legacy may have acted on the first one: the operator must know."""
        self.events.append(Event("uncertain", LEGACY, action, detail))


Handler = Callable[[Context, dict[str, Any]], Generator[Request, Any, dict[str, Any]]]
Kind = Literal["translated", "local", "mirror-only", "refused"]


@dataclass(frozen=True)
class Disposition:
    """What the proxy does with one action arriving on one leg (read by the dispatcher and `coverage`).

    `translated`: to `targets` on the other leg; `local`: the proxy answers (and may act on it);
    `mirror-only`: answered by the proxy only so the tee carries it to the shadow; `refused`: answered
    with `error` and `reason`. `lossy` names every value the translation cannot carry across.
    """

    kind: Kind
    targets: tuple[str, ...] = ()
    handler: Handler | None = None
    reason: str = ""
    error: type[OcppError] = NotSupported
    lossy: tuple[str, ...] = ()


def refused(reason: str, error: type[OcppError] = NotSupported) -> Disposition:
    return Disposition("refused", reason=reason, error=error)


@dataclass
class _Job:
    origin: LegName
    message_id: str | None  # None for the proxy's own jobs
    action: str
    ctx: Context
    gen: Generator[Request, Any, dict[str, Any]]


@dataclass
class _Outgoing:
    job: _Job
    action: str
    payload: dict[str, Any]
    message_id: str = ""
    sent_at: float = 0.0
    deadline: float = 0.0


@dataclass
class _Leg:
    name: LegName
    version: Version
    dispositions: dict[str, Disposition]
    jobs: deque[_Job] = field(default_factory=deque)
    outbox: deque[_Outgoing] = field(default_factory=deque)
    in_flight: _Outgoing | None = None


class Bridge:
    """Translates between a 2.0.1 charger and a 1.6 legacy CSMS for one station connection."""

    def __init__(
        self,
        state: StationState,
        schemas: Schemas,
        charger_calls: dict[str, Disposition],
        legacy_calls: dict[str, Disposition],
        config: TranslationConfig | None = None,
        id_prefix: str = "p",
        device_model: DeviceModel | None = None,
    ) -> None:
        self.state = state
        self.device_model = device_model or DeviceModel()
        self.schemas = schemas
        self.config = config or TranslationConfig()
        self._legs = {
            CHARGER: _Leg(CHARGER, V201, charger_calls),
            LEGACY: _Leg(LEGACY, V16, legacy_calls),
        }
        self._ids = (f"{id_prefix}{n}" for n in itertools.count(1))

    # -- entry points ----------------------------------------------------------------------------
    def receive(self, leg_name: LegName, raw: str | bytes, now: float) -> Outcome:
        """Handle one frame received on `leg_name`."""
        out = Outcome()
        leg = self._legs[leg_name]
        message = parse_or_refuse(leg_name, raw, leg.version, out)
        if message is None:
            return out
        if isinstance(message, Call):
            out.received_call = message
            self._on_call(leg, message, now, out)
        else:
            self._on_response(leg, message, now, out)
        return out

    def expire(self, now: float) -> Outcome:
        """Answer each CALL of ours left unanswered too long: a CALLERROR to the side waiting for it."""
        out = Outcome()
        for leg in self._legs.values():
            pending = leg.in_flight
            if pending is not None and pending.deadline <= now:
                leg.in_flight = None
                out.events.append(Event("timeout", leg.name, pending.action, seconds=now - pending.sent_at))
                peer = "legacy CSMS" if leg.name == LEGACY else "charger"
                error = PeerTimeout(
                    "InternalError",
                    f"{peer} did not answer {pending.action} within {self.config.call_timeout:g} s",
                )
                self._advance(pending.job, now, out, throw=error)
                self._pump(leg, now, out)
        return out

    def next_deadline(self) -> float | None:
        charger, legacy = self._legs[CHARGER].in_flight, self._legs[LEGACY].in_flight  # read after every frame
        if charger is None:
            return None if legacy is None else legacy.deadline
        return charger.deadline if legacy is None else min(charger.deadline, legacy.deadline)

    def busy(self) -> bool:
        return any(leg.jobs or leg.in_flight or leg.outbox for leg in self._legs.values())

    def awaiting(self, leg_name: LegName) -> bool:
        """Whether a CALL of ours to `leg_name` is unanswered, or queued to be sent."""
        leg = self._legs[leg_name]
        return leg.in_flight is not None or bool(leg.outbox)

    # -- CALLs received --------------------------------------------------------------------------
    def _on_call(self, leg: _Leg, call: Call, now: float, out: Outcome) -> None:
        if any(job.message_id == call.message_id for job in leg.jobs):
            error: OcppError = RpcFrameworkError(
                f"a CALL with message id {call.message_id!r} is still being processed"
            )
            out.events.append(Event("bad_frame", leg.name, call.action, error.code))
            out.send(leg.name, rpc.dump_error(call.message_id, error, leg.version))
            return
        if len(leg.jobs) >= MAX_QUEUED_CALLS:
            error = GenericError(f"more than {MAX_QUEUED_CALLS} CALLs waiting for an answer")
            out.send(leg.name, rpc.dump_error(call.message_id, error, leg.version))
            return
        try:
            handler = self._handler_for(leg, call)
        except OcppError as error:
            out.events.append(Event("refused", leg.name, call.action, error.code))
            out.send(leg.name, rpc.dump_error(call.message_id, error, leg.version))
            return
        ctx = Context(self.state, self.config, now, self.device_model)
        job = _Job(leg.name, call.message_id, call.action, ctx, handler(ctx, call.payload))
        leg.jobs.append(job)
        if len(leg.jobs) == 1:
            self._advance(job, now, out)

    def _handler_for(self, leg: _Leg, call: Call) -> Handler:
        if not self.schemas.knows(leg.version, call.action):
            raise NotImplementedAction(f"{call.action} is not an OCPP {leg.version} action")
        self.schemas.validate(leg.version, "request", call.action, call.payload)
        disposition = leg.dispositions.get(call.action)
        if disposition is None:  # every action of both versions is declared: a missing one is our bug
            raise InternalError(f"ocpp-cutover declares no disposition for {call.action}")
        if disposition.handler is None:
            raise disposition.error(disposition.reason)
        return disposition.handler

    # -- responses received ----------------------------------------------------------------------
    def _on_response(self, leg: _Leg, message: CallResult | CallError, now: float, out: Outcome) -> None:
        pending = leg.in_flight
        if pending is None or pending.message_id != message.message_id:
            out.events.append(Event("unexpected_response", leg.name, "", message.message_id))
            return
        leg.in_flight = None
        seconds = now - pending.sent_at
        peer = "legacy CSMS" if leg.name == LEGACY else "charger"
        if isinstance(message, CallError):
            out.events.append(Event("call_error", leg.name, pending.action, message.code, seconds))
            error: PeerError = PeerRefused(
                message.code, f"{peer} answered {pending.action} with {message.code}: {message.description}"
            )
            self._advance(pending.job, now, out, throw=error)
        else:
            try:
                self.schemas.validate(leg.version, "response", pending.action, message.payload)
            except OcppError as exc:
                out.events.append(Event("invalid_response", leg.name, pending.action, exc.code, seconds))
                error = PeerError(
                    exc.code_for(leg.version), f"{peer} answered with an invalid {exc.description}"
                )
                self._advance(pending.job, now, out, throw=error)
            else:
                out.events.append(Event("call_done", leg.name, pending.action, "", seconds))
                self._advance(pending.job, now, out, send=message.payload)
        self._pump(leg, now, out)

    # -- running handlers ------------------------------------------------------------------------
    def _advance(
        self, job: _Job, now: float, out: Outcome, send: Any = None, throw: OcppError | None = None
    ) -> None:
        ctx = job.ctx
        ctx.now = now
        try:
            request = job.gen.throw(throw) if throw is not None else job.gen.send(send)
        except StopIteration as stop:
            self._finish(job, stop.value, now, out)
        except OcppError as error:
            self._fail(job, error, now, out)
        except Exception:
            log.exception("translation_bug station_id=%s action=%s", self.state.station_id, job.action)
            self._fail(job, InternalError(f"ocpp-cutover failed to translate {job.action}"), now, out)
        else:
            target = self._legs[LEGACY if job.origin == CHARGER else CHARGER]
            try:
                self.schemas.validate(target.version, "request", request.action, request.payload)
            except OcppError as error:
                log.error(
                    "translation_invalid station_id=%s action=%s target=%s error=%s",
                    self.state.station_id,
                    job.action,
                    request.action,
                    error.description,
                )
                job.gen.close()
                self._fail(job, InternalError(f"ocpp-cutover produced an invalid {request.action}"), now, out)
            else:
                target.outbox.append(_Outgoing(job, request.action, request.payload))
                self._pump(target, now, out)
        finally:
            self._collect(ctx, out)

    def _collect(self, ctx: Context, out: Outcome) -> None:
        if ctx.changed:
            out.state_changed = True
            ctx.changed = False
        if ctx.device_model_changed:
            out.device_model_changed = True
            ctx.device_model_changed = False
        if ctx.events:
            out.events.extend(ctx.events)
            ctx.events.clear()
        while ctx.spawned:
            handler, payload = ctx.spawned.pop(0)
            self._start_internal(handler, payload, ctx.now, out)

    def _start_internal(self, handler: Handler, payload: dict[str, Any], now: float, out: Outcome) -> None:
        """A job of the proxy's own: its CALLs go to the charger, its result goes nowhere."""
        ctx = Context(self.state, self.config, now, self.device_model)
        job = _Job(LEGACY, None, "(proxy)", ctx, handler(ctx, payload))
        self._advance(job, now, out)

    def _finish(self, job: _Job, payload: dict[str, Any], now: float, out: Outcome) -> None:
        if job.message_id is None:
            return
        origin = self._legs[job.origin]
        try:
            self.schemas.validate(origin.version, "response", job.action, payload)
        except OcppError as error:
            log.error(
                "translation_invalid station_id=%s action=%s response error=%s",
                self.state.station_id,
                job.action,
                error.description,
            )
            error = InternalError(f"ocpp-cutover produced an invalid {job.action} response")
            self._fail(job, error, now, out)
            return
        out.send(job.origin, rpc.dump_result(job.message_id, payload))
        self._next_job(job, now, out)

    def _fail(self, job: _Job, error: OcppError, now: float, out: Outcome) -> None:
        if job.message_id is None:
            log.warning("proxy_call_failed station_id=%s error=%s", self.state.station_id, error.description)
            out.events.append(Event("translation_error", "proxy", job.action, error.code))
            return
        origin = self._legs[job.origin]
        if isinstance(error, PeerError):
            spelling = rpc.ERROR_CODE_16_TO_201 if origin.version == V201 else rpc.ERROR_CODE_201_TO_16
            code = spelling.get(error.peer_code, "GenericError")
            frame = rpc.dump_error_code(job.message_id, code, error.description, {})
        else:
            code = error.code_for(origin.version)
            frame = rpc.dump_error(job.message_id, error, origin.version)
        out.events.append(Event("translation_error", job.origin, job.action, code))
        out.send(job.origin, frame)
        self._next_job(job, now, out)

    def _next_job(self, job: _Job, now: float, out: Outcome) -> None:
        origin = self._legs[job.origin]
        if origin.jobs and origin.jobs[0] is job:
            origin.jobs.popleft()
        if origin.jobs:
            self._advance(origin.jobs[0], now, out)

    def _pump(self, leg: _Leg, now: float, out: Outcome) -> None:
        if leg.in_flight is not None or not leg.outbox:
            return
        pending = leg.outbox.popleft()
        pending.message_id = next(self._ids)
        pending.sent_at = now
        pending.deadline = now + self.config.call_timeout
        leg.in_flight = pending
        out.send(leg.name, rpc.dump_call(pending.message_id, pending.action, pending.payload))
