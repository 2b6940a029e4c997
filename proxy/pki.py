"""A development PKI for the chargers' TLS: a CA, the proxy's server certificate, station client
certificates (security profile 3) and the CA's CRL, as PEM files in one directory.

Private keys are written as unencrypted PKCS#8 PEM with file mode 0600: this is a PKI for development
and test rigs, not for production. Certificates follow the OCPP security whitepaper / OCPP 2.0.1 rules
(A00.FR.501–512): RSA ≥ 2048 or EC P-256/P-384 keys, SHA-256 signatures (ECDSA, or RSA-PSS from an RSA
CA), a serial number, O = the operator organisation, CSMS CN = its FQDN, station CN = its identity with
no subjectAltName, key usage restricted.

Directory layout: `ca.pem` `ca.key` `server.pem` `server.key` `crl.pem`, and `<station id>.pem`
`<station id>.key` per station.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import ipaddress
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal, get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyType = Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-3072"]
KEY_TYPES: tuple[str, ...] = get_args(KeyType)
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

CA_DAYS = 3650
SERVER_DAYS = 365
STATION_DAYS = 365
# An expired CRL makes OpenSSL refuse every client certificate (CRL checking on), so it lives a while;
# each `revoke` re-issues it.
CRL_DAYS = 30
# Certificates start a little in the past so a station whose clock lags accepts them at once.
CLOCK_SKEW = dt.timedelta(minutes=5)

CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY, CRL = "ca.pem", "ca.key", "server.pem", "server.key", "crl.pem"
# OCPP 2.0.1 Part 4 §3.1.1: an identifierString of at most 48 characters, without ':' (the Basic-auth
# separator; security.md §1.2). The proxy's URL parser also admits ':' for 1.6 stations.
STATION_ID = re.compile(r"[A-Za-z0-9*\-_=+|@.]{1,48}")
# Station files share the directory with these; compared case-insensitively for case-folding filesystems.
RESERVED_STATION_IDS = ("ca", "server", "crl")
HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
# A serial written as openssl prints it (colon-separated hex) or as 0x-prefixed hex.
SERIAL = re.compile(r"0[xX][0-9A-Fa-f]+|[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})+")


class PkiError(ValueError):
    """An argument that cannot be used; `argument` is the parameter's name, `reason` what is wrong with it."""

    def __init__(self, argument: str, reason: str) -> None:
        super().__init__(f"{argument}: {reason}")
        self.argument = argument
        self.reason = reason


def check_station_id(station_id: str, argument: str = "station_id") -> str:
    """The station id if it is an OCPP 2.0.1 identity usable as a file name here; else `PkiError`."""
    if not isinstance(station_id, str) or not STATION_ID.fullmatch(station_id):
        shown = station_id[:60] if isinstance(station_id, str) else station_id
        raise PkiError(
            argument,
            f"{shown!r} is not an OCPP 2.0.1 station identity: 1 to 48 characters of A-Z a-z 0-9 * - _ = + | @ . "
            "(':' is not allowed: it separates user and password in HTTP Basic auth)",
        )
    if station_id.lower() in RESERVED_STATION_IDS:
        raise PkiError(argument, f"{station_id!r} would overwrite the PKI's own {station_id.lower()}.pem")
    return station_id


def init_ca(
    dir: Path | str,
    *,
    organization: str = "ocpp-cutover dev",
    key_type: KeyType = "ec-p256",
    hostnames: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1", "::1"),
    days: int = CA_DAYS,
    server_days: int = SERVER_DAYS,
    force: bool = False,
) -> list[Path]:
    """Create a CA (`ca.pem`, `ca.key`), a server certificate it signs (`server.pem`, `server.key`) and an
    empty CRL (`crl.pem`) in an existing directory; refuse to overwrite any of them unless `force`.

    Keys are unencrypted PEM (mode 0600): a development PKI. Returns the files written.
    """
    directory = _existing_dir(dir)
    organization = _check_organization(organization)
    _check_key_type(key_type)
    names = _check_hostnames(hostnames)
    addresses = _check_ips(ips)
    _check_days(days, "days")
    _check_days(server_days, "server_days")
    paths = [directory / name for name in (CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY, CRL)]
    _refuse_overwrite(paths, force)

    now = dt.datetime.now(dt.UTC)
    ca_key = _new_key(key_type)
    # A random tag in the CA's name keeps two dev CAs apart in trust stores and error messages.
    name = _name(organization, f"ocpp-cutover dev CA {secrets.token_hex(4)}")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
    )
    ca = _sign(ca_cert, ca_key)
    server_key = _new_key(key_type)
    server = _server_certificate(ca, ca_key, server_key, names, addresses, now, server_days)
    crl = _crl(ca, ca_key, [], now, number=1)

    _write_key(paths[1], ca_key, force)
    _write(paths[0], ca.public_bytes(serialization.Encoding.PEM), 0o644, force)
    _write_key(paths[3], server_key, force)
    _write(paths[2], server.public_bytes(serialization.Encoding.PEM), 0o644, force)
    _write(paths[4], crl.public_bytes(serialization.Encoding.PEM), 0o644, force)
    return paths


