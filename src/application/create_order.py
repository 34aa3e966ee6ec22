"""Use case: price and accept an order, storing it with its order.created event in one step."""

from __future__ import annotations

import asyncio
import hashlib
import json

import attrs

from application.envelopes import EnvelopeFactory
from application.ports import Clock, IdempotencyRecord, IdGenerator, OrderStore
from application.product_fetching import ProductFetcher
from domain.errors import CacheFallbackUnavailable, IdempotencyConflict, StoreUnavailable
from domain.orders import Order, OrderLine, PriceSource, place_order


@attrs.frozen
class CreateOrder:
    user_id: str
    lines: tuple[OrderLine, ...]
    idempotency_key: str | None = None

    def fingerprint(self) -> str:
        """A digest of what was asked, so a reused Idempotency-Key with another body is refused."""
        canonical = json.dumps(
            [self.user_id, [[ln.product_id, ln.variant_id, ln.quantity] for ln in self.lines]],
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@attrs.frozen
class PlacedOrder:
    order: Order
    created: bool
    """False when an earlier request with the same Idempotency-Key already created it."""


@attrs.frozen
class CreateOrderHandler:
    fetcher: ProductFetcher
    orders: OrderStore
    envelopes: EnvelopeFactory
    clock: Clock
    ids: IdGenerator

    async def __call__(self, command: CreateOrder) -> PlacedOrder:
        fingerprint = command.fingerprint()
        if command.idempotency_key is not None:
            earlier = await self.orders.idempotency_record(command.idempotency_key)
            if earlier is not None:
                return await self._replay(earlier, fingerprint)
        try:
            fetched = await self.fetcher.fetch([line.product_id for line in command.lines], remember=False)
        except CacheFallbackUnavailable as down:
            # The cache lives in the order store's Redis: with it down the order could not be stored either.
            raise StoreUnavailable(details=down.details) from down
        order = place_order(
            order_id=self.ids.new_id(),
            user_id=command.user_id,
            lines=command.lines,
            products=fetched.products,
            price_source=fetched.source,
            now=self.clock.now(),
        )
        record = (
            None
            if command.idempotency_key is None
            else IdempotencyRecord(command.idempotency_key, fingerprint, order.id)
        )
        event = self.envelopes.wrap(order.created_event(), correlation_id=order.id)
        fresh = list(fetched.products.values()) if fetched.source is PriceSource.PRODUCT_SERVICE else []
        # the cache refresh and the order's write are independent: one round trip's wait for both
        earlier, _ = await asyncio.gather(
            self.orders.add(order, [event], record), self.fetcher.remember(fresh)
        )
        if earlier is not None:
            return await self._replay(earlier, fingerprint)
        return PlacedOrder(order, created=True)

    async def _replay(self, earlier: IdempotencyRecord, fingerprint: str) -> PlacedOrder:
        if earlier.fingerprint != fingerprint:
            raise IdempotencyConflict(earlier.key)
        order = await self.orders.get(earlier.order_id)
        if order is None:
            raise StoreUnavailable("The order for this Idempotency-Key is missing from the store")
        return PlacedOrder(order, created=False)
