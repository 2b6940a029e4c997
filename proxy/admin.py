"""The admin HTTP plane (aiohttp): `/metrics` for Prometheus, `/healthz`, `/divergences` (what the shadow
workers recorded, JSON, paginated), `/lint?station=` (a station's conformance-lint violations) and
`POST /tls/reload`. The API (not /metrics, /healthz) needs `Authorization: Bearer <token>`; without a
configured token it is disabled. Errors are RFC 9457 problem responses."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, Literal

import redis.asyncio as redis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy import metrics, rollback, routing
from shadow import records
from shadow.cli import since_value

MAX_PAGE = 500


def problem(status: int, title: str, detail: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, content_type="application/problem+json")


# The operator API; /metrics and /healthz stay open to the scraper and the orchestrator.
PROTECTED_PREFIXES = ("/divergences", "/lint", "/tls", "/stations", "/switch", "/rollback", "/audit", "/rules")
# What is read from or written to Redis (all of the API but the TLS reload): without Redis, 503.
REDIS_PREFIXES = tuple(prefix for prefix in PROTECTED_PREFIXES if prefix != "/tls")
SELECTORS: dict[str, type | tuple[type, ...]] = {
    "stations": list, "group": str, "glob": str, "model": str, "firmware": str, "percent": (int, float), "all": bool,
}  # fmt: skip
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "ocpp-cutover admin API", "version": "1"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        "/stations": {"get": {"summary": "every known station: mode, pending switch, connection, transactions, "
                                         "protocol, model, divergence counts"}},
        "/switch": {"post": {"summary": "move stations (drain then switch unless force)", "requestBody": {
            "content": {"application/json": {"schema": {
                "type": "object", "required": ["to"], "additionalProperties": False,
                "properties": {"to": {"enum": ["legacy", "cutover"]}, "stations": {"type": "array",
                               "items": {"type": "string"}}, "group": {"type": "string"}, "glob": {"type": "string"},
                               "model": {"type": "string"}, "firmware": {"type": "string"},
                               "percent": {"type": "number", "minimum": 0, "maximum": 100}, "all": {"type": "boolean"},
                               "force": {"type": "boolean"}, "dry_run": {"type": "boolean"},
                               "reason": {"type": "string"}}}}}}}},
        "/rollback": {"post": {"summary": "every station back to legacy (drain then switch unless force)"}},
        "/audit": {"get": {"summary": "switch audit trail, newest first (station, limit)"}},
        "/rules": {"get": {"summary": "automatic rollback thresholds each group overrides"}},
        "/rules/{group}": {
            "put": {"summary": "merge thresholds into a group's rules", "requestBody": {"content": {
                "application/json": {"schema": rollback.overrides_schema()}}}},
            "delete": {"summary": "the group's rules back to the proxies' flags"},
        },
        "/divergences": {"get": {"summary": "shadow divergences (station, action, kind, since, limit, cursor)"}},
        "/lint": {"get": {"summary": "a station's conformance-lint violations (station)"}},
        "/tls/reload": {"post": {"summary": "re-read TLS material for new handshakes"}},
    },
}  # fmt: skip


class BadRequest(Exception):
    """A handler's way to answer with a problem response from anywhere (the middleware sends it)."""

    def __init__(self, response: web.Response) -> None:
        self.response = response


async def json_body(request: web.Request, default: Any = None) -> Any:
    """The request's JSON body (`default` when there is none, if given); `BadRequest` if it is not JSON."""
    if default is not None and not request.can_read_body:
        return default
    try:
        return await request.json()
    except ValueError:
        raise BadRequest(problem(400, "Bad body", "the body is not JSON", "body")) from None


