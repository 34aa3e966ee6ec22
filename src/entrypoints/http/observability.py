"""Per-request metrics and one log line per request, labelled by route template."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from adapters.metrics import ServiceMetrics
from entrypoints.logs import SERVICE

log = logging.getLogger("http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_template(request: web.Request) -> str:
    """The matched route's template (`/api/v1/orders/{id}`), never the raw path."""
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return "unmatched"
    return resource.canonical


def metrics_middleware(metrics: ServiceMetrics, service: str) -> Middleware:
    """`service` names the request's log lines (`SERVICE`): one process may serve both."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        SERVICE.set(service)  # the request's own task: nothing to reset
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as http_error:
            status = http_error.status
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(request)
            metrics.http_requests.labels(route=route, status=str(status)).inc()
            metrics.http_request_seconds.labels(route=route).observe(elapsed)
            log.info(
                "%s %s %s",
                request.method,
                request.path,
                status,
                extra={
                    "method": request.method,
                    "route": route,
                    "status": status,
                    "elapsedMs": round(elapsed * 1000, 2),
                    "correlationId": request.headers.get("X-Correlation-Id"),
                },
            )

    return observe
