"""In-memory order store: orders, their product index, idempotency keys, with the outbox."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from adapters.memory.outbox import InMemoryOutbox
from application.ports import IdempotencyRecord
from domain.events import Envelope
from domain.orders import Order, OrderFlag


@attrs.define
class InMemoryOrderStore:
    outbox: InMemoryOutbox
    _orders: dict[str, Order] = attrs.field(factory=dict, init=False)
    _by_product: dict[str, list[str]] = attrs.field(factory=dict, init=False)
    _keys: dict[str, IdempotencyRecord] = attrs.field(factory=dict, init=False)

    async def add(
        self, order: Order, outbox: Sequence[Envelope], idempotency: IdempotencyRecord | None
    ) -> IdempotencyRecord | None:
        self.outbox.outage.check()
        if idempotency is not None:
            earlier = self._keys.get(idempotency.key)
            if earlier is not None:
                return earlier
            self._keys[idempotency.key] = idempotency
        self._orders[order.id] = order
        for product_id in order.product_ids:
            self._by_product.setdefault(product_id, []).append(order.id)
        self.outbox.add_now(outbox)
        return None

    async def get(self, order_id: str) -> Order | None:
        self.outbox.outage.check()
        return self._orders.get(order_id)

    async def idempotency_record(self, key: str) -> IdempotencyRecord | None:
        self.outbox.outage.check()
        return self._keys.get(key)

    async def ids_holding(self, product_id: str) -> list[str]:
        self.outbox.outage.check()
        return list(self._by_product.get(product_id, []))

    async def ids_holding_each(self, product_ids: Sequence[str]) -> dict[str, list[str]]:
        return {product_id: await self.ids_holding(product_id) for product_id in product_ids}

    async def ids_flagged(self, flag: OrderFlag) -> list[str]:
        self.outbox.outage.check()
        return [o.id for o in self._orders.values() if flag in o.flags]

    async def recent_ids(self, limit: int) -> list[str]:
        self.outbox.outage.check()
        newest = sorted(self._orders.values(), key=lambda o: (o.created_at, o.id))
        return [o.id for o in newest[-limit:]]

    async def newest_of(self, order_ids: Sequence[str], limit: int) -> list[str]:
        self.outbox.outage.check()
        known = sorted(
            (self._orders[order_id] for order_id in set(order_ids) if order_id in self._orders),
            key=lambda o: (o.created_at, o.id),
        )
        return [o.id for o in known[-limit:]]

    async def add_flag(self, order_id: str, flag: OrderFlag) -> bool:
        self.outbox.outage.check()
        order = self._orders.get(order_id)
        if order is None or flag in order.flags:
            return False
        self._orders[order_id] = order.with_flag(flag)
        return True
