"""Listing orders by product or flag reads only the orders it returns."""

from __future__ import annotations

from datetime import timedelta

import attrs

from adapters.memory.order_store import InMemoryOrderStore
from adapters.memory.outbox import InMemoryOutbox
from application.order_queries import ListOrders
from domain.orders import Order, OrderFlag

from .builders import CHAIR, START, an_order


@attrs.define
class CountingOrderStore(InMemoryOrderStore):
    """The in-memory store, counting the orders read one by one."""

    reads: int = 0

    async def get(self, order_id: str) -> Order | None:
        self.reads += 1
        return await super().get(order_id)


async def test_a_listing_by_product_reads_only_the_orders_it_returns() -> None:
    store = CountingOrderStore(InMemoryOutbox())
    for i in range(50):
        await store.add(an_order(f"o-{i:02}", created_at=START + timedelta(seconds=i)), [], None)

    listed = await ListOrders(store)(product_id=CHAIR, limit=2)

    assert [order.id for order in listed] == ["o-48", "o-49"]
    assert store.reads == 2, "before: one read per order holding the product (50), whatever the limit"


async def test_a_listing_by_flag_reads_only_the_orders_it_returns() -> None:
    store = CountingOrderStore(InMemoryOutbox())
    for i in range(30):
        await store.add(an_order(f"o-{i:02}", created_at=START + timedelta(seconds=-i)), [], None)
        await store.add_flag(f"o-{i:02}", OrderFlag.PRICE_REVIEW)

    listed = await ListOrders(store)(product_id=CHAIR, flag=OrderFlag.PRICE_REVIEW, limit=3)

    assert [order.id for order in listed] == ["o-02", "o-01", "o-00"]
    assert store.reads == 3
