"""The admin HTTP plane (aiohttp): `/metrics` for Prometheus and `/healthz`."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


def make_app(health: Callable[[], dict[str, object]]) -> web.Application:
    async def metrics_handler(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(REGISTRY))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        response.charset = "utf-8"
        return response

    async def health_handler(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **health()})

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", health_handler)
    return app


class AdminServer:
    def __init__(self, host: str, port: int, health: Callable[[], dict[str, object]]) -> None:
        self.host = host
        self.port = port
        self._runner = web.AppRunner(make_app(health), access_log=None)

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
