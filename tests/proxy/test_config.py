"""Configuration: flags, CUTOVER_* variables, and errors that name the setting."""

from __future__ import annotations

import subprocess
import sys

import pytest

from proxy import config
from proxy.cli import build_parser, proxy_settings


def resolve(argv: list[str]) -> dict[str, object]:
    return config.resolve(build_parser().parse_args(argv))


def test_environment_fills_what_flags_leave_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOVER_LEGACY_URL", "ws://csms:9000/ocpp/{station}")
    monkeypatch.setenv("CUTOVER_CALL_TIMEOUT", "12.5")
    monkeypatch.setenv("CUTOVER_LISTEN", "0.0.0.0:9001")
    values = resolve(["proxy", "--listen", "127.0.0.1:9002"])
    assert values["legacy_url"] == "ws://csms:9000/ocpp/{station}"
    assert values["call_timeout"] == 12.5
    assert values["listen"] == ("127.0.0.1", 9002)  # the flag wins
    assert values["redis_url"] is None
    assert values["workers"] == 1


def test_state_durability_reaches_the_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert proxy_settings(resolve(["proxy"]), "ws://c/o").state_durability == "available"
    monkeypatch.setenv("CUTOVER_STATE_DURABILITY", "strict")
    assert proxy_settings(resolve(["proxy"]), "ws://c/o").state_durability == "strict"


def test_workers_and_a_redis_cluster_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOVER_WORKERS", "4")
    values = resolve(["proxy", "--redis-url", "redis+cluster://10.0.0.1:7000"])
    assert values["workers"] == 4 and values["redis_url"] == "redis+cluster://10.0.0.1:7000"
    assert resolve(["shadow", "--redis-url", "rediss+cluster://r:6379"])["redis_url"] == "rediss+cluster://r:6379"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (
            ["proxy", "--legacy-url", "http://csms/ocpp"],
            {},
            "--legacy-url: 'http://csms/ocpp' must be a ws:// or wss:// URL",
        ),
        (["proxy", "--legacy-url", "ws://c/o", "--listen", "9000"], {}, "--listen: '9000' must be HOST:PORT"),
        (
            ["proxy", "--legacy-url", "ws://c/o"],
            {"CUTOVER_CALL_TIMEOUT": "-3"},
            "CUTOVER_CALL_TIMEOUT: '-3' must be a number greater than 0",
        ),
        (
            ["proxy", "--legacy-url", "ws://c/o", "--long-id-token", "cut"],
            {},
            "--long-id-token: 'cut' must be one of reject, alias",
        ),
        (
            ["proxy", "--legacy-url", "ws://c/o", "--redis-url", "localhost:6379"],
            {},
            "--redis-url: 'localhost:6379' must be a redis://",
        ),
        (["proxy", "--legacy-url", "ws://c/o"], {"CUTOVER_WORKERS": "0"}, "CUTOVER_WORKERS: '0' must be a whole"),
        (
            ["proxy", "--legacy-url", "ws://c/o"],
            {"CUTOVER_STATE_DURABILITY": "bogus"},
            "CUTOVER_STATE_DURABILITY: 'bogus' must be one of available, strict",
        ),
    ],
)
def test_bad_values_name_the_setting(
    argv: list[str], env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(config.ConfigError) as caught:
        resolve(argv)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--security-profile", "2"], "--security-profile 2 needs --tls-cert and --tls-key"),
        (["--security-profile", "4"], "--security-profile: '4' must be 0 (none)"),
        (["--tls-cert", "/no/such/file.pem"], "--tls-cert: '/no/such/file.pem' must name a readable file"),
    ],
)
def test_security_settings_are_checked(flags: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "proxy", "--legacy-url", "ws://csms/ocpp", *flags],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2 and message in result.stderr


def test_cli_exits_2_with_the_message_and_requires_the_legacy_url() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "proxy"], capture_output=True, text=True, env={"PATH": ""}, timeout=30
    )
    assert result.returncode == 2
    assert "--legacy-url (CUTOVER_LEGACY_URL) is required" in result.stderr
