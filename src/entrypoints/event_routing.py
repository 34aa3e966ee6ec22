"""Which events each service consumes, and what it does with each (INTERFACE §5)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeVar

from adapters.broker import ConsumerSpec
from application.catalog import AnswerDetailsRequests, Catalog
from application.product_events import ProductEventReactions
from application.request_reply import PendingReplies
from domain.errors import UndecodableEvent
from domain.events import (
    ORDER_CREATED,
    PRODUCT_AVAILABILITY_CHANGED,
    PRODUCT_BATCH_DETAILS_PROVIDED,
    PRODUCT_BATCH_DETAILS_REQUESTED,
    PRODUCT_CREATED,
    PRODUCT_DETAILS_PROVIDED,
    PRODUCT_DETAILS_REQUESTED,
    PRODUCT_DISCONTINUED,
    PRODUCT_PRICE_CHANGED,
    PRODUCT_UPDATED,
    AvailabilityChanged,
    Envelope,
    EventData,
    OrderCreated,
    PriceChanged,
    ProductBatchDetailsProvided,
    ProductBatchDetailsRequested,
    ProductCreated,
    ProductDetailsProvided,
    ProductDetailsRequested,
    ProductDiscontinued,
    ProductUpdated,
)
from entrypoints.consumers import EventBatchHandler, EventHandler
from entrypoints.fast_path import FastPathSpec

D = TypeVar("D", bound=EventData)

ORDER_SERVICE_PRODUCT_EVENTS = (
    PRODUCT_CREATED,
    PRODUCT_UPDATED,
    PRODUCT_PRICE_CHANGED,
    PRODUCT_DISCONTINUED,
    PRODUCT_AVAILABILITY_CHANGED,
    PRODUCT_BATCH_DETAILS_PROVIDED,
)


FAST_PATH_TYPES = frozenset(
    {
        PRODUCT_DETAILS_REQUESTED,
        PRODUCT_BATCH_DETAILS_REQUESTED,
        PRODUCT_DETAILS_PROVIDED,
        PRODUCT_BATCH_DETAILS_PROVIDED,
    }
)
"""What both services publish with a copy for the other's fast path (the subjects of
`order_service_fast_path` and `product_service_fast_path`)."""


def data_of(envelope: Envelope, cls: type[D]) -> D:
    if not isinstance(envelope.data, cls):
        raise UndecodableEvent(f"{envelope.type} does not carry {cls.__name__}")
    return envelope.data


def order_service_handlers(
    reactions: ProductEventReactions, pending: PendingReplies
) -> dict[str, EventHandler]:
    async def snapshot(envelope: Envelope) -> None:
        data = envelope.data
        if not isinstance(data, ProductCreated | ProductUpdated):
            raise UndecodableEvent(f"{envelope.type} does not carry a product")
        await reactions.snapshot_arrived(data.product)

    async def price_changed(envelope: Envelope) -> None:
        await reactions.price_changed(data_of(envelope, PriceChanged))

    async def discontinued(envelope: Envelope) -> None:
        await reactions.discontinued(data_of(envelope, ProductDiscontinued))

    async def availability_changed(envelope: Envelope) -> None:
        await reactions.availability_changed(data_of(envelope, AvailabilityChanged), envelope.timestamp)

    async def details_provided(envelope: Envelope) -> None:
        data = data_of(envelope, ProductDetailsProvided)
        if pending.complete(data.request_id, [data.product_details]):
            # a loop turn for the waiter: it answers before this write (the only one of the
            # snapshot: the waiter leaves it to this consumer) has even been sent
            await asyncio.sleep(0)
        if data.product_details is not None:
            await reactions.snapshot_arrived(data.product_details)

    async def batch_details_provided(envelope: Envelope) -> None:
        data = data_of(envelope, ProductBatchDetailsProvided)
        pending.complete(data.request_id, list(data.products))
        for product in data.products:
            await reactions.snapshot_arrived(product, one_of_a_sweep=True)

    return {
        PRODUCT_CREATED: snapshot,
        PRODUCT_UPDATED: snapshot,
        PRODUCT_PRICE_CHANGED: price_changed,
        PRODUCT_DISCONTINUED: discontinued,
        PRODUCT_AVAILABILITY_CHANGED: availability_changed,
        PRODUCT_DETAILS_PROVIDED: details_provided,
        PRODUCT_BATCH_DETAILS_PROVIDED: batch_details_provided,
    }


def order_service_batch_handlers(reactions: ProductEventReactions) -> dict[str, EventBatchHandler]:
    """Where several events of one type fetched together are applied at once."""

    async def prices_changed(envelopes: Sequence[Envelope]) -> None:
        await reactions.prices_changed([data_of(envelope, PriceChanged) for envelope in envelopes])

    async def stocks_changed(envelopes: Sequence[Envelope]) -> None:
        await reactions.stocks_changed(
            [(data_of(envelope, AvailabilityChanged), envelope.timestamp) for envelope in envelopes]
        )

    return {PRODUCT_PRICE_CHANGED: prices_changed, PRODUCT_AVAILABILITY_CHANGED: stocks_changed}


EVENT_FETCH_LINGER_S = 0.05
"""After a fetch that did not fill up, the event consumers wait this long before the next (as
Kafka's fetch.max.wait.ms, default 500 ms): at a few hundred events a second, one fetch, one
Redis round trip and one wake-up then serve many events instead of one each. Measured at 200
orders/s: CPU per order 9.1 -> 7.0-7.3 ms, p99 26-48 -> 19-30 ms. Events are applied up to
this much later while traffic is low; under load fetches fill up and nobody waits."""

EVENT_BATCH = 16
EVENT_CONCURRENCY = 2 * EVENT_BATCH
"""Two batches of product events in flight: the next is fetched and decoded while the one
before waits on Redis (one at a time, the consumer idled through every round trip).
Measured on event_apply_rps: ratio 0.31-0.38 -> 0.50-0.52 (2 runs of 3 rounds)."""

BACKSTOP_FETCH_PAUSE_S = 0.2
"""The consumers behind a fast path fetch at most this often while idle: they mostly find what
the fast path has handled already, and many at once cost less than one at a time."""


def order_service_consumers(instance_id: str) -> list[ConsumerSpec]:
    """The product events, shared by every instance; the replies to this instance's requests
    (the backstop of the fast path)."""
    return [
        ConsumerSpec(
            name="order-service",
            subjects=ORDER_SERVICE_PRODUCT_EVENTS,
            fetch_pause_s=EVENT_FETCH_LINGER_S,
            concurrency=EVENT_CONCURRENCY,
            max_batch=EVENT_BATCH,
        ),
        ConsumerSpec(
            name=f"order-service-replies-{instance_id}",
            subjects=(
                f"{PRODUCT_DETAILS_PROVIDED}.{instance_id}",
                f"{PRODUCT_BATCH_DETAILS_PROVIDED}.{instance_id}",
            ),
            durable=False,
            fetch_pause_s=BACKSTOP_FETCH_PAUSE_S,
        ),
    ]


def order_service_fast_path(instance_id: str) -> list[FastPathSpec]:
    """The replies to this instance's requests, as they are published (the reply consumer backs it)."""
    return [
        FastPathSpec(
            name=f"order-service-replies-{instance_id}",
            subjects=(
                f"{PRODUCT_DETAILS_PROVIDED}.{instance_id}",
                f"{PRODUCT_BATCH_DETAILS_PROVIDED}.{instance_id}",
            ),
            shared=False,  # only this instance's own reply consumer gets them
        )
    ]


def product_service_handlers(
    catalog: Catalog, answer: AnswerDetailsRequests, stored_events: Callable[[], None] = lambda: None
) -> dict[str, EventHandler]:
    """`stored_events` is told when a handler stored outbox entries (the relay's wake-up)."""

    async def details_requested(envelope: Envelope) -> None:
        await answer.one(data_of(envelope, ProductDetailsRequested), envelope.correlation_id, envelope.id)

    async def batch_details_requested(envelope: Envelope) -> None:
        await answer.batch(
            data_of(envelope, ProductBatchDetailsRequested), envelope.correlation_id, envelope.id
        )

    async def order_created(envelope: Envelope) -> None:
        if await catalog.reserve_for_order(data_of(envelope, OrderCreated)):
            stored_events()

    return {
        PRODUCT_DETAILS_REQUESTED: details_requested,
        PRODUCT_BATCH_DETAILS_REQUESTED: batch_details_requested,
        ORDER_CREATED: order_created,
    }


def product_service_batch_handlers(
    catalog: Catalog, stored_events: Callable[[], None] = lambda: None
) -> dict[str, EventBatchHandler]:
    """The reservations of a fetched batch of orders from one read of their products, with
    their commits sent together (Catalog.reserve_for_orders)."""

    async def orders_created(envelopes: Sequence[Envelope]) -> None:
        if await catalog.reserve_for_orders([data_of(envelope, OrderCreated) for envelope in envelopes]):
            stored_events()

    return {ORDER_CREATED: orders_created}


def product_service_consumers() -> list[ConsumerSpec]:
    """One name, so the JetStream consumers keep their names (spec name and subject)."""
    return [
        ConsumerSpec(
            name="product-service",
            subjects=(PRODUCT_DETAILS_REQUESTED, PRODUCT_BATCH_DETAILS_REQUESTED),
            fetch_pause_s=BACKSTOP_FETCH_PAUSE_S,  # the backstop of the fast path
        ),
        ConsumerSpec(name="product-service", subjects=(ORDER_CREATED,), fetch_pause_s=EVENT_FETCH_LINGER_S),
    ]


def product_service_fast_path() -> list[FastPathSpec]:
    """Details requests as they are published, one instance each (the durable consumer backs it)."""
    return [
        FastPathSpec(
            name="product-service",
            subjects=(PRODUCT_DETAILS_REQUESTED, PRODUCT_BATCH_DETAILS_REQUESTED),
            queue="product-service-details",
        )
    ]
