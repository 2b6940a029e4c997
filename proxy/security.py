"""The chargers' side of the OCPP security profiles: TLS termination, identity binding and admission.

Profile 1: ws with HTTP Basic; profile 2: wss (server certificate) with HTTP Basic; profile 3: wss with a
client certificate bound to the station id (OCPP 2.0.1 Part 2 A00, security whitepaper A00.FR.4xx). Each
station has a profile (a default, overridden per station in Redis); a connection weaker than the station's
profile is refused. Refusals are HTTP 401/403 at the WebSocket handshake with a reason in the log and in
`cutover_auth_failures_total{reason}`; TLS-level refusals (unknown CA, expired, revoked) end the TLS
handshake itself. Profile 0 means "no security profile configured": no authentication, for tests and
closed labs only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import redis.asyncio as redis

from proxy import metrics
from proxy.passwords import password_key, verify_password
from proxy.redis_client import UNAVAILABLE, UNAVAILABLE_OR_UNREADABLE

log = logging.getLogger("cutover.security")

# OCPP 2.0.1 Part 2 A00.FR.317 (security whitepaper A00.FR.317/.421): the four TLS 1.2 suites a CSMS shall
# support; ECDHE-RSA with AES-GCM added for RSA server keys (forward secrecy, nothing weaker). TLS 1.3
# suites are OpenSSL's (all AEAD).
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
    )
)
PROFILE_KEY = "cutover:profile:"  # + {station}: the station's security profile, overriding the default
PROFILE_CACHE_SECONDS = 5.0
# A reconnect storm queues its lookups (its handshakes hold the loop); then 503. Also the password hash's and the
# mapped certificate CN's.
PROFILE_LOOKUP_TIMEOUT = 5.0


def profile_key(station_id: str) -> str:
    return f"{PROFILE_KEY}{{{station_id}}}"


def certificate_cn_key(station_id: str) -> str:
    return f"cutover:cert-cn:{{{station_id}}}"


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None
    crl: Path | None = None


def build_context(files: TlsFiles) -> ssl.SSLContext:
    """A server context: TLS 1.2+, the OCPP suites, no compression; client certificates verified against
    the charging-station CA(s) (and CRL) when they are presented."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(files.cert, files.key)
    if files.client_ca is not None:
        context.load_verify_locations(cafile=files.client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL  # profile 2 stations present none; profile 3 ones must
        if files.crl is not None:
            context.load_verify_locations(cafile=files.crl)
            context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context


class TlsTerminator:
    """Holds the TLS material; `reload()` swaps it for new handshakes while live connections keep theirs."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self.current = build_context(files)
        self.front = build_context(files)
        # OpenSSL calls this for every ClientHello (server_name None without SNI): each new handshake
        # continues with the current material, so a reload needs no new listening socket.
        self.front.sni_callback = self._use_current

    def _use_current(self, connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        # Handshakes started here and completed at the WebSocket handshake: the difference is what TLS
        # refused (unknown CA, expired, revoked, old versions, weak suites) — Python's ssl reports no reason.
        metrics.TLS_HANDSHAKES.labels("started").inc()
        connection.context = self.current

    def reload(self) -> None:
        """Re-read certificate, key, CA and CRL; on any error keep serving the old material (and raise)."""
        self.current = build_context(self.files)
        log.info("tls_reloaded cert=%s client_ca=%s crl=%s", self.files.cert, self.files.client_ca, self.files.crl)


@dataclass
class Refusal(Exception):
    status: int
    reason: str
    detail: str


@dataclass
class AttemptLimiter:
    """Connection attempts per key: a steady rate with a burst, and once `free_failures` authentications
    have failed in a row an exponential penalty (1, 2, 4, ... up to `max_penalty` seconds)."""

    per_second: float = 5.0
    burst: int = 20
    free_failures: int = 3
    max_penalty: float = 300.0
    _tokens: dict[str, tuple[float, float]] = field(default_factory=dict)
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)
    _swept: float = 0.0

    def check(self, key: str, now: float) -> float:
        """0 when an attempt may go ahead (and is counted), else the seconds to wait."""
        blocked_until = self._failures.get(key, (0, 0.0))[1]
        if now < blocked_until:
            return blocked_until - now
        self._sweep(now)
        tokens, last = self._tokens.get(key, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - last) * self.per_second)
        if tokens < 1:
            return (1 - tokens) / self.per_second
        self._tokens[key] = (tokens - 1, now)
        return 0.0

    def _sweep(self, now: float) -> None:
        """Forget the keys whose bucket has refilled (an absent key is a full bucket): without this every source
        address and station id ever seen stays, and chargers on changing (mobile) addresses grow it for ever."""
        refill = self.burst / self.per_second
        if now - self._swept < refill:
            return
        self._swept = now
        for key, (tokens, last) in list(self._tokens.items()):
            if tokens + (now - last) * self.per_second >= self.burst:
                del self._tokens[key]

    def failed(self, key: str, now: float) -> None:
        failures = self._failures.get(key, (0, 0.0))[0] + 1
        over = failures - self.free_failures
        self._failures[key] = (failures, now + min(2.0**over, self.max_penalty) if over >= 0 else 0.0)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


@dataclass
class Admission:
    """Decides, at the WebSocket handshake, whether a station may connect the way it does."""

    default_profile: int
    client: redis.Redis | None
    organization: str | None = None  # pin the client certificate's O RDN
    # Whose name a station certificate's CN carries: the station id, or (serial-number deployments, A00.FR.405)
    # the value set for the station at cutover:cert-cn:{station}.
    identity: Literal["station-id", "mapped"] = "station-id"
    allow_client_cert_on_profile_2: bool = True
    # Many stations can share a source address (NAT): it gets more room than one station does.
    by_address: AttemptLimiter = field(default_factory=lambda: AttemptLimiter(50.0, 200, free_failures=20))
    by_station: AttemptLimiter = field(default_factory=lambda: AttemptLimiter(1.0, 5, free_failures=3))
    _profiles: dict[str, tuple[int, float]] = field(default_factory=dict)
    _hashes: dict[str, str] = field(default_factory=dict)  # last stored hash seen, for a Redis outage

    async def profile_of(self, station_id: str) -> int:
        cached = self._profiles.get(station_id)
        now = time.monotonic()
        if cached is not None and now - cached[1] < PROFILE_CACHE_SECONDS:
            return cached[0]
        profile = cached[0] if cached else self.default_profile
        if self.client is not None:
            try:
                raw = await asyncio.wait_for(self.client.get(profile_key(station_id)), PROFILE_LOOKUP_TIMEOUT)
                profile = int(raw) if raw is not None else self.default_profile
            except UNAVAILABLE_OR_UNREADABLE as exc:
                if cached is None:
                    # The default could be weaker than the station's own profile: never guess downwards.
                    raise Refusal(503, "profile_unknown", f"security profile unreadable: {exc!r}") from exc
                log.warning("profile_lookup_failed station_id=%s error=%r; using %d", station_id, exc, profile)
        self._profiles[station_id] = (profile, now)
        return profile

    async def admit(
        self, station_id: str, source: str, authorization: str | None, tls: ssl.SSLObject | None
    ) -> None:
        """Return if the station may connect; raise `Refusal` (status, counted reason, logged detail) if not."""
        now = time.monotonic()
        limits = ((self.by_address, source), (self.by_station, station_id))
        for limiter, key in limits:
            wait = limiter.check(key, now)
            if wait:
                raise Refusal(429, "rate_limited", f"too many attempts for {key}; retry in {wait:.1f} s")
        profile = await self.profile_of(station_id)  # unreadable (503): not a failed authentication, no penalty
        try:
            await self._authenticate(station_id, profile, authorization, tls)
        except Refusal as refusal:
            if refusal.status != 503:  # a credential Redis could not give back is no failed authentication
                for limiter, key in limits:
                    limiter.failed(key, now)
            raise
        for limiter, key in limits:
            limiter.succeeded(key)

    async def _authenticate(
        self, station_id: str, profile: int, authorization: str | None, tls: ssl.SSLObject | None
    ) -> None:
        if profile >= 2 and tls is None:
            raise Refusal(403, "profile_too_weak", f"station requires security profile {profile} (wss)")
        certificate = tls.getpeercert() if tls is not None else None
        if profile == 3:
            if not certificate:
                raise Refusal(403, "no_client_certificate", "profile 3 requires a client certificate")
            await self._bind(station_id, certificate)
            return
        if certificate and profile == 2 and not self.allow_client_cert_on_profile_2:
            raise Refusal(403, "client_certificate_not_allowed", "profile 2 stations must not present one")
        if profile >= 1:
            await self._check_basic(station_id, authorization)

    async def _bind(self, station_id: str, certificate: Mapping[str, Any]) -> None:
        """OCPP A00.FR.404/405: the subject CN names the station (its id, or with `identity="mapped"` the
        serial number recorded for it), O the operator (when pinned)."""
        subject = {key: value for rdn in certificate.get("subject", ()) for key, value in rdn}
        expected = station_id if self.identity == "station-id" else await self._mapped_cn(station_id)
        if expected is None or subject.get("commonName") != expected:
            raise Refusal(403, "certificate_identity_mismatch", "client certificate CN does not name the station")
        if self.organization is not None and subject.get("organizationName") != self.organization:
            raise Refusal(403, "certificate_organization_mismatch", "client certificate O is not the operator")

    async def _mapped_cn(self, station_id: str) -> str | None:
        if self.client is None:
            return None
        try:
            raw = await asyncio.wait_for(self.client.get(certificate_cn_key(station_id)), PROFILE_LOOKUP_TIMEOUT)
        except UNAVAILABLE as exc:
            raise Refusal(503, "certificate_cn_unknown", f"certificate CN of the station unreadable: {exc!r}") from exc
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    async def _check_basic(self, station_id: str, authorization: str | None) -> None:
        if not authorization or not authorization.startswith("Basic "):
            raise Refusal(401, "missing_credentials", "no HTTP Basic Authorization header")
        try:
            username, _, password = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Refusal(401, "malformed_credentials", "Authorization header is not Basic base64") from None
        if not hmac.compare_digest(username.encode(), station_id.encode()):
            raise Refusal(401, "username_mismatch", "Basic username is not the station id in the URL")
        stored = await self._stored_hash(station_id)
        # scrypt takes tens of milliseconds by design: off the event loop.
        if stored is None or not await asyncio.to_thread(verify_password, password, stored):
            raise Refusal(401, "bad_password", "Basic password does not match")

    async def _stored_hash(self, station_id: str) -> str | None:
        if self.client is None:
            return self._hashes.get(station_id)
        try:
            raw = await asyncio.wait_for(self.client.get(password_key(station_id)), PROFILE_LOOKUP_TIMEOUT)
        except UNAVAILABLE as exc:
            if station_id not in self._hashes:
                # Not a wrong password: the station is told to come back (503), with no penalty.
                raise Refusal(503, "password_unknown", f"password hash unreadable: {exc!r}") from exc
            log.warning("password_lookup_failed station_id=%s error=%r; using the last known hash", station_id, exc)
            return self._hashes[station_id]
        if raw is None:
            self._hashes.pop(station_id, None)
            return None
        stored = raw.decode() if isinstance(raw, bytes) else str(raw)
        self._hashes[station_id] = stored
        return stored


@dataclass(frozen=True)
class UpstreamSecurity:
    """How the proxy connects to the CSMSs it fronts (security whitepaper profiles toward a 1.6 CSMS): a CA
    for their wss certificates, a client certificate (shared by all stations), and HTTP Basic credentials:
    the charger's own forwarded, or one configured password, username the station id."""

    ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    basic: Literal["none", "forward", "password"] = "none"
    password: str | None = None
    # A folder of per-station client certificates (<station>.pem, <station>.key); the shared one otherwise.
    client_cert_dir: Path | None = None

    def context(self, station_id: str | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        own = self.client_cert_dir / f"{station_id}.pem" if self.client_cert_dir and station_id else None
        if own is not None and own.is_file():
            context.load_cert_chain(own, own.with_suffix(".key"))
        elif self.client_cert is not None:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    def headers(self, station_id: str, charger_authorization: str | None) -> dict[str, str]:
        if self.basic == "forward" and charger_authorization is not None:
            return {"Authorization": charger_authorization}
        if self.basic == "password" and self.password is not None:
            token = base64.b64encode(f"{station_id}:{self.password}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        return {}


class RedactCredentials(logging.Filter):
    """Keeps Authorization header values out of log lines (websockets logs headers at DEBUG)."""

    PATTERN = re.compile(r"(authorization:\s*)(\S+\s+)?\S+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "uthorization" in message:
            record.msg, record.args = self.PATTERN.sub(r"\1[redacted]", message), ()
        return True


def redact_credentials_in_logs() -> None:
    """Install the redaction on the loggers that see HTTP headers (idempotent)."""
    for name in ("websockets.server", "websockets.client", "websockets"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactCredentials) for f in logger.filters):
            logger.addFilter(RedactCredentials())


def count_refusal(refusal: Refusal, station_id: str, source: str) -> None:
    metrics.AUTH_FAILURES.labels(refusal.reason).inc()
    log.warning(
        "auth_refused station_id=%s source=%s status=%d reason=%s detail=%r",
        station_id, source, refusal.status, refusal.reason, refusal.detail,
    )  # fmt: skip
