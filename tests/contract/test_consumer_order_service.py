"""What the Order Service expects of the Product Service: its REST API and the events it consumes.

HTTP goes through the real HttpProductClient against Pact's mock server; every event goes through
the real EventConsumer and handlers (application code on in-memory adapters), and each test
asserts the effect. Writes pacts/OrderService-ProductService.json.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pact import Pact, match

from adapters.metrics import ServiceMetrics
from adapters.product_client import HttpProductClient, RetryPolicy
from domain.orders import OrderFlag
from domain.products import Product, ProductStatus

from .matchers import JSON, envelope, product_json
from .worlds import OrderWorld

pytestmark = pytest.mark.contract

SOURCE = "product-service"
CHAIR = "e8acc97f-c204-4c53-9c33-5d91a1061618"
DESK = "5f1c2a9e-7d3b-4f60-9a8e-2b6c1d0e9f47"
UNKNOWN = "0b9d7c34-0000-4000-8000-000000000000"
REQUEST_ID = "c4a1d2e3-5b6f-4a70-8c9d-0e1f2a3b4c5d"
REPLY_SUBJECT = "product.details_provided.contract"


def chair_at(version: int) -> Product:
    """The office chair as the Order Service last heard of it."""
    return Product(
        id=CHAIR,
        name="Ergonomic Office Chair",
        base_price=Decimal("249.99"),
        current_price=Decimal("249.99"),
        currency="USD",
        status=ProductStatus.ACTIVE,
        quantity_available=12,
        version=version,
        updated_at=datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
    )


# --- HTTP: GET /api/v1/products/{id}, POST /api/v1/products/batch ---------------------------


@asynccontextmanager
async def product_client(base_url: str) -> AsyncIterator[HttpProductClient]:
    """The Order Service's real HTTP adapter; one attempt, so a mismatch fails at once."""
    client = HttpProductClient(
        base_url=str(base_url),
        timeout_s=5.0,
        retry=RetryPolicy(max_attempts=1),
        failure_threshold=5,
        reset_timeout_s=30.0,
        metrics=ServiceMetrics(),
    )
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def test_an_existing_product_is_read_with_exact_prices(order_service_pact: Pact) -> None:
    (
        order_service_pact.upon_receiving("a request for an existing product")
        .given("a product exists", id=CHAIR)
        .with_request("GET", f"/api/v1/products/{CHAIR}")
        .with_header("Accept", JSON)
        .will_respond_with(200)
        .with_body(product_json(CHAIR), content_type=JSON)
    )

    with order_service_pact.serve(addr="127.0.0.1") as server:
        async with product_client(server.url) as client:
            product = await client.get_product(CHAIR)

    assert product is not None
    assert (product.id, product.status, product.version) == (CHAIR, ProductStatus.ACTIVE, 3)
    assert (product.base_price, product.current_price) == (Decimal("249.99"), Decimal("249.99"))


async def test_an_unknown_product_reads_as_none(order_service_pact: Pact) -> None:
    (
        order_service_pact.upon_receiving("a request for an unknown product")
        .given("no product exists", id=UNKNOWN)
        .with_request("GET", f"/api/v1/products/{UNKNOWN}")
        .with_header("Accept", JSON)
        .will_respond_with(404)
    )

    with order_service_pact.serve(addr="127.0.0.1") as server:
        async with product_client(server.url) as client:
            product = await client.get_product(UNKNOWN)

    assert product is None


async def test_a_batch_lookup_returns_the_products_found_and_leaves_unknown_ids_out(
    order_service_pact: Pact,
) -> None:
    (
        order_service_pact.upon_receiving("a batch request where one id is unknown")
        .given("a product exists", id=DESK)
        .given("a product exists", id=CHAIR)
        .given("no product exists", id=UNKNOWN)
        .with_request("POST", "/api/v1/products/batch")
        .with_header("Accept", JSON)
        # the client asks for each id once, sorted
        .with_body({"ids": [UNKNOWN, DESK, CHAIR]}, content_type=JSON)
        .will_respond_with(200)
        # exactly the two found, in the order asked; the unknown id is left out
        .with_body(
            [product_json(DESK, name="Standing Desk"), product_json(CHAIR)],
            content_type=JSON,
        )
    )

    with order_service_pact.serve(addr="127.0.0.1") as server:
        async with product_client(server.url) as client:
            found = await client.get_products([CHAIR, UNKNOWN, DESK, CHAIR])

    assert sorted(found) == sorted([CHAIR, DESK])
    assert found[DESK].name == "Standing Desk"
    assert found[CHAIR].current_price == Decimal("249.99")


# --- events the Order Service consumes -------------------------------------------------------


def test_product_created_puts_the_product_in_the_cache(
    order_service_pact: Pact, order_world: OrderWorld
) -> None:
    (
        order_service_pact.upon_receiving("a product.created event", "Async")
        .with_body(
            envelope(
                "product.created",
                SOURCE,
                {"productId": match.str(CHAIR), "product": product_json(match.str(CHAIR), version=1)},
            ),
            content_type=JSON,
        )
        .with_metadata({"subject": "product.created"})
    )

    order_world.consume(order_service_pact)

    cached = order_world.cached(CHAIR)
    assert (cached.version, cached.current_price) == (1, Decimal("249.99"))


