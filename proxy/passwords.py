"""Station HTTP Basic-auth passwords (security profiles 1 and 2), kept only as salted scrypt hashes.

OCPP 2.0.1 passwordString: 16 to 40 characters, sent as UTF-8 (security.md §1.2; the whitepaper's
A01.FR.08/09: store salted hashes only, never log a password). A stored value reads
`scrypt$n$r$p$salt_b64$hash_b64` and lives in Redis under `cutover:password:{<station id>}`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import hashlib
import hmac
import logging
import os
import sys
from typing import TextIO

log = logging.getLogger("cutover.passwords")

PASSWORD_KEY = "cutover:password:"  # + {station}: the station's stored hash
MIN_LENGTH, MAX_LENGTH = 16, 40  # OCPP 2.0.1 passwordString (P2A v1.4; P6 TC_A_01_CS)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES, HASH_BYTES = 16, 32
# A stored value may name other parameters (a later upgrade); this bounds what one costs to check.
MAX_SCRYPT_MEMORY = 64 * 1024 * 1024


class PasswordError(ValueError):
    """A password or stored hash that cannot be used; the message says which and why, never the password."""


def password_key(station_id: str) -> str:
    """The Redis key of a station's stored hash, hash-tagged on the station like its other keys."""
    return f"{PASSWORD_KEY}{{{station_id}}}"


def check_password(password: str) -> None:
    """Return if `password` meets OCPP 2.0.1's passwordString rule; else `PasswordError` saying why."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise PasswordError(
            f"password: {len(password)} characters; OCPP 2.0.1 requires {MIN_LENGTH} to {MAX_LENGTH} (passwordString)"
        )


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt_b64$hash_b64` of a valid password (`PasswordError` otherwise), with a fresh random salt."""
    check_password(password)
    try:
        secret = password.encode()
    except UnicodeEncodeError:
        raise PasswordError("password: not valid Unicode text (it is sent as UTF-8)") from None
    salt = os.urandom(SALT_BYTES)
    digest = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` is the one `stored` was made from, compared in constant time.

    A stored value that is not a usable scrypt record verifies nothing (and is logged). One check costs an
    scrypt derivation (~16 MiB, tens of milliseconds): call it off the event loop.
    """
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        return False  # the rule is public: no derivation for what could never have been stored
    try:
        n, r, p, salt, expected = parse_stored(stored)
        actual = _scrypt(password.encode(errors="surrogatepass"), salt, n, r, p, len(expected))
    except PasswordError as exc:
        log.warning("password_hash_unusable error=%r; set the station's password again: cutover passwords set ID", exc)
        return False
    return hmac.compare_digest(actual, expected)


def parse_stored(stored: str) -> tuple[int, int, int, bytes, bytes]:
    """n, r, p, salt and hash of a stored `scrypt$n$r$p$salt_b64$hash_b64`; `PasswordError` if it is not one."""
    fields = stored.split("$") if isinstance(stored, str) else []
    if len(fields) != 6 or fields[0] != "scrypt" or not all(field.isdigit() for field in fields[1:4]):
        raise PasswordError("stored password hash: not of the form scrypt$n$r$p$salt_b64$hash_b64")
    n, r, p = (int(field) for field in fields[1:4])
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or 128 * r * (n + p + 2) > MAX_SCRYPT_MEMORY:
        raise PasswordError(f"stored password hash: scrypt parameters n={n} r={r} p={p} out of range")
    try:
        salt, expected = (base64.b64decode(field, validate=True) for field in fields[4:6])
    except binascii.Error:
        raise PasswordError("stored password hash: salt or hash is not base64") from None
    if not salt or len(expected) < 16:
        raise PasswordError("stored password hash: salt empty or hash shorter than 16 bytes")
    return n, r, p, salt, expected


def read_password(stream: TextIO) -> str:
    """The password on `stream`: one line (its line ending dropped), or typed twice without echo on a terminal."""
    if stream.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise PasswordError("stdin: the two passwords typed differ")
        return first
    try:
        text = stream.read()
    except UnicodeDecodeError:
        raise PasswordError("stdin: the password is not UTF-8 text") from None
    line = text.removesuffix("\n").removesuffix("\r")
    if "\n" in line or "\r" in line:
        raise PasswordError("stdin: give the password as one line")
    return line


def command(args: argparse.Namespace, stdin: TextIO | None = None) -> int:
    """`cutover passwords set ID`: read the password from stdin, store only its hash; 2 on a bad argument,
    1 if Redis cannot be written."""

    from proxy import config, redis_client
    from proxy.pki import PkiError, check_station_id

    try:
        values = config.resolve(args)
        if values["redis_url"] is None:
            raise config.ConfigError("--redis-url (CUTOVER_REDIS_URL) is required: the proxies' Redis")
        check_station_id(args.station_id)
        stored = hash_password(read_password(stdin or sys.stdin))
    except PkiError as exc:
        print(f"cutover passwords set: ID: {exc.reason}", file=sys.stderr)
        return 2
    except (config.ConfigError, PasswordError) as exc:
        print(f"cutover passwords set: {exc}", file=sys.stderr)
        return 2
    key = password_key(args.station_id)
    try:
        client = redis_client.connect_sync(values["redis_url"])  # a Redis Cluster's client connects here
        try:
            client.set(key, stored)
        finally:
            client.close()
    except redis_client.UNAVAILABLE as exc:
        print(f"cutover passwords set: could not write {key}: Redis unavailable (--redis-url): {exc}", file=sys.stderr)
        return 1
    print(f"stored the password hash of {args.station_id} in {key}")
    return 0


def _scrypt(secret: bytes, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    try:
        return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, maxmem=MAX_SCRYPT_MEMORY + 1024 * 1024, dklen=length)
    except (ValueError, MemoryError) as exc:
        raise PasswordError(f"stored password hash: scrypt refused its parameters ({exc})") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
