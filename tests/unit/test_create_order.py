"""Use case: create an order from Product Service data, with the cache fallback and idempotency keys."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from application.create_order import CreateOrder
from domain.errors import (
    CurrencyMismatch,
    IdempotencyConflict,
    ProductDiscontinued,
    ProductInactive,
    ProductNotFound,
    ProductServiceUnavailable,
    ProductUnavailable,
    StoreUnavailable,
)
from domain.events import ORDER_CREATED, OrderCreated
from domain.orders import OrderLine, PriceSource
from domain.products import ProductStatus

from .builders import CHAIR, DESK, a_product
from .wiring import OrderSide


def order_of(*lines: tuple[str, int], key: str | None = None, user: str = "u-1") -> CreateOrder:
    return CreateOrder(user, tuple(OrderLine(pid, qty) for pid, qty in lines), key)


async def test_order_is_created_with_an_exact_total_and_its_event_in_the_outbox(
    order_side: OrderSide,
) -> None:
    order_side.lookup.add(a_product(CHAIR, current_price=Decimal("19.99")))
    placed = await order_side.create_order(order_of((CHAIR, 3)))
    assert placed.created
    assert placed.order.total_amount == Decimal("59.97")
    assert placed.order.price_source is PriceSource.PRODUCT_SERVICE
    assert await order_side.orders.get(placed.order.id) == placed.order
    [event] = await order_side.outbox.pending(10)
    assert event.type == ORDER_CREATED
    assert event.correlation_id == placed.order.id
    assert isinstance(event.data, OrderCreated)
    assert event.data.total_amount == Decimal("59.97")


async def test_fetched_products_are_remembered_in_the_cache(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR))
    await order_side.create_order(order_of((CHAIR, 1)))
    assert CHAIR in await order_side.cache.get_many([CHAIR])


async def test_unknown_product_is_not_found(order_side: OrderSide) -> None:
    with pytest.raises(ProductNotFound) as caught:
        await order_side.create_order(order_of(("ghost", 1)))
    assert caught.value.code == "product_not_found"
    assert await order_side.outbox.count() == 0


async def test_discontinued_product_is_refused(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR, status=ProductStatus.DISCONTINUED))
    with pytest.raises(ProductDiscontinued):
        await order_side.create_order(order_of((CHAIR, 1)))


async def test_inactive_product_is_refused(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR, status=ProductStatus.INACTIVE))
    with pytest.raises(ProductInactive):
        await order_side.create_order(order_of((CHAIR, 1)))


async def test_more_than_the_stock_is_refused_with_the_seed_message(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR, quantity_available=2))
    with pytest.raises(ProductUnavailable) as caught:
        await order_side.create_order(order_of((CHAIR, 3)))
    assert caught.value.message == f"Product {CHAIR} is not available in the requested quantity"
    assert await order_side.outbox.count() == 0


async def test_products_in_two_currencies_are_refused(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR, currency="USD"), a_product(DESK, currency="EUR"))
    with pytest.raises(CurrencyMismatch):
        await order_side.create_order(order_of((CHAIR, 1), (DESK, 1)))


async def test_product_service_down_falls_back_to_the_cache(order_side: OrderSide) -> None:
    await order_side.cache.put(a_product(CHAIR, current_price=Decimal("10.00")))
    order_side.lookup.available = False
    placed = await order_side.create_order(order_of((CHAIR, 2)))
    assert placed.order.price_source is PriceSource.CACHE
    assert placed.order.total_amount == Decimal("20.00")
    assert order_side.sample("product_cache_requests_total", result="hit") == 1


async def test_cache_fallback_still_applies_the_rules(order_side: OrderSide) -> None:
    await order_side.cache.put(a_product(CHAIR, quantity_available=1))
    order_side.lookup.available = False
    with pytest.raises(ProductUnavailable):
        await order_side.create_order(order_of((CHAIR, 2)))


async def test_product_service_down_and_product_not_cached_is_unavailable(order_side: OrderSide) -> None:
    await order_side.cache.put(a_product(CHAIR))
    order_side.lookup.available = False
    with pytest.raises(ProductServiceUnavailable) as caught:
        await order_side.create_order(order_of((CHAIR, 1), (DESK, 1)))
    assert caught.value.code == "product_service_unavailable"
    assert caught.value.details["productIds"] == [DESK]
    assert await order_side.outbox.count() == 0


async def test_a_cache_outage_during_a_product_service_outage_is_store_unavailable(
    order_side: OrderSide,
) -> None:
    """The cache shares the order store's Redis: with it down, the order could not be stored either."""
    await order_side.cache.put(a_product(CHAIR))
    order_side.cache.outage.down = True
    order_side.lookup.available = False
    with pytest.raises(StoreUnavailable) as caught:
        await order_side.create_order(order_of((CHAIR, 1)))
    assert caught.value.code == "store_unavailable"
    assert caught.value.details["productIds"] == [CHAIR]
    assert "unavailable" in caught.value.details["reason"]