def issue_server(
    dir: Path | str,
    hostnames: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1", "::1"),
    *,
    key_type: KeyType | None = None,
    days: int = SERVER_DAYS,
) -> list[Path]:
    """Replace `server.pem` and `server.key` with a new key and a certificate from the CA in `dir`
    (CN = the first hostname, subjectAltNames = all hostnames and IPs).

    Each file is replaced atomically, the key first: a reader between the two sees a key that does not
    match the certificate, which `ssl` refuses to load (so a reload keeps its old material). The key type
    defaults to the CA's. Returns the files written.
    """
    directory = _existing_dir(dir)
    names = _check_hostnames(hostnames)
    addresses = _check_ips(ips)
    _check_days(days, "days")
    ca, ca_key = _load_ca(directory)
    if key_type is None:
        key_type = _key_type_of(ca_key)
    _check_key_type(key_type)
    server_key = _new_key(key_type)
    server = _server_certificate(ca, ca_key, server_key, names, addresses, dt.datetime.now(dt.UTC), days)
    cert_path, key_path = directory / SERVER_CERT, directory / SERVER_KEY
    _write_key(key_path, server_key, force=True)
    _write(cert_path, server.public_bytes(serialization.Encoding.PEM), 0o644, force=True)
    return [cert_path, key_path]


def issue_station(
    dir: Path | str,
    station_id: str,
    *,
    key_type: KeyType = "ec-p256",
    days: int = STATION_DAYS,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    extended_key_usage: Iterable[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
    common_name: str | None = None,
    organization: str | None = None,
    force: bool = False,
) -> list[Path]:
    """Write `<station_id>.pem` and `<station_id>.key`: a new key and a client certificate from the CA in
    `dir` with CN = `common_name` (default: the station id), O = `organization` (default: the CA's), no
    subjectAltName (A00.FR.511); refuse to overwrite them unless `force`.

    `not_before`/`not_after` (timezone-aware) override `days`, and may lie in the past or future; an
    empty `extended_key_usage` leaves the extension out (both for tests of refusals). The key is
    unencrypted PEM (mode 0600). Returns the files written.
    """
    directory = _existing_dir(dir)
    check_station_id(station_id)
    _check_key_type(key_type)
    _check_days(days, "days")
    usages = list(extended_key_usage)
    if not all(isinstance(usage, x509.ObjectIdentifier) for usage in usages):
        raise PkiError(
            "extended_key_usage", "must be cryptography ObjectIdentifiers, e.g. ExtendedKeyUsageOID.CLIENT_AUTH"
        )
    start, end = _validity(not_before, not_after, days)
    cert_path, key_path = directory / f"{station_id}.pem", directory / f"{station_id}.key"
    _refuse_overwrite([cert_path, key_path], force)
    ca, ca_key = _load_ca(directory)
    if organization is None:
        organization = _organization_of(ca)
    subject = _name(
        _check_organization(organization),
        _check_common_name(station_id if common_name is None else common_name),
    )
    key = _new_key(key_type)
    builder = _leaf(ca, key, subject, start, end).add_extension(_leaf_key_usage(key), critical=True)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    certificate = _sign(builder, ca_key)
    _write_key(key_path, key, force)
    _write(cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644, force)
    return [cert_path, key_path]


def revoke(dir: Path | str, station_id_or_serial: str | int) -> int:
    """Add a certificate to `crl.pem` and re-issue it (signed by the CA, new nextUpdate); return its serial.

    A string names a station (its `<id>.pem` in `dir`, which the CA must have issued) or, written as
    0x-prefixed or colon-separated hex, a serial number; an int is a serial number. Revoking a revoked
    certificate again only re-issues the CRL.
    """
    directory = _existing_dir(dir)
    ca, ca_key = _load_ca(directory)
    serial = _serial_to_revoke(directory, ca, station_id_or_serial)
    crl_path = directory / CRL
    now = dt.datetime.now(dt.UTC)
    revoked: list[x509.RevokedCertificate] = []
    number = 1
    if crl_path.exists():
        previous = _load_crl(crl_path, ca)
        revoked = list(previous)
        with contextlib.suppress(x509.ExtensionNotFound):
            number = previous.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
    if all(entry.serial_number != serial for entry in revoked):
        revoked.append(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now.replace(microsecond=0)).build()
        )
    crl = _crl(ca, ca_key, revoked, now, number)
    _write(crl_path, crl.public_bytes(serialization.Encoding.PEM), 0o644, force=True)
    return serial


