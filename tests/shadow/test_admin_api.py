"""The admin API over what the shadow workers recorded: /divergences (filtered, paginated) and /lint."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as redis

from proxy.admin import AdminServer
from shadow import records
from shadow.lint import Violation


@pytest.fixture
async def admin(redis_client: redis.Redis) -> AsyncIterator[str]:
    server = AdminServer("127.0.0.1", 0, lambda: {}, redis_client, TOKEN)
    await server.start()
    yield server.url
    await server.stop()


TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def seed(client: redis.Redis) -> None:
    for n in range(5):
        record = records.Record(f"CP{n % 2}", "Authorize", "status_mismatch", "idTokenInfo.status", "Accepted",
                                "Invalid", f"c:{n}", 1_700_000_000 + n)  # fmt: skip
        assert await records.write(client, f"c:{n}", "Authorize", [record])
    assert not await records.write(client, "c:0", "Authorize", [])  # a redelivered comparison counts once


async def test_divergences_are_filtered_and_paginated(admin: str, redis_client: redis.Redis) -> None:
    await seed(redis_client)
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.get(f"{admin}/divergences", params={"station": "CP0", "limit": "2"}) as response:
            first = await response.json()
        async with http.get(
            f"{admin}/divergences", params={"station": "CP0", "limit": "2", "cursor": first["next_cursor"]}
        ) as response:
            second = await response.json()
    assert [item["comparison"] for item in first["items"]] == ["c:4", "c:2"]
    assert [item["comparison"] for item in second["items"]] == ["c:0"] and second["next_cursor"] is None
    assert await records.station_counts(redis_client, "CP0") == {"status_mismatch": 3}


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": "0"}, "limit"), ({"limit": "many"}, "limit"), ({"since": "yesterday"}, "since")],
)
async def test_bad_parameters_get_a_problem_naming_the_field(admin: str, params: dict[str, str], field: str) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as http, http.get(f"{admin}/divergences", params=params) as response:
        assert response.status == 400
        assert response.content_type == "application/problem+json"
        body = await response.json(content_type=None)
    assert body["field"] == field and body["status"] == 400 and field in body["detail"]


async def test_lint_lists_a_stations_violations(admin: str, redis_client: redis.Redis) -> None:
    violation = Violation("flat_boot_notification", "CP9", "BootNotification", "chargePointVendor given", "M", "1.0")
    await records.write_violation(redis_client, violation, "1-0")
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.get(f"{admin}/lint", params={"station": "CP9"}) as response:
            body = await response.json()
        async with http.get(f"{admin}/lint") as response:
            assert response.status == 400
    assert [(item["rule"], item["model"]) for item in body["items"]] == [("flat_boot_notification", "M")]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
async def test_the_api_needs_the_bearer_token_metrics_do_not(admin: str, headers: dict[str, str]) -> None:
    async with aiohttp.ClientSession(headers=headers) as http:
        for path in ("/divergences", "/lint?station=CP1"):
            async with http.get(admin + path) as response:
                assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
        async with http.post(admin + "/tls/reload") as response:
            assert response.status == 401
        async with http.get(admin + "/metrics") as response:
            assert response.status == 200


async def test_without_a_token_the_api_is_disabled(redis_client: redis.Redis) -> None:
    server = AdminServer("127.0.0.1", 0, lambda: {}, redis_client)
    await server.start()
    try:
        async with aiohttp.ClientSession(headers=AUTH) as http, http.get(server.url + "/divergences") as response:
            assert response.status == 403
    finally:
        await server.stop()