def test_product_updated_replaces_an_older_cached_snapshot(
    order_service_pact: Pact, order_world: OrderWorld
) -> None:
    (
        order_service_pact.upon_receiving("a product.updated event", "Async")
        .given("a product exists", id=CHAIR)
        .with_body(
            envelope(
                "product.updated",
                SOURCE,
                {
                    "productId": match.str(CHAIR),
                    "product": product_json(match.str(CHAIR), name="Ergonomic Office Chair Pro"),
                },
            ),
            content_type=JSON,
        )
        .with_metadata({"subject": "product.updated"})
    )
    order_world.place_order(chair_at(version=2), quantity=1)

    order_world.consume(order_service_pact)

    cached = order_world.cached(CHAIR)
    assert (cached.version, cached.name) == (3, "Ergonomic Office Chair Pro")


def test_price_changed_updates_the_cache_and_sends_affected_orders_to_review(
    order_service_pact: Pact, order_world: OrderWorld
) -> None:
    (
        order_service_pact.upon_receiving("a product.price_changed event", "Async")
        .given("a product exists", id=CHAIR)
        .with_body(
            envelope(
                "product.price_changed",
                SOURCE,
                {
                    "productId": match.str(CHAIR),
                    "oldPrice": match.number(249.99),
                    "newPrice": match.number(279.99),
                    "basePrice": match.number(249.99),
                    "version": match.int(3),
                },
            ),
            content_type=JSON,
        )
        .with_metadata({"subject": "product.price_changed"})
    )
    order = order_world.place_order(chair_at(version=2), quantity=2)

    order_world.consume(order_service_pact)

    cached = order_world.cached(CHAIR)
    assert (cached.version, cached.current_price) == (3, Decimal("279.99"))
    assert OrderFlag.PRICE_REVIEW in order_world.order(order.id).flags


def test_discontinued_flags_every_order_holding_the_product(
    order_service_pact: Pact, order_world: OrderWorld
) -> None:
    (
        order_service_pact.upon_receiving("a product.discontinued event", "Async")
        .given("a product exists", id=CHAIR)
        .with_body(
            envelope(
                "product.discontinued", SOURCE, {"productId": match.str(CHAIR), "version": match.int(3)}
            ),
            content_type=JSON,
        )
        .with_metadata({"subject": "product.discontinued"})
    )
    order = order_world.place_order(chair_at(version=2), quantity=1)

    order_world.consume(order_service_pact)

    assert OrderFlag.DISCONTINUED_PRODUCT in order_world.order(order.id).flags
    cached = order_world.cached(CHAIR)
    assert (cached.version, cached.status) == (3, ProductStatus.DISCONTINUED)


def test_availability_changed_updates_the_cached_stock(
    order_service_pact: Pact, order_world: OrderWorld
) -> None:
    (
        order_service_pact.upon_receiving("a product.availability_changed event", "Async")
        .given("a product exists", id=CHAIR)
        .with_body(
            envelope(
                "product.availability_changed",
                SOURCE,
                {
                    "productId": match.str(CHAIR),
                    "available": match.bool(True),
                    "quantityAvailable": match.int(10),
                    "version": match.int(3),
                },
            ),
            content_type=JSON,
        )
        .with_metadata({"subject": "product.availability_changed"})
    )
    order_world.place_order(chair_at(version=2), quantity=1)

    order_world.consume(order_service_pact)

    cached = order_world.cached(CHAIR)
    assert (cached.version, cached.quantity_available) == (3, 10)


def test_details_provided_answers_the_waiting_request_and_fills_the_cache(
    order_service_pact: Pact, order_world: OrderWorld
) -> None:
    (
        order_service_pact.upon_receiving("a product.details_provided reply", "Async")
        .given("a product exists", id=CHAIR)
        .with_body(
            envelope(
                "product.details_provided",
                SOURCE,
                {
                    "productId": match.str(CHAIR),
                    "requestId": match.str(REQUEST_ID),
                    "productDetails": product_json(match.str(CHAIR)),
                },
            ),
            content_type=JSON,
        )
        # the reply comes on the subject the request named: this instance's own
        .with_metadata({"subject": match.regex(REPLY_SUBJECT, regex=r"^product\.details_provided\.[\w-]+$")})
    )
    waiter = order_world.open_request(REQUEST_ID)

    order_world.consume(order_service_pact)

    assert waiter.done(), "the reply did not reach the waiting request"
    assert list(waiter.result()) == [order_world.cached(CHAIR)]
    assert order_world.cached(CHAIR).version == 3


def test_batch_details_provided_answers_the_waiting_request_and_fills_the_cache(
    order_service_pact: Pact, order_world: OrderWorld
) -> None:
    (
        order_service_pact.upon_receiving("a product.batch_details_provided reply", "Async")
        .given("a product exists", id=CHAIR)
        .with_body(
            envelope(
                "product.batch_details_provided",
                SOURCE,
                {
                    "productIds": match.each_like(match.str(CHAIR), min=1),
                    "requestId": match.str(REQUEST_ID),
                    "products": match.each_like(product_json(match.str(CHAIR)), min=1),
                },
            ),
            content_type=JSON,
        )
        .with_metadata({"subject": "product.batch_details_provided"})
    )
    waiter = order_world.open_request(REQUEST_ID)

    order_world.consume(order_service_pact)

    assert waiter.done(), "the reply did not reach the waiting request"
    assert list(waiter.result()) == [order_world.cached(CHAIR)]
    assert order_world.cached(CHAIR).version == 3
