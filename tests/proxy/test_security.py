"""Security profiles over real TLS on loopback with generated certificates."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
import redis.asyncio as redis
from cryptography.x509.oid import ExtendedKeyUsageOID
from prometheus_client import REGISTRY
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from peers.legacy_csms import LegacyCsms
from proxy import pki
from proxy.app import RunningProxy, start_proxy
from proxy.passwords import hash_password, password_key
from proxy.security import AttemptLimiter, TlsFiles, UpstreamSecurity, certificate_cn_key, profile_key
from tests.conftest import settings_for
from tests.frames import tee_envelopes

PASSWORD = "correct-horse-battery"  # 21 characters, within OCPP 2.0.1's 16..40


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    pki.init_ca(directory)
    for station in ("SEC01", "SEC02", "SEC03", "SEC04"):
        pki.issue_station(directory, station)
    now = dt.datetime.now(dt.UTC)
    pki.issue_station(
        directory, "EXPIRED", not_before=now - dt.timedelta(days=10), not_after=now - dt.timedelta(days=1)
    )
    pki.issue_station(directory, "FUTURE", not_before=now + dt.timedelta(days=1), not_after=now + dt.timedelta(days=10))
    pki.issue_station(directory, "REVOKED")
    pki.issue_station(directory, "SERVERKEY", extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH,))
    other = tmp_path_factory.mktemp("other-ca")
    pki.init_ca(other)
    pki.issue_station(other, "SEC01")
    (directory / "other").mkdir()
    for name in ("SEC01.pem", "SEC01.key"):
        (directory / "other" / name).write_bytes((other / name).read_bytes())
    return directory


def client_context(pki_dir: Path, station: str | None = None, certs: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki_dir / "ca.pem")
    if station is not None:
        folder = certs or pki_dir
        context.load_cert_chain(folder / f"{station}.pem", folder / f"{station}.key")
    return context


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
async def secure_proxy(
    legacy: LegacyCsms, redis_url: str, redis_client: redis.Redis, pki_dir: Path
) -> AsyncIterator[RunningProxy]:
    settings = settings_for(legacy)
    settings.security_profile = 2
    settings.tls = TlsFiles(pki_dir / "server.pem", pki_dir / "server.key", pki_dir / "ca.pem", pki_dir / "crl.pem")
    running = await start_proxy(settings, redis_url, None)
    for station in ("SEC01", "SEC02", "SEC03"):
        await redis_client.set(password_key(station), hash_password(PASSWORD))
    yield running
    await running.stop()


def wss(running: RunningProxy, station: str) -> str:
    return f"wss://localhost:{running.proxy.port}/ocpp/{station}"


async def boots(ws: ClientConnection) -> bool:
    boot = {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"}
    await ws.send(orjson.dumps([2, "b", "BootNotification", boot]).decode())
    return bool(orjson.loads(await ws.recv())[2]["status"] == "Accepted")


async def refused_status(url: str, **kwargs: object) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, subprotocols=["ocpp2.0.1"], **kwargs):  # type: ignore[arg-type, list-item]
            pass
    return refused.value.response.status_code


async def test_profile_2_basic_auth(secure_proxy: RunningProxy, pki_dir: Path) -> None:
    context = client_context(pki_dir)
    url = wss(secure_proxy, "SEC01")
    async with connect(url, subprotocols=["ocpp2.0.1"], ssl=context, additional_headers=basic("SEC01", PASSWORD)) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "ocpp2.0.1" and await boots(ws)
    assert await refused_status(url, ssl=context, additional_headers=basic("SEC01", "wrong-password-0000")) == 401
    assert await refused_status(url, ssl=context, additional_headers=basic("SEC02", PASSWORD)) == 401
    assert await refused_status(url, ssl=context) == 401


async def test_profile_3_binds_the_certificate_to_the_station(
    secure_proxy: RunningProxy, pki_dir: Path, redis_client: redis.Redis
) -> None:
    for station in ("SEC03", "SEC04"):
        await redis_client.set(profile_key(station), b"3")
    async with connect(
        wss(secure_proxy, "SEC03"), subprotocols=["ocpp2.0.1"], ssl=client_context(pki_dir, "SEC03")
    ) as ws:  # type: ignore[list-item]
        assert await boots(ws)
    # a valid certificate of another station, no certificate, Basic credentials instead of a certificate
    assert await refused_status(wss(secure_proxy, "SEC04"), ssl=client_context(pki_dir, "SEC03")) == 403
    assert await refused_status(wss(secure_proxy, "SEC03"), ssl=client_context(pki_dir)) == 403
    assert (
        await refused_status(
            wss(secure_proxy, "SEC03"), ssl=client_context(pki_dir), additional_headers=basic("SEC03", PASSWORD)
        )
        == 403
    )


@pytest.mark.parametrize(
    ("station", "certs"),
    [("SEC01", "other"), ("EXPIRED", None), ("FUTURE", None), ("REVOKED", None), ("SERVERKEY", None)],
)
async def test_bad_client_certificates_end_the_tls_handshake(
    secure_proxy: RunningProxy, pki_dir: Path, redis_client: redis.Redis, station: str, certs: str | None
) -> None:
    if station == "REVOKED":
        pki.revoke(pki_dir, "REVOKED")
        secure_proxy.proxy.tls.reload()  # type: ignore[union-attr]
    await redis_client.set(profile_key(station), b"3")
    context = client_context(pki_dir, station, pki_dir / certs if certs else None)
    # TLS 1.3 clients learn of the refusal after their side of the handshake: the socket closes unanswered.
    with pytest.raises((ssl.SSLError, ConnectionError, InvalidMessage, OSError)):
        async with connect(wss(secure_proxy, station), subprotocols=["ocpp2.0.1"], ssl=context) as ws:  # type: ignore[list-item]
            await ws.recv()
    assert station not in secure_proxy.proxy.sessions


@pytest.mark.parametrize("weakness", ["tls1.1", "weak-cipher"])
async def test_old_tls_and_weak_ciphers_are_refused(secure_proxy: RunningProxy, pki_dir: Path, weakness: str) -> None:
    context = client_context(pki_dir)
    if weakness == "tls1.1":
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    else:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers("AES128-SHA:ECDHE-RSA-AES128-SHA:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        async with connect(
            wss(secure_proxy, "SEC01"),
            subprotocols=["ocpp2.0.1"],
            ssl=context,  # type: ignore[list-item]
            additional_headers=basic("SEC01", PASSWORD),
        ):
            pass


async def test_plain_ws_for_a_profile_3_station_is_refused(
    legacy: LegacyCsms, redis_url: str, redis_client: redis.Redis
) -> None:
    settings = settings_for(legacy)
    settings.security_profile = 1
    running = await start_proxy(settings, redis_url, None)
    await redis_client.set(profile_key("PLAIN3"), b"3")
    try:
        url = f"ws://127.0.0.1:{running.proxy.port}/ocpp/PLAIN3"
        assert await refused_status(url, additional_headers=basic("PLAIN3", PASSWORD)) == 403
    finally:
        await running.stop()


async def test_client_certificate_on_a_profile_2_station_when_forbidden(
    legacy: LegacyCsms, redis_url: str, redis_client: redis.Redis, pki_dir: Path
) -> None:
    settings = settings_for(legacy)
    settings.security_profile = 2
    settings.allow_client_cert_on_profile_2 = False
    settings.tls = TlsFiles(pki_dir / "server.pem", pki_dir / "server.key", pki_dir / "ca.pem")
    running = await start_proxy(settings, redis_url, None)
    await redis_client.set(password_key("SEC02"), hash_password(PASSWORD))
    try:
        status = await refused_status(
            wss(running, "SEC02"), ssl=client_context(pki_dir, "SEC02"), additional_headers=basic("SEC02", PASSWORD)
        )
    finally:
        await running.stop()
    assert status == 403


async def test_certificate_rotation_keeps_live_sessions(secure_proxy: RunningProxy, pki_dir: Path) -> None:
    context = client_context(pki_dir)
    url = wss(secure_proxy, "SEC01")
    async with connect(
        url, subprotocols=["ocpp2.0.1"], ssl=context, additional_headers=basic("SEC01", PASSWORD)
    ) as old:  # type: ignore[list-item]
        before = old.transport.get_extra_info("ssl_object").getpeercert()["serialNumber"]
        pki.issue_server(pki_dir, ("localhost",), ("127.0.0.1",))
        secure_proxy.proxy.tls.reload()  # type: ignore[union-attr]
        async with connect(
            url.replace("SEC01", "SEC02"),
            subprotocols=["ocpp2.0.1"],
            ssl=context,  # type: ignore[list-item]
            additional_headers=basic("SEC02", PASSWORD),
        ) as new:
            after = new.transport.get_extra_info("ssl_object").getpeercert()["serialNumber"]
            assert await boots(new)
        assert await boots(old)  # the session opened before the reload goes on
    assert before != after


async def test_failed_attempts_are_rate_limited_and_cannot_hijack(secure_proxy: RunningProxy, pki_dir: Path) -> None:
    context = client_context(pki_dir)
    url = wss(secure_proxy, "SEC03")
    async with connect(url, subprotocols=["ocpp2.0.1"], ssl=context, additional_headers=basic("SEC03", PASSWORD)) as ws:  # type: ignore[list-item]
        statuses = [
            await refused_status(url, ssl=context, additional_headers=basic("SEC03", "not-the-password-00"))
            for _ in range(5)
        ]
        assert statuses == [401, 401, 401, 429, 429]  # penalised after three failures in a row
        assert await boots(ws)  # the authenticated session was not replaced by the failed ones


async def test_secrets_stay_out_of_the_tee_and_the_logs(
    secure_proxy: RunningProxy, pki_dir: Path, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    context = client_context(pki_dir)
    header = basic("SEC02", PASSWORD)
    async with connect(
        wss(secure_proxy, "SEC02"), subprotocols=["ocpp2.0.1"], ssl=context, additional_headers=header
    ) as ws:  # type: ignore[list-item]
        assert await boots(ws)
    await refused_status(
        wss(secure_proxy, "SEC02"), ssl=context, additional_headers=basic("SEC02", "another-secret-xyz")
    )
    await secure_proxy.tee.flush()
    frames = b"".join(envelope["frame"] for envelope in await tee_envelopes(redis_client))
    logged = caplog.text
    for secret in (PASSWORD, "another-secret-xyz", header["Authorization"], header["Authorization"][6:]):
        assert secret.encode() not in frames and secret not in logged
    stored = await redis_client.get(password_key("SEC02"))
    assert PASSWORD.encode() not in stored
    await asyncio.sleep(0)


async def test_upstream_tls_client_certificate_and_credentials(
    redis_url: str, redis_client: redis.Redis, pki_dir: Path
) -> None:
    """Toward a wss legacy CSMS that wants a client certificate: the proxy's shared certificate and a
    configured Basic password, username the station id."""
    pki.issue_station(pki_dir, "proxy-upstream")
    upstream = UpstreamSecurity(
        pki_dir / "ca.pem",
        pki_dir / "proxy-upstream.pem",
        pki_dir / "proxy-upstream.key",
        "password",
        "upstream-pw-0001",
    )
    legacy = await boot_through_wss_legacy(pki_dir, redis_url, upstream, "UP01")
    handshake = legacy.handshakes["UP01"]
    assert handshake["authorization"] == basic("UP01", "upstream-pw-0001")["Authorization"]
    subject = dict(rdn[0] for rdn in handshake["client_certificate"]["subject"])
    assert subject["commonName"] == "proxy-upstream"


async def test_upstream_forwards_the_chargers_own_credentials(
    legacy: LegacyCsms, redis_url: str, redis_client: redis.Redis
) -> None:
    settings = settings_for(legacy)
    settings.security_profile = 1
    settings.upstream = UpstreamSecurity(basic="forward")
    running = await start_proxy(settings, redis_url, None)
    await redis_client.set(password_key("FWD01"), hash_password(PASSWORD))
    try:
        async with connect(
            f"ws://127.0.0.1:{running.proxy.port}/ocpp/FWD01", subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            additional_headers=basic("FWD01", PASSWORD),
        ) as ws:  # fmt: skip
            assert await boots(ws)
    finally:
        await running.stop()
    assert legacy.handshakes["FWD01"]["authorization"] == basic("FWD01", PASSWORD)["Authorization"]


async def test_the_admin_call_reloads_tls(
    legacy: LegacyCsms, redis_url: str, redis_client: redis.Redis, pki_dir: Path
) -> None:
    settings = settings_for(legacy)
    settings.tls = TlsFiles(pki_dir / "server.pem", pki_dir / "server.key")
    running = await start_proxy(settings, redis_url, ("127.0.0.1", 0), admin_token="a-very-long-admin-token")
    assert running.admin is not None
    try:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer a-very-long-admin-token"}) as http:
            async with http.post(running.admin.url + "/tls/reload") as response:
                assert response.status == 200 and (await response.json()) == {"status": "reloaded"}
    finally:
        await running.stop()


async def test_serial_number_deployments_map_the_certificate_cn(
    secure_proxy: RunningProxy, pki_dir: Path, redis_client: redis.Redis
) -> None:
    pki.issue_station(pki_dir, "MAP01", common_name="SERIAL-0042")
    secure_proxy.proxy.admission.identity = "mapped"
    await redis_client.set(profile_key("MAP01"), b"3")
    url, context = wss(secure_proxy, "MAP01"), client_context(pki_dir, "MAP01")
    assert await refused_status(url, ssl=context) == 403  # no serial recorded for the station yet
    await redis_client.set(certificate_cn_key("MAP01"), b"SERIAL-0042")
    async with connect(url, subprotocols=["ocpp2.0.1"], ssl=context) as ws:  # type: ignore[list-item]
        assert await boots(ws)


async def test_tls_refusals_are_counted(secure_proxy: RunningProxy, pki_dir: Path, redis_client: redis.Redis) -> None:
    def gap() -> float:
        started = REGISTRY.get_sample_value("cutover_tls_handshakes_total", {"stage": "started"}) or 0
        return started - (REGISTRY.get_sample_value("cutover_tls_handshakes_total", {"stage": "completed"}) or 0)

    before = gap()
    await redis_client.set(profile_key("EXPIRED"), b"3")
    with pytest.raises((ssl.SSLError, ConnectionError, InvalidMessage, OSError)):
        async with connect(
            wss(secure_proxy, "EXPIRED"), subprotocols=["ocpp2.0.1"], ssl=client_context(pki_dir, "EXPIRED")
        ):  # type: ignore[list-item]
            pass
    assert gap() == before + 1


async def test_metrics_can_listen_apart_from_the_admin_api(
    legacy: LegacyCsms, redis_url: str, redis_client: redis.Redis
) -> None:
    running = await start_proxy(
        settings_for(legacy),
        redis_url,
        ("127.0.0.1", 0),
        admin_token="a-very-long-admin-token",
        metrics_listen=("127.0.0.1", 0),
    )
    assert running.admin is not None and running.metrics is not None
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(running.metrics.url + "/metrics") as response:
                assert response.status == 200
            async with http.get(running.admin.url + "/metrics") as response:
                assert response.status == 404
            async with http.get(running.metrics.url + "/divergences") as response:
                assert response.status in (403, 404)  # the API is not served on the metrics listener
    finally:
        await running.stop()


async def test_upstream_client_certificate_per_station(
    redis_url: str, redis_client: redis.Redis, pki_dir: Path
) -> None:
    own = pki_dir / "upstream-certs"
    own.mkdir(exist_ok=True)
    pki.issue_station(pki_dir, "UP02")
    for suffix in (".pem", ".key"):
        (own / f"UP02{suffix}").write_bytes((pki_dir / f"UP02{suffix}").read_bytes())
    legacy = await boot_through_wss_legacy(
        pki_dir, redis_url, UpstreamSecurity(pki_dir / "ca.pem", client_cert_dir=own), "UP02"
    )
    subject = dict(rdn[0] for rdn in legacy.handshakes["UP02"]["client_certificate"]["subject"])
    assert subject["commonName"] == "UP02"


async def boot_through_wss_legacy(
    pki_dir: Path, redis_url: str, upstream: UpstreamSecurity, station: str
) -> LegacyCsms:
    """Boot `station` through a proxy whose legacy CSMS serves wss and wants a client certificate."""
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki_dir / "ca.pem")
    server_side.load_cert_chain(pki_dir / "server.pem", pki_dir / "server.key")
    server_side.verify_mode = ssl.CERT_REQUIRED
    legacy = LegacyCsms()
    await legacy.start(tls=server_side)
    settings = settings_for(legacy)
    settings.upstream = upstream
    running = await start_proxy(settings, redis_url, None)
    try:
        async with connect(f"ws://127.0.0.1:{running.proxy.port}/ocpp/{station}", subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
            assert await boots(ws)
    finally:
        await running.stop()
        await legacy.stop()
    return legacy


def test_the_attempt_limiter_forgets_addresses_whose_bucket_refilled() -> None:
    limiter = AttemptLimiter(per_second=5.0, burst=20)
    for address in range(1000):  # chargers on changing (mobile) addresses, each seen once
        assert limiter.check(f"10.0.{address // 256}.{address % 256}", now=float(address) / 1000) == 0
    assert limiter.check("10.9.9.9", now=10.0) == 0  # every bucket has refilled by now: they are forgotten
    assert set(limiter._tokens) == {"10.9.9.9"}
    for _ in range(20):
        limiter.check("10.9.9.9", now=10.0)
    assert limiter.check("10.9.9.9", now=10.0) > 0  # the limit itself still holds


async def test_an_unreadable_profile_refuses_for_now_rather_than_guess_the_default() -> None:
    from proxy.redis_embedded import free_port
    from proxy.security import Admission, Refusal

    away = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    admission = Admission(0, away)
    with pytest.raises(Refusal) as refused:
        await admission.admit("PROF3", "127.0.0.1", None, None)  # its own profile may be 3: never admit on 0
    assert (refused.value.status, refused.value.reason) == (503, "profile_unknown")
    for _ in range(4):  # a Redis outage is no failed authentication: the charger is not penalised for it
        with pytest.raises(Refusal) as again:
            await admission.admit("PROF3", "127.0.0.1", None, None)
        assert again.value.status == 503
    await away.aclose()


class _PasswordsAway:
    """A Redis that answers the security profile look-up and fails every other (the password hash, the
    mapped certificate CN): as in a reconnect storm whose look-ups time out."""

    def __init__(self, profile: int) -> None:
        self.profile = profile

    async def get(self, key: str) -> bytes:
        from proxy.security import profile_key

        if key == profile_key("PW1"):
            return b"%d" % self.profile
        raise ConnectionError("Redis did not answer in time")


@pytest.mark.parametrize(("profile", "identity", "reason"), [(1, "station-id", "password_unknown"),
                                                             (3, "mapped", "certificate_cn_unknown")])  # fmt: skip
async def test_an_unreadable_credential_refuses_for_now_without_penalty(
    profile: int, identity: str, reason: str
) -> None:
    from proxy.security import Admission, Refusal

    admission = Admission(0, _PasswordsAway(profile), identity=identity)  # type: ignore[arg-type]
    authorization = "Basic " + base64.b64encode(b"PW1:right-password").decode()
    certificate = {"subject": ((("commonName", "SERIAL-1"),),)}

    class _Tls:
        def getpeercert(self) -> dict[str, object]:
            return certificate

    for _ in range(5):  # the station's burst; failures past its 3 free ones would be held off: none counts as one
        with pytest.raises(Refusal) as refused:
            await admission.admit("PW1", "127.0.0.1", authorization, _Tls() if profile == 3 else None)  # type: ignore[arg-type]
        # Not 401 bad_password / 403 certificate_identity_mismatch: the credential was never compared.
        assert (refused.value.status, refused.value.reason) == (503, reason)
