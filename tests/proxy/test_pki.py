"""The development PKI: certificate profiles (OCPP A00.FR.501–512), real mutual-TLS handshakes against
ca.pem, revocation through crl.pem, refusals that name the argument, and `cutover certs`."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store, VerificationError

from proxy import pki
from proxy.cli import build_parser, main


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    pki.init_ca(directory, organization="Example CPO")
    for station in ("CP001", "CP002"):
        pki.issue_station(directory, station)
    return directory


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def crl_of(directory: Path) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl((directory / "crl.pem").read_bytes())


def server_context(directory: Path, *, crl: bool = False) -> ssl.SSLContext:
    """What the proxy does for profile 3: client certificates required and verified against ca.pem."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=directory / "ca.pem")
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    if crl:
        context.load_verify_locations(cafile=directory / "crl.pem")
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context


def station_context(directory: Path, station: str, *, certs: Path | None = None) -> ssl.SSLContext:
    """A charging station: verifies the server against ca.pem (hostname included), presents its certificate."""
    context = ssl.create_default_context(cafile=directory / "ca.pem")
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    folder = certs or directory
    context.load_cert_chain(folder / f"{station}.pem", folder / f"{station}.key")
    return context


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str = "localhost") -> dict[str, Any]:
    """A real TLS handshake over a socket pair; the client certificate as the server saw it, or the error of
    the side that refused it (with TLS 1.3 a client finishes its handshake before the server judges it)."""
    server_socket, client_socket = socket.socketpair()
    server_socket.settimeout(5)
    client_socket.settimeout(5)
    outcome: dict[str, Any] = {}

    def serve() -> None:
        try:
            with server.wrap_socket(server_socket, server_side=True) as tls:
                outcome["peer"] = tls.getpeercert()
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    client_error: Exception | None = None
    try:
        with client.wrap_socket(client_socket, server_hostname=server_hostname) as tls:
            assert tls.recv(2) == b"ok"
    except (ssl.SSLError, OSError, AssertionError) as exc:
        client_error = exc
    thread.join(10)
    errors = [error for error in (outcome.get("error"), client_error) if error is not None]
    # The side that judged a certificate says why; the other one only saw its alert.
    errors.sort(key=lambda error: not isinstance(error, ssl.SSLCertVerificationError))
    if errors:
        raise errors[0]
    peer: dict[str, Any] = outcome["peer"]
    return peer


def subject(peer: dict[str, Any]) -> dict[str, str]:
    return {key: value for rdn in peer["subject"] for key, value in rdn}


