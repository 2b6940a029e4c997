"""Station Basic-auth passwords: the OCPP 2.0.1 length rule, the stored scrypt format, verification, and
`cutover passwords set` reading stdin and storing nothing but the hash."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from proxy.passwords import (
    PasswordError,
    check_password,
    hash_password,
    parse_stored,
    password_key,
    verify_password,
)

PASSWORD = "s3cret-Passw0rd-of-CP001"  # 24 characters
ROOT = Path(__file__).resolve().parents[2]


def test_stored_format_is_scrypt_with_a_fresh_salt() -> None:
    stored = hash_password(PASSWORD)
    match = re.fullmatch(r"scrypt\$16384\$8\$1\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)", stored)
    assert match is not None, stored
    salt, digest = (base64.b64decode(group) for group in match.groups())
    assert len(salt) == 16 and len(digest) == 32
    # The stated parameters are the ones used: an independent derivation gives the same hash.
    assert hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32) == digest
    assert parse_stored(stored) == (2**14, 8, 1, salt, digest)
    assert hash_password(PASSWORD) != stored  # salted


def test_verify_accepts_the_password_and_nothing_else() -> None:
    stored = hash_password(PASSWORD)
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD[:-1] + "X", stored)
    assert not verify_password(PASSWORD + " ", stored)
    assert not verify_password(PASSWORD[:15], stored)  # too short to have been stored: no derivation
    unicode_password = "pässwörd-für-CP001-€"
    assert verify_password(unicode_password, hash_password(unicode_password))  # compared as UTF-8


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "bcrypt$16384$8$1$c2FsdA==$aGFzaA==",
        "scrypt$16384$8$1$c2FsdA==",
        "scrypt$1000$8$1$c2FsdHNhbHRzYWx0c2E=$aGFzaGhhc2hoYXNoaGFzaA==",  # n not a power of 2
        "scrypt$1048576$8$1$c2FsdHNhbHRzYWx0c2E=$aGFzaGhhc2hoYXNoaGFzaA==",  # 1 GiB to check
        "scrypt$16384$8$1$not*base64$aGFzaGhhc2hoYXNoaGFzaA==",
    ],
)
def test_an_unusable_stored_value_verifies_nothing_and_is_logged(stored: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cutover.passwords"):
        assert not verify_password(PASSWORD, stored)
    assert "password_hash_unusable" in caplog.text and "cutover passwords set ID" in caplog.text
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("length", [0, 15, 41, 64])
def test_length_rule_message(length: int) -> None:
    with pytest.raises(PasswordError, match=rf"^password: {length} characters; OCPP 2\.0\.1 requires 16 to 40"):
        hash_password("x" * length)


@pytest.mark.parametrize("length", [16, 40])
def test_length_rule_bounds_are_inclusive(length: int) -> None:
    check_password("x" * length)
    assert verify_password("x" * length, hash_password("x" * length))


def test_password_key_is_hash_tagged_on_the_station() -> None:
    assert password_key("CP001") == "cutover:password:{CP001}"


def run_cli(args: list[str], stdin: str, env_redis_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "CUTOVER_REDIS_URL"}
    if env_redis_url is not None:
        env["CUTOVER_REDIS_URL"] = env_redis_url
    return subprocess.run(
        [sys.executable, "-m", "proxy", "passwords", "set", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=30,
        check=False,
    )


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    client = redis.Redis.from_url(redis_url)
    client.delete(password_key("CP001"))
    return client


def test_cli_stores_only_a_hash_read_from_stdin(redis_url: str, client: redis.Redis) -> None:
    result = run_cli(["CP001", "--redis-url", redis_url], stdin=PASSWORD + "\n")

    assert result.returncode == 0, result.stderr
    assert "stored the password hash of CP001 in cutover:password:{CP001}" in result.stdout
    raw = client.get("cutover:password:{CP001}")
    assert isinstance(raw, bytes)
    stored = raw.decode()
    assert stored.startswith("scrypt$16384$8$1$")
    assert verify_password(PASSWORD, stored)
    for trace in (PASSWORD, PASSWORD.encode().hex(), base64.b64encode(PASSWORD.encode()).decode().rstrip("=")):
        assert trace not in stored
    for trace in (PASSWORD, PASSWORD[:8]):
        assert trace not in result.stdout and trace not in result.stderr


def test_cli_takes_the_redis_url_from_the_environment(redis_url: str, client: redis.Redis) -> None:
    result = run_cli(["CP001"], stdin=PASSWORD, env_redis_url=redis_url)  # no trailing newline either
    assert result.returncode == 0, result.stderr
    assert verify_password(PASSWORD, client.get(password_key("CP001")).decode())  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["CP001"], "short-password\n", "cutover passwords set: password: 14 characters; OCPP 2.0.1 requires 16 to 40"),
        (["CP001"], PASSWORD + "\nsecond line\n", "cutover passwords set: stdin: give the password as one line"),
        (["CP:01"], PASSWORD, "cutover passwords set: ID: 'CP:01' is not an OCPP 2.0.1 station identity"),
    ],
)
def test_cli_refusals_name_the_argument(
    redis_url: str, client: redis.Redis, args: list[str], stdin: str, message: str
) -> None:
    result = run_cli([*args, "--redis-url", redis_url], stdin=stdin)
    assert result.returncode == 2
    assert message in result.stderr
    assert "short-password" not in result.stderr and PASSWORD not in result.stderr
    assert client.get(password_key("CP001")) is None


def test_cli_requires_a_redis_url() -> None:
    result = run_cli(["CP001"], stdin=PASSWORD)
    assert result.returncode == 2
    assert "--redis-url (CUTOVER_REDIS_URL) is required" in result.stderr


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "redis+cluster://127.0.0.1:1"])
def test_cli_reports_an_unreachable_redis(url: str) -> None:
    result = run_cli(["CP001", "--redis-url", url], stdin=PASSWORD)
    assert result.returncode == 1
    assert "could not write cutover:password:{CP001}: Redis unavailable (--redis-url)" in result.stderr
    assert "Traceback" not in result.stderr  # a Redis Cluster's client raises as it connects, not a RedisError
    assert PASSWORD not in result.stderr
