"""What the Product Service expects of the Order Service: the events it consumes.

Each event goes through the real EventConsumer and handlers (the Catalog and AnswerDetailsRequests
use cases on in-memory adapters), and each test asserts the effect.
Writes pacts/ProductService-OrderService.json.
"""

from __future__ import annotations

import pytest
from pact import Pact, match

from domain.events import AvailabilityChanged, ProductBatchDetailsProvided, ProductDetailsProvided

from .matchers import JSON, envelope, timestamp
from .worlds import ProductWorld

pytestmark = pytest.mark.contract

SOURCE = "order-service"
CHAIR = "e8acc97f-c204-4c53-9c33-5d91a1061618"
REQUEST_ID = "c4a1d2e3-5b6f-4a70-8c9d-0e1f2a3b4c5d"
CALLBACK = r"^product\.[\w-]+(\.[\w-]+)*$"
"""An answer goes to the subject the request names; the Product Service can publish under `product.`."""


def test_order_created_reserves_the_ordered_stock(
    product_service_pact: Pact, product_world: ProductWorld
) -> None:
    (
        product_service_pact.upon_receiving("an order.created event", "Async")
        .with_body(
            envelope(
                "order.created",
                SOURCE,
                {
                    "orderId": match.str("7c9e6679-7425-40de-944b-e07fc1f90ae7"),
                    "userId": match.str("u-1"),
                    "items": match.each_like(
                        {
                            "productId": match.str(CHAIR),
                            # present and null for an item without a variant
                            "variantId": None,
                            "quantity": match.int(2),
                            "unitPrice": match.number(249.99),
                        },
                        min=1,
                    ),
                    "totalAmount": match.number(499.98),
                    "timestamp": timestamp(),
                },
            ),
            content_type=JSON,
        )
        .with_metadata({"subject": "order.created"})
    )
    product_world.add_product(CHAIR, quantity_available=12)

    product_world.consume(product_service_pact)

    assert product_world.product(CHAIR).quantity_available == 10
    [changed] = product_world.events("product.availability_changed")
    assert isinstance(changed.data, AvailabilityChanged)
    assert (changed.data.product_id, changed.data.quantity_available) == (CHAIR, 10)


def test_details_requested_is_answered_on_the_callback_subject(
    product_service_pact: Pact, product_world: ProductWorld
) -> None:
    (
        product_service_pact.upon_receiving("a product.details_requested event", "Async")
        .with_body(
            envelope(
                "product.details_requested",
                SOURCE,
                {
                    "productId": match.str(CHAIR),
                    "requestId": match.str(REQUEST_ID),
                    "callbackEvent": match.regex("product.details_provided.order-1", regex=CALLBACK),
                },
            ),
            content_type=JSON,
        )
        .with_metadata({"subject": "product.details_requested"})
    )
    product_world.add_product(CHAIR)

    product_world.consume(product_service_pact)

    [reply] = product_world.events("product.details_provided.order-1")
    assert isinstance(reply.data, ProductDetailsProvided)
    assert reply.data.request_id == REQUEST_ID
    assert reply.data.product_details is not None
    assert reply.data.product_details.id == CHAIR


def test_batch_details_requested_is_answered_with_the_products_found(
    product_service_pact: Pact, product_world: ProductWorld
) -> None:
    (
        product_service_pact.upon_receiving("a product.batch_details_requested event", "Async")
        .with_body(
            envelope(
                "product.batch_details_requested",
                SOURCE,
                {
                    "productIds": match.each_like(match.str(CHAIR), min=1),
                    "requestId": match.str(REQUEST_ID),
                    "callbackEvent": match.regex("product.batch_details_provided", regex=CALLBACK),
                },
            ),
            content_type=JSON,
        )
        .with_metadata({"subject": "product.batch_details_requested"})
    )
    product_world.add_product(CHAIR)

    product_world.consume(product_service_pact)

    [reply] = product_world.events("product.batch_details_provided")
    assert isinstance(reply.data, ProductBatchDetailsProvided)
    assert reply.data.request_id == REQUEST_ID
    assert [p.id for p in reply.data.products] == [CHAIR]
