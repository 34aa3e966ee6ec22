"""Use cases of the reference Product Service: its catalog, stock reservation and event replies."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from decimal import Decimal

import attrs

from application.envelopes import EnvelopeFactory
from application.ports import (
    Clock,
    CommitResult,
    EventPublisher,
    IdGenerator,
    ProductChange,
    ProductStore,
)
from domain.catalog import change_product, reserve_stock
from domain.errors import ProductAlreadyExists, ProductNotFound, StoreUnavailable
from domain.events import (
    Envelope,
    EventData,
    OrderCreated,
    ProductBatchDetailsProvided,
    ProductBatchDetailsRequested,
    ProductCreated,
    ProductDetailsProvided,
    ProductDetailsRequested,
)
from domain.products import Product, ProductPatch, ProductStatus

log = logging.getLogger(__name__)

MAX_OPTIMISTIC_ATTEMPTS = 20
REPLY_IDS = uuid.UUID("6f1d3c52-5b7e-4c8e-9a51-2f0f6a4d7c31")
"""The namespace of reply ids: uuid5(REPLY_IDS, the request's envelope id)."""


def reply_id_for(request_event_id: str) -> str:
    """One id per request: a request answered twice (fast path and durable consumer, or a
    redelivery) publishes the same reply twice, and JetStream's duplicate window stores it once."""
    return str(uuid.uuid5(REPLY_IDS, request_event_id))


@attrs.frozen
class NewProduct:
    name: str
    base_price: Decimal
    current_price: Decimal
    currency: str
    status: ProductStatus
    quantity_available: int
    id: str | None = None


@attrs.frozen
class Catalog:
    """Create, change and read products; every change is stored together with its events."""

    store: ProductStore
    envelopes: EnvelopeFactory
    clock: Clock
    ids: IdGenerator

    async def get(self, product_id: str) -> Product:
        product = await self.store.get(product_id)
        if product is None:
            raise ProductNotFound(product_id)
        return product

    async def get_many(self, product_ids: Sequence[str]) -> list[Product]:
        found = await self.store.get_many(list(dict.fromkeys(product_ids)))
        return [found[pid] for pid in dict.fromkeys(product_ids) if pid in found]

    async def create(self, new: NewProduct) -> Product:
        product = Product(
            id=new.id or self.ids.new_id(),
            name=new.name,
            base_price=new.base_price,
            current_price=new.current_price,
            currency=new.currency,
            status=new.status,
            quantity_available=new.quantity_available,
            version=1,
            updated_at=self.clock.now(),
        )
        event = self.envelopes.wrap(ProductCreated(product.id, product), at=product.updated_at)
        if not await self.store.create(product, [event]):
            raise ProductAlreadyExists(product.id)
        return product

    async def change(self, product_id: str, patch: ProductPatch) -> Product:
        for _ in range(MAX_OPTIMISTIC_ATTEMPTS):
            before = await self.get(product_id)
            after, events = change_product(before, patch, self.clock.now())
            if not events:
                return before
            outbox = [self.envelopes.wrap(e, correlation_id=product_id, at=after.updated_at) for e in events]
            result = await self.store.commit([ProductChange(before, after)], outbox)
            if result is CommitResult.COMMITTED:
                return after
        raise StoreUnavailable(f"Product {product_id} kept changing under this update; try again")

    async def reserve_for_order(self, order: OrderCreated) -> bool:
        """Reserve the ordered quantities once per order; False when already reserved."""
        wanted: dict[str, int] = {}
        for item in order.items:
            wanted[item.product_id] = wanted.get(item.product_id, 0) + item.quantity
        for _ in range(MAX_OPTIMISTIC_ATTEMPTS):
            found = await self.store.get_many(list(wanted))
            changes, outbox = [], []
            for product_id, quantity in wanted.items():
                before = found.get(product_id)
                if before is None:
                    log.warning("order %s holds unknown product %s", order.order_id, product_id)
                    continue
                if quantity > before.quantity_available:
                    log.warning(
                        "order %s oversells product %s: %s wanted, %s left",
                        order.order_id,
                        product_id,
                        quantity,
                        before.quantity_available,
                    )
                after, events = reserve_stock(before, quantity, self.clock.now())
                if events:
                    changes.append(ProductChange(before, after))
                    outbox += [
                        self.envelopes.wrap(e, correlation_id=order.order_id, at=after.updated_at)
                        for e in events
                    ]
            result = await self.store.commit(changes, outbox, reservation_for=order.order_id)
            if result is not CommitResult.CONFLICT:
                return result is CommitResult.COMMITTED
        raise StoreUnavailable(f"Stock for order {order.order_id} kept changing; will retry")


@attrs.frozen
class AnswerDetailsRequests:
    """Answers `*_details_requested` on the subject the request names."""

    catalog: Catalog
    publisher: EventPublisher
    envelopes: EnvelopeFactory

    async def one(
        self, request: ProductDetailsRequested, correlation_id: str, in_reply_to: str | None = None
    ) -> None:
        """`in_reply_to`: the request's envelope id, from which the reply's id is derived."""
        found = await self.catalog.store.get(request.product_id)
        reply = ProductDetailsProvided(request.product_id, request.request_id, found)
        await self.publisher.publish(self._wrap(reply, correlation_id, in_reply_to), request.callback_event)

    async def batch(
        self, request: ProductBatchDetailsRequested, correlation_id: str, in_reply_to: str | None = None
    ) -> None:
        products = await self.catalog.get_many(request.product_ids)
        reply = ProductBatchDetailsProvided(request.product_ids, request.request_id, tuple(products))
        await self.publisher.publish(self._wrap(reply, correlation_id, in_reply_to), request.callback_event)

    def _wrap(self, reply: EventData, correlation_id: str, in_reply_to: str | None) -> Envelope:
        reply_id = reply_id_for(in_reply_to) if in_reply_to is not None else None
        return self.envelopes.wrap(reply, correlation_id=correlation_id, event_id=reply_id)
