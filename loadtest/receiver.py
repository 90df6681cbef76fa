"""The load test's loopback webhook receiver: every alert of the run is routed to it, and it
notes when each notification arrives (the end of a detection delay)."""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from pipeline.broker import free_port

# The fields of a notification the harness keeps (loadtest/detection.py matches on them).
_ALERT_FIELDS = (
    "alert_id",
    "id",
    "service",
    "key",
    "rule",
    "metric",
    "severity",
    "status",
    "transition",
    "first_seen",
)


class Receiver:
    """A loopback webhook receiver that notes when every notification arrives."""

    def __init__(self) -> None:
        self.hits: list[dict] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.time()
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = {}
        if isinstance(data, dict):
            self.hits.append({"arrived": arrived, **{k: data.get(k) for k in _ALERT_FIELDS}})
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
