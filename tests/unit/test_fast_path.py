"""The request-reply fast path beside the durable consumers, both services on one in-memory broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence

import attrs
import pytest

from adapters.broker import FastDelivery, Subscription
from adapters.memory.broker import InMemoryBroker
from adapters.memory.small_ports import InMemoryProcessedEvents
from adapters.metrics import ServiceMetrics
from adapters.publisher import BrokerEventPublisher
from adapters.wire.event_json import encode
from application.catalog import AnswerDetailsRequests
from application.request_reply import RefreshProductNow
from application.snapshot_requests import AskForSnapshot
from domain.errors import StoreUnavailable
from domain.events import (
    PRODUCT_CREATED,
    PRODUCT_DETAILS_PROVIDED,
    PRODUCT_DETAILS_REQUESTED,
    Envelope,
    ProductCreated,
)
from entrypoints.consumers import EventConsumer, EventHandler, subscribe_consumers
from entrypoints.event_routing import (
    FAST_PATH_TYPES,
    order_service_consumers,
    order_service_fast_path,
    order_service_handlers,
    product_service_consumers,
    product_service_fast_path,
    product_service_handlers,
)
from entrypoints.fast_path import FastPathConsumer, FastPathSpec, ProcessedHere, listen_fast

from .builders import CHAIR, a_product, an_envelope
from .fakes import ManualClock
from .polling import eventually
from .wiring import OrderSide, ProductSide

INSTANCE = "i-1"


@attrs.define
class TwoServices:
    broker: InMemoryBroker
    order: OrderSide
    product: ProductSide
    product_metrics: ServiceMetrics
    refresh: RefreshProductNow
    product_handlers: dict[str, EventHandler]
    subscriptions: list[Subscription] = attrs.field(factory=list)

    def answered(self, outcome: str) -> float:
        """How often the Product Service settled a details request with `outcome`."""
        value = self.product_metrics.registry.get_sample_value(
            "events_processed_total", {"type": PRODUCT_DETAILS_REQUESTED, "outcome": outcome}
        )
        return value or 0.0

    def replies_published(self) -> float:
        value = self.product_metrics.registry.get_sample_value(
            "events_published_total", {"type": PRODUCT_DETAILS_PROVIDED, "outcome": "ok"}
        )
        return value or 0.0

    async def start_order_service(self) -> None:
        handlers = order_service_handlers(self.order.reactions, self.order.pending)
        processed = ProcessedHere(InMemoryProcessedEvents(clock=self.order.clock, ttl_s=3600))
        metrics = self.order.metrics
        self.subscriptions += await listen_fast(
            self.broker, order_service_fast_path(INSTANCE), handlers, processed, metrics
        )
        self.subscriptions += await subscribe_consumers(
            self.broker, order_service_consumers(INSTANCE), handlers, processed, metrics, self.order.clock
        )

    async def start_product_service(
        self, *, fast_path: bool = True, fast_handlers: Mapping[str, EventHandler] | None = None
    ) -> None:
        processed = ProcessedHere(InMemoryProcessedEvents(clock=ManualClock(), ttl_s=3600))
        if fast_path:
            self.subscriptions += await listen_fast(
                self.broker,
                product_service_fast_path(),
                fast_handlers or self.product_handlers,
                processed,
                self.product_metrics,
            )
        self.subscriptions += await subscribe_consumers(
            self.broker,
            product_service_consumers(),
            self.product_handlers,
            processed,
            self.product_metrics,
            self.product.clock,
        )
        await asyncio.sleep(0)  # its consumers wait for messages, as in a service that is up


@pytest.fixture
async def services(order_side: OrderSide, product_side: ProductSide) -> AsyncIterator[TwoServices]:
    broker = InMemoryBroker()
    product_metrics = ServiceMetrics()
    answer = AnswerDetailsRequests(
        catalog=product_side.catalog,
        publisher=BrokerEventPublisher(broker=broker, metrics=product_metrics, fast_types=FAST_PATH_TYPES),
        envelopes=product_side.envelopes,
    )
    ask = AskForSnapshot(
        publisher=BrokerEventPublisher(broker=broker, metrics=order_side.metrics, fast_types=FAST_PATH_TYPES),
        envelopes=order_side.envelopes,
        ids=order_side.ids,
        reply_subject=f"{PRODUCT_DETAILS_PROVIDED}.{INSTANCE}",
    )
    refresh = attrs.evolve(order_side.refresh_product, ask=ask, timeout_s=3.0)
    handlers = product_service_handlers(product_side.catalog, answer)
    await product_side.store.create(a_product(CHAIR), [])
    two = TwoServices(broker, order_side, product_side, product_metrics, refresh, handlers)
    await two.start_order_service()
    yield two
    for subscription in two.subscriptions:
        await subscription.stop()
    await broker.close()


async def test_a_request_is_answered_once_on_the_fast_path_and_the_backstop_sees_a_duplicate(
    services: TwoServices,
) -> None:
    await services.start_product_service()
    refreshed = await services.refresh(CHAIR)
    assert refreshed.source == "event"
    assert refreshed.product == a_product(CHAIR)
    await eventually(lambda: services.answered("duplicate") == 1)
    assert services.answered("ack") == 1
    assert services.replies_published() == 1
    # the reply's consumer stores the snapshot right after handing it to the waiter
    cache = services.order.cache

    async def cached() -> bool:
        return CHAIR in await cache.get_many([CHAIR])

    await eventually(cached)


async def test_without_the_fast_path_the_durable_consumer_answers(services: TwoServices) -> None:
    await services.start_product_service(fast_path=False)
    refreshed = await services.refresh(CHAIR)
    assert refreshed.source == "event"
    assert services.answered("ack") == 1
    assert services.answered("duplicate") == 0


async def test_a_request_the_fast_path_fails_on_is_answered_by_the_durable_consumer(
    services: TwoServices,
) -> None:
    async def failing(envelope: Envelope) -> None:
        raise StoreUnavailable("the fast path lost its store for a moment")

    fast_handlers = {**services.product_handlers, PRODUCT_DETAILS_REQUESTED: failing}
    await services.start_product_service(fast_handlers=fast_handlers)
    refreshed = await services.refresh(CHAIR)
    assert refreshed.source == "event"
    assert services.answered("ack") == 1  # by the durable consumer; the fast path counts no failure
    assert services.replies_published() == 1


async def test_a_request_published_while_the_product_service_was_away_is_answered_when_it_starts(
    services: TwoServices,
) -> None:
    asking = asyncio.create_task(services.refresh(CHAIR))
    await eventually(lambda: len(services.broker.on_subject(PRODUCT_DETAILS_REQUESTED)) == 1)
    await services.start_product_service()  # its listener was not there to hear the request
    refreshed = await asking
    assert refreshed.source == "event"
    assert services.answered("ack") == 1


async def test_a_durable_consumer_waits_for_the_fast_path_and_then_sees_it_processed() -> None:
    store = InMemoryProcessedEvents(clock=ManualClock(), ttl_s=3600)
    processed = ProcessedHere(store)
    assert processed.claim("e-1")
    assert not processed.claim("e-1")  # in hand already
    asking = asyncio.create_task(processed.seen("e-1"))
    await asyncio.sleep(0.01)
    assert not asking.done()
    processed.release("e-1", handled=True)
    assert await asking
    assert not processed.claim("e-1")  # handled here lately


async def test_the_fast_path_leaves_alone_what_a_durable_consumer_here_took_on() -> None:
    processed = ProcessedHere(InMemoryProcessedEvents(clock=ManualClock(), ttl_s=3600))
    assert not await processed.seen("e-1")  # a durable consumer goes on to handle it
    assert not processed.claim("e-1")
    await processed.remember("e-1")
    assert not processed.claim("e-1")
    assert await processed.seen("e-1")


async def test_an_event_the_fast_path_failed_on_is_not_seen() -> None:
    processed = ProcessedHere(InMemoryProcessedEvents(clock=ManualClock(), ttl_s=3600))
    assert processed.claim("e-1")
    asking = asyncio.create_task(processed.seen("e-1"))
    processed.release("e-1", handled=False)
    assert not await asking
    assert not processed.claim("e-1")  # the durable consumer has it now


async def test_the_order_service_records_fast_replies_only_in_this_process() -> None:
    store = InMemoryProcessedEvents(clock=ManualClock(), ttl_s=3600)
    processed = ProcessedHere(store)
    await processed.remember("e-1", in_store=False)
    assert await processed.seen("e-1")
    assert not await store.seen("e-1")
    await processed.remember("e-2")
    assert await store.seen("e-2")


async def test_the_newest_handled_ids_are_kept_in_memory() -> None:
    processed = ProcessedHere(InMemoryProcessedEvents(clock=ManualClock(), ttl_s=3600), kept=2)
    for event_id in ("e-1", "e-2", "e-3"):
        await processed.remember(event_id, in_store=False)
    assert processed.claim("e-1")  # forgotten here (the store is asked by a durable consumer)
    assert not processed.claim("e-3")


async def test_a_batch_look_up_waits_for_the_fast_path_and_takes_on_what_nobody_handled() -> None:
    store = InMemoryProcessedEvents(clock=ManualClock(), ttl_s=3600)
    await store.remember("e-stored")
    processed = ProcessedHere(store)
    await processed.remember("e-here", in_store=False)
    assert processed.claim("e-fast")

    asking = asyncio.create_task(processed.seen_among(["e-fast", "e-here", "e-stored", "e-new"]))
    await asyncio.sleep(0.01)
    assert not asking.done(), "waits while the fast path has e-fast in hand"
    processed.release("e-fast", handled=True)

    assert await asking == {"e-fast", "e-here", "e-stored"}
    assert not processed.claim("e-new"), "a durable consumer here took e-new on"


async def test_remembering_a_batch_marks_each_here_and_in_the_store() -> None:
    store = InMemoryProcessedEvents(clock=ManualClock(), ttl_s=3600)
    processed = ProcessedHere(store)
    await processed.remember_all(["e-1", "e-2"])
    assert not processed.claim("e-1")
    assert not processed.claim("e-2")
    assert await store.seen_among(["e-1", "e-2", "e-3"]) == {"e-1", "e-2"}


@attrs.define
class StoreMidLookUp:
    """Processed ids whose batch look-up waits at a gate, as a Redis round trip in flight."""

    inner: InMemoryProcessedEvents
    gate: asyncio.Event = attrs.field(factory=asyncio.Event)
    asked: asyncio.Event = attrs.field(factory=asyncio.Event)

    async def seen(self, event_id: str) -> bool:
        return event_id in await self.seen_among([event_id])

    async def seen_among(self, event_ids: Sequence[str]) -> set[str]:
        self.asked.set()
        await self.gate.wait()
        return await self.inner.seen_among(event_ids)

    async def remember(self, event_id: str) -> None:
        await self.inner.remember(event_id)

    async def remember_all(self, event_ids: Sequence[str]) -> None:
        await self.inner.remember_all(event_ids)


@attrs.define
class SettledDelivery:
    subject: str
    data: bytes
    attempt: int = 1
    acks: int = 0

    async def ack(self) -> None:
        self.acks += 1

    async def nak(self, delay_s: float) -> None:
        raise AssertionError("not expected")

    async def term(self) -> None:
        raise AssertionError("not expected")


@pytest.mark.parametrize("shared", [True, False])
async def test_a_fast_copy_arriving_during_the_durable_look_up_is_left_to_the_durable_consumer(
    shared: bool,
) -> None:
    clock = ManualClock()
    store = StoreMidLookUp(InMemoryProcessedEvents(clock=clock, ttl_s=3600))
    processed = ProcessedHere(store)
    applied: list[str] = []

    async def handler(envelope: Envelope) -> None:
        applied.append(envelope.id)

    handlers = {PRODUCT_CREATED: handler}
    metrics = ServiceMetrics()
    data = encode(
        an_envelope(
            "e-1",
            ProductCreated(CHAIR, a_product(CHAIR)),
        )
    )
    durable = EventConsumer("c", handlers, InMemoryBroker(), processed, metrics, clock)
    fast = FastPathConsumer(
        FastPathSpec("f", (PRODUCT_CREATED,), shared=shared), handlers, processed, metrics
    )
    delivery = SettledDelivery(PRODUCT_CREATED, data)

    durable_run = asyncio.create_task(durable.handle_batch([delivery]))
    await store.asked.wait()  # the durable consumer's look-up is out
    await fast(FastDelivery(PRODUCT_CREATED, data))
    store.gate.set()
    await durable_run

    assert applied == ["e-1"], "applied once, by the durable consumer"
    assert delivery.acks == 1


@attrs.define
class CountedWrites:
    """Processed ids, counting the writes that recorded them."""

    inner: InMemoryProcessedEvents
    writes: int = 0

    async def seen(self, event_id: str) -> bool:
        return await self.inner.seen(event_id)

    async def seen_among(self, event_ids: Sequence[str]) -> set[str]:
        return await self.inner.seen_among(event_ids)

    async def remember(self, event_id: str) -> None:
        self.writes += 1
        await self.inner.remember(event_id)

    async def remember_all(self, event_ids: Sequence[str]) -> None:
        self.writes += 1
        await self.inner.remember_all(event_ids)


async def test_what_the_fast_path_handled_is_known_here_at_once_and_stored_together_soon() -> None:
    store = CountedWrites(InMemoryProcessedEvents(clock=ManualClock(), ttl_s=3600))
    processed = ProcessedHere(store, record_delay_s=0.01)
    for event_id in ("e-1", "e-2", "e-3"):
        processed.remember_soon(event_id)

    assert await processed.seen_among(["e-1", "e-2", "e-3"]) == {"e-1", "e-2", "e-3"}
    assert store.writes == 0
    await eventually(lambda: store.writes == 1)
    assert await store.seen_among(["e-1", "e-2", "e-3"]) == {"e-1", "e-2", "e-3"}
    await processed.close()


async def test_closing_records_at_once_what_waits_to_be_recorded() -> None:
    store = CountedWrites(InMemoryProcessedEvents(clock=ManualClock(), ttl_s=3600))
    processed = ProcessedHere(store, record_delay_s=3600)
    processed.remember_soon("e-1")
    await processed.close()
    assert await store.seen("e-1")
    assert store.writes == 1


async def test_a_details_request_answered_on_the_fast_path_is_recorded_in_the_shared_store() -> None:
    store = CountedWrites(InMemoryProcessedEvents(clock=ManualClock(), ttl_s=3600))
    processed = ProcessedHere(store, record_delay_s=3600)

    async def handler(envelope: Envelope) -> None:
        return None

    fast = FastPathConsumer(
        FastPathSpec("f", (PRODUCT_CREATED,), shared=True),
        {PRODUCT_CREATED: handler},
        processed,
        ServiceMetrics(),
    )
    await fast(
        FastDelivery(PRODUCT_CREATED, encode(an_envelope("e-1", ProductCreated(CHAIR, a_product(CHAIR)))))
    )
    assert not await store.seen("e-1"), "not yet: it waits to be written with others"
    await processed.close()
    assert await store.seen("e-1")