def command(args: argparse.Namespace) -> int:
    """`cutover certs init|station|revoke|server`: print the files written; 2 with the argument named on a
    bad one."""
    flags = {
        "dir": "--dir",
        "station_id": "ID",
        "station_id_or_serial": "ID",
        "hostnames": "--hostname",
        "ips": "--ip",
        "key_type": "--key-type",
        "organization": "--organization",
        "days": "--days",
        "force": "--force",
    }
    try:
        if args.certs_command == "init":
            written = init_ca(
                args.dir,
                organization=args.organization,
                key_type=args.key_type,
                hostnames=args.hostname or ("localhost",),
                ips=args.ip or ("127.0.0.1", "::1"),
                force=args.force,
            )
        elif args.certs_command == "station":
            written = issue_station(args.dir, args.station_id, key_type=args.key_type, days=args.days, force=args.force)
        elif args.certs_command == "server":
            written = issue_server(
                args.dir, args.hostname or ("localhost",), args.ip or ("127.0.0.1", "::1"), days=args.days
            )
        else:
            serial = revoke(args.dir, args.station_id)
            print(f"revoked serial {serial:#x} ({args.station_id})")
            written = [Path(args.dir) / CRL]
    except PkiError as exc:
        print(
            f"cutover certs {args.certs_command}: {flags.get(exc.argument, exc.argument)}: {exc.reason}",
            file=sys.stderr,
        )
        return 2
    for path in written:
        kind = "private key, unencrypted, mode 0600" if path.suffix == ".key" else "PEM"
        print(f"wrote {path} ({kind})")
    return 0


def _existing_dir(dir: Path | str) -> Path:
    directory = Path(dir)
    if not directory.exists():
        raise PkiError("dir", f"{str(directory)!r} does not exist; create it first")
    if not directory.is_dir():
        raise PkiError("dir", f"{str(directory)!r} is not a directory")
    return directory


def _refuse_overwrite(paths: Sequence[Path], force: bool) -> None:
    existing = [path.name for path in paths if path.exists()]
    if existing and not force:
        raise PkiError(
            "force", f"{', '.join(existing)} already in {str(paths[0].parent)!r}; force=True (--force) replaces them"
        )


def _check_key_type(key_type: str) -> None:
    if key_type not in KEY_TYPES:
        raise PkiError("key_type", f"{key_type!r} must be one of {', '.join(KEY_TYPES)}")


def _check_days(days: int, argument: str) -> None:
    if not isinstance(days, int) or isinstance(days, bool) or days <= 0:
        raise PkiError(argument, f"{days!r} must be a whole number of days greater than 0")


def _check_organization(organization: str) -> str:
    if not isinstance(organization, str) or not 1 <= len(organization) <= 64:
        raise PkiError("organization", f"{organization!r} must be 1 to 64 characters (X.509 organizationName)")
    return organization


def _check_common_name(common_name: str) -> str:
    if not isinstance(common_name, str) or not 1 <= len(common_name) <= 64:
        raise PkiError("common_name", f"{common_name!r} must be 1 to 64 characters (X.509 commonName)")
    return common_name


