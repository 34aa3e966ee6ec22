"""Hypothesis strategies for money, products, orders and every event type."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import strategies as st

from domain.events import (
    PRODUCT_BATCH_DETAILS_PROVIDED,
    PRODUCT_DETAILS_PROVIDED,
    AvailabilityChanged,
    Envelope,
    EventData,
    OrderCreated,
    OrderCreatedItem,
    PriceChanged,
    ProductBatchDetailsProvided,
    ProductBatchDetailsRequested,
    ProductCreated,
    ProductDetailsProvided,
    ProductDetailsRequested,
    ProductDiscontinued,
    ProductUpdated,
    event_type_of,
)
from domain.orders import Order, OrderFlag, OrderItem, OrderStatus, PriceSource
from domain.products import MAX_STOCK, MAX_VERSION, Product, ProductStatus


def money(min_value: str = "0.00", max_value: str = "99999.99") -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=Decimal(min_value), max_value=Decimal(max_value), places=2, allow_nan=False)


def prices() -> st.SearchStrategy[Decimal]:
    """A positive price (a current price of zero is its own case)."""
    return money("0.01")


ids = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)
_subject_tails = st.from_regex(r"[A-Za-z0-9_-]{1,20}(\.[A-Za-z0-9_-]{1,20}){0,2}", fullmatch=True)


def callback_subjects(reply_type: str) -> st.SearchStrategy[str]:
    """Subjects a reply of `reply_type` may be asked for on (domain.events.replies_of): the reply
    type, a subject under it, or one outside the streams (an inbox)."""
    return st.one_of(
        st.just(reply_type),
        st.builds(f"{reply_type}.{{}}".format, _subject_tails),
        st.builds("_INBOX.{}".format, _subject_tails),
    )


names = st.text(min_size=1, max_size=60).filter(lambda s: s.strip() != "")
"""Product names the Product Service accepts (domain.products.is_product_name), short for speed."""
versions = st.integers(min_value=1, max_value=MAX_VERSION)
quantities = st.integers(min_value=0, max_value=MAX_STOCK)
currencies = st.sampled_from(["USD", "EUR", "GBP"])


def details_provided(
    product_ids: st.SearchStrategy[str], snapshots: st.SearchStrategy[Product]
) -> st.SearchStrategy[ProductDetailsProvided]:
    """A reply naming the product it carries (an unknown one carries null)."""
    return st.builds(
        lambda product_id, request_id, details: ProductDetailsProvided(
            details.id if details else product_id, request_id, details
        ),
        product_ids,
        ids,
        st.none() | snapshots,
    )


@st.composite
def timestamps(draw: st.DrawFn) -> datetime:
    """UTC instants to the millisecond: the precision of the wire (format_timestamp)."""
    moment = draw(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)))
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000, tzinfo=UTC)


@st.composite
def products(draw: st.DrawFn) -> Product:
    return Product(
        id=draw(ids),
        name=draw(names),
        base_price=draw(money()),
        current_price=draw(money()),
        currency=draw(currencies),
        status=draw(st.sampled_from(ProductStatus)),
        quantity_available=draw(quantities),
        version=draw(versions),
        updated_at=draw(timestamps()),
    )


order_items = st.builds(
    OrderItem,
    product_id=ids,
    variant_id=st.none() | ids,
    name=names,
    quantity=st.integers(min_value=1, max_value=10_000),
    unit_price=money(),
)


@st.composite
def orders(draw: st.DrawFn) -> Order:
    items = tuple(draw(st.lists(order_items, min_size=1, max_size=5)))
    return Order(
        id=draw(ids),
        user_id=draw(ids),
        status=OrderStatus.CREATED,
        items=items,
        total_amount=sum((i.line_total for i in items), Decimal("0.00")),
        currency="USD",
        flags=tuple(sorted(draw(st.sets(st.sampled_from(OrderFlag))))),
        price_source=draw(st.sampled_from(PriceSource)),
        created_at=draw(timestamps()),
    )


event_data: st.SearchStrategy[EventData] = st.one_of(
    st.builds(lambda p: ProductCreated(p.id, p), products()),
    st.builds(lambda p: ProductUpdated(p.id, p), products()),
    st.builds(PriceChanged, ids, money(), money(), money(), versions),
    st.builds(ProductDiscontinued, ids, versions),
    st.builds(AvailabilityChanged, ids, st.booleans(), quantities, versions),
    st.builds(
        OrderCreated,
        order_id=ids,
        user_id=ids,
        items=st.lists(
            st.builds(
                OrderCreatedItem, ids, st.none() | ids, st.integers(min_value=1, max_value=10_000), money()
            ),
            min_size=1,
            max_size=4,
        ).map(tuple),
        total_amount=money("0.00", "999999999.99"),
        timestamp=timestamps(),
    ),
    st.builds(ProductDetailsRequested, ids, ids, callback_subjects(PRODUCT_DETAILS_PROVIDED)),
    details_provided(ids, products()),
    st.builds(
        ProductBatchDetailsRequested,
        st.lists(ids, max_size=5).map(tuple),
        ids,
        callback_subjects(PRODUCT_BATCH_DETAILS_PROVIDED),
        st.none() | st.booleans(),
    ),
    st.builds(
        ProductBatchDetailsProvided,
        st.lists(ids, max_size=5).map(tuple),
        ids,
        st.lists(products(), max_size=3).map(tuple),
    ),
)


@st.composite
def envelopes(draw: st.DrawFn) -> Envelope:
    data = draw(event_data)
    return Envelope(
        id=draw(ids),
        type=event_type_of(data),
        source=draw(st.sampled_from(["product-service", "order-service"])),
        data_version="1.0",
        timestamp=draw(timestamps()),
        correlation_id=draw(ids),
        data=data,
    )
