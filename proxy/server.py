"""The proxy's WebSocket server: handshake checks, one `Session` per charger connection.

A session couples the charger's socket to its own upstream socket to the legacy CSMS and feeds every
frame through the sans-I/O engine (a translating `Bridge` for 2.0.1 chargers, a `Passthrough` for 1.6
ones): parse and translate, persist state if it changed, send, tee. When either socket closes, the other
is closed too (OCPP 2.0.1 Part 4 §6.3: a local controller closes its charger connections when it loses
the CSMS, so the charger's own offline queue takes over).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http
import itertools
import logging
import os
import re
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import orjson
import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from proxy import metrics, redis_batch, redis_client, rollback, routing
from proxy.connections import ChargerConnection, UpstreamConnection
from proxy.redis_client import UNAVAILABLE
from proxy.rollback import RollbackRules
from proxy.security import (
    Admission,
    Refusal,
    TlsFiles,
    TlsTerminator,
    UpstreamSecurity,
    count_refusal,
    redact_credentials_in_logs,
)
from proxy.state_store import LOAD_TIMEOUT, StateStore, StateUnavailable
from proxy.tee import Tee
from translators import schemas
from translators.bridge import CHARGER, LEGACY, Bridge, LegName, Outcome, TranslationConfig
from translators.dispatch import CHARGER_CALLS, LEGACY_CALLS
from translators.passthrough import Passthrough
from translators.rpc import V16, V201
from translators.state import StationState

log = logging.getLogger("cutover.proxy")

OCPP201, OCPP16 = "ocpp2.0.1", "ocpp1.6"
SUPPORTED_SUBPROTOCOLS = (OCPP201, OCPP16)  # in order of preference
# OCPP 2.0.1 Part 4 §3.1.1 / OCPP-J 1.6 §3.1.1: the identity is an identifierString of at most 48 characters.
STATION_ID = re.compile(r"[A-Za-z0-9*\-_=:+|@.]{1,48}")
STOP_TIMEOUT = 5.0
CONTROL_TIMEOUT = 1.0  # control-plane bookkeeping in Redis (never on the live path)
COUNTS_EVERY = 0.1  # seconds: the open-transaction counts of all stations go to Redis together
COUNTS_RETRY = 1.0  # seconds: counts Redis failed are written again after this
# The close reason of a session whose station a newer connection claimed through another proxy instance.
SUPERSEDED_REASON = "replaced by a newer connection of this station"
STATE_UNAVAILABLE_REASON = "station state cannot be stored now; try again later"
DRAIN_POLL_SECONDS = 0.05  # how often a session whose charger left looks whether the legacy answered
MISSED_PONG_EVENT = b'["missed_pong"]'  # the tee envelope (dir "event") of a charger that stopped answering pings
# What a refused charger is told: the status says enough; the reason goes to the operator's log only.
REFUSAL_TEXT = {
    401: "authentication required", 403: "not allowed", 429: "too many attempts, retry later",
    503: "temporarily unavailable, retry later",
}  # fmt: skip
# Charger CALLs the control plane reads (model and firmware; open transactions for drain-then-switch).
WATCHED_ACTIONS = frozenset({"BootNotification", "TransactionEvent"})
MESSAGE_TYPES = {ord("2"): "call", ord("3"): "result", ord("4"): "error"}
# cutover_frames_total's children by label values (a bounded set): `labels()` costs more than the count.
FRAME_COUNTERS: dict[tuple[str, str, str, str], Any] = {}
CALL_DURATIONS: dict[tuple[str, str], Any] = {}  # the same for cutover_call_duration_seconds
CALL_ACTION = re.compile(rb'\[\s*2\s*,\s*"(?:[^"\\]|\\.){0,36}"\s*,\s*"([A-Za-z0-9]{1,40})"')


@dataclass
class ProxySettings:
    listen_host: str = "127.0.0.1"
    listen_port: int = 9000
    legacy_url: str = "ws://127.0.0.1:9100/ocpp/{station}"
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    upstream_open_timeout: float = 10.0
    max_frame_bytes: int = 256 * 1024
    translation: TranslationConfig = field(default_factory=TranslationConfig)
    # OCPP security profile of stations without their own (0: none configured, no authentication).
    security_profile: int = 0
    tls: TlsFiles | None = None
    client_cert_organization: str | None = None
    client_cert_identity: Literal["station-id", "mapped"] = "station-id"
    allow_client_cert_on_profile_2: bool = True
    # A slow (slowloris) client gets this long for the TLS and WebSocket opening handshakes together.
    handshake_timeout: float = 10.0
    upstream: UpstreamSecurity = field(default_factory=lambda: UpstreamSecurity())
    # The new 2.0.1 CSMS that stations switched to `cutover` pass through to (URL template like legacy_url).
    native_url: str | None = None
    # TLS toward the new 2.0.1 CSMS: its CA and the proxy's client certificate there (the system CAs if unset).
    native: UpstreamSecurity = field(default_factory=lambda: UpstreamSecurity())
    rollback: RollbackRules = field(default_factory=RollbackRules)
    # How often every session's mode is compared with Redis (switches missed on pub/sub still apply).
    reconcile_seconds: float = 5.0
    # While Redis cannot take a station's state: "available", frames go on (the state is kept in memory and
    # written once Redis is back); "strict", the frames that needed it are dropped and the charger closed (1013,
    # try again later), so none leaves on a state only this process holds (the charger queues meanwhile).
    state_durability: Literal["available", "strict"] = "available"

    def legacy_url_for(self, station_id: str) -> str:
        """The legacy URL of a station: `{station}` replaced, or the id appended as the last path segment."""
        return station_url(self.legacy_url, station_id)


def station_url(template: str, station_id: str) -> str:
    """A station's URL from a template: `{station}` replaced, or the id appended as the last path segment."""
    encoded = quote(station_id, safe="")
    if "{station}" in template:
        return template.replace("{station}", encoded)
    return template.rstrip("/") + "/" + encoded