def _check_hostnames(hostnames: Sequence[str]) -> list[str]:
    if isinstance(hostnames, str):
        raise PkiError("hostnames", f"must be a list of hostnames, not the string {hostnames!r}")
    names = list(dict.fromkeys(hostnames))
    if not names:
        raise PkiError("hostnames", "at least one is needed: the server certificate's CN is its FQDN (A00.FR.510)")
    for name in names:
        if _is_ip(name):
            raise PkiError("hostnames", f"{name!r} is an IP address; give it as an IP (ips, --ip)")
        labels = name.rstrip(".").split(".") if isinstance(name, str) else []
        if not labels or len(name) > 253 or not all(HOSTNAME_LABEL.fullmatch(label) for label in labels):
            raise PkiError("hostnames", f"{name!r} is not a hostname (letters, digits and '-' in dot-separated labels)")
    return names


def _is_ip(text: object) -> bool:
    try:
        ipaddress.ip_address(text)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


def _check_ips(ips: Sequence[str]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    if isinstance(ips, str):
        raise PkiError("ips", f"must be a list of IP addresses, not the string {ips!r}")
    addresses = []
    for ip in dict.fromkeys(ips):
        try:
            addresses.append(ipaddress.ip_address(ip))
        except ValueError:
            raise PkiError("ips", f"{ip!r} is not an IPv4 or IPv6 address") from None
    return addresses


def _validity(
    not_before: dt.datetime | None, not_after: dt.datetime | None, days: int
) -> tuple[dt.datetime, dt.datetime]:
    for argument, value in (("not_before", not_before), ("not_after", not_after)):
        if value is not None and (not isinstance(value, dt.datetime) or value.utcoffset() is None):
            raise PkiError(argument, f"{value!r} must be a timezone-aware datetime, e.g. datetime.now(UTC)")
    start = not_before if not_before is not None else dt.datetime.now(dt.UTC) - CLOCK_SKEW
    end = not_after if not_after is not None else start + dt.timedelta(days=days)
    if end <= start:
        raise PkiError("not_after", f"{end.isoformat()} must be later than not_before {start.isoformat()}")
    return start, end


def _new_key(key_type: str) -> PrivateKey:
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type.removeprefix("rsa-")))


def _key_type_of(key: PrivateKey) -> KeyType:
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa-2048" if key.key_size <= 2048 else "rsa-3072"
    return "ec-p384" if isinstance(key.curve, ec.SECP384R1) else "ec-p256"


