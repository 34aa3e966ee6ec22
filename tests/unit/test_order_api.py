"""The Order Service's HTTP API (INTERFACE §4) via aiohttp's test client, the Product Service on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import attrs
import pytest
from aiohttp import ClientResponse
from openapi_spec_validator import validate

from domain.orders import OrderFlag
from entrypoints.http.ops import READINESS

from .error_bodies import check_invalid_request
from .polling import eventually
from .running import ADMIN_TOKEN, FAST, JSON, Running, dumps, json_of, start, stop


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    services = await start()
    yield services
    await stop(services)


async def post_order(running: Running, body: Any, **headers: str) -> ClientResponse:
    return await running.order.post("/api/v1/orders", data=dumps(body), headers={**JSON, **headers})


def order_body(product_id: str, quantity: int = 1, user: str = "u-1") -> dict[str, Any]:
    return {"userId": user, "items": [{"productId": product_id, "variantId": None, "quantity": quantity}]}


async def error_of(response: ClientResponse, status: int, code: str) -> dict[str, Any]:
    body = await json_of(response)
    assert response.status == status, body
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert response.content_type == "application/json"
    error: dict[str, Any] = body["error"]
    return error


async def test_create_order_answers_201_with_an_exact_total(running: Running) -> None:
    product = await running.create_product(currentPrice=Decimal("19.99"), name="Mug")
    response = await post_order(running, order_body(product["id"], 3))
    assert response.status == 201
    raw = await response.read()
    assert b'"totalAmount":59.97' in raw
    order = await json_of(response)
    assert order["totalAmount"] == Decimal("59.97")
    assert order["status"] == "CREATED"
    assert order["priceSource"] == "product-service"
    assert order["flags"] == []
    assert order["currency"] == "USD"
    assert order["items"] == [
        {
            "productId": product["id"],
            "variantId": None,
            "name": "Mug",
            "quantity": 3,
            "unitPrice": Decimal("19.99"),
        }
    ]
    assert response.headers["Location"] == f"/api/v1/orders/{order['id']}"


async def test_a_created_order_can_be_read_back(running: Running) -> None:
    product = await running.create_product()
    created = await json_of(await post_order(running, order_body(product["id"], 2)))
    response = await running.order.get(f"/api/v1/orders/{created['id']}")
    assert response.status == 200
    assert await json_of(response) == created


async def test_an_unknown_order_is_404(running: Running) -> None:
    error = await error_of(await running.order.get("/api/v1/orders/nope"), 404, "order_not_found")
    assert error["details"] == {"orderId": "nope"}


async def test_more_than_the_stock_is_409_with_the_seed_message(running: Running) -> None:
    product = await running.create_product(quantityAvailable=2)
    error = await error_of(
        await post_order(running, order_body(product["id"], 3)), 409, "product_unavailable"
    )
    assert error["message"] == f"Product {product['id']} is not available in the requested quantity"


async def test_an_unknown_product_is_422(running: Running) -> None:
    await error_of(await post_order(running, order_body("no-such-product")), 422, "product_not_found")


async def test_a_discontinued_product_is_422(running: Running) -> None:
    product = await running.create_product(status="DISCONTINUED")
    await error_of(await post_order(running, order_body(product["id"])), 422, "product_discontinued")


async def test_an_inactive_product_is_422(running: Running) -> None:
    product = await running.create_product(status="INACTIVE")
    await error_of(await post_order(running, order_body(product["id"])), 422, "product_inactive")


async def test_product_service_down_and_product_not_cached_is_503(running: Running) -> None:
    await running.stop_product_service()
    response = await post_order(running, order_body("never-seen"))
    error = await error_of(response, 503, "product_service_unavailable")
    assert error["details"]["productIds"] == ["never-seen"]
    assert response.headers["Retry-After"] == "1"


async def test_product_service_down_with_the_product_cached_orders_from_the_cache(running: Running) -> None:
    product = await running.create_product(currentPrice=Decimal("10.10"))
    await running.order_cached(product["id"])
    await running.stop_product_service()
    response = await post_order(running, order_body(product["id"], 3))
    order = await json_of(response)
    assert response.status == 201, order
    assert order["priceSource"] == "cache"
    assert order["totalAmount"] == Decimal("30.30")


async def test_store_outage_is_503_store_unavailable(running: Running) -> None:
    product = await running.create_product()
    running.order_service.outbox().outage.down = True
    await error_of(await post_order(running, order_body(product["id"])), 503, "store_unavailable")


async def test_a_repeat_with_the_same_idempotency_key_returns_the_same_order(running: Running) -> None:
    product = await running.create_product()
    first = await post_order(running, order_body(product["id"], 2), **{"Idempotency-Key": "abc"})
    again = await post_order(running, order_body(product["id"], 2), **{"Idempotency-Key": "abc"})
    assert first.status == 201
    assert again.status in (200, 201)
    assert await json_of(again) == await json_of(first)
    listed = await json_of(await running.order.get("/api/v1/orders", params={"productId": product["id"]}))
    assert len(listed["items"]) == 1


async def test_the_same_idempotency_key_with_another_body_is_409(running: Running) -> None:
    product = await running.create_product()
    await post_order(running, order_body(product["id"], 2), **{"Idempotency-Key": "abc"})
    response = await post_order(running, order_body(product["id"], 1), **{"Idempotency-Key": "abc"})
    await error_of(response, 409, "idempotency_key_reused")


async def test_orders_are_listed_by_product_and_by_flag(running: Running) -> None:
    chair = await running.create_product(name="Chair")
    desk = await running.create_product(name="Desk")
    one = await json_of(await post_order(running, order_body(chair["id"])))
    two = await json_of(await post_order(running, order_body(desk["id"])))
    by_product = await running.order.get("/api/v1/orders", params={"productId": chair["id"]})
    assert by_product.status == 200
    assert [o["id"] for o in (await json_of(by_product))["items"]] == [one["id"]]
    await running.order_service.orders().add_flag(two["id"], OrderFlag.PRICE_REVIEW)
    by_flag = await json_of(await running.order.get("/api/v1/orders", params={"flag": "PRICE_REVIEW"}))
    assert [o["id"] for o in by_flag["items"]] == [two["id"]]
    both = await json_of(
        await running.order.get("/api/v1/orders", params={"flag": "PRICE_REVIEW", "productId": chair["id"]})
    )
    assert both == {"items": []}
    recent = await json_of(await running.order.get("/api/v1/orders"))
    assert [o["id"] for o in recent["items"]] == [one["id"], two["id"]]


@pytest.mark.parametrize(
    "query",
    [
        {"flag": "NOPE"},
        {"productId": ""},
        {"productId": "x" * 129},
        {"limit": "0"},
        {"limit": "abc"},
        {"limit": "²"},
        {"limit": "9" * 5000},
        {"colour": "red"},
    ],
)
async def test_a_bad_list_query_is_400(running: Running, query: dict[str, str]) -> None:
    error = await error_of(await running.order.get("/api/v1/orders", params=query), 400, "invalid_request")
    assert error["details"]["field"] == next(iter(query))
    check_invalid_request(error)


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("flag=PRICE_REVIEW&flag=DISCONTINUED_PRODUCT", "flag"),
        ("flag=PRICE_REVIEW&flag=PRICE_REVIEW", "flag"),
        ("productId=a&productId=b", "productId"),
        ("limit=5&limit=10", "limit"),
        ("limit=5&productId=a&limit=5", "limit"),
    ],
)
async def test_a_repeated_list_query_parameter_is_400_naming_it(
    running: Running, query: str, name: str
) -> None:
    """The first value used to win silently (black-box audit): a filter the client meant was dropped."""
    error = await error_of(await running.order.get(f"/api/v1/orders?{query}"), 400, "invalid_request")
    assert error["details"]["field"] == name
    assert error["message"] == f"{name} must be given at most once"
    check_invalid_request(error)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/orders/{}"), ("POST", "/api/v1/orders/{}/pricing-validation")],
)
async def test_an_order_id_over_128_characters_is_400_naming_the_path_parameter(
    running: Running, method: str, path: str
) -> None:
    """As the Product Service answers for a product id; it was a 404 echoing all 300 characters."""
    long_id = "x" * 300
    response = await running.order.request(method, path.format(long_id))
    error = await error_of(response, 400, "invalid_request")
    assert error["details"]["field"] == "id"
    assert error["message"] == "id must be a non-empty string of at most 128 characters"
    check_invalid_request(error)
    assert "x" * 129 not in await response.text()
    at_most = await running.order.request(method, path.format("x" * 128))
    assert (await error_of(at_most, 404, "order_not_found"))["message"] == f"Order {'x' * 128} was not found"


async def test_an_unknown_query_parameter_is_named_by_its_start_only(running: Running) -> None:
    response = await running.order.get(f"/api/v1/orders?{'q' * 300}=1")
    error = await error_of(response, 400, "invalid_request")
    assert "q" * 129 not in await response.text()
    assert error["details"]["field"] == "q" * 64 + "..."
    check_invalid_request(error)


async def test_pricing_validation_reports_a_price_rise_and_flags_review(running: Running) -> None:
    product = await running.create_product(currentPrice=Decimal("100.00"), basePrice=Decimal("100.00"))
    order = await json_of(await post_order(running, order_body(product["id"], 2)))
    patched = await running.product.patch(
        f"/api/v1/products/{product['id']}", data=dumps({"currentPrice": Decimal("120.00")}), headers=JSON
    )
    assert patched.status == 200
    response = await running.order.post(f"/api/v1/orders/{order['id']}/pricing-validation")
    assert response.status == 200
    assert await json_of(response) == {
        "hasDiscrepancies": True,
        "discrepancies": [
            {
                "productId": product["id"],
                "orderPrice": Decimal("100.00"),
                "currentPrice": Decimal("120.00"),
                "difference": Decimal("16.6667"),
            }
        ],
        "totalDifference": Decimal("40.00"),
        "requiresReview": True,
    }
    flagged = await json_of(await running.order.get(f"/api/v1/orders/{order['id']}"))
    assert flagged["flags"] == ["PRICE_REVIEW"]


async def test_pricing_validation_without_a_change_is_clean(running: Running) -> None:
    product = await running.create_product()
    order = await json_of(await post_order(running, order_body(product["id"])))
    response = await running.order.post(f"/api/v1/orders/{order['id']}/pricing-validation")
    assert await json_of(response) == {
        "hasDiscrepancies": False,
        "discrepancies": [],
        "totalDifference": Decimal("0.00"),
        "requiresReview": False,
    }
    assert response.headers["X-Price-Source"] == "product-service"


async def test_pricing_validation_says_in_a_header_when_it_compared_with_the_cache(running: Running) -> None:
    product = await running.create_product()
    order = await json_of(await post_order(running, order_body(product["id"])))
    await running.stop_product_service()
    response = await running.order.post(f"/api/v1/orders/{order['id']}/pricing-validation")
    assert (await json_of(response))["hasDiscrepancies"] is False
    assert response.headers["X-Price-Source"] == "cache"


async def test_pricing_validation_of_an_unknown_order_is_404(running: Running) -> None:
    await error_of(await running.order.post("/api/v1/orders/nope/pricing-validation"), 404, "order_not_found")


async def test_pricing_validation_with_nothing_to_compare_against_is_503(running: Running) -> None:
    product = await running.create_product()
    order = await json_of(await post_order(running, order_body(product["id"])))
    running.order_service.cache().outage.down = True
    await running.stop_product_service()
    response = await running.order.post(f"/api/v1/orders/{order['id']}/pricing-validation")
    await error_of(response, 503, "product_service_unavailable")


async def test_a_price_change_event_flags_open_orders_for_review(running: Running) -> None:
    product = await running.create_product(currentPrice=Decimal("100.00"))
    order = await json_of(await post_order(running, order_body(product["id"])))
    await running.product.patch(
        f"/api/v1/products/{product['id']}", data=dumps({"currentPrice": Decimal("150.00")}), headers=JSON
    )

    async def flagged() -> bool:
        body = await json_of(await running.order.get(f"/api/v1/orders/{order['id']}"))
        return bool(body["flags"] == ["PRICE_REVIEW"])

    await eventually(flagged)


async def test_a_discontinued_event_flags_orders_holding_the_product(running: Running) -> None:
    product = await running.create_product()
    order = await json_of(await post_order(running, order_body(product["id"])))
    await running.product.patch(
        f"/api/v1/products/{product['id']}", data=dumps({"status": "DISCONTINUED"}), headers=JSON
    )

    async def flagged() -> bool:
        listed = await json_of(
            await running.order.get("/api/v1/orders", params={"flag": "DISCONTINUED_PRODUCT"})
        )
        return [o["id"] for o in listed["items"]] == [order["id"]]

    await eventually(flagged)


async def test_an_order_reserves_its_stock_at_the_product_service(running: Running) -> None:
    product = await running.create_product(quantityAvailable=12)
    await post_order(running, order_body(product["id"], 5))

    async def reserved() -> bool:
        body = await json_of(await running.product.get(f"/api/v1/products/{product['id']}"))
        return bool(body["quantityAvailable"] == 7)

    await eventually(reserved)


# --- admin routes -------------------------------------------------------------------------------

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_admin_refresh_without_a_token_is_401(running: Running) -> None:
    response = await running.order.post("/admin/refresh")
    await error_of(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    await error_of(await running.order.post("/admin/products/x/refresh"), 401, "unauthorized")
    await error_of(
        await running.order.post("/admin/refresh", headers={"Authorization": "Basic dTpw"}),
        401,
        "unauthorized",
    )


async def test_admin_refresh_with_a_wrong_token_is_403(running: Running) -> None:
    await error_of(
        await running.order.post("/admin/refresh", headers={"Authorization": "Bearer wrong"}),
        403,
        "forbidden",
    )


async def test_admin_refresh_with_the_token_is_202(running: Running) -> None:
    response = await running.order.post("/admin/refresh", headers=BEARER)
    assert response.status == 202
    assert await json_of(response) == {"status": "started"}


async def test_admin_routes_are_403_when_no_token_is_configured() -> None:
    services = await start(attrs.evolve(FAST, admin_token=None))
    try:
        response = await services.order.post("/admin/refresh", headers=BEARER)
        error = await error_of(response, 403, "admin_disabled")
        assert "ADMIN_TOKEN" in error["message"]
    finally:
        await stop(services)


async def test_product_refresh_answers_over_events(running: Running) -> None:
    product = await running.create_product()
    response = await running.order.post(f"/admin/products/{product['id']}/refresh", headers=BEARER)
    body = await json_of(response)
    assert response.status == 200, body
    assert body["source"] == "event"
    assert body["product"] == product
    assert isinstance(body["elapsedMs"], int | float | Decimal)
    assert len(running.order_service.pending()) == 0


async def test_product_refresh_of_an_unknown_product_is_404(running: Running) -> None:
    response = await running.order.post("/admin/products/nope/refresh", headers=BEARER)
    await error_of(response, 404, "product_not_found")


async def test_product_refresh_without_a_responder_falls_back_to_http_then_cache() -> None:
    services = await start(attrs.evolve(FAST, async_request_timeout_ms=50), shared_broker=False)
    try:
        product = await services.create_product()
        response = await services.order.post(f"/admin/products/{product['id']}/refresh", headers=BEARER)
        body = await json_of(response)
        assert (response.status, body["source"]) == (200, "http")
        await services.stop_product_service()
        response = await services.order.post(f"/admin/products/{product['id']}/refresh", headers=BEARER)
        body = await json_of(response)
        assert (response.status, body["source"]) == (200, "cache")
        response = await services.order.post("/admin/products/never-seen/refresh", headers=BEARER)
        await error_of(response, 503, "product_service_unavailable")
    finally:
        await stop(services)


# --- operations ---------------------------------------------------------------------------------


async def test_health_reports_ok_with_the_breaker_state(running: Running) -> None:
    response = await running.order.get("/health")
    body = await json_of(response)
    assert response.status == 200
    assert body["status"] == "ok"
    assert body["checks"]["productService"]["circuitBreaker"] == "closed"


async def test_ready_is_200_once_consumers_are_subscribed(running: Running) -> None:
    response = await running.order.get("/ready")
    assert response.status == 200
    assert (await json_of(response))["status"] == "ready"


async def test_ready_is_503_naming_a_dependency_that_is_down(running: Running) -> None:
    async def redis_down() -> dict[str, Any]:
        return {"status": "down"}

    running.order.app[READINESS].checks["redis"] = redis_down
    error = await error_of(await running.order.get("/ready"), 503, "not_ready")
    assert error["details"]["down"] == ["redis"]
    assert "redis" in error["message"]


async def test_metrics_are_prometheus_text(running: Running) -> None:
    product = await running.create_product()
    await post_order(running, order_body(product["id"]))
    response = await running.order.get("/metrics")
    text = await response.text()
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert 'http_requests_total{route="/api/v1/orders",status="201"} 1.0' in text
    assert 'circuit_breaker_state{name="product-service"} 0.0' in text
    assert "product_service_requests_total" in text


async def test_openapi_describes_every_route(running: Running) -> None:
    response = await running.order.get("/openapi.json")
    document = await response.json()
    validate(document)
    assert {
        "/api/v1/orders",
        "/api/v1/orders/{id}",
        "/api/v1/orders/{id}/pricing-validation",
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
        "/admin/refresh",
        "/admin/products/{id}/refresh",
    } <= set(document["paths"])


async def test_an_unknown_route_is_404_with_the_error_body(running: Running) -> None:
    await error_of(await running.order.get("/api/v1/nothing-here"), 404, "not_found")


async def test_a_wrong_method_is_405_with_the_error_body(running: Running) -> None:
    await error_of(await running.order.delete("/api/v1/orders"), 405, "method_not_allowed")


async def test_health_names_an_open_breaker_open() -> None:
    services = await start(attrs.evolve(FAST, breaker_failure_threshold=1, retry_max_attempts=1))
    try:
        await services.stop_product_service()
        await post_order(services, order_body("never-seen"))
        body = await json_of(await services.order.get("/health"))
    finally:
        await stop(services)
    assert body["status"] == "degraded"
    assert body["checks"]["productService"]["circuitBreaker"] == "open"


async def test_the_breaker_gauge_turns_half_open_when_its_timeout_passes_without_a_call() -> None:
    """/metrics says what /health says: no call is needed for the breaker to be half-open."""
    settings = attrs.evolve(
        FAST, breaker_failure_threshold=1, retry_max_attempts=1, breaker_reset_timeout_s=0.3
    )
    services = await start(settings)
    try:
        await services.stop_product_service()
        await post_order(services, order_body("never-seen"))
        opened = await (await services.order.get("/metrics")).text()
        await asyncio.sleep(0.4)
        later = await (await services.order.get("/metrics")).text()
        health = await json_of(await services.order.get("/health"))
    finally:
        await stop(services)
    assert 'circuit_breaker_state{name="product-service"} 2.0' in opened
    assert 'circuit_breaker_state{name="product-service"} 1.0' in later
    assert health["checks"]["productService"]["circuitBreaker"] == "half-open"