def station_id_from_path(path: str) -> str:
    """The station id: the last path segment, percent-decoded; ValueError with a reason if it is not one."""
    segment = urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1]
    station_id = unquote(segment)
    if not STATION_ID.fullmatch(station_id):
        raise ValueError(
            f"station id {station_id[:60]!r} in the URL path must be 1 to 48 characters of "
            "A-Z a-z 0-9 * - _ = : + | @ ."
        )
    return station_id


def offered_subprotocols(request: Request) -> list[str]:
    offered: list[str] = []
    for header in request.headers.get_all("Sec-WebSocket-Protocol"):
        offered.extend(token.strip() for token in header.split(",") if token.strip())
    return offered


class Proxy:
    """Accepts chargers and runs a `Session` for each, until `stop()`."""

    def __init__(self, settings: ProxySettings, store: StateStore, tee: Tee) -> None:
        self.settings = settings
        self.store = store
        self.tee = tee
        self.schemas = schemas.load()  # compiled here, at start-up, never in the event loop
        self.sessions: dict[str, Session] = {}
        self.modes: dict[str, routing.Mode] = {}
        self.rules = settings.rollback
        self._control: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.known_actions = self.schemas.actions["1.6"] | self.schemas.actions["2.0.1"]
        redact_credentials_in_logs()
        self.tls = TlsTerminator(settings.tls) if settings.tls is not None else None
        self.upstream_tls = settings.upstream.context()
        self.native_tls = settings.native.context()
        self._upstream_contexts: dict[str, ssl.SSLContext] = {}
        self.admission = Admission(
            settings.security_profile,
            store.client,
            organization=settings.client_cert_organization,
            identity=settings.client_cert_identity,
            allow_client_cert_on_profile_2=settings.allow_client_cert_on_profile_2,
        )
        self._server: Server | None = None
        self._connection_ids = itertools.count(1)
        self._instance = os.urandom(3).hex()
        # Stations whose open-transaction count is to be written (False) or only looked at (True).
        self._counts_changed: dict[str, tuple[Session, bool]] = {}
        self._counts_writer: asyncio.Task[None] | None = None
        self._counts_urgent = False
        store.writes_lost = self._counts_lost
        self.strict = settings.state_durability == "strict"

    def upstream_context(self, station_id: str, native: bool = False) -> ssl.SSLContext:
        """The TLS context toward the legacy for a station (its own client certificate if it has one), or
        toward the new 2.0.1 CSMS."""
        if native:
            return self.native_tls
        if self.settings.upstream.client_cert_dir is None:
            return self.upstream_tls
        if station_id not in self._upstream_contexts:
            self._upstream_contexts[station_id] = self.settings.upstream.context(station_id)
        return self._upstream_contexts[station_id]

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, *, reuse_port: bool = False) -> None:
        """Listen; with `reuse_port` (SO_REUSEPORT) beside the other workers of `--workers` on the same port."""
        self._server = await serve(
            self._handle,
            self.settings.listen_host,
            self.settings.listen_port,
            subprotocols=list(SUPPORTED_SUBPROTOCOLS),  # type: ignore[arg-type]
            select_subprotocol=self._select_subprotocol,
            process_request=self._check_handshake,
            compression=None,  # OCPP-J 1.6 §5.1 recommends none; 2.0.1 makes it optional for stations
            max_size=self.settings.max_frame_bytes,
            ping_interval=self.settings.ping_interval,
            ping_timeout=self.settings.ping_timeout,
            server_header="ocpp-cutover",
            open_timeout=self.settings.handshake_timeout,
            ssl=self.tls.front if self.tls is not None else None,
            ssl_handshake_timeout=self.settings.handshake_timeout if self.tls is not None else None,
            reuse_port=reuse_port,
            create_connection=ChargerConnection,
        )
        log.info(
            "proxy_listening host=%s port=%d legacy_url=%s",
            self.settings.listen_host,
            self.port,
            self.settings.legacy_url,
        )
        if self.store.client is not None:
            self._control = asyncio.create_task(self._follow_switches(), name="follow-switches")

    async def _follow_switches(self) -> None:
        """Apply switches made anywhere (pub/sub), and every few seconds compare every session with Redis."""
        assert self.store.client is not None
        last_reconcile = time.monotonic()
        while not self._stopping.is_set():
            pubsub = None
            try:
                pubsub = await redis_client.subscribe(self.store.client, routing.CHANNEL)
                # redis-py's get_message swallows cancellation: the loop ends on `_stopping` instead.
                while not self._stopping.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                    if message is not None and message["data"]:
                        text = routing.text(message["data"])
                        claim = routing.parse_claim(text)
                        if claim is None:
                            await self._apply_mode(text)
                        else:
                            await self._claimed(*claim)
                    if time.monotonic() - last_reconcile >= self.settings.reconcile_seconds:
                        last_reconcile = time.monotonic()
                        for station_id in list(self.sessions):
                            await self._apply_mode(station_id)
            except UNAVAILABLE as exc:
                log.warning("switch_channel_lost error=%r; retrying in 1 s", exc)
                await asyncio.sleep(1.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(pubsub.aclose(), 1.0)

    async def announce_claim(self, station_id: str, epoch: int) -> None:
        """Tell every instance that a session here claimed the station (best effort: pub/sub delivers at most
        once; the fenced state writes are the guarantee, this makes an older session end at once)."""
        client = self.store.client
        if client is None:
            return
        try:
            await asyncio.wait_for(client.publish(routing.CHANNEL, routing.claim_message(station_id, epoch)), 1.0)
        except UNAVAILABLE as exc:
            log.warning("claim_announce_failed station_id=%s error=%r", station_id, exc)

    async def _claimed(self, station_id: str, epoch: int) -> None:
        """A session somewhere claimed the station at `epoch`: a session of it here with an earlier claim is an
        older connection of the charger (it came back another way): closed, as when a newer one arrives here."""
        session = self.sessions.get(station_id)
        if session is None or not 0 < session.epoch < epoch:
            return
        log.info("station_claimed_elsewhere station_id=%s connection_id=%s epoch=%d newer_epoch=%d; closing this"
                 " connection", station_id, session.connection_id, session.epoch, epoch)  # fmt: skip
        await session.close_charger(1001, SUPERSEDED_REASON)

    async def _apply_mode(self, station_id: str) -> None:
        session = self.sessions.get(station_id)
        if session is None or session.subprotocol != OCPP201 or self.store.client is None:
            return
        route: Any = await self.store.client.hgetall(routing.route_key(station_id))
        mode: routing.Mode = "cutover" if route.get(b"mode") == b"cutover" else "legacy"
        self.modes[station_id] = mode
        session.pending = b"pending" in route
        metrics.PENDING_SWITCHES.set(sum(1 for s in self.sessions.values() if s.pending))
        if mode != session.mode:
            log.info("station_switched station_id=%s from=%s to=%s; closing so it reconnects",
                     station_id, session.mode, mode)  # fmt: skip
            metrics.SWITCHES_APPLIED.labels(mode).inc()
            await session.close_charger(1012, f"station moved to {mode}; reconnect")

    async def mode_for(self, station_id: str) -> routing.Mode:
        """The station's routing mode (the last known one if Redis does not answer; `StateUnavailable` if
        there is none: sending a cut-over station to the legacy would split its transactions)."""
        if self.store.client is not None:
            try:
                self.modes[station_id] = await asyncio.wait_for(
                    routing.mode_of(self.store.client, station_id), LOAD_TIMEOUT
                )
            except UNAVAILABLE as exc:
                if station_id not in self.modes:
                    raise StateUnavailable(f"{station_id}: its routing mode could not be read: {exc!r}") from exc
                log.warning("mode_lookup_failed station_id=%s error=%r; using the last known", station_id, exc)
        return self.modes.get(station_id, "legacy")

    def transactions_changed(self, session: Session) -> None:
        """A session's count of open transactions changed: in Redis before the frames of this pass go out
        (a StartTransaction among them: no switch may take the station for idle then). At zero, whether a
        switch of the station is pending is looked at within a tenth of a second, with the other stations',
        and the switch then takes effect (drain then switch)."""
        active = len(session.active_transactions)
        key = routing.station_key(session.station_id).encode()
        written = self.store.write_now(b"HSET", key, b"active_transactions", b"%d" % active)
        if written and active:
            return
        self._counts_changed[session.station_id] = (session, written)
        self._counts_urgent = self._counts_urgent or not written  # a Redis Cluster: at once, the ordinary way
        self._write_counts_soon()

    def _counts_lost(self) -> None:
        """Redis may have lost counts this process wrote (it came back empty, a Redis Cluster master failed over,
        or the connection they went on failed): every session's open-transaction count is written again, so no
        switch takes a station that is charging for an idle one."""
        for station_id, session in self.sessions.items():
            self._counts_changed[station_id] = (session, False)
        self._counts_urgent = True
        self._write_counts_soon()

    def _write_counts_soon(self) -> None:
        if self._counts_writer is None or self._counts_writer.done():
            self._counts_writer = asyncio.create_task(self._write_counts(), name="transaction-counts")

    async def _write_counts(self) -> None:
        while self._counts_changed:
            if not self._counts_urgent:
                await asyncio.sleep(COUNTS_EVERY)
            self._counts_urgent = False
            changed, self._counts_changed = self._counts_changed, {}
            if not await self._write_counts_of(changed):
                for station_id, entry in changed.items():  # again, unless changed meanwhile or the session ended
                    if self.sessions.get(station_id) is entry[0]:
                        self._counts_changed.setdefault(station_id, entry)
                await asyncio.sleep(COUNTS_RETRY)

    async def _write_counts_of(self, changed: dict[str, tuple[Session, bool]]) -> bool:
        """Write the counts not written yet, and apply the pending switches of the stations now idle; False when
        Redis failed (all to be done again)."""
        client = self.store.client
        assert client is not None
        commands: list[redis_batch.Command] = []
        idle: list[tuple[str, int]] = []  # stations now without a transaction, and their HEXISTS's reply index
        for station_id, (session, written) in changed.items():
            active = len(session.active_transactions)
            if not written:
                count = b"%d" % active
                commands.append((b"HSET", routing.station_key(station_id).encode(), b"active_transactions", count))
            if active == 0:
                idle.append((station_id, len(commands)))
                commands.append((b"HEXISTS", routing.route_key(station_id).encode(), b"pending"))
        try:  # one round trip for all of them
            replies = await redis_batch.execute(client, commands, CONTROL_TIMEOUT) if commands else []
            for station_id, index in idle:
                if replies[index] and await routing.on_idle(client, station_id) is not None:
                    await self._apply_mode(station_id)
        except UNAVAILABLE as exc:
            log.warning("transactions_count_failed stations=%d error=%r; retrying", len(changed), exc)
            return False
        return True

    async def stop(self) -> None:
        self._stopping.set()
        if self._control is not None:
            with contextlib.suppress(*UNAVAILABLE):
                await self.store.client.publish(routing.CHANNEL, b"")  # type: ignore[union-attr]  # wakes the loop
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._control), 3.0)
            self._control.cancel()
        for session in list(self.sessions.values()):
            await session.close_charger(1001, "proxy shutting down")
        if self._server is not None:
            self._server.close()
            try:  # a peer stuck mid-handshake must not hold a shutdown forever
                await asyncio.wait_for(self._server.wait_closed(), STOP_TIMEOUT)
            except TimeoutError:
                log.warning("proxy_stop_timeout seconds=%s; connections still open are abandoned", STOP_TIMEOUT)
            self._server = None

    async def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            station_id = station_id_from_path(request.path)
        except ValueError as exc:
            return self._refuse(connection, "bad_station_id", http.HTTPStatus.BAD_REQUEST, str(exc))
        offered = offered_subprotocols(request)
        if not any(protocol in SUPPORTED_SUBPROTOCOLS for protocol in offered):
            return self._refuse(
                connection,
                "no_subprotocol",
                http.HTTPStatus.BAD_REQUEST,
                f"no supported OCPP subprotocol offered (got {', '.join(offered) or 'none'}); "
                f"this proxy speaks {', '.join(SUPPORTED_SUBPROTOCOLS)}",
            )
        source = str(connection.remote_address[0]) if connection.remote_address else "?"
        tls = connection.transport.get_extra_info("ssl_object")
        if tls is not None:
            metrics.TLS_HANDSHAKES.labels("completed").inc()
        try:
            await self.admission.admit(
                station_id,
                source,
                request.headers.get("Authorization"),
                tls,
            )
        except Refusal as refusal:
            count_refusal(refusal, station_id, source)
            response = connection.respond(refusal.status, f"{REFUSAL_TEXT[refusal.status]}\n")
            if refusal.status == 401:
                response.headers["WWW-Authenticate"] = 'Basic realm="ocpp-cutover", charset="UTF-8"'
            elif refusal.status == 503:
                response.headers["Retry-After"] = "5"
            return response
        return None

    @staticmethod
    def _refuse(connection: ServerConnection, reason: str, status: http.HTTPStatus, text: str) -> Response:
        metrics.HANDSHAKE_REFUSALS.labels(reason).inc()
        log.info("handshake_refused reason=%s detail=%r peer=%s", reason, text, connection.remote_address)
        return connection.respond(status, text + "\n")

    @staticmethod
    def _select_subprotocol(connection: ServerConnection, offered: Any) -> Any:
        for preferred in SUPPORTED_SUBPROTOCOLS:
            if preferred in offered:
                return preferred
        return None

    async def _handle(self, charger: ServerConnection) -> None:
        assert isinstance(charger, ChargerConnection)  # serve(create_connection=...)
        station_id = station_id_from_path(charger.request.path if charger.request else "/")
        subprotocol = charger.subprotocol or OCPP16
        connection_id = f"{self._instance}-{next(self._connection_ids)}"
        try:
            mode: routing.Mode = await self.mode_for(station_id) if subprotocol == OCPP201 else "legacy"
        except StateUnavailable as exc:
            await refuse_for_now(charger, station_id, exc)
            return
        if mode == "cutover" and self.settings.native_url is None:
            log.error("native_url_missing station_id=%s; a cut-over station stays on legacy", station_id)
            mode = "legacy"
        session = Session(self, charger, station_id, str(subprotocol), connection_id, mode)
        previous = self.sessions.get(station_id)
        self.sessions[station_id] = session
        metrics.CONNECTED_STATIONS.labels(subprotocol).inc()
        metrics.STATIONS_BY_MODE.labels(mode).inc()
        try:
            if previous is not None:
                log.info("station_reconnected station_id=%s; closing its previous connection", station_id)
                await previous.close_charger(1001, "replaced by a new connection of this station")
                # The new session starts from the state the previous one leaves: let it record what the
                # legacy still answers it (bounded by the call timeout) before this one loads that state.
                try:
                    await asyncio.wait_for(previous.finished.wait(), self.settings.translation.call_timeout + 2.0)
                except TimeoutError:
                    log.warning("previous_session_still_running station_id=%s; starting anyway", station_id)
            await session.run()
        finally:
            session.finished.set()
            metrics.CONNECTED_STATIONS.labels(subprotocol).dec()
            metrics.STATIONS_BY_MODE.labels(mode).dec()
            if self.sessions.get(station_id) is session:
                del self.sessions[station_id]