def _name(organization: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_agreement: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_key_usage(key: PrivateKey) -> x509.KeyUsage:
    """TLS leaf keys: signing, plus key agreement (EC) or key transport (RSA) (A00.FR.512)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return _key_usage(digital_signature=True, key_encipherment=True)
    return _key_usage(digital_signature=True, key_agreement=True)


def _leaf(
    ca: x509.Certificate, key: PrivateKey, subject: x509.Name, start: dt.datetime, end: dt.datetime
) -> x509.CertificateBuilder:
    ca_key_id = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id), critical=False)
    )


def _server_certificate(
    ca: x509.Certificate,
    ca_key: PrivateKey,
    key: PrivateKey,
    hostnames: list[str],
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    now: dt.datetime,
    days: int,
) -> x509.Certificate:
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in hostnames]
    alt_names += [x509.IPAddress(ip) for ip in ips]
    builder = (
        _leaf(ca, key, _name(_organization_of(ca), hostnames[0]), now - CLOCK_SKEW, now + dt.timedelta(days=days))
        .add_extension(_leaf_key_usage(key), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    )
    return _sign(builder, ca_key)


def _sign(builder: x509.CertificateBuilder, ca_key: PrivateKey) -> x509.Certificate:
    if isinstance(ca_key, rsa.RSAPrivateKey):
        return builder.sign(ca_key, hashes.SHA256(), rsa_padding=_pss())
    return builder.sign(ca_key, hashes.SHA256())


def _pss() -> padding.PSS:
    # A00.FR.505: a CA signs with RSA-PSS (or ECDSA); salt = digest length, the form RFC 4055 profiles.
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def _crl(
    ca: x509.Certificate, ca_key: PrivateKey, revoked: list[x509.RevokedCertificate], now: dt.datetime, number: int
) -> x509.CertificateRevocationList:
    ca_key_id = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now - CLOCK_SKEW)
        .next_update(now + dt.timedelta(days=CRL_DAYS))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id), critical=False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    if isinstance(ca_key, rsa.RSAPrivateKey):
        return builder.sign(ca_key, hashes.SHA256(), rsa_padding=_pss())
    return builder.sign(ca_key, hashes.SHA256())


def _organization_of(certificate: x509.Certificate) -> str:
    values = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(values[0].value) if values else "ocpp-cutover dev"


def _load_certificate(path: Path, argument: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise PkiError(
            argument, f"no {path.name} in {str(path.parent)!r}; run `cutover certs init --dir DIR` first"
        ) from None
    except ValueError as exc:
        raise PkiError(argument, f"{str(path)!r} is not a PEM certificate ({exc})") from None


def _load_ca(directory: Path) -> tuple[x509.Certificate, PrivateKey]:
    ca = _load_certificate(directory / CA_CERT, "dir")
    try:
        key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
    except FileNotFoundError:
        raise PkiError("dir", f"no {CA_KEY} in {str(directory)!r}: the CA's key is needed to sign") from None
    except (ValueError, TypeError) as exc:
        raise PkiError("dir", f"{str(directory / CA_KEY)!r} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) or key.public_key() != ca.public_key():
        raise PkiError("dir", f"{CA_KEY} in {str(directory)!r} is not the key of {CA_CERT}")
    return ca, key


def _load_crl(path: Path, ca: x509.Certificate) -> x509.CertificateRevocationList:
    try:
        crl = x509.load_pem_x509_crl(path.read_bytes())
    except FileNotFoundError:
        raise PkiError(
            "dir", f"no {path.name} in {str(path.parent)!r}; run `cutover certs init --dir DIR` first"
        ) from None
    except ValueError as exc:
        raise PkiError("dir", f"{str(path)!r} is not a PEM CRL ({exc})") from None
    public_key = ca.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey) or not crl.is_signature_valid(
        public_key
    ):
        raise PkiError(
            "dir", f"{str(path)!r} is not signed by {CA_CERT}; was the CA re-created? Delete it and revoke again"
        )
    return crl


def _serial_to_revoke(directory: Path, ca: x509.Certificate, station_id_or_serial: str | int) -> int:
    argument = "station_id_or_serial"
    if isinstance(station_id_or_serial, bool) or not isinstance(station_id_or_serial, str | int):
        raise PkiError(argument, f"{station_id_or_serial!r} must be a station id (str) or a serial number (int)")
    if isinstance(station_id_or_serial, str):
        path = directory / f"{station_id_or_serial}.pem"
        if STATION_ID.fullmatch(station_id_or_serial) and path.is_file():
            certificate = _load_certificate(path, argument)
            check_station_id(station_id_or_serial, argument)  # after the lookup: 'ca' gets its own message
            try:
                certificate.verify_directly_issued_by(ca)
            except (InvalidSignature, ValueError, TypeError):
                raise PkiError(argument, f"{path.name} was not issued by the CA in {str(directory)!r}") from None
            return certificate.serial_number
        if not SERIAL.fullmatch(station_id_or_serial):
            if STATION_ID.fullmatch(station_id_or_serial):
                check_station_id(station_id_or_serial, argument)
                raise PkiError(argument, f"no {path.name} in {str(directory)!r}")
            raise PkiError(
                argument,
                f"{station_id_or_serial!r} is neither a station id nor a serial number "
                "(0x-prefixed hex, or colon-separated hex as openssl prints it)",
            )
        serial = int(station_id_or_serial.replace(":", ""), 16)
    else:
        serial = station_id_or_serial
    # RFC 5280 §4.1.2.2: a positive integer of at most 20 octets.
    if not 0 < serial < 2**159:
        raise PkiError(argument, f"serial {serial:#x} must be a positive integer of at most 20 octets")
    return serial


def _write_key(path: Path, key: PrivateKey, force: bool) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(path, data, 0o600, force)


def _write(path: Path, data: bytes, mode: int, force: bool) -> None:
    """Write `path` whole or not at all, with `mode`; without `force`, never replace an existing file."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if force:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)  # fails if the file appeared since the check: no silent overwrite
            except FileExistsError:
                raise PkiError(
                    "force", f"{path.name} already in {str(path.parent)!r}; force=True (--force) replaces them"
                ) from None
            os.unlink(temporary)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
