"""Use cases: read one order, list orders by product, by flag, or the most recent."""

from __future__ import annotations

import asyncio

import attrs

from application.ports import OrderStore
from domain.errors import OrderNotFound
from domain.orders import Order, OrderFlag


@attrs.frozen
class GetOrder:
    orders: OrderStore

    async def __call__(self, order_id: str) -> Order:
        order = await self.orders.get(order_id)
        if order is None:
            raise OrderNotFound(order_id)
        return order


@attrs.frozen
class ListOrders:
    orders: OrderStore

    async def __call__(
        self, product_id: str | None = None, flag: OrderFlag | None = None, limit: int = 100
    ) -> list[Order]:
        """Orders holding `product_id` and/or carrying `flag`; with neither, the most recent."""
        if product_id is None and flag is None:
            ids = await self.orders.recent_ids(limit)
        else:
            selections = []
            if product_id is not None:
                selections.append(set(await self.orders.ids_holding(product_id)))
            if flag is not None:
                selections.append(set(await self.orders.ids_flagged(flag)))
            # only the orders listed are read: a product held by many orders (or a flag on
            # many) cost one read per order, whatever the limit (3,000 orders: 1 s a request)
            ids = await self.orders.newest_of(sorted(set.intersection(*selections)), limit)
        found = await asyncio.gather(*(self.orders.get(order_id) for order_id in ids))
        listed = sorted((o for o in found if o is not None), key=lambda o: (o.created_at, o.id))
        return listed[-limit:] if limit else listed