def test_init_writes_a_ca_a_server_certificate_and_an_empty_crl(pki_dir: Path) -> None:
    for name in ("ca.key", "server.key", "CP001.key"):
        assert stat.S_IMODE((pki_dir / name).stat().st_mode) == 0o600, name
        assert (pki_dir / name).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # unencrypted PKCS#8
    ca = certificate(pki_dir / "ca.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).critical
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign and not usage.value.digital_signature
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example CPO"
    assert ca.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey) and ca_key.curve.name == "secp256r1"

    server = certificate(pki_dir / "server.pem")
    assert server.issuer == ca.subject and server.serial_number > 0
    assert server.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"  # A00.FR.510
    assert server.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example CPO"
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert list(server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    usage = server.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_agreement
    assert not usage.value.key_cert_sign and not usage.value.key_encipherment

    crl = crl_of(pki_dir)
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert crl.next_update_utc is not None and crl.next_update_utc > dt.datetime.now(dt.UTC)


def test_station_certificate_has_the_identity_as_cn_and_client_auth_only(pki_dir: Path) -> None:
    station = certificate(pki_dir / "CP001.pem")
    assert station.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP001"  # A00.FR.511
    assert station.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example CPO"  # the CA's
    with pytest.raises(x509.ExtensionNotFound):
        station.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(station.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    usage = station.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_agreement
    assert not usage.value.key_encipherment and not usage.value.key_cert_sign
    assert not station.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(station.signature_hash_algorithm, hashes.SHA256)
    assert station.serial_number != certificate(pki_dir / "CP002.pem").serial_number


def test_chain_verifies_with_cryptography(pki_dir: Path) -> None:
    store = Store([certificate(pki_dir / "ca.pem")])
    server = certificate(pki_dir / "server.pem")
    for name in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        verifier = PolicyBuilder().store(store).build_server_verifier(name)
        assert verifier.verify(server, []) == [server, certificate(pki_dir / "ca.pem")]
    # The Web PKI wants a subjectAltName on every leaf; OCPP says a station's has none (A00.FR.511).
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    client = (
        PolicyBuilder()
        .store(store)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        .build_client_verifier()
    )
    station = certificate(pki_dir / "CP001.pem")
    assert client.verify(station, []).chain == [station, certificate(pki_dir / "ca.pem")]
    with pytest.raises(VerificationError):  # a server certificate is no client certificate
        client.verify(server, [])


def test_mutual_tls_handshake_against_ca_pem(pki_dir: Path) -> None:
    peer = handshake(server_context(pki_dir), station_context(pki_dir, "CP001"))
    assert subject(peer) == {"organizationName": "Example CPO", "commonName": "CP001"}


def test_a_station_of_another_ca_is_refused(pki_dir: Path, tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    pki.issue_station(tmp_path, "CP001")
    with pytest.raises(ssl.SSLError, match="certificate verify failed"):
        handshake(server_context(pki_dir), station_context(pki_dir, "CP001", certs=tmp_path))


def test_server_hostname_is_checked_by_the_station(pki_dir: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(server_context(pki_dir), station_context(pki_dir, "CP001"), server_hostname="csms.example.com")


def test_revoked_station_is_refused_with_crl_checking(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    pki.issue_station(tmp_path, "GOOD")
    pki.issue_station(tmp_path, "BAD")
    # The empty CRL init wrote is enough for CRL checking to pass.
    assert (
        subject(handshake(server_context(tmp_path, crl=True), station_context(tmp_path, "BAD")))["commonName"] == "BAD"
    )

    serial = pki.revoke(tmp_path, "BAD")

    assert serial == certificate(tmp_path / "BAD.pem").serial_number
    crl = crl_of(tmp_path)
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert len(crl) == 1
    with pytest.raises(ssl.SSLError, match="certificate revoked"):
        handshake(server_context(tmp_path, crl=True), station_context(tmp_path, "BAD"))
    assert (
        subject(handshake(server_context(tmp_path, crl=True), station_context(tmp_path, "GOOD")))["commonName"]
        == "GOOD"
    )


def test_revoke_by_serial_keeps_earlier_entries_and_counts_crl_numbers(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    first = certificate(pki.issue_station(tmp_path, "CP001")[0]).serial_number
    second = certificate(pki.issue_station(tmp_path, "CP002")[0]).serial_number
    number = crl_of(tmp_path).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    assert pki.revoke(tmp_path, f"{first:#x}") == first
    as_openssl_prints = ":".join(f"{byte:02X}" for byte in second.to_bytes((second.bit_length() + 7) // 8, "big"))
    assert pki.revoke(tmp_path, as_openssl_prints) == second
    assert pki.revoke(tmp_path, "CP001") == first  # again: no second entry, only a fresh CRL

    crl = crl_of(tmp_path)
    assert sorted(entry.serial_number for entry in crl) == sorted((first, second))
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number + 3
    assert crl.is_signature_valid(certificate(tmp_path / "ca.pem").public_key())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("CP404", r"station_id_or_serial: no CP404\.pem in"),
        ("CP 1", r"station_id_or_serial: 'CP 1' is neither a station id nor a serial number"),
        ("ca", r"station_id_or_serial: 'ca' would overwrite the PKI's own ca\.pem"),
    ],
)
def test_revoke_refusals_name_the_argument(pki_dir: Path, argument: str, message: str) -> None:
    with pytest.raises(pki.PkiError, match=message):
        pki.revoke(pki_dir, argument)


def test_revoke_refuses_a_station_of_another_ca(pki_dir: Path, tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    (tmp_path / "CP001.pem").write_bytes((pki_dir / "CP001.pem").read_bytes())
    with pytest.raises(pki.PkiError, match=r"station_id_or_serial: CP001\.pem was not issued by the CA in"):
        pki.revoke(tmp_path, "CP001")


def test_expired_and_wrong_purpose_station_certificates_are_refused(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    now = dt.datetime.now(dt.UTC)
    pki.issue_station(tmp_path, "OLD", not_before=now - dt.timedelta(days=10), not_after=now - dt.timedelta(days=1))
    pki.issue_station(tmp_path, "SRV", extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH,))
    pki.issue_station(tmp_path, "NAMED", common_name="serial-0042", organization="Other CPO")
    assert certificate(tmp_path / "OLD.pem").not_valid_after_utc < now
    with pytest.raises(ssl.SSLError, match="certificate has expired"):
        handshake(server_context(tmp_path), station_context(tmp_path, "OLD"))
    with pytest.raises(ssl.SSLError, match="unsuitable certificate purpose"):
        handshake(server_context(tmp_path), station_context(tmp_path, "SRV"))
    peer = handshake(server_context(tmp_path), station_context(tmp_path, "NAMED"))
    assert subject(peer) == {"organizationName": "Other CPO", "commonName": "serial-0042"}


def test_rsa_pki_handshakes(tmp_path: Path) -> None:
    """RSA: the CA signs with RSA-PSS (A00.FR.505), leaves get keyEncipherment; OpenSSL accepts all of it."""
    pki.init_ca(tmp_path, key_type="rsa-2048")
    pki.issue_station(tmp_path, "CP-RSA", key_type="rsa-2048")
    station = certificate(tmp_path / "CP-RSA.pem")
    station_key = station.public_key()
    assert isinstance(station_key, rsa.RSAPublicKey) and station_key.key_size == 2048
    assert station.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
    usage = station.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and not usage.key_agreement
    assert subject(handshake(server_context(tmp_path, crl=True), station_context(tmp_path, "CP-RSA")))[
        "commonName"
    ] == ("CP-RSA")


def test_issue_server_rotates_the_server_certificate(tmp_path: Path) -> None:
    pki.init_ca(tmp_path, key_type="ec-p384")
    pki.issue_station(tmp_path, "CP001")
    before = certificate(tmp_path / "server.pem")
    (tmp_path / "server.key").chmod(0o644)

    written = pki.issue_server(tmp_path, ["proxy.example.com", "localhost"], ["10.0.0.7"])

    assert written == [tmp_path / "server.pem", tmp_path / "server.key"]
    after = certificate(tmp_path / "server.pem")
    assert after.serial_number != before.serial_number and after.public_key() != before.public_key()
    assert after.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "proxy.example.com"
    names = after.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["proxy.example.com", "localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]
    after_key = after.public_key()
    assert isinstance(after_key, ec.EllipticCurvePublicKey) and after_key.curve.name == "secp384r1"  # the CA's type
    assert stat.S_IMODE((tmp_path / "server.key").stat().st_mode) == 0o600
    handshake(server_context(tmp_path), station_context(tmp_path, "CP001"), server_hostname="proxy.example.com")


def test_nothing_is_overwritten_without_force(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    pki.issue_station(tmp_path, "CP001")
    files = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(pki.PkiError, match=r"^force: ca\.pem, ca\.key, server\.pem, server\.key, crl\.pem already in"):
        pki.init_ca(tmp_path)
    with pytest.raises(pki.PkiError, match=r"^force: CP001\.pem, CP001\.key already in .*force=True \(--force\)"):
        pki.issue_station(tmp_path, "CP001")
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == files  # nothing half-written either

    (tmp_path / "CP001.key").chmod(0o644)
    pki.issue_station(tmp_path, "CP001", force=True)
    assert (tmp_path / "CP001.pem").read_bytes() != files["CP001.pem"]
    assert stat.S_IMODE((tmp_path / "CP001.key").stat().st_mode) == 0o600
    pki.init_ca(tmp_path, force=True)
    assert (tmp_path / "ca.pem").read_bytes() != files["ca.pem"]


@pytest.mark.parametrize(
    ("station_id", "message"),
    [
        ("CP:01", r"^station_id: 'CP:01' is not an OCPP 2\.0\.1 station identity: 1 to 48 characters of .*':' is not"),
        ("", r"^station_id: '' is not an OCPP 2\.0\.1 station identity"),
        ("X" * 49, r"^station_id: 'XXXX.* is not an OCPP 2\.0\.1 station identity"),
        ("CP 01", r"^station_id: 'CP 01' is not"),
        ("../CP01", r"^station_id: '\.\./CP01' is not"),
        ("Server", r"^station_id: 'Server' would overwrite the PKI's own server\.pem"),
    ],
)
def test_bad_station_id_is_named(pki_dir: Path, station_id: str, message: str) -> None:
    with pytest.raises(pki.PkiError, match=message):
        pki.issue_station(pki_dir, station_id)


def test_station_id_alphabet_is_accepted(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    station_id = "Az09*-_=+|@." + "x" * 36
    pki.issue_station(tmp_path, station_id)
    assert certificate(tmp_path / f"{station_id}.pem").subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        station_id
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d: pki.init_ca(d / "missing"), r"^dir: '.*missing' does not exist; create it first"),
        (
            lambda d: pki.issue_station(d, "CP001"),
            r"^dir: no ca\.pem in '.*'; run `cutover certs init --dir DIR` first",
        ),
        (
            lambda d: pki.init_ca(d, key_type="rsa-1024"),  # type: ignore[arg-type]
            r"^key_type: 'rsa-1024' must be one of ec-p256, ec-p384",
        ),
        (lambda d: pki.init_ca(d, hostnames=()), r"^hostnames: at least one is needed"),
        (lambda d: pki.init_ca(d, hostnames=["bad_host"]), r"^hostnames: 'bad_host' is not a hostname"),
        (lambda d: pki.init_ca(d, hostnames=["10.1.1.1"]), r"^hostnames: '10\.1\.1\.1' is an IP address"),
        (lambda d: pki.init_ca(d, hostnames="localhost"), r"^hostnames: must be a list of hostnames"),
        (lambda d: pki.init_ca(d, ips=["999.1.1.1"]), r"^ips: '999\.1\.1\.1' is not an IPv4 or IPv6 address"),
        (lambda d: pki.init_ca(d, organization=""), r"^organization: '' must be 1 to 64 characters"),
        (lambda d: pki.init_ca(d, days=0), r"^days: 0 must be a whole number of days greater than 0"),
    ],
)
def test_bad_arguments_are_named(tmp_path: Path, call: Any, message: str) -> None:
    with pytest.raises(pki.PkiError, match=message):
        call(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_bad_validity_is_named(pki_dir: Path) -> None:
    naive = dt.datetime(2030, 1, 1)  # naive: the point of the test
    with pytest.raises(pki.PkiError, match=r"^not_before: .* must be a timezone-aware datetime"):
        pki.issue_station(pki_dir, "CP100", not_before=naive)
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(pki.PkiError, match=r"^not_after: .* must be later than not_before"):
        pki.issue_station(pki_dir, "CP100", not_before=now, not_after=now)
    assert not (pki_dir / "CP100.pem").exists()


def test_cli_key_types_are_the_library_s() -> None:
    for key_type in pki.KEY_TYPES:
        assert build_parser().parse_args(["certs", "station", "CP1", "--dir", ".", "--key-type", key_type]).key_type
    with pytest.raises(SystemExit):
        build_parser().parse_args(["certs", "init", "--dir", ".", "--key-type", "dsa"])


def test_cli_certs_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    assert main(["certs", "init", "--dir", d, "--hostname", "proxy.local", "--ip", "192.0.2.1"]) == 0
    out = capsys.readouterr().out
    for name in ("ca.pem", "ca.key", "server.pem", "server.key", "crl.pem"):
        assert f"wrote {tmp_path / name}" in out
    assert "unencrypted, mode 0600" in out
    server = certificate(tmp_path / "server.pem")
    assert server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.IPAddress
    ) == [ipaddress.ip_address("192.0.2.1")]

    assert main(["certs", "station", "CP001", "--dir", d]) == 0
    assert f"wrote {tmp_path / 'CP001.pem'}" in capsys.readouterr().out
    assert main(["certs", "revoke", "CP001", "--dir", d]) == 0
    out = capsys.readouterr().out
    assert f"revoked serial {certificate(tmp_path / 'CP001.pem').serial_number:#x} (CP001)" in out
    assert f"wrote {tmp_path / 'crl.pem'}" in out
    assert main(["certs", "server", "--dir", d, "--hostname", "other.local"]) == 0
    assert f"wrote {tmp_path / 'server.pem'}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["certs", "init", "--dir", "{d}/nope"], "cutover certs init: --dir: '{d}/nope' does not exist"),
        (
            ["certs", "init", "--dir", "{d}", "--ip", "localhost"],
            "cutover certs init: --ip: 'localhost' is not an IPv4",
        ),
        (["certs", "station", "CP:1", "--dir", "{d}"], "cutover certs station: ID: 'CP:1' is not an OCPP 2.0.1"),
        (["certs", "station", "CP1", "--dir", "{d}", "--days", "-1"], "cutover certs station: --days: -1 must be"),
        (["certs", "revoke", "CP1", "--dir", "{d}"], "cutover certs revoke: --dir: no ca.pem in"),
        (["certs", "server", "--dir", "{d}", "--hostname", "a b"], "cutover certs server: --hostname: 'a b' is not"),
    ],
)
def test_cli_errors_name_the_argument_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main([arg.format(d=tmp_path) for arg in argv]) == 2
    assert message.format(d=tmp_path) in capsys.readouterr().err


def test_cli_init_refuses_to_overwrite_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certs", "init", "--dir", str(tmp_path)]) == 0
    assert main(["certs", "init", "--dir", str(tmp_path)]) == 2
    assert "cutover certs init: --force: ca.pem, ca.key, server.pem, server.key, crl.pem already in" in (
        capsys.readouterr().err
    )
    assert main(["certs", "init", "--dir", str(tmp_path), "--force"]) == 0
