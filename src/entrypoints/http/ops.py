"""Operational routes shared by both services: /health, /ready, /metrics, /openapi.json."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from aiohttp import web

from adapters.metrics import ServiceMetrics
from entrypoints.background import OutboxWakeup
from entrypoints.http.parsing import json_response

Check = Callable[[], Awaitable[dict[str, Any]]]


@attrs.define
class Readiness:
    """What /ready reports: each dependency's check (on NATS, `consumers`: which are not bound),
    and whether the lifecycle has subscribed the consumers yet."""

    checks: dict[str, Check] = attrs.field(factory=dict)
    consumers_subscribed: bool = False


READINESS = web.AppKey("readiness", Readiness)
METRICS = web.AppKey("metrics", ServiceMetrics)
HealthProbe = Callable[[], Awaitable[dict[str, Any]]]
HEALTH: web.AppKey[HealthProbe] = web.AppKey("health")
OPENAPI = web.AppKey("openapi", dict)
OUTBOX_WAKEUP = web.AppKey("outbox_wakeup", OutboxWakeup)
Refresh = Callable[[], Awaitable[None]]
BEFORE_SCRAPE: web.AppKey[Refresh] = web.AppKey("before_scrape")
"""Reads gauges that live outside the process (consumer lag, outbox backlog) before a scrape."""


async def run_checks(readiness: Readiness) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name, check in readiness.checks.items():
        try:
            results[name] = await check()
        except Exception as error:
            results[name] = {"status": "down", "error": type(error).__name__}
    return results


async def ready(request: web.Request) -> web.Response:
    readiness = request.app[READINESS]
    results = await run_checks(readiness)
    down = [name for name, result in results.items() if result.get("status") != "up"]
    if not readiness.consumers_subscribed and "consumers" not in down:
        down.append("consumers")
    if down:
        body = {
            "error": {
                "code": "not_ready",
                "message": f"Not ready: {', '.join(down)} not available",
                "details": {"down": down, "checks": results},
            }
        }
        return json_response(body, status=503)
    return json_response({"status": "ready", "checks": results})


async def health(request: web.Request) -> web.Response:
    return json_response(await request.app[HEALTH]())


async def metrics(request: web.Request) -> web.Response:
    await request.app[BEFORE_SCRAPE]()
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def openapi(request: web.Request) -> web.Response:
    """Mounted under a prefix (INTERFACE §7), the document says so in `servers`: its paths are
    the app's own."""
    document = request.app[OPENAPI]
    canonical = request.match_info.route.resource.canonical if request.match_info.route.resource else ""
    prefix = canonical.removesuffix("/openapi.json")
    if prefix:
        document = {**document, "servers": [{"url": prefix}]}
    return json_response(document)


def add_ops_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
