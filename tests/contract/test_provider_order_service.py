"""The Order Service honours pacts/ProductService-OrderService.json: the events it publishes.

Each event is produced by the Order Service's own use cases on in-memory adapters
(CreateOrderHandler, RefreshProductNow, RefreshActiveProducts, wired by its container) and taken
from its broker as the outbox relay and the publisher encoded it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pact import Verifier
from pact.types import Message

from adapters.wire import event_json
from domain.products import Product, ProductStatus

from .verification import ORDER_SERVICE, PRODUCT_SERVICE, pact_file, verify_fails, verify_passes
from .worlds import OrderWorld, Producers

pytestmark = pytest.mark.contract

DESK = Product(
    id="5f1c2a9e-7d3b-4f60-9a8e-2b6c1d0e9f47",
    name="Standing Desk",
    base_price=Decimal("499.00"),
    current_price=Decimal("449.00"),
    currency="USD",
    status=ProductStatus.ACTIVE,
    quantity_available=5,
    version=4,
    updated_at=datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
)


class OrderServiceProducers:
    """What the Order Service publishes, each from a fresh Order Service on in-memory adapters."""

    def __init__(self, worlds: Callable[..., OrderWorld]) -> None:
        self.worlds = worlds
        self.problems: list[str] = []

    def by_description(self) -> Producers:
        return {
            description: self._recording(description, produce)
            for description, produce in {
                "an order.created event": self._order_created,
                "a product.details_requested event": self._details_requested,
                "a product.batch_details_requested event": self._batch_details_requested,
            }.items()
        }

    def _recording(self, description: str, produce: Callable[[], Message]) -> Callable[[], Message]:
        def producer() -> Message:
            try:
                return produce()
            except Exception as error:
                self.problems.append(f"producing {description!r}: {error!r}")
                raise

        return producer

    def _order_created(self) -> Message:
        world = self.worlds()
        world.place_order(DESK, quantity=2)
        return world.message("order.created")

    def _details_requested(self) -> Message:
        # nobody answers: the request goes out, times out at once and falls back to HTTP (a stub)
        world = self.worlds(async_request_timeout_ms=1)
        world.lookup.products[DESK.id] = DESK
        refreshed = world.run(world.service.refresh_product()(DESK.id))
        assert refreshed.source == "http"
        return world.message("product.details_requested")

    def _batch_details_requested(self) -> Message:
        world = self.worlds()
        world.run(world.service.cache().put(DESK))
        report = world.run(world.service.refresh_all()())
        assert report.batches == 1
        return world.message("product.batch_details_requested")


@pytest.fixture
def producers(order_worlds: Callable[..., OrderWorld]) -> OrderServiceProducers:
    return OrderServiceProducers(order_worlds)


@pytest.fixture
def verifier(producers: OrderServiceProducers) -> Verifier:
    by_description = producers.by_description()
    pact = pact_file(PRODUCT_SERVICE, ORDER_SERVICE, set(by_description))
    return Verifier("OrderService").message_handler(by_description).add_source(pact)


def test_the_order_service_publishes_every_event_the_product_service_expects(
    verifier: Verifier, producers: OrderServiceProducers
) -> None:
    verify_passes(verifier, producers.problems)


def test_an_order_created_item_without_unit_price_fails_verification(
    verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = event_json.envelope_to_wire

    def without_unit_price(envelope: Any) -> dict[str, Any]:
        wire = original(envelope)
        for item in wire["data"].get("items", []):
            del item["unitPrice"]
        return wire

    monkeypatch.setattr(event_json, "envelope_to_wire", without_unit_price)

    failures = verify_fails(verifier)

    assert set(failures) == {"an order.created event"}
    assert any("unitPrice" in text for text in failures["an order.created event"]), failures
