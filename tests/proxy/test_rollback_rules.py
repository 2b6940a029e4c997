"""Rollback thresholds per group: checked overrides, the most cautious value wins, the CLI names the flag."""

from __future__ import annotations

import ssl
import subprocess
import sys

import pytest
import redis.asyncio as redis

from proxy import rollback, routing
from proxy.rollback import RollbackRules, Thresholds


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, "rules: an object with at least one threshold"),
        ({"max_error_rate": 1.5}, "max_error_rate: 1.5 is out of range"),
        ({"window": 2.5}, "window: must be a whole number"),
        ({"window": 0}, "window: 0 is out of range"),
        ({"unreachable_seconds": 0}, "unreachable_seconds: 0 is out of range (above 0"),
        ({"tls_failures": "3"}, "tls_failures: must be a whole number"),
        ({"enabled": "yes"}, "enabled: must be true or false"),
        ({"colour": 1}, "colour: not a rollback threshold"),
    ],
)
def test_bad_overrides_name_the_field(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        rollback.check_overrides(overrides)


def test_the_most_cautious_value_of_each_threshold_wins() -> None:
    defaults = Thresholds(max_error_rate=0.2, window=20)
    merged = rollback.most_cautious(defaults, [{"max_error_rate": 0.1, "window": 40}, {"window": 10}])
    assert (merged.max_error_rate, merged.window, merged.unreachable_seconds) == (0.1, 10, 30.0)
    assert rollback.most_cautious(defaults, []) is defaults


def test_rules_stay_on_unless_every_group_turns_them_off() -> None:
    defaults = Thresholds()
    assert rollback.most_cautious(defaults, [{"enabled": False}, {"window": 5}]).enabled
    assert not rollback.most_cautious(defaults, [{"enabled": False}, {"enabled": False, "window": 5}]).enabled
    assert rollback.most_cautious(Thresholds(enabled=False), [{"enabled": True}]).enabled


def test_per_station_thresholds_drive_the_error_rate_rule() -> None:
    rules = RollbackRules(Thresholds(window=4, max_error_rate=0.5))
    rules.configure("STRICT", Thresholds(window=2, max_error_rate=0.4))
    assert [rules.answered("STRICT", True) for _ in range(2)] == [False, True]
    assert [rules.answered("LOOSE", True) for _ in range(2)] == [False, False]


def test_tls_failures_in_a_row_fire_once_and_a_success_resets_them() -> None:
    rules = RollbackRules(Thresholds(tls_failures=3))
    assert [rules.native_tls_failed("CP") for _ in range(2)] == [False, False]
    rules.native_reached("CP")
    assert [rules.native_tls_failed("CP") for _ in range(3)] == [False, False, True]
    assert not rules.native_tls_failed("CP")  # counting starts again after the rule fired


def test_a_wrapped_tls_error_is_recognised() -> None:
    cause = ssl.SSLCertVerificationError("certificate verify failed")
    try:
        try:
            raise cause
        except ssl.SSLError as exc:
            raise ConnectionError("handshake failed") from exc
    except ConnectionError as wrapped:
        assert rollback.tls_failure(wrapped) is cause
    assert rollback.tls_failure(ConnectionRefusedError()) is None


async def test_group_rules_apply_to_their_members_only(redis_client: redis.Redis) -> None:
    await redis_client.sadd(routing.group_key("beta"), "B1", "B2")
    await redis_client.sadd(routing.group_key("keba"), "B2")
    await rollback.set_group_rules(redis_client, "beta", {"max_error_rate": 0.1})
    await rollback.set_group_rules(redis_client, "keba", {"max_error_rate": 0.3, "window": 5})
    await rollback.set_group_rules(redis_client, "beta", {"tls_failures": 1})  # merged into beta's rules
    defaults = Thresholds()
    assert await rollback.thresholds_for(redis_client, "OTHER", defaults) == defaults
    b1 = await rollback.thresholds_for(redis_client, "B1", defaults)
    assert (b1.max_error_rate, b1.tls_failures, b1.window) == (0.1, 1, 20)
    b2 = await rollback.thresholds_for(redis_client, "B2", defaults)
    assert (b2.max_error_rate, b2.tls_failures, b2.window) == (0.1, 1, 5)
    assert await rollback.clear_group_rules(redis_client, "beta")
    assert (await rollback.thresholds_for(redis_client, "B1", defaults)) == defaults


async def test_an_unreadable_group_entry_is_ignored(redis_client: redis.Redis) -> None:
    await redis_client.sadd(routing.group_key("broken"), "B1")
    await redis_client.hset(rollback.RULES, "broken", b'{"window": -1}')
    assert await rollback.thresholds_for(redis_client, "B1", Thresholds()) == Thresholds()


def cutover(*args: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args, "--redis-url", redis_url], capture_output=True, text=True, timeout=60
    )


