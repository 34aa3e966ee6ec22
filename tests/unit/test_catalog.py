"""Use cases of the reference Product Service: create, change, reserve stock, answer requests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

import attrs
import pytest

from application.catalog import NewProduct
from application.ports import ProductStore
from domain.catalog import change_product
from domain.errors import ProductAlreadyExists, ProductNotFound
from domain.events import (
    PRODUCT_AVAILABILITY_CHANGED,
    PRODUCT_CREATED,
    PRODUCT_DISCONTINUED,
    PRODUCT_PRICE_CHANGED,
    PRODUCT_UPDATED,
    AvailabilityChanged,
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
)
from domain.products import Product, ProductPatch, ProductStatus

from .builders import CHAIR, DESK, a_product
from .fakes import START
from .wiring import ProductSide


def chair(**overrides: object) -> NewProduct:
    fields: dict[str, object] = {
        "id": CHAIR,
        "name": "Chair",
        "base_price": Decimal("249.99"),
        "current_price": Decimal("249.99"),
        "currency": "USD",
        "status": ProductStatus.ACTIVE,
        "quantity_available": 12,
    }
    fields.update(overrides)
    return NewProduct(**fields)  # type: ignore[arg-type]


async def types_in_outbox(side: ProductSide) -> list[str]:
    return [e.type for e in await side.outbox.pending(100)]


async def drain(side: ProductSide) -> None:
    await side.outbox.remove([e.id for e in await side.outbox.pending(100)])


async def test_create_stores_version_one_and_its_created_event(product_side: ProductSide) -> None:
    product = await product_side.catalog.create(chair())
    assert (product.id, product.version, product.updated_at) == (CHAIR, 1, START)
    assert await product_side.catalog.get(CHAIR) == product
    [event] = await product_side.outbox.pending(10)
    assert event.type == PRODUCT_CREATED
    assert event.data == ProductCreated(CHAIR, product)


async def test_create_without_an_id_mints_one(product_side: ProductSide) -> None:
    product = await product_side.catalog.create(chair(id=None))
    assert product.id.startswith("p-")


async def test_create_with_a_taken_id_is_a_conflict_and_publishes_nothing(product_side: ProductSide) -> None:
    await product_side.catalog.create(chair())
    with pytest.raises(ProductAlreadyExists) as caught:
        await product_side.catalog.create(chair(name="Other"))
    assert caught.value.code == "product_already_exists"
    assert await types_in_outbox(product_side) == [PRODUCT_CREATED]


async def test_unknown_product_is_not_found(product_side: ProductSide) -> None:
    with pytest.raises(ProductNotFound):
        await product_side.catalog.get("nope")
    with pytest.raises(ProductNotFound):
        await product_side.catalog.change("nope", ProductPatch(name="x"))


async def test_a_name_change_publishes_only_updated(product_side: ProductSide) -> None:
    await product_side.catalog.create(chair())
    await drain(product_side)
    changed = await product_side.catalog.change(CHAIR, ProductPatch(name="Better chair"))
    assert (changed.name, changed.version) == ("Better chair", 2)
    [event] = await product_side.outbox.pending(10)
    assert event.data == ProductUpdated(CHAIR, changed)


async def test_a_price_change_publishes_updated_and_price_changed(product_side: ProductSide) -> None:
    await product_side.catalog.create(chair())
    await drain(product_side)
    changed = await product_side.catalog.change(CHAIR, ProductPatch(current_price=Decimal("279.99")))
    events = [e.data for e in await product_side.outbox.pending(10)]
    assert events == [
        ProductUpdated(CHAIR, changed),
        PriceChanged(CHAIR, Decimal("249.99"), Decimal("279.99"), Decimal("249.99"), 2),
    ]


async def test_a_base_price_change_is_a_price_change(product_side: ProductSide) -> None:
    await product_side.catalog.create(chair())
    await drain(product_side)
    await product_side.catalog.change(CHAIR, ProductPatch(base_price=Decimal("299.99")))
    assert await types_in_outbox(product_side) == [PRODUCT_UPDATED, PRODUCT_PRICE_CHANGED]


async def test_discontinuing_publishes_discontinued_and_availability(product_side: ProductSide) -> None:
    await product_side.catalog.create(chair())
    await drain(product_side)
    await product_side.catalog.change(CHAIR, ProductPatch(status=ProductStatus.DISCONTINUED))
    events = [e.data for e in await product_side.outbox.pending(10)]
    assert events[1:] == [ProductDiscontinued(CHAIR, 2), AvailabilityChanged(CHAIR, False, 12, 2)]


async def test_a_stock_change_publishes_availability_changed(product_side: ProductSide) -> None:
    await product_side.catalog.create(chair())
    await drain(product_side)
    await product_side.catalog.change(CHAIR, ProductPatch(quantity_available=0))
    events = [e.data for e in await product_side.outbox.pending(10)]
    assert events[1:] == [AvailabilityChanged(CHAIR, False, 0, 2)]


async def test_one_patch_of_everything_publishes_every_event_type(product_side: ProductSide) -> None:
    await product_side.catalog.create(chair())
    await drain(product_side)
    await product_side.catalog.change(
        CHAIR,
        ProductPatch(current_price=Decimal("1.00"), status=ProductStatus.DISCONTINUED, quantity_available=3),
    )
    assert await types_in_outbox(product_side) == [
        PRODUCT_UPDATED,
        PRODUCT_PRICE_CHANGED,
        PRODUCT_DISCONTINUED,
        PRODUCT_AVAILABILITY_CHANGED,
    ]


async def test_a_no_op_patch_publishes_nothing_and_keeps_the_version(product_side: ProductSide) -> None:
    created = await product_side.catalog.create(chair())
    await drain(product_side)
    same = await product_side.catalog.change(
        CHAIR, ProductPatch(name="Chair", current_price=Decimal("249.990"), quantity_available=12)
    )
    assert same == created
    assert await product_side.outbox.count() == 0


async def test_every_change_grows_the_version_by_one(product_side: ProductSide) -> None:
    await product_side.catalog.create(chair())
    for quantity in (11, 10, 9):
        await product_side.catalog.change(CHAIR, ProductPatch(quantity_available=quantity))
    assert (await product_side.catalog.get(CHAIR)).version == 4


def test_empty_patch_changes_nothing() -> None:
    product = a_product()
    assert change_product(product, ProductPatch(), START) == (product, [])


def order_created(order_id: str, *items: tuple[str, int]) -> OrderCreated:
    return OrderCreated(
        order_id,
        "u-1",
        tuple(OrderCreatedItem(pid, None, qty, Decimal("1.00")) for pid, qty in items),
        Decimal("1.00"),
        START,
    )


async def stock(side: ProductSide, product_id: str = CHAIR) -> int:
    return (await side.catalog.get(product_id)).quantity_available


async def test_reserve_for_order_takes_the_stock_exactly_once(product_side: ProductSide) -> None:
    await product_side.catalog.create(chair())
    await drain(product_side)
    event = order_created("order-1", (CHAIR, 2), (CHAIR, 3))
    assert await product_side.catalog.reserve_for_order(event)
    assert not await product_side.catalog.reserve_for_order(event)
    assert await stock(product_side) == 7
    assert await types_in_outbox(product_side) == [PRODUCT_AVAILABILITY_CHANGED]


async def test_a_reservation_is_told_by_availability_changed_stamped_with_the_change_time(
    product_side: ProductSide,
) -> None:
    await product_side.catalog.create(chair())
    await drain(product_side)
    product_side.clock.advance(42)

    await product_side.catalog.reserve_for_order(order_created("order-1", (CHAIR, 2)))

    [told] = await product_side.outbox.pending(100)
    reserved = await product_side.catalog.get(CHAIR)
    assert told.data == AvailabilityChanged(CHAIR, True, 10, reserved.version)
    assert told.timestamp == reserved.updated_at == START + timedelta(seconds=42)
    assert told.correlation_id == "order-1"


async def test_reservations_of_two_orders_both_apply(product_side: ProductSide) -> None:
    await product_side.catalog.create(chair())
    await product_side.catalog.create(chair(id=DESK, quantity_available=5))
    assert await product_side.catalog.reserve_for_order(order_created("o-1", (CHAIR, 2), (DESK, 5)))
    assert await product_side.catalog.reserve_for_order(order_created("o-2", (CHAIR, 1)))
    assert (await stock(product_side), await stock(product_side, DESK)) == (9, 0)


async def test_overselling_stops_at_zero(product_side: ProductSide) -> None:
    await product_side.catalog.create(chair(quantity_available=1))
    assert await product_side.catalog.reserve_for_order(order_created("o-1", (CHAIR, 5)))
    assert await stock(product_side) == 0


async def test_an_order_of_unknown_products_is_remembered_as_reserved(product_side: ProductSide) -> None:
    event = order_created("o-1", ("ghost", 1))
    assert await product_side.catalog.reserve_for_order(event)
    assert not await product_side.catalog.reserve_for_order(event)
    assert await product_side.outbox.count() == 0


async def test_details_requests_are_answered_on_the_callback_subject(product_side: ProductSide) -> None:
    created = await product_side.catalog.create(chair())
    await product_side.answer.one(ProductDetailsRequested(CHAIR, "r-1", "product.details_provided.i1"), "c-1")
    await product_side.answer.one(
        ProductDetailsRequested("ghost", "r-2", "product.details_provided.i1"), "c-2"
    )
    [(subject, found), (_, missing)] = product_side.publisher.published
    assert subject == "product.details_provided.i1"
    assert found.data == ProductDetailsProvided(CHAIR, "r-1", created)
    assert found.correlation_id == "c-1"
    assert missing.data == ProductDetailsProvided("ghost", "r-2", None)


async def test_batch_requests_answer_with_the_known_products(product_side: ProductSide) -> None:
    created = await product_side.catalog.create(chair())
    request = ProductBatchDetailsRequested(
        (CHAIR, "ghost", CHAIR), "r-1", "product.batch_details_provided", True
    )
    await product_side.answer.batch(request, "c-1")
    [(subject, reply)] = product_side.publisher.published
    assert subject == "product.batch_details_provided"
    assert reply.data == ProductBatchDetailsProvided((CHAIR, "ghost", CHAIR), "r-1", (created,))


async def test_get_many_keeps_the_asked_order_and_drops_unknown_ids(product_side: ProductSide) -> None:
    await product_side.catalog.create(chair())
    await product_side.catalog.create(chair(id=DESK))
    found: list[Product] = await product_side.catalog.get_many([DESK, "ghost", CHAIR, DESK])
    assert [p.id for p in found] == [DESK, CHAIR]


async def test_a_request_answered_twice_gets_one_reply_id(product_side: ProductSide) -> None:
    await product_side.catalog.create(chair())
    request = ProductDetailsRequested(CHAIR, "r-1", "product.details_provided.i1")
    await product_side.answer.one(request, "c-1", in_reply_to="request-envelope-1")
    await product_side.answer.one(request, "c-1", in_reply_to="request-envelope-1")
    await product_side.answer.one(request, "c-1", in_reply_to="request-envelope-2")
    [first, again, other] = [envelope.id for _, envelope in product_side.publisher.published]
    assert first == again
    assert other != first


async def test_a_batch_of_orders_reserves_as_they_would_one_by_one(product_side: ProductSide) -> None:
    await product_side.catalog.create(chair())
    await product_side.catalog.create(chair(id=DESK, quantity_available=5))
    await drain(product_side)
    orders = [
        order_created("o-1", (CHAIR, 2), (DESK, 1)),
        order_created("o-2", (CHAIR, 3)),
        order_created("o-3", (DESK, 4)),
    ]

    assert await product_side.catalog.reserve_for_orders(orders)

    assert (await stock(product_side), await stock(product_side, DESK)) == (7, 0)
    told = [
        (e.correlation_id, e.data.product_id, e.data.version, e.data.quantity_available)
        for e in await product_side.outbox.pending(100)
        if isinstance(e.data, AvailabilityChanged)
    ]
    assert sorted(told) == sorted(
        [("o-1", CHAIR, 2, 10), ("o-1", DESK, 2, 4), ("o-2", CHAIR, 3, 7), ("o-3", DESK, 3, 0)]
    )
    assert not await product_side.catalog.reserve_for_orders(orders), "a redelivered batch: reserved already"
    assert (await stock(product_side), await stock(product_side, DESK)) == (7, 0)


async def test_an_order_of_a_batch_reserved_already_is_not_reserved_twice(product_side: ProductSide) -> None:
    await product_side.catalog.create(chair())
    first, second = order_created("o-1", (CHAIR, 2)), order_created("o-2", (CHAIR, 3))
    assert await product_side.catalog.reserve_for_order(first)

    assert await product_side.catalog.reserve_for_orders([first, second])

    assert await stock(product_side) == 7, "12 - 2 - 3"


@attrs.define
class ChangedAfterRead:
    """The catalog's store, with another writer's change landing right after the next read."""

    inner: ProductStore
    change: Callable[[], Awaitable[object]] | None

    async def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]:
        found = await self.inner.get_many(product_ids)
        if self.change is not None:
            change, self.change = self.change, None
            await change()
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_orders_whose_products_changed_after_the_batch_read_are_reserved_again_alone(
    product_side: ProductSide,
) -> None:
    await product_side.catalog.create(chair())
    other_writer = product_side.catalog
    store = ChangedAfterRead(
        product_side.catalog.store,
        lambda: other_writer.change(CHAIR, ProductPatch(quantity_available=100)),
    )
    catalog = attrs.evolve(product_side.catalog, store=store)

    assert await catalog.reserve_for_orders(
        [order_created("o-1", (CHAIR, 2)), order_created("o-2", (CHAIR, 3))]
    )

    assert await stock(product_side) == 95