def make_app(
    health: Callable[[], dict[str, object]],
    client: redis.Redis | None = None,
    token: str | None = None,
    reload_tls: Callable[[], None] | None = None,
    serves: Literal["all", "api", "metrics"] = "all",
) -> web.Application:
    @web.middleware
    async def bearer(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(PROTECTED_PREFIXES):
            if token is None:
                return problem(403, "Admin API disabled", "start with --admin-token-file to enable the admin API")
            given = request.headers.get("Authorization", "")
            if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode())):
                response = problem(401, "Unauthorized", "a valid bearer token is required")
                response.headers["WWW-Authenticate"] = 'Bearer realm="ocpp-cutover"'
                return response
        if client is None and request.path.startswith(REDIS_PREFIXES):
            return problem(503, "No Redis", "this process runs without Redis: nothing to read or change")
        try:
            return await handler(request)
        except BadRequest as bad:
            return bad.response

    async def metrics_handler(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(metrics.registry()))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        response.charset = "utf-8"
        return response

    async def health_handler(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **health()})

    async def divergences_handler(request: web.Request) -> web.Response:
        assert client is not None
        query = request.query
        try:
            limit = int(query.get("limit", "100"))
            if not 1 <= limit <= MAX_PAGE:
                raise ValueError
        except ValueError:
            return problem(400, "Bad parameter", f"limit must be a whole number from 1 to {MAX_PAGE}", "limit")
        since = None
        if "since" in query:
            try:
                since = since_value(query["since"])
            except ValueError as exc:
                return problem(400, "Bad parameter", f"since {exc}", "since")
        found, cursor = await records.query(
            client,
            station=query.get("station"),
            action=query.get("action"),
            kind=query.get("kind"),
            since=since,
            limit=limit,
            before=query.get("cursor"),
        )
        return web.json_response({"items": found, "next_cursor": cursor})

    async def lint_handler(request: web.Request) -> web.Response:
        assert client is not None
        station = request.query.get("station")
        if not station:
            return problem(
                400, "Missing parameter", "station is required: the station whose violations to list", "station"
            )
        return web.json_response({"station": station, "items": await records.station_violations(client, station)})

    async def reload_handler(request: web.Request) -> web.Response:
        if reload_tls is None:
            return problem(409, "No TLS", "this proxy terminates no TLS: nothing to reload")
        try:
            reload_tls()
        except (OSError, ValueError) as exc:
            return problem(422, "Reload failed", f"still serving the previous material: {exc}")
        return web.json_response({"status": "reloaded"})

    async def stations_handler(request: web.Request) -> web.Response:
        assert client is not None
        rows = await routing.status(client)
        for row in rows:
            row["divergences"] = await records.station_counts(client, row["station"])
        return web.json_response({"items": rows})

    async def switch_from(body: Any, force_default: bool = False) -> web.Response:
        assert client is not None
        if not isinstance(body, dict):
            return problem(400, "Bad body", "the body must be a JSON object", "body")
        unknown = set(body) - set(SELECTORS) - {"to", "force", "dry_run", "reason"}
        if unknown:
            return problem(400, "Bad body", f"unknown field {sorted(unknown)[0]!r}", sorted(unknown)[0])
        if body.get("to") not in routing.MODES:
            return problem(400, "Bad body", "to must be legacy or cutover", "to")
        for name, kind in SELECTORS.items():
            if name in body and not isinstance(body[name], kind):
                return problem(400, "Bad body", f"{name} has the wrong type", name)
        if "percent" in body and not 0 <= body["percent"] <= 100:
            return problem(400, "Bad body", "percent must be from 0 to 100", "percent")
        for name in ("force", "dry_run"):
            if name in body and not isinstance(body[name], bool):
                return problem(400, "Bad body", f"{name} must be true or false", name)
        selection = routing.Selection(
            tuple(body.get("stations", ())), body.get("group"), body.get("glob"), body.get("model"),
            body.get("firmware"), body.get("percent"), body.get("all", False),
        )  # fmt: skip
        if selection == routing.Selection():
            return problem(400, "Bad body", "name what to move: stations, group, glob, model, firmware, percent or all",
                           "stations")  # fmt: skip
        results = await routing.switch(
            client, await routing.select(client, selection), body["to"], force=body.get("force", force_default),
            reason=str(body.get("reason", "")), actor="api", dry_run=body.get("dry_run", False),
        )  # fmt: skip
        return web.json_response({"items": [r.__dict__ for r in results]})

    async def switch_handler(request: web.Request) -> web.Response:
        assert client is not None
        return await switch_from(await json_body(request))

    async def rollback_handler(request: web.Request) -> web.Response:
        assert client is not None
        body = await json_body(request, default={})
        if not isinstance(body, dict):
            return problem(400, "Bad body", "the body must be a JSON object", "body")
        return await switch_from({"to": "legacy", "all": True, "reason": body.get("reason", "rollback"),
                                  **{k: v for k, v in body.items() if k in ("force", "dry_run")}})  # fmt: skip

    async def audit_handler(request: web.Request) -> web.Response:
        assert client is not None
        try:
            limit = int(request.query.get("limit", "100"))
            if not 1 <= limit <= MAX_PAGE:
                raise ValueError
        except ValueError:
            return problem(400, "Bad parameter", f"limit must be a whole number from 1 to {MAX_PAGE}", "limit")
        return web.json_response({"items": await routing.audit_entries(client, limit, request.query.get("station"))})

    async def rules_handler(request: web.Request) -> web.Response:
        assert client is not None
        return web.json_response({"groups": await rollback.group_rules(client)})

    async def put_rules_handler(request: web.Request) -> web.Response:
        assert client is not None
        body = await json_body(request)
        try:
            rules = await rollback.set_group_rules(client, request.match_info["group"], body)
        except ValueError as exc:
            field, _, _ = str(exc).partition(": ")
            return problem(400, "Bad body", str(exc), "body" if field == "rules" else field)
        return web.json_response({"group": request.match_info["group"], "rules": rules})

    async def delete_rules_handler(request: web.Request) -> web.Response:
        assert client is not None
        group = request.match_info["group"]
        if not await rollback.clear_group_rules(client, group):
            return problem(404, "No such rules", f"group {group!r} has no rules of its own")
        return web.Response(status=204)

    async def openapi_handler(request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    app = web.Application(middlewares=[bearer])
    if serves in ("all", "api"):
        app.router.add_get("/stations", stations_handler)
        app.router.add_post("/switch", switch_handler)
        app.router.add_post("/rollback", rollback_handler)
        app.router.add_get("/audit", audit_handler)
        app.router.add_get("/rules", rules_handler)
        app.router.add_put("/rules/{group}", put_rules_handler)
        app.router.add_delete("/rules/{group}", delete_rules_handler)
        app.router.add_get("/openapi.json", openapi_handler)
    if serves in ("all", "metrics"):
        app.router.add_get("/metrics", metrics_handler)
        app.router.add_get("/healthz", health_handler)
    if serves in ("all", "api"):
        app.router.add_post("/tls/reload", reload_handler)
        app.router.add_get("/divergences", divergences_handler)
        app.router.add_get("/lint", lint_handler)
    return app


class AdminServer:
    def __init__(
        self,
        host: str,
        port: int,
        health: Callable[[], dict[str, object]],
        client: redis.Redis | None = None,
        token: str | None = None,
        reload_tls: Callable[[], None] | None = None,
        serves: Literal["all", "api", "metrics"] = "all",
    ) -> None:
        self.host = host
        self.port = port
        self._runner = web.AppRunner(make_app(health, client, token, reload_tls, serves), access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        await self._runner.cleanup()
