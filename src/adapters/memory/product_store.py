"""In-memory catalog of the reference Product Service, with its outbox."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from adapters.memory.outbox import InMemoryOutbox
from application.ports import CommitResult, ProductChange
from domain.events import Envelope
from domain.products import Product


@attrs.define
class InMemoryProductStore:
    outbox: InMemoryOutbox
    _products: dict[str, Product] = attrs.field(factory=dict, init=False)
    _reserved_orders: set[str] = attrs.field(factory=set, init=False)

    async def get(self, product_id: str) -> Product | None:
        self.outbox.outage.check()
        return self._products.get(product_id)

    async def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]:
        self.outbox.outage.check()
        return {pid: self._products[pid] for pid in product_ids if pid in self._products}

    async def create(self, product: Product, outbox: Sequence[Envelope]) -> bool:
        self.outbox.outage.check()
        if product.id in self._products:
            return False
        self._products[product.id] = product
        self.outbox.add_now(outbox)
        return True

    async def commit(
        self,
        changes: Sequence[ProductChange],
        outbox: Sequence[Envelope],
        reservation_for: str | None = None,
    ) -> CommitResult:
        self.outbox.outage.check()
        if reservation_for is not None and reservation_for in self._reserved_orders:
            return CommitResult.ALREADY_RESERVED
        if any(self._products.get(c.before.id) != c.before for c in changes):
            return CommitResult.CONFLICT
        for change in changes:
            self._products[change.after.id] = change.after
        if reservation_for is not None:
            self._reserved_orders.add(reservation_for)
        self.outbox.add_now(outbox)
        return CommitResult.COMMITTED

    async def all_ids(self) -> list[str]:
        self.outbox.outage.check()
        return list(self._products)