async def test_a_cache_outage_does_not_stop_orders_while_the_product_service_answers(
    order_side: OrderSide,
) -> None:
    order_side.lookup.add(a_product(CHAIR))
    order_side.cache.outage.down = True
    placed = await order_side.create_order(order_of((CHAIR, 1)))
    assert placed.created


async def test_store_outage_is_store_unavailable(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR))
    order_side.outbox.outage.down = True
    with pytest.raises(StoreUnavailable):
        await order_side.create_order(order_of((CHAIR, 1), key="k"))


async def test_idempotency_key_replay_returns_the_same_order_and_stores_one_event(
    order_side: OrderSide,
) -> None:
    order_side.lookup.add(a_product(CHAIR))
    first = await order_side.create_order(order_of((CHAIR, 2), key="key-1"))
    again = await order_side.create_order(order_of((CHAIR, 2), key="key-1"))
    assert first.created
    assert not again.created
    assert again.order == first.order
    assert await order_side.outbox.count() == 1
    assert len(await order_side.list_orders()) == 1


async def test_idempotency_key_replay_needs_no_product_service(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR))
    first = await order_side.create_order(order_of((CHAIR, 2), key="key-1"))
    order_side.lookup.available = False
    assert (await order_side.create_order(order_of((CHAIR, 2), key="key-1"))).order == first.order


async def test_same_key_with_a_different_body_is_a_conflict(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR))
    await order_side.create_order(order_of((CHAIR, 2), key="key-1"))
    with pytest.raises(IdempotencyConflict) as caught:
        await order_side.create_order(order_of((CHAIR, 3), key="key-1"))
    assert caught.value.code == "idempotency_key_reused"
    with pytest.raises(IdempotencyConflict):
        await order_side.create_order(order_of((CHAIR, 2), key="key-1", user="u-2"))
    assert await order_side.outbox.count() == 1


async def test_concurrent_requests_with_one_key_create_one_order(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR))
    placed = await asyncio.gather(*(order_side.create_order(order_of((CHAIR, 1), key="k")) for _ in range(5)))
    assert len({p.order.id for p in placed}) == 1
    assert sum(p.created for p in placed) == 1
    assert await order_side.outbox.count() == 1


async def test_orders_without_a_key_are_each_new(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR))
    one = await order_side.create_order(order_of((CHAIR, 1)))
    two = await order_side.create_order(order_of((CHAIR, 1)))
    assert one.order.id != two.order.id
    assert await order_side.outbox.count() == 2


async def test_one_batch_lookup_per_order_with_each_product_once(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR), a_product(DESK))
    await order_side.create_order(order_of((CHAIR, 1), (DESK, 1), (CHAIR, 2)))
    assert order_side.lookup.calls == [("get_products", (CHAIR, DESK))]
