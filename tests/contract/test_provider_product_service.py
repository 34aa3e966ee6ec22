"""The reference Product Service honours pacts/OrderService-ProductService.json, HTTP and events.

One reference Product Service (in-memory adapters) is served on a free port: the provider states
set up its catalog, the HTTP interactions are replayed against it, and each event is produced by
its own use cases (Catalog, AnswerDetailsRequests) and taken from its broker as the outbox relay
and the publisher encoded it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import attrs
import pytest
from pact import Verifier
from pact.types import Message

from adapters.wire import event_json, http_json
from domain.events import (
    OrderCreated,
    OrderCreatedItem,
    ProductBatchDetailsRequested,
    ProductDetailsRequested,
)
from domain.products import ProductPatch, ProductStatus
from entrypoints.http import product_api

from .verification import ORDER_SERVICE, PRODUCT_SERVICE, pact_file, verify_fails, verify_passes
from .worlds import CHAIR, Producers, ServedProductService

pytestmark = pytest.mark.contract

HTTP_INTERACTIONS = {
    "a request for an existing product",
    "a request for an unknown product",
    "a batch request where one id is unknown",
}
AS_NEW = ProductPatch(
    name=CHAIR.name,
    base_price=CHAIR.base_price,
    current_price=CHAIR.current_price,
    status=CHAIR.status,
    quantity_available=CHAIR.quantity_available,
)


class ProductServiceProvider:
    """Provider states and event producers, all acting on one served reference Product Service."""

    def __init__(self, served: ServedProductService) -> None:
        self.served = served
        self.catalog = served.service.catalog()
        self.answer = served.service.answer()
        self.problems: list[str] = []
        self.products: list[str] = []
        """The products the current interaction's states set up, in order."""

    def state(self, state: str, action: str, parameters: dict[str, Any] | None) -> None:
        """Never raises: a failing state handler costs ~2 minutes of FFI retries."""
        try:
            self._state(state, action, parameters or {})
        except Exception as error:
            self.problems.append(f"state {state!r} ({action}, {parameters}): {error!r}")

    def _state(self, state: str, action: str, parameters: dict[str, Any]) -> None:
        if action == "teardown":
            self.products.clear()
        elif state == "a product exists":
            self.served.call(self._product_as_new(str(parameters["id"])))
            self.products.append(str(parameters["id"]))
        elif state == "no product exists":
            if self.served.call(self.catalog.store.get(str(parameters["id"]))) is not None:
                raise LookupError("an earlier state created it: pick another id")
        elif state:
            raise LookupError("no such provider state here")

    async def _product_as_new(self, product_id: str) -> None:
        if await self.catalog.store.get(product_id) is None:
            await self.catalog.create(attrs.evolve(CHAIR, id=product_id))
        else:
            await self.catalog.change(product_id, AS_NEW)

    def producers(self) -> Producers:
        """What the Product Service publishes, by the description of the interaction that expects it."""
        return {
            description: self._recording(description, produce)
            for description, produce in {
                "a product.created event": self._created,
                "a product.updated event": lambda: self._changed("product.updated", name="Chair Pro"),
                "a product.price_changed event": lambda: self._changed(
                    "product.price_changed", current_price=Decimal("279.99")
                ),
                "a product.discontinued event": lambda: self._changed(
                    "product.discontinued", status=ProductStatus.DISCONTINUED
                ),
                "a product.availability_changed event": self._reserved,
                "a product.details_provided reply": self._details,
                "a product.batch_details_provided reply": self._batch_details,
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

    def _created(self) -> Message:
        return self.served.produce("product.created", self.catalog.create(CHAIR))

    def _changed(self, subject: str, **patch: Any) -> Message:
        return self.served.produce(subject, self.catalog.change(self.products[0], ProductPatch(**patch)))

    def _reserved(self) -> Message:
        order = OrderCreated(
            order_id=str(uuid.uuid4()),
            user_id="u-1",
            items=(OrderCreatedItem(self.products[0], None, 2, Decimal("249.99")),),
            total_amount=Decimal("499.98"),
            timestamp=datetime.now(UTC),
        )
        return self.served.produce("product.availability_changed", self.catalog.reserve_for_order(order))

    def _details(self) -> Message:
        request_id = str(uuid.uuid4())
        request = ProductDetailsRequested(self.products[0], request_id, "product.details_provided.order-1")
        return self.served.produce("product.details_provided.order-1", self.answer.one(request, request_id))

    def _batch_details(self) -> Message:
        request_id = str(uuid.uuid4())
        request = ProductBatchDetailsRequested(
            product_ids=(*self.products, "no-such-product"),
            request_id=request_id,
            callback_event="product.batch_details_provided",
        )
        return self.served.produce("product.batch_details_provided", self.answer.batch(request, request_id))


@pytest.fixture
def provider(served_product_service: ServedProductService) -> ProductServiceProvider:
    return ProductServiceProvider(served_product_service)


@pytest.fixture
def verifier(provider: ProductServiceProvider) -> Verifier:
    producers = provider.producers()
    pact = pact_file(ORDER_SERVICE, PRODUCT_SERVICE, HTTP_INTERACTIONS | set(producers))
    return (
        Verifier("ProductService", host="127.0.0.1")
        .add_transport(url=provider.served.url)
        .message_handler(producers)
        .add_source(pact)
        .state_handler(provider.state, teardown=True)
    )


def test_the_product_service_honours_every_interaction_the_order_service_expects(
    verifier: Verifier, provider: ProductServiceProvider
) -> None:
    verify_passes(verifier, provider.problems)


def test_a_product_without_base_price_fails_verification(
    verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    def without_base_price(product: Any) -> dict[str, Any]:
        wire = http_json.product_to_wire(product)
        del wire["basePrice"]
        return wire

    monkeypatch.setattr(product_api, "product_to_wire", without_base_price)

    failures = verify_fails(verifier)

    assert set(failures) == {"a request for an existing product", "a batch request where one id is unknown"}
    assert all("basePrice" in text for texts in failures.values() for text in texts), failures


def test_events_with_base_price_renamed_fail_verification(
    verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = event_json.envelope_to_wire

    def renamed(envelope: Any) -> dict[str, Any]:
        wire: dict[str, Any] = rename_key(original(envelope), "basePrice", "listPrice")
        return wire

    monkeypatch.setattr(event_json, "envelope_to_wire", renamed)

    failures = verify_fails(verifier)

    assert set(failures) == {
        "a product.created event",
        "a product.updated event",
        "a product.price_changed event",
        "a product.details_provided reply",
        "a product.batch_details_provided reply",
    }
    assert all("basePrice" in text for texts in failures.values() for text in texts), failures


def rename_key(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {(new if k == old else k): rename_key(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [rename_key(v, old, new) for v in value]
    return value
