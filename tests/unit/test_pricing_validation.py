"""Use cases: compare an order with the latest prices; flag it for review when the rules say so."""

from __future__ import annotations

from decimal import Decimal

import pytest

from application.create_order import CreateOrder
from domain.errors import OrderNotFound, ProductServiceUnavailable
from domain.orders import Order, OrderFlag, OrderLine, PriceSource

from .builders import CHAIR, DESK, a_product, newer
from .wiring import OrderSide


async def place(side: OrderSide, *lines: tuple[str, int]) -> Order:
    placed = await side.create_order(CreateOrder("u-1", tuple(OrderLine(p, q) for p, q in lines)))
    return placed.order


async def test_no_price_change_means_no_discrepancy(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR, current_price=Decimal("100.00")))
    order = await place(order_side, (CHAIR, 2))
    result = await order_side.validate_pricing(order.id)
    assert not result.has_discrepancies
    assert not result.requires_review
    assert (await order_side.get_order(order.id)).flags == ()


async def test_a_large_rise_is_reported_and_flags_price_review(order_side: OrderSide) -> None:
    chair = a_product(CHAIR, current_price=Decimal("100.00"))
    order_side.lookup.add(chair)
    order = await place(order_side, (CHAIR, 2))
    order_side.lookup.add(newer(chair, current_price=Decimal("120.00")))
    result = await order_side.validate_pricing(order.id)
    [found] = result.discrepancies
    assert (found.order_price, found.current_price) == (Decimal("100.00"), Decimal("120.00"))
    assert result.total_difference == Decimal("40.00")
    assert result.requires_review
    assert (await order_side.get_order(order.id)).flags == (OrderFlag.PRICE_REVIEW,)
    assert order_side.sample("orders_flagged_total", reason="PRICE_REVIEW") == 1
    assert order_side.sample("price_discrepancies_total") == 1


async def test_a_small_discrepancy_is_reported_without_review(order_side: OrderSide) -> None:
    chair = a_product(CHAIR, current_price=Decimal("100.00"))
    order_side.lookup.add(chair)
    order = await place(order_side, (CHAIR, 1))
    order_side.lookup.add(newer(chair, current_price=Decimal("102.00")))
    result = await order_side.validate_pricing(order.id)
    assert result.has_discrepancies
    assert not result.requires_review
    assert (await order_side.get_order(order.id)).flags == ()


async def test_validating_twice_flags_once(order_side: OrderSide) -> None:
    chair = a_product(CHAIR, current_price=Decimal("100.00"))
    order_side.lookup.add(chair)
    order = await place(order_side, (CHAIR, 1))
    order_side.lookup.add(newer(chair, current_price=Decimal("200.00")))
    await order_side.validate_pricing(order.id)
    await order_side.validate_pricing(order.id)
    assert order_side.sample("orders_flagged_total", reason="PRICE_REVIEW") == 1


async def test_unknown_order_is_not_found(order_side: OrderSide) -> None:
    with pytest.raises(OrderNotFound):
        await order_side.validate_pricing("nope")


async def test_product_service_down_compares_with_the_cache(order_side: OrderSide) -> None:
    chair = a_product(CHAIR, current_price=Decimal("100.00"))
    order_side.lookup.add(chair)
    order = await place(order_side, (CHAIR, 1))
    await order_side.cache.put(newer(chair, current_price=Decimal("150.00")))
    order_side.lookup.available = False
    result, source = await order_side.validate_pricing.with_source(order.id)
    assert result.requires_review
    assert source is PriceSource.CACHE


async def test_product_service_down_and_nothing_cached_is_unavailable(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR))
    order = await place(order_side, (CHAIR, 1))
    order_side.cache.outage.down = True
    order_side.lookup.available = False
    with pytest.raises(ProductServiceUnavailable):
        await order_side.validate_pricing(order.id)


async def test_the_latest_price_comes_from_the_product_service_not_the_cache(order_side: OrderSide) -> None:
    chair = a_product(CHAIR, current_price=Decimal("100.00"))
    order_side.lookup.add(chair)
    order = await place(order_side, (CHAIR, 1))
    await order_side.cache.put(newer(chair, current_price=Decimal("500.00")))
    result, source = await order_side.validate_pricing.with_source(order.id)
    assert not result.has_discrepancies
    assert source is PriceSource.PRODUCT_SERVICE


async def test_revalidation_on_a_price_change_uses_cached_prices_for_the_other_items(
    order_side: OrderSide,
) -> None:
    chair = a_product(CHAIR, current_price=Decimal("100.00"))
    desk = a_product(DESK, current_price=Decimal("50.00"))
    order_side.lookup.add(chair, desk)
    order = await place(order_side, (CHAIR, 1), (DESK, 1))
    order_side.lookup.available = False
    assert await order_side.revalidate(CHAIR, Decimal("100.50")) == 0
    assert (await order_side.get_order(order.id)).flags == ()
    await order_side.cache.put(newer(desk, current_price=Decimal("60.00")))
    assert await order_side.revalidate(CHAIR, Decimal("100.50")) == 1
    assert (await order_side.get_order(order.id)).flags == (OrderFlag.PRICE_REVIEW,)
