"""Orders priced from product snapshots: the seed's rules and exact totals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.wire.converter import dumps, loads
from domain.errors import (
    CurrencyMismatch,
    OrderingError,
    OrderNotFound,
    ProductAlreadyExists,
    ProductDiscontinued,
    ProductInactive,
    ProductNotFound,
    ProductUnavailable,
)
from domain.orders import Order, OrderFlag, OrderLine, OrderStatus, PriceSource, check_orderable, place_order
from domain.products import Product, ProductStatus

from .builders import CHAIR, DESK, a_product, an_order
from .fakes import START
from .strategies import money


def place(lines: list[OrderLine], *products_: Product) -> Order:
    return place_order(
        order_id="order-1",
        user_id="u-1",
        lines=lines,
        products={p.id: p for p in products_},
        price_source=PriceSource.PRODUCT_SERVICE,
        now=START,
    )


def test_order_is_priced_at_the_current_price_with_an_exact_total() -> None:
    chair = a_product(CHAIR, name="Chair", current_price=Decimal("19.99"), base_price=Decimal("24.99"))
    order = place_order(
        order_id="order-1",
        user_id="u-1",
        lines=[OrderLine(CHAIR, 3)],
        products={CHAIR: chair},
        price_source=PriceSource.PRODUCT_SERVICE,
        now=START,
    )
    assert order.total_amount == Decimal("59.97")
    assert str(order.total_amount) == "59.97"
    assert order.status is OrderStatus.CREATED
    assert order.items[0].unit_price == Decimal("19.99")
    assert order.items[0].name == "Chair"
    assert order.currency == "USD"
    assert order.flags == ()


def test_unknown_product_is_not_found() -> None:
    with pytest.raises(ProductNotFound) as caught:
        check_orderable("ghost", None, 1)
    assert caught.value.code == "product_not_found"
    assert caught.value.details == {"productId": "ghost"}


def test_discontinued_product_cannot_be_ordered() -> None:
    with pytest.raises(ProductDiscontinued):
        check_orderable(CHAIR, a_product(status=ProductStatus.DISCONTINUED), 1)


def test_inactive_product_cannot_be_ordered() -> None:
    with pytest.raises(ProductInactive):
        check_orderable(CHAIR, a_product(status=ProductStatus.INACTIVE), 1)


def test_more_than_the_stock_is_unavailable_with_the_seed_message() -> None:
    with pytest.raises(ProductUnavailable) as caught:
        check_orderable(CHAIR, a_product(quantity_available=2), 3)
    assert str(caught.value) == f"Product {CHAIR} is not available in the requested quantity"
    assert caught.value.details == {"productId": CHAIR, "requested": 3, "available": 2}


def test_exactly_the_stock_can_be_ordered() -> None:
    assert check_orderable(CHAIR, a_product(quantity_available=2), 2).id == CHAIR


def test_lines_of_one_product_count_together_against_the_stock() -> None:
    with pytest.raises(ProductUnavailable) as caught:
        place([OrderLine(CHAIR, 6), OrderLine(CHAIR, 7, "red")], a_product(quantity_available=12))
    assert caught.value.details["requested"] == 13


def test_products_of_two_currencies_cannot_share_an_order() -> None:
    with pytest.raises(CurrencyMismatch) as caught:
        place(
            [OrderLine(CHAIR, 1), OrderLine(DESK, 1)],
            a_product(CHAIR, currency="USD"),
            a_product(DESK, currency="EUR"),
        )
    assert caught.value.details == {"currencies": ["EUR", "USD"]}


def test_discontinued_is_reported_before_stock() -> None:
    with pytest.raises(ProductDiscontinued):
        check_orderable(CHAIR, a_product(status=ProductStatus.DISCONTINUED, quantity_available=0), 5)


def test_a_flag_is_added_once_and_kept_sorted() -> None:
    order = an_order().with_flag(OrderFlag.PRICE_REVIEW).with_flag(OrderFlag.DISCONTINUED_PRODUCT)
    assert order.with_flag(OrderFlag.PRICE_REVIEW).flags == (
        OrderFlag.DISCONTINUED_PRODUCT,
        OrderFlag.PRICE_REVIEW,
    )


def test_created_event_carries_every_line() -> None:
    order = an_order()
    event = order.created_event()
    assert event.order_id == order.id
    assert event.total_amount == order.total_amount
    assert [(i.product_id, i.quantity, i.unit_price) for i in event.items] == [
        (i.product_id, i.quantity, i.unit_price) for i in order.items
    ]


@given(
    st.lists(
        st.tuples(money("0.00", "9999.99"), st.integers(min_value=1, max_value=10_000)),
        min_size=1,
        max_size=20,
    )
)
def test_order_total_is_the_exact_sum_of_price_times_quantity(lines: list[tuple[Decimal, int]]) -> None:
    catalog = {
        f"p{n}": a_product(f"p{n}", current_price=price, quantity_available=10_000)
        for n, (price, _) in enumerate(lines)
    }
    order = place_order(
        order_id="order-1",
        user_id="u-1",
        lines=[OrderLine(f"p{n}", quantity) for n, (_, quantity) in enumerate(lines)],
        products=catalog,
        price_source=PriceSource.PRODUCT_SERVICE,
        now=START,
    )
    cents = sum(int(price * 100) * quantity for price, quantity in lines)
    assert order.total_amount * 100 == cents
    assert order.total_amount.as_tuple().exponent == -2
    assert loads(dumps({"t": order.total_amount}))["t"] == order.total_amount
    assert dumps(order.total_amount).decode() == f"{cents // 100}.{cents % 100:02d}"


@pytest.mark.parametrize(
    "error",
    [
        OrderNotFound("o" * 10_000),
        ProductNotFound("p" * 10_000),
        ProductUnavailable("p" * 10_000, 2, 1),
        ProductDiscontinued("p" * 10_000),
        ProductInactive("p" * 10_000),
        ProductAlreadyExists("p" * 10_000),
    ],
)
def test_an_error_echoes_at_most_a_bounded_start_of_an_id(error: OrderingError) -> None:
    """The HTTP routes refuse ids over 128 characters; whatever gets past, a message stays short."""
    assert len(error.message) < 128 + 80
    assert len(str(error.details)) < 128 + 80