class Session:
    """One charger connection and its upstream connection, driven through the sans-I/O engine.

    Every message is handled in the callback that receives it (`connections`), without a task switch or a
    lock: translated, tee'd, and its results sent, or, when they depend on a state change, held in order
    until Redis acknowledged the state (`_held`; the state store calls back).
    """

    def __init__(
        self,
        proxy: Proxy,
        charger: ChargerConnection,
        station_id: str,
        subprotocol: str,
        connection_id: str,
        mode: routing.Mode = "legacy",
    ) -> None:
        self.proxy = proxy
        self.mode = mode
        self.pending = False
        self.upstream_leg = LEGACY if mode == "legacy" else "native"
        self.active_transactions: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._native_calls: dict[str, str] = {}  # message id → action of the charger's CALLs in cutover mode
        self.charger = charger
        self.station_id = station_id
        self.subprotocol = subprotocol
        self.connection_id = connection_id
        self.legacy: UpstreamConnection | None = None
        # The charger's own Authorization header, kept only to forward it upstream when so configured.
        self.charger_authorization = charger.request.headers.get("Authorization") if charger.request else None
        self.engine: Bridge | Passthrough | None = None
        self._timer: asyncio.TimerHandle | None = None  # the engine's next deadline (a CALL's timeout)
        self.finished = asyncio.Event()  # set once the session has ended and recorded all it will
        self._armed: float | None = None
        self._seq = itertools.count()
        # Outcomes whose frames wait, in order, for the state they depend on: [outcome, may go].
        self._held: deque[list[Any]] = deque()
        self._all_sent: asyncio.Future[None] | None = None  # awaited by a session ending with frames held
        self._device_model_saving = False
        self._device_model_dirty = False
        # Asked once: asyncio.get_running_loop() makes a getpid() system call each time (CPython 3.11).
        self._loop = asyncio.get_running_loop()
        self.epoch = 0  # of this session's claim on the station (0: none made): its state writes carry it
        self.superseded = False  # a newer connection of the station claimed it: this session ends, sending nothing
        self.unstored = False  # strict durability: Redis could not take its state, the charger is being closed
        self.legacy_dropped = False  # ... and frames to the legacy were dropped with it

    async def run(self) -> None:
        settings = self.proxy.settings
        native = self.mode == "cutover" and settings.native_url is not None
        url = (
            station_url(settings.native_url or "", self.station_id)
            if native
            else settings.legacy_url_for(self.station_id)
        )
        state: StationState | None = None
        if not native and self.subprotocol == OCPP201:
            try:
                # Strict durability: never served on a state only this process holds.
                self.epoch, state = await self.proxy.store.claim(self.station_id, from_memory=not self.proxy.strict)
            except StateUnavailable as exc:
                await refuse_for_now(self.charger, self.station_id, exc)
                return
        self._in_background(self._registered())
        if self.epoch:
            self._in_background(self.proxy.announce_claim(self.station_id, self.epoch))
        rules = self.proxy.rules
        if native:
            try:
                thresholds = await asyncio.wait_for(
                    rollback.thresholds_for(self.proxy.store.client, self.station_id, rules.defaults), 0.5
                )
            except UNAVAILABLE as exc:
                log.warning("rollback_rules_unavailable station_id=%s error=%r; using the last known",
                            self.station_id, exc)  # fmt: skip
            else:
                rules.configure(self.station_id, thresholds)
        try:
            legacy = await connect(
                url,
                subprotocols=[OCPP201 if native else OCPP16],  # type: ignore[list-item]
                ssl=self.proxy.upstream_context(self.station_id, native) if url.startswith("wss:") else None,
                additional_headers=settings.upstream.headers(self.station_id, self.charger_authorization),
                open_timeout=settings.upstream_open_timeout,
                compression=None,
                max_size=settings.max_frame_bytes,
                ping_interval=settings.ping_interval,
                ping_timeout=settings.ping_timeout,
                create_connection=UpstreamConnection,
            )
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            metrics.UPSTREAM_FAILURES.labels("connect").inc()
            target = "new 2.0.1 CSMS" if native else "legacy CSMS"
            tls_error = rollback.tls_failure(exc)
            log.warning(
                "upstream_unreachable station_id=%s target=%s url=%s error=%r; closing the charger so it queues",
                self.station_id, target, url, tls_error or exc,
            )  # fmt: skip
            client = self.proxy.store.client
            if native and tls_error is not None and rules.native_tls_failed(self.station_id):
                await rollback.roll_back(client, self.station_id, "native_tls_failed", immediate=True)
            elif native and rules.native_unreachable(self.station_id, time.monotonic()):
                await rollback.roll_back(client, self.station_id, "native_unreachable", immediate=True)
            await self.charger.close(1011, f"{target} unreachable")
            return
        assert isinstance(legacy, UpstreamConnection)  # connect(create_connection=...)
        self.legacy = legacy
        if native:
            rules.native_reached(self.station_id)
        if native:
            self.engine = Passthrough(self.proxy.schemas, V201)
        elif state is not None:
            device_model = await self.proxy.store.load_device_model(self.station_id)
            self.engine = Bridge(
                state, self.proxy.schemas, CHARGER_CALLS, LEGACY_CALLS, settings.translation,
                id_prefix=f"cutover-{self.connection_id}-", device_model=device_model,
            )  # fmt: skip
        else:
            self.engine = Passthrough(self.proxy.schemas, V16)
        log.info(
            "station_connected station_id=%s subprotocol=%s connection_id=%s",
            self.station_id,
            self.subprotocol,
            self.connection_id,
        )
        charger = self.charger
        charger_closed, legacy_closed = charger.connection_lost_waiter, legacy.connection_lost_waiter
        charger.attach(self._from_charger)
        legacy.attach(self._from_legacy)
        try:
            await asyncio.wait([charger_closed, legacy_closed], return_when=asyncio.FIRST_COMPLETED)
            ended_by = CHARGER if charger_closed.done() else LEGACY
            if ended_by == CHARGER:
                await self._finish_with_legacy(legacy_closed)
            if self._held:  # frames still wait for their states' writes: bounded by the state store's timeout
                self._all_sent = asyncio.get_running_loop().create_future()
                await asyncio.wait([self._all_sent], timeout=STOP_TIMEOUT)
        finally:
            charger.detach()
            legacy.detach()
            if self._timer is not None:
                self._timer.cancel()
        close_sent = self.charger.protocol.close_sent
        if close_sent is not None and close_sent.reason == "keepalive ping timeout":
            # Not a frame, but the shadow's conformance lint judges it: an event envelope on the charger leg.
            metrics.MISSED_PONGS.inc()
            self.proxy.tee.offer(
                self.station_id, self.connection_id, next(self._seq), CHARGER, "event", self.subprotocol,
                MISSED_PONG_EVENT,
            )  # fmt: skip
        if ended_by == LEGACY:
            metrics.UPSTREAM_FAILURES.labels("dropped").inc()
            code = 1001 if legacy.close_code in (1000, 1001) else 1011
            log.warning(
                "legacy_connection_lost station_id=%s close_code=%s; closing the charger so it queues",
                self.station_id,
                legacy.close_code,
            )
            await self.charger.close(code, "legacy CSMS connection lost")
        await legacy.close()
        await self._unregistered()
        log.info(
            "station_disconnected station_id=%s connection_id=%s charger_close_code=%s",
            self.station_id,
            self.connection_id,
            self.charger.close_code,
        )

    async def _finish_with_legacy(self, legacy_closed: asyncio.Future[None]) -> None:
        """The charger left with a CALL of ours still out at the legacy (a StartTransaction, say): read its
        answer, within the call timeout, so it is recorded. Dropped, the charger's retransmission of the
        event would make the proxy send it again, and the legacy would open the transaction twice."""
        engine = self.engine
        # Superseded, a newer session records what comes now; with frames to the legacy dropped (strict
        # durability), what the engine awaits never left and the retransmission will send it.
        if not isinstance(engine, Bridge) or self.superseded or self.legacy_dropped:
            return
        loop = asyncio.get_running_loop()
        until = loop.time() + self.proxy.settings.translation.call_timeout + 1.0
        while engine.awaiting(LEGACY) and not legacy_closed.done() and loop.time() < until:
            await asyncio.wait([legacy_closed], timeout=DRAIN_POLL_SECONDS)

    async def close_charger(self, code: int, reason: str) -> None:
        await self.charger.close(code, reason)

    # -- the hot path: one message, or one deadline, handled to the end ---------------------------
    def _from_charger(self, frame: bytes) -> None:
        self._count_and_tee(CHARGER, "in", frame)
        self._run_engine(CHARGER, frame)

    def _from_legacy(self, frame: bytes) -> None:
        self._count_and_tee(LEGACY, "in", frame)
        self._run_engine(LEGACY, frame)

    def _deadline(self) -> None:
        self._timer = self._armed = None
        self._run_engine(None, b"")

    def _run_engine(self, leg: LegName | None, frame: bytes) -> None:
        """The engine on one received frame (`leg`), or on its deadline (None); then what it decided."""
        engine = self.engine
        assert engine is not None
        try:
            now = self._loop.time()
            if leg is not None:
                outcome = engine.receive(leg, frame, now)
                call = outcome.received_call
                if leg == CHARGER and call is not None and call.action in WATCHED_ACTIONS:
                    self._watch(call.action, call.payload)
            else:
                assert isinstance(engine, Bridge)
                outcome = engine.expire(now)
            self._effect(outcome)
        except Exception:
            # A bug, never a peer's doing (the engine answers bad frames itself): end the session, as a
            # failed reader task did, rather than carry on with a station whose state may be half-updated.
            log.exception("session_failed station_id=%s leg=%s", self.station_id, leg)
            self._in_background(self.close_charger(1011, "internal error"))
            return
        self._arm_timer()

    def _effect(self, outcome: Outcome) -> None:
        """Persist, then send: a frame never leaves before Redis holds the state it depends on. Frames wait
        in order (`_held`): those of an outcome that changed nothing go out at once unless earlier ones wait."""
        if self.superseded:  # a timer's outcome after the session lost its station: nothing of it may go
            return
        if outcome.device_model_changed and isinstance(self.engine, Bridge):
            self._save_device_model()
        held = self._held
        if not (outcome.state_changed and isinstance(self.engine, Bridge)):
            if held:
                held.append([outcome, True])
            else:
                self._send(outcome)
            return
        entry: list[Any] = [outcome, False]
        held.append(entry)
        self.proxy.store.persist(
            self.engine.state, functools.partial(self._persisted, entry), epoch=self.epoch,
            superseded=self._superseded, unavailable=self._unavailable if self.proxy.strict else None,
        )  # fmt: skip

    def _persisted(self, entry: list[Any]) -> None:
        """Redis acknowledged the state an outcome waited for (or the write was deferred): send what may go."""
        entry[1] = True
        held = self._held
        while held and held[0][1]:
            self._send(held.popleft()[0])
        if not held and self._all_sent is not None and not self._all_sent.done():
            self._all_sent.set_result(None)

    def _superseded(self) -> None:
        """Redis refused this session's state: a newer connection of the station (through another proxy
        instance) claimed it. What waited for that state is stale and is not sent; the session ends, its
        charger closed as when a newer connection replaces it here."""
        if self.superseded:
            return
        self.superseded = True
        log.warning(
            "session_superseded station_id=%s connection_id=%s frames_dropped=%d; a newer connection of the"
            " station claimed it, closing this one", self.station_id, self.connection_id, self._drop_held(),
        )  # fmt: skip
        self.charger.detach()
        if self.legacy is not None:
            self.legacy.detach()
        self._in_background(self.close_charger(1001, SUPERSEDED_REASON))

    def _unavailable(self) -> None:
        """`--state-durability strict`: Redis could not take this session's state (it is kept, and retried in the
        background). What waited for it is not sent, and the charger is closed to queue what it has and come back
        (with `available`, the default, what waited goes on: `_persisted`). The legacy leg stays until its last
        answer is read, so that it is recorded (`_finish_with_legacy`), unless what was dropped included frames to
        it."""
        if any(outcome.to_legacy for outcome, _ in self._held):
            self.legacy_dropped = True  # the engine awaits answers to frames that never left: no use waiting
        dropped = self._drop_held()
        if self.unstored:
            return
        self.unstored = True
        metrics.UPSTREAM_FAILURES.labels("state_unavailable").inc()
        log.warning(
            "session_state_unavailable station_id=%s connection_id=%s frames_dropped=%d; Redis cannot store its"
            " state (--state-durability strict), closing the charger", self.station_id, self.connection_id, dropped,
        )  # fmt: skip
        self.charger.detach()
        self._in_background(self.close_charger(1013, STATE_UNAVAILABLE_REASON))

    def _drop_held(self) -> int:
        """Drop the outcomes waiting for their state (none of them may go); how many frames they held."""
        frames = sum(len(outcome.to_charger) + len(outcome.to_legacy) for outcome, _ in self._held)
        self._held.clear()
        if self._all_sent is not None and not self._all_sent.done():
            self._all_sent.set_result(None)
        return frames

    def _send(self, outcome: Outcome) -> None:
        for leg, frames in ((CHARGER, outcome.to_charger), (LEGACY, outcome.to_legacy)):
            socket = self.charger if leg == CHARGER else self.legacy
            assert socket is not None
            for frame in frames:
                self._count_and_tee(leg, "out", frame)
                if not socket.send_now(frame):
                    log.info("send_on_closed_socket station_id=%s leg=%s", self.station_id, leg)
        for event in outcome.events:
            record(event)
            if event.kind == "uncertain":  # the shadow records it as a divergence the operator can query
                self.proxy.tee.offer(
                    self.station_id, self.connection_id, next(self._seq), CHARGER, "event", self.subprotocol,
                    orjson.dumps(["uncertain", event.action, event.detail]),
                )  # fmt: skip

    def _save_device_model(self) -> None:
        """Best effort, in the background (a device model lost is reported again at the next boot); one write
        at a time, the last one with the latest model."""
        if self._device_model_saving:
            self._device_model_dirty = True
            return
        self._device_model_saving = True
        self._in_background(self._write_device_model())

    async def _write_device_model(self) -> None:
        assert isinstance(self.engine, Bridge)
        try:
            self._device_model_dirty = True
            while self._device_model_dirty:
                self._device_model_dirty = False
                await self.proxy.store.save_device_model(self.station_id, self.engine.device_model)
        finally:
            self._device_model_saving = False

    def _arm_timer(self) -> None:
        """Wake up by the engine's next deadline. A timer already set for earlier stays: it wakes the engine
        (which expires nothing yet) and is set again then. Deadlines move later with every CALL sent, so the
        timer is set about once per call timeout instead of on every frame."""
        engine = self.engine
        deadline = engine.next_deadline() if isinstance(engine, Bridge) else None
        if deadline is None or (self._armed is not None and self._armed <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._armed = deadline
        self._timer = self._loop.call_at(deadline, self._deadline)

    def _count_and_tee(self, leg: LegName, direction: str, frame: bytes) -> None:
        message_type = MESSAGE_TYPES.get(frame[1] if len(frame) > 1 else 0, "invalid")
        action = ""
        if message_type == "call":
            match = CALL_ACTION.match(frame)
            action = match.group(1).decode() if match else ""
            if action not in self.proxy.known_actions:
                action = "other"  # bounded label values: only actions of the OCPP versions spoken here
        tee_leg = leg if leg == CHARGER else self.upstream_leg
        labels = (tee_leg, direction, message_type, action)
        counter = FRAME_COUNTERS.get(labels)
        if counter is None:
            counter = FRAME_COUNTERS[labels] = metrics.FRAMES.labels(*labels)
        counter.inc()
        protocol = self.subprotocol if leg == CHARGER or self.upstream_leg == "native" else OCPP16
        self.proxy.tee.offer(
            self.station_id, self.connection_id, next(self._seq), tee_leg, direction, protocol, frame
        )
        if self.upstream_leg == "native":
            self._judge_native(leg, direction, action, message_type, frame)

    def _judge_native(self, leg: LegName, direction: str, action: str, message_type: str, frame: bytes) -> None:
        """The automatic rollback rules' view of a cut-over station: the new CSMS's answers to its CALLs."""
        if leg == CHARGER and direction == "in" and message_type == "call":
            with contextlib.suppress(orjson.JSONDecodeError, IndexError, TypeError):
                self._native_calls[orjson.loads(frame)[1]] = action
            return
        if leg == CHARGER or direction != "in" or message_type not in ("result", "error"):
            return
        try:
            answer = orjson.loads(frame)
            called = self._native_calls.pop(answer[1], None)
        except (orjson.JSONDecodeError, IndexError, TypeError):
            return
        if called is None:
            return  # an answer to the charger's own answer path, not to one of its CALLs
        rules, client = self.proxy.rules, self.proxy.store.client
        if called == "BootNotification" and message_type == "result" and answer[2].get("status") == "Rejected":
            self._in_background(rollback.roll_back(client, self.station_id, "boot_rejected", immediate=True))
        elif rules.answered(self.station_id, message_type == "error"):
            self._in_background(rollback.roll_back(client, self.station_id, "callerror_rate", immediate=False))

    def _watch(self, action: str, payload: dict[str, Any]) -> None:
        """What the control plane needs from the charger's own CALLs: its model and open transactions."""
        if not isinstance(payload, dict) or self.proxy.store.client is None:
            return
        if action == "BootNotification":
            station = payload.get("chargingStation", payload)  # 2.0.1 nests it; 1.6 is flat
            model = station.get("model") or payload.get("chargePointModel")
            firmware = station.get("firmwareVersion") or payload.get("firmwareVersion")
            fields = {k: v for k, v in (("model", model), ("firmware", firmware)) if isinstance(v, str)}
            if fields:
                self._in_background(self._set_info(fields))
            return
        transaction_id = (payload.get("transactionInfo") or {}).get("transactionId")
        if not isinstance(transaction_id, str):
            return
        before = len(self.active_transactions)
        if payload.get("eventType") == "Ended":
            self.active_transactions.discard(transaction_id)
        else:
            self.active_transactions.add(transaction_id)
        if len(self.active_transactions) != before:
            self.proxy.transactions_changed(self)

    def _in_background(self, coroutine: Any) -> None:
        """Control-plane bookkeeping never holds the live path up."""
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _set_info(self, fields: Any) -> None:
        client = self.proxy.store.client
        assert client is not None
        try:
            await client.hset(routing.station_key(self.station_id), mapping=fields)
        except UNAVAILABLE as exc:
            log.warning("station_info_failed station_id=%s error=%r", self.station_id, exc)

    async def _registered(self) -> None:
        client = self.proxy.store.client
        if client is None:
            return
        try:
            await client.sadd(routing.STATIONS, self.station_id)
        except UNAVAILABLE as exc:
            log.warning("station_register_failed station_id=%s error=%r", self.station_id, exc)
        await self._set_info({"protocol": self.subprotocol, "connected": self.connection_id})

    async def _unregistered(self) -> None:
        client = self.proxy.store.client
        if client is None:
            return
        try:
            connected = await client.hget(routing.station_key(self.station_id), "connected")
            if routing.text(connected or b"") == self.connection_id:
                await client.hdel(routing.station_key(self.station_id), "connected")
        except UNAVAILABLE as exc:
            log.warning("station_unregister_failed station_id=%s error=%r", self.station_id, exc)



async def refuse_for_now(charger: ServerConnection, station_id: str, why: StateUnavailable) -> None:
    """Close a charger the proxy cannot serve safely yet (Redis unreachable, nothing known of the station):
    1013, try again later; it queues its events meanwhile, as when its CSMS is away."""
    metrics.UPSTREAM_FAILURES.labels("state_unavailable").inc()
    log.warning("station_state_unavailable station_id=%s error=%s; closing the charger so it retries", station_id, why)
    await charger.close(1013, "station state unavailable, retry later")


def record(event: Any) -> None:
    """Count one engine event in the metrics (and log what an operator must see)."""
    if event.kind == "call_done":
        labels = (event.leg, event.action)
        histogram = CALL_DURATIONS.get(labels)
        if histogram is None:
            histogram = CALL_DURATIONS[labels] = metrics.CALL_DURATION.labels(*labels)
        histogram.observe(event.seconds)
    elif event.kind == "timeout":
        metrics.CALL_TIMEOUTS.labels(event.leg, event.action).inc()
    elif event.kind in ("translation_error", "refused", "bad_frame", "invalid_response"):
        metrics.TRANSLATION_ERRORS.labels(event.action or "-", event.detail).inc()
    elif event.kind == "uncertain":
        metrics.UNCERTAIN_CALLS.labels(event.action).inc()
        log.warning("legacy_may_hold_duplicate action=%s detail=%s; check the legacy CSMS and close the duplicate",
                    event.action, event.detail)  # fmt: skip
    elif event.kind == "lossy":
        metrics.LOSSY_TRANSLATIONS.labels(event.action).inc()
        log.info("translation_lossy action=%s detail=%s", event.action, event.detail)
