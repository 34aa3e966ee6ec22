"""Use cases of the reference Product Service: its catalog, stock reservation and event replies."""

from __future__ import annotations

import asyncio
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
        for _ in range(MAX_OPTIMISTIC_ATTEMPTS):
            current = await self.store.get_many(list(self._wanted(order)))
            changes, outbox = self._plan(order, current)
            result = await self.store.commit(changes, outbox, reservation_for=order.order_id)
            if result is not CommitResult.CONFLICT:
                return result is CommitResult.COMMITTED
        raise StoreUnavailable(f"Stock for order {order.order_id} kept changing; will retry")

    async def reserve_for_orders(self, orders: Sequence[OrderCreated]) -> bool:
        """Several orders' reservations from one read of their products: each order is planned
        on top of the one before it, and the commits are sent together (on Redis they leave in
        one write and run in order). An order whose commit conflicts (something changed its
        products in between, or an order before it was reserved already) is reserved again on
        its own. True when any was reserved now; a failure is raised once every commit is done
        (the batch is retried, and what was reserved is then found reserved)."""
        product_ids = list(dict.fromkeys(pid for order in orders for pid in self._wanted(order)))
        current = dict(await self.store.get_many(product_ids))
        plans = [(order, *self._plan(order, current)) for order in orders]
        results = await asyncio.gather(
            *(
                self.store.commit(changes, outbox, reservation_for=order.order_id)
                for order, changes, outbox in plans
            ),
            return_exceptions=True,
        )
        reserved = False
        failure: BaseException | None = None
        for (order, _, _), result in zip(plans, results, strict=True):
            if isinstance(result, BaseException):
                failure = failure or result
            elif result is CommitResult.CONFLICT:
                reserved |= await self.reserve_for_order(order)
            else:
                reserved |= result is CommitResult.COMMITTED
        if failure is not None:
            raise failure
        return reserved

    @staticmethod
    def _wanted(order: OrderCreated) -> dict[str, int]:
        wanted: dict[str, int] = {}
        for item in order.items:
            wanted[item.product_id] = wanted.get(item.product_id, 0) + item.quantity
        return wanted

    def _plan(
        self, order: OrderCreated, current: dict[str, Product]
    ) -> tuple[list[ProductChange], list[Envelope]]:
        """The order's reservation over `current`, which it updates (the next order's is planned
        on top of this one's)."""
        changes: list[ProductChange] = []
        outbox: list[Envelope] = []
        for product_id, quantity in self._wanted(order).items():
            before = current.get(product_id)
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
                current[product_id] = after
                outbox += [
                    self.envelopes.wrap(e, correlation_id=order.order_id, at=after.updated_at) for e in events
                ]
        return changes, outbox


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
