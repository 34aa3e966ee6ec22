"""A batch of events has one event's time budget: it must not take the sum of their times, and a
batch that timed out is not retried as the same batch (it would time out again, to the last try)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal

import attrs
import pytest

from adapters.broker import ConsumerSpec
from adapters.memory.broker import InMemoryBroker
from adapters.memory.small_ports import InMemoryProcessedEvents
from adapters.wire.event_json import encode
from application.product_events import ProductEventReactions
from domain.events import PRODUCT_PRICE_CHANGED, Envelope, PriceChanged
from domain.orders import Order
from entrypoints import consumers
from entrypoints.consumers import EventBatchHandler, EventConsumer
from entrypoints.event_routing import order_service_batch_handlers, order_service_handlers

from .builders import an_envelope
from .polling import eventually
from .wiring import OrderSide, build_order_side

ORDER_READ_S = 0.05
TIMEOUT_S = 0.15
"""Enough for one product's re-validation (one order read, with room to spare), not for four in a row."""


@pytest.fixture(autouse=True)
def frozen_heap() -> Iterator[None]:
    """The budgets here are tenths of a second, and a full collection of the whole suite's heap
    takes as long (measured 130-250 ms): frozen, as the services freeze their startup heap, it is
    left out of every collection while these tests run."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@attrs.define
class SlowOrders:
    """Each product held by one order whose read takes ORDER_READ_S (the rest is the real store)."""

    async def ids_holding(self, product_id: str) -> list[str]:
        return [f"o-{product_id}"]

    async def ids_holding_each(self, product_ids: Sequence[str]) -> dict[str, list[str]]:
        return {product_id: [f"o-{product_id}"] for product_id in product_ids}

    async def get(self, order_id: str) -> Order | None:
        await asyncio.sleep(ORDER_READ_S)
        return None


async def four_price_changes(broker: InMemoryBroker) -> None:
    for n in range(4):
        envelope = an_envelope(
            f"e-{n}", PriceChanged(f"p-{n}", Decimal("10"), Decimal("11"), Decimal("11"), 2)
        )
        await broker.publish(PRODUCT_PRICE_CHANGED, encode(envelope), f"m-{n}")


async def consume(
    side: OrderSide,
    batch_handlers: Callable[[ProductEventReactions], Mapping[str, EventBatchHandler]],
    monkeypatch: pytest.MonkeyPatch,
) -> InMemoryBroker:
    monkeypatch.setattr(consumers, "RETRY_BASE_S", 0.01)
    revalidate = attrs.evolve(side.revalidate, orders=SlowOrders())
    reactions = attrs.evolve(side.reactions, revalidate=revalidate)
    broker = InMemoryBroker()
    consumer = EventConsumer(
        name="order-service",
        handlers=order_service_handlers(reactions, side.pending),
        broker=broker,
        processed=InMemoryProcessedEvents(clock=side.clock, ttl_s=3600),
        metrics=side.metrics,
        clock=side.clock,
        max_deliver=3,
        handler_timeout_s=TIMEOUT_S,
        batch_handlers=batch_handlers(reactions),
    )
    await four_price_changes(broker)
    spec = ConsumerSpec(name="order-service", subjects=("product.>",), max_deliver=3, concurrency=16)
    await broker.subscribe_batches(spec, consumer.handle_batch)
    return broker


def outcomes(side: OrderSide, outcome: str) -> float:
    return side.sample("events_processed_total", type=PRODUCT_PRICE_CHANGED, outcome=outcome)


async def test_a_batch_re_validates_its_products_concurrently_within_one_events_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    side = build_order_side()
    broker = await consume(side, order_service_batch_handlers, monkeypatch)
    try:
        await eventually(lambda: outcomes(side, "ack") == 4, within=3)
    finally:
        await broker.close()
    assert outcomes(side, "retry") == 0
    assert broker.on_subject(f"deadletter.{PRODUCT_PRICE_CHANGED}") == []


async def test_events_of_a_batch_that_timed_out_are_applied_alone_next_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    side = build_order_side()

    async def never_in_time(envelopes: Sequence[Envelope]) -> None:
        await asyncio.sleep(TIMEOUT_S * 4)

    broker = await consume(side, lambda _: {PRODUCT_PRICE_CHANGED: never_in_time}, monkeypatch)
    try:
        await eventually(lambda: outcomes(side, "ack") == 4, within=3)
    finally:
        await broker.close()
    assert outcomes(side, "retry") == 4, "each timed out once, in the batch"
    assert broker.on_subject(f"deadletter.{PRODUCT_PRICE_CHANGED}") == []