async def test_the_rules_command(redis_url: str, redis_client: redis.Redis) -> None:
    done = cutover("rules", "set", "beta", "--error-rate", "0.1", "--window", "10", "--auto-rollback", "on",
                   redis_url=redis_url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "beta" in done.stdout and "max_error_rate=0.1" in done.stdout and "window=10" in done.stdout
    bad = cutover("rules", "set", "beta", "--error-rate", "2", redis_url=redis_url)
    assert bad.returncode == 2 and "--error-rate: 2.0 is out of range" in bad.stdout
    nothing = cutover("rules", "set", "beta", redis_url=redis_url)
    assert nothing.returncode == 2 and "give at least one threshold (--unreachable-seconds" in nothing.stdout
    unnamed = cutover("rules", "set", redis_url=redis_url)
    assert unnamed.returncode == 2 and "name the group" in unnamed.stdout
    expected = {"beta": {"max_error_rate": 0.1, "window": 10, "enabled": True}}
    assert (await rollback.group_rules(redis_client)) == expected
    assert cutover("rules", "clear", "beta", redis_url=redis_url).returncode == 0
    again = cutover("rules", "clear", "beta", redis_url=redis_url)
    assert again.returncode == 2 and "no rules of its own" in again.stdout


async def test_the_rules_api(redis_client: redis.Redis) -> None:
    import aiohttp

    from proxy.admin import AdminServer

    admin = AdminServer("127.0.0.1", 0, dict, redis_client, token="a-very-long-admin-token")
    await admin.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(admin.url + "/rules") as response:
                assert response.status == 401
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer a-very-long-admin-token"}) as api:
            for body, field in (({"window": 0}, "window"), ({"colour": 1}, "colour"), ({}, "body"), ([], "body")):
                async with api.put(admin.url + "/rules/beta", json=body) as response:
                    problem = await response.json(content_type=None)
                    assert response.status == 400 and problem["field"] == field, problem
                    assert response.content_type == "application/problem+json"
            async with api.put(admin.url + "/rules/beta", json={"max_error_rate": 0.05}) as response:
                assert (await response.json()) == {"group": "beta", "rules": {"max_error_rate": 0.05}}
            async with api.get(admin.url + "/rules") as response:
                assert (await response.json()) == {"groups": {"beta": {"max_error_rate": 0.05}}}
            async with api.delete(admin.url + "/rules/beta") as response:
                assert response.status == 204
            async with api.delete(admin.url + "/rules/beta") as response:
                assert response.status == 404
            async with api.get(admin.url + "/openapi.json") as response:
                assert "/rules/{group}" in (await response.json())["paths"]
    finally:
        await admin.stop()


@pytest.mark.parametrize(
    "overrides",
    [{"window": 5}, {"window": 0}, {"max_error_rate": 1.5}, {"unreachable_seconds": 0}, {"unreachable_seconds": 1},
     {"tls_failures": 1001}, {"enabled": False}, {"colour": 1}, {}],
)  # fmt: skip
def test_the_openapi_schema_of_the_overrides_says_what_is_checked(overrides: dict[str, object]) -> None:
    import jsonschema_rs

    try:
        rollback.check_overrides(overrides)
        accepted = True
    except ValueError:
        accepted = False
    assert jsonschema_rs.validator_for(rollback.overrides_schema()).is_valid(overrides) == accepted
