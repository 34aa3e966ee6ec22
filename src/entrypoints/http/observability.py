"""Per-request metrics and one log line per request, labelled by route template."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from adapters.correlation import CORRELATION_ID
from adapters.correlation import HEADER as CORRELATION_HEADER
from adapters.metrics import ServiceMetrics
from entrypoints.logs import SERVICE

log = logging.getLogger("http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
"""What a caller's `X-Correlation-Id` may be (a UUID, a W3C trace id, a ULID...); anything else
is replaced, so that a log line or a header never carries what a caller smuggled in."""


def correlation_id_of(request: web.Request) -> str:
    given = request.headers.get(CORRELATION_HEADER, "")
    return given if _CORRELATION_ID.fullmatch(given) else uuid.uuid4().hex


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
        correlation_id = correlation_id_of(request)
        CORRELATION_ID.set(correlation_id)
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            if not response.prepared:
                response.headers[CORRELATION_HEADER] = correlation_id
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
                    "correlationId": correlation_id,
                },
            )

    return observe
