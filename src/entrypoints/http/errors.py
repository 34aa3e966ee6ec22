"""The only place errors become HTTP: status by error class, one JSON body shape for all."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from adapters.wire.converter import dumps
from domain.errors import (
    CacheUnavailable,
    CurrencyMismatch,
    DependencyUnavailable,
    EventBusUnavailable,
    IdempotencyConflict,
    InvalidRequest,
    OrderingError,
    OrderNotFound,
    ProductAlreadyExists,
    ProductDiscontinued,
    ProductInactive,
    ProductNotFound,
    ProductServiceUnavailable,
    ProductUnavailable,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

STATUS_OF: list[tuple[type[OrderingError], int]] = [
    (InvalidRequest, 400),
    (OrderNotFound, 404),
    (ProductUnavailable, 409),
    (ProductAlreadyExists, 409),
    (IdempotencyConflict, 409),
    (ProductNotFound, 422),
    (ProductDiscontinued, 422),
    (ProductInactive, 422),
    (CurrencyMismatch, 422),
    (ProductServiceUnavailable, 503),
    (StoreUnavailable, 503),
    (CacheUnavailable, 503),
    (EventBusUnavailable, 503),
    (DependencyUnavailable, 503),
]

HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return web.Response(status=status, body=dumps(body), content_type="application/json", headers=headers)


def status_for(error: OrderingError) -> int:
    for cls, status in STATUS_OF:
        if isinstance(error, cls):
            return status
    return 500


def ordering_error_response(error: OrderingError, *, not_found_status: int | None = None) -> web.Response:
    status = status_for(error)
    if not_found_status is not None and isinstance(error, ProductNotFound):
        status = not_found_status
    headers = {"Retry-After": "1"} if status == 503 else None
    return error_response(status, error.code, error.message, error.details, headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure answers with the error body; nothing leaks a stack trace."""
    try:
        response: web.StreamResponse = await handler(request)
    except OrderingError as error:
        if isinstance(error, DependencyUnavailable):
            log.warning("dependency unavailable on %s: %s", request.path, error.message)
        return ordering_error_response(error)
    except web.HTTPException as http_error:
        if http_error.status < 400:
            raise
        code = HTTP_CODES.get(http_error.status, "http_error")
        message = {
            404: "No such route",
            405: f"Method {request.method} is not allowed here",
            408: "The request body did not arrive in time",
            413: "The request body is larger than 1 MiB",
        }.get(http_error.status, http_error.reason)
        allow = http_error.headers.get("Allow")  # a 405 must say what is allowed (RFC 9110)
        return error_response(http_error.status, code, message, headers={"Allow": allow} if allow else None)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "An unexpected error occurred")
    return response
