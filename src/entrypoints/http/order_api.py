"""The Order Service's HTTP API (INTERFACE §4)."""

from __future__ import annotations

import hmac
import json
import logging

from aiohttp import web

from adapters.wire.http_json import discrepancy_to_wire, order_to_wire, product_to_wire
from application.create_order import CreateOrder
from domain.errors import EventBusUnavailable, InvalidRequest, ProductNotFound
from domain.orders import OrderFlag, OrderLine
from entrypoints.background import BackgroundTasks
from entrypoints.containers import OrderService
from entrypoints.http.errors import error_response, ordering_error_response
from entrypoints.http.ops import OUTBOX_WAKEUP, READINESS
from entrypoints.http.parsing import json_response, read_body
from entrypoints.http.schemas import CreateOrderRequest, check_id, check_order, reject

ORDER_SERVICE = web.AppKey("order_service", OrderService)
BACKGROUND = web.AppKey("background", BackgroundTasks)

routes = web.RouteTableDef()
log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 255
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_SHOWN_NAME = 64
"""An unknown query parameter is named by its first 64 characters at most."""


@routes.post("/api/v1/orders")
async def create_order(request: web.Request) -> web.Response:
    service = request.app[ORDER_SERVICE]
    body = await read_body(request, CreateOrderRequest)
    check_order(body)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY):
        raise reject("Idempotency-Key", f"a string of 1 to {MAX_IDEMPOTENCY_KEY} characters")
    placed = await service.create_order()(
        CreateOrder(
            user_id=body.user_id,
            lines=tuple(OrderLine(item.product_id, item.quantity, item.variant_id) for item in body.items),
            idempotency_key=key,
        )
    )
    log.info(
        "order created" if placed.created else "order replayed for its Idempotency-Key",
        extra={
            "orderId": placed.order.id,  # the request's correlationId comes with every line (logs.py)
            "priceSource": placed.order.price_source.value,
            "totalAmount": str(placed.order.total_amount),
        },
    )
    if placed.created:
        request.app[OUTBOX_WAKEUP].set()
    response = json_response(order_to_wire(placed.order), status=201 if placed.created else 200)
    response.headers["Location"] = f"/api/v1/orders/{placed.order.id}"
    return response


@routes.get("/api/v1/orders/{id}")
async def get_order(request: web.Request) -> web.Response:
    order_id = request.match_info["id"]
    check_id("id", order_id)
    order = await request.app[ORDER_SERVICE].get_order()(order_id)
    return json_response(order_to_wire(order))


@routes.get("/api/v1/orders")
async def list_orders(request: web.Request) -> web.Response:
    product_id = request.query.get("productId")
    flag_text = request.query.get("flag")
    unknown = sorted(set(request.query) - {"productId", "flag", "limit"})
    if unknown:
        start = unknown[0] if len(unknown[0]) <= MAX_SHOWN_NAME else f"{unknown[0][:MAX_SHOWN_NAME]}..."
        name = start if unknown[0].isidentifier() else json.dumps(start, ensure_ascii=False)
        raise InvalidRequest.of_field(name, f"{name} is not a known query parameter (productId, flag, limit)")
    repeated = [name for name in ("productId", "flag", "limit") if len(request.query.getall(name, ())) > 1]
    if repeated:  # taking the first value would drop a filter the client meant silently
        raise reject(repeated[0], "given at most once")
    if product_id is not None:
        check_id("productId", product_id)
    flag = None
    if flag_text is not None:
        try:
            flag = OrderFlag(flag_text)
        except ValueError:
            raise reject("flag", f"one of {', '.join(OrderFlag)}") from None
    limit_text = request.query.get("limit", str(DEFAULT_LIMIT))
    # ASCII digits only: str.isdigit() also passes "²", which int() refuses; at most 4 of them
    if not (limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 4) or not (
        1 <= int(limit_text) <= MAX_LIMIT
    ):
        raise reject("limit", f"an integer from 1 to {MAX_LIMIT}")
    orders = await request.app[ORDER_SERVICE].list_orders()(product_id, flag, int(limit_text))
    return json_response({"items": [order_to_wire(o) for o in orders]})


PRICE_SOURCE_HEADER = "X-Price-Source"
"""`product-service`, or `cache` when the Product Service was unavailable (as an order's `priceSource`)."""


@routes.post("/api/v1/orders/{id}/pricing-validation")
async def validate_pricing(request: web.Request) -> web.Response:
    order_id = request.match_info["id"]
    check_id("id", order_id)
    result, source = await request.app[ORDER_SERVICE].validate_pricing().with_source(order_id)
    # the body keeps INTERFACE's shape; where the prices came from goes in a header
    response = json_response(discrepancy_to_wire(result))
    response.headers[PRICE_SOURCE_HEADER] = source.value
    return response


def check_admin(request: web.Request) -> web.Response | None:
    """Bearer token compared in constant time; None when the caller may pass."""
    token = request.app[ORDER_SERVICE].settings().admin_token
    if token is None:
        return error_response(
            403,
            "admin_disabled",
            "Admin routes are disabled; set ADMIN_TOKEN and send 'Authorization: Bearer <token>'",
        )
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return error_response(
            401,
            "unauthorized",
            "Send 'Authorization: Bearer <ADMIN_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # aiohttp hands over undecodable header bytes as surrogates; give them back as the bytes sent
    if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token.encode()):
        return error_response(403, "forbidden", "The admin token is wrong")
    return None


@routes.post("/admin/refresh")
async def refresh_all(request: web.Request) -> web.Response:
    if (refused := check_admin(request)) is not None:
        return refused
    nats = request.app[READINESS].checks.get("nats")
    if nats is not None and (await nats()).get("status") != "up":
        # the refresh asks over the bus: a 202 now would promise what cannot start
        raise EventBusUnavailable(
            "The event bus (NATS) is unreachable: the refresh asks over it; try again once /ready answers 200"
        )
    request.app[BACKGROUND].start(request.app[ORDER_SERVICE].refresh_all()())
    return json_response({"status": "started"}, status=202)


@routes.post("/admin/products/{id}/refresh")
async def refresh_product(request: web.Request) -> web.Response:
    if (refused := check_admin(request)) is not None:
        return refused
    product_id = request.match_info["id"]
    check_id("id", product_id)
    try:
        refreshed = await request.app[ORDER_SERVICE].refresh_product()(product_id)
    except ProductNotFound as missing:
        return ordering_error_response(missing, not_found_status=404)
    return json_response(
        {
            "product": product_to_wire(refreshed.product),
            "source": refreshed.source,
            "elapsedMs": refreshed.elapsed_ms,
        }
    )
