"""EventConsumer on the in-memory broker: ack after the effect, duplicates, poison messages, retries."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import attrs
import pytest

from adapters.broker import ConsumerSpec, Delivery, matches_any
from adapters.memory.broker import InMemoryBroker
from adapters.memory.small_ports import InMemoryProcessedEvents
from adapters.metrics import ServiceMetrics
from adapters.wire.event_json import encode
from application.ports import ProcessedEvents
from domain.errors import InvalidRequest, StoreUnavailable
from domain.events import (
    ORDER_CREATED,
    PRODUCT_AVAILABILITY_CHANGED,
    PRODUCT_CREATED,
    PRODUCT_DETAILS_PROVIDED,
    PRODUCT_DETAILS_REQUESTED,
    PRODUCT_DISCONTINUED,
    PRODUCT_PRICE_CHANGED,
    PRODUCT_UPDATED,
    AvailabilityChanged,
    Envelope,
    ProductCreated,
    ProductDetailsProvided,
    ProductDetailsRequested,
    ProductDiscontinued,
    ProductUpdated,
)
from entrypoints import consumers
from entrypoints.consumers import EventBatchHandler, EventConsumer, EventHandler, carried_on_its_subject
from entrypoints.event_routing import (
    order_service_consumers,
    order_service_handlers,
    product_service_consumers,
    product_service_handlers,
)

from .builders import CHAIR, a_product, an_envelope
from .fakes import START, ManualClock
from .polling import eventually
from .wiring import OrderSide, ProductSide, build_order_side, build_product_side

MAX_DELIVER = 3


@attrs.define
class Rig:
    side: OrderSide
    broker: InMemoryBroker
    applied: list[str]

    def processed(self, event_type: str, outcome: str) -> float:
        return self.side.sample("events_processed_total", type=event_type, outcome=outcome)

    def dead_letters(self, subject: str) -> list[dict[str, Any]]:
        return [json.loads(m.data) for m in self.broker.on_subject(f"deadletter.{subject}")]

    async def publish(self, subject: str, data: bytes, msg_id: str | None = None) -> None:
        await self.broker.publish(subject, data, msg_id or f"m-{len(self.broker.messages)}")

    async def cached(self, product_id: str = CHAIR) -> bool:
        return product_id in await self.side.cache.get_many([product_id])


@pytest.fixture
async def rig(order_side: OrderSide, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.setattr(consumers, "RETRY_BASE_S", 0.01)  # real backoff is 0.5 s, 1 s, 2 s, ...
    broker = InMemoryBroker()
    applied: list[str] = []
    handlers: dict[str, EventHandler] = dict(order_service_handlers(order_side.reactions, order_side.pending))
    real_created = handlers[PRODUCT_CREATED]

    async def counting_created(envelope: Envelope) -> None:
        await real_created(envelope)
        applied.append(envelope.id)

    async def refusing(envelope: Envelope) -> None:
        raise InvalidRequest("this consumer refuses it")

    async def hanging(envelope: Envelope) -> None:
        await asyncio.Event().wait()

    handlers[PRODUCT_CREATED] = counting_created
    handlers[PRODUCT_DISCONTINUED] = refusing
    handlers[PRODUCT_AVAILABILITY_CHANGED] = hanging
    consumer = a_consumer(
        order_side.clock,
        order_side.metrics,
        handlers,
        broker=broker,
        max_deliver=MAX_DELIVER,
        handler_timeout_s=0.05,
    )
    spec = ConsumerSpec(name="order-service", subjects=("product.>",), max_deliver=MAX_DELIVER, concurrency=2)
    await broker.subscribe_batches(spec, consumer.handle_batch)  # as subscribe_consumers does
    yield Rig(order_side, broker, applied)
    await broker.close()


def a_consumer(
    clock: ManualClock,
    metrics: ServiceMetrics,
    handlers: Mapping[str, EventHandler],
    *,
    name: str = "order-service",
    broker: InMemoryBroker | None = None,
    processed: ProcessedEvents | None = None,
    **options: Any,
) -> EventConsumer:
    """An EventConsumer over in-memory twins; `options` as EventConsumer takes them."""
    return EventConsumer(
        name=name,
        handlers=dict(handlers),
        broker=InMemoryBroker() if broker is None else broker,
        processed=InMemoryProcessedEvents(clock=clock, ttl_s=3600) if processed is None else processed,
        metrics=metrics,
        clock=clock,
        **options,
    )


def created(event_id: str = "e-1", **product: Any) -> Envelope:
    snapshot = a_product(CHAIR, **product)
    return Envelope(
        event_id, PRODUCT_CREATED, "product-service", "1.0", START, "c-1", ProductCreated(CHAIR, snapshot)
    )


def raw_created(**changes: Any) -> bytes:
    wire = json.loads(encode(created()))
    wire.update(changes)
    return json.dumps(wire).encode()


def raw_created_for(product_id: str) -> bytes:
    wire = json.loads(encode(created()))
    wire["data"]["productId"] = product_id
    return json.dumps(wire).encode()


async def test_an_event_is_applied_then_acked(rig: Rig) -> None:
    await rig.publish(PRODUCT_CREATED, encode(created()))
    await eventually(lambda: rig.processed(PRODUCT_CREATED, "ack") == 1)
    assert await rig.cached()
    assert rig.applied == ["e-1"]


async def test_a_duplicate_event_id_has_no_second_effect(rig: Rig) -> None:
    await rig.publish(PRODUCT_CREATED, encode(created("e-1")), msg_id="m-1")
    await eventually(lambda: rig.processed(PRODUCT_CREATED, "ack") == 1)
    await rig.publish(PRODUCT_CREATED, encode(created("e-1")), msg_id="m-2")
    await eventually(lambda: rig.processed(PRODUCT_CREATED, "duplicate") == 1)
    assert rig.applied == ["e-1"]


async def test_a_republish_with_the_same_msg_id_is_stored_once(rig: Rig) -> None:
    for _ in range(3):
        await rig.publish(PRODUCT_CREATED, encode(created("e-1")), msg_id="same")
    assert len(rig.broker.on_subject(PRODUCT_CREATED)) == 1


POISON = [
    pytest.param(b"{not json", "not JSON: Expecting property name", id="bad-json"),
    pytest.param('{"prix": 3 €}'.encode(), "not JSON: ", id="utf8-not-json"),
    pytest.param(b"\xff\xfe\x00garbage", "not UTF-8: 'utf-8' codec can't decode", id="not-utf8"),
    pytest.param(b"[1, 2]", "not a JSON object", id="not-an-object"),
    pytest.param(
        json.dumps({"id": "e-9", "type": PRODUCT_CREATED}).encode(), "fields missing", id="missing-fields"
    ),
    pytest.param(raw_created(dataVersion="9.9"), "unknown dataVersion", id="unknown-data-version"),
    pytest.param(raw_created(data={"productId": CHAIR}), "invalid product.created", id="missing-data-fields"),
    pytest.param(raw_created(type="product.exploded"), "unknown event type", id="unknown-type"),
    pytest.param(raw_created_for(""), "128 characters", id="empty-product-id"),
    pytest.param(raw_created_for("p" * 129), "128 characters", id="overlong-product-id"),
    pytest.param(
        b"[" * 50_000 + b"]" * 50_000, "not JSON: unreadable JSON: nested too deep", id="nested-too-deep"
    ),
    pytest.param(
        b'{"id": 1e99999999999999999999}', "not JSON: unreadable JSON: a number", id="number-out-of-range"
    ),
]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize(("payload", "reason"), POISON)
async def test_poison_goes_to_the_dead_letter_subject_and_the_consumer_goes_on(
    rig: Rig, payload: bytes, reason: str
) -> None:
    await rig.publish(PRODUCT_CREATED, payload)
    await eventually(lambda: len(rig.dead_letters(PRODUCT_CREATED)) == 1)
    [letter] = rig.dead_letters(PRODUCT_CREATED)
    assert reason in letter["reason"]
    assert letter["subject"] == PRODUCT_CREATED
    assert letter["attempts"] == 1
    kept = payload[: consumers.MAX_LETTER_PAYLOAD_BYTES]  # nested-too-deep is 100 KB: its first 64 KiB
    assert base64.b64decode(letter["payloadBase64"]) == kept
    assert letter["payload"] == (kept.decode() if _is_utf8(kept) else None)
    assert letter["payloadTruncated"] is (kept != payload)
    assert letter["payloadBytes"] == len(payload)
    assert rig.processed(PRODUCT_CREATED, "dead_letter") == 1
    await rig.publish(PRODUCT_CREATED, encode(created()))
    await eventually(rig.cached)


BUS_MAX_PAYLOAD = 1024 * 1024
"""NATS's default max_payload: the server refuses a larger message (headers included)."""


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b'{"type": "' + b"\x01" * 1_000_000 + b'"}', id="control-characters"),
        pytest.param(b"\xff" * 1_000_000, id="not-utf8"),
        pytest.param(raw_created(type="x" * 1_000_000), id="huge-type-in-the-reason"),
    ],
)
async def test_a_dead_letter_fits_on_the_bus_however_large_the_poison(rig: Rig, payload: bytes) -> None:
    await rig.publish(PRODUCT_CREATED, payload)
    await eventually(lambda: len(rig.broker.on_subject(f"deadletter.{PRODUCT_CREATED}")) == 1)
    [stored] = rig.broker.on_subject(f"deadletter.{PRODUCT_CREATED}")
    assert len(stored.data) < BUS_MAX_PAYLOAD // 2
    letter = json.loads(stored.data)
    kept = consumers.MAX_LETTER_PAYLOAD_BYTES
    assert letter["payloadTruncated"] is True
    assert letter["payloadBytes"] == len(payload)
    assert letter["payloadSha256"] == hashlib.sha256(payload).hexdigest()
    assert base64.b64decode(letter["payloadBase64"]) == payload[:kept]
    assert letter["payload"] == (payload[:kept].decode() if payload.isascii() else None)
    assert letter["reason"]
    assert rig.processed(PRODUCT_CREATED, "dead_letter") == 1


async def test_an_event_this_consumer_does_not_handle_is_dead_lettered(rig: Rig) -> None:
    request = an_envelope(
        "e-2", ProductDetailsRequested(CHAIR, "r", "product.details_provided"), source="order-service"
    )
    await rig.publish(PRODUCT_DETAILS_REQUESTED, encode(request))
    await eventually(lambda: len(rig.dead_letters(PRODUCT_DETAILS_REQUESTED)) == 1)
    assert "does not handle" in rig.dead_letters(PRODUCT_DETAILS_REQUESTED)[0]["reason"]


async def test_an_envelope_whose_type_is_not_its_subject_is_dead_lettered(rig: Rig) -> None:
    product = a_product(CHAIR)
    created = an_envelope("e-3", ProductCreated(CHAIR, product))
    await rig.publish(PRODUCT_UPDATED, encode(created))
    await eventually(lambda: len(rig.dead_letters(PRODUCT_UPDATED)) == 1)
    assert "arrived on product.updated" in rig.dead_letters(PRODUCT_UPDATED)[0]["reason"]
    assert not await rig.cached(CHAIR)


def test_a_reply_subject_under_the_event_type_is_its_subject() -> None:
    assert carried_on_its_subject("product.details_provided", "product.details_provided.instance-1")
    assert carried_on_its_subject("product.updated", "product.updated")
    assert not carried_on_its_subject("product.updated", "product.updated_v2")
    assert not carried_on_its_subject("product.details_provided", "product.details")


async def test_a_refused_event_is_dead_lettered_not_retried(rig: Rig) -> None:
    discontinued = an_envelope("e-4", ProductDiscontinued(CHAIR, 2))
    await rig.publish(PRODUCT_DISCONTINUED, encode(discontinued))
    await eventually(lambda: len(rig.dead_letters(PRODUCT_DISCONTINUED)) == 1)
    [letter] = rig.dead_letters(PRODUCT_DISCONTINUED)
    assert letter["reason"] == "refused: this consumer refuses it"
    assert rig.processed(PRODUCT_DISCONTINUED, "dead_letter") == 1
    assert rig.processed(PRODUCT_DISCONTINUED, "retry") == 0


async def test_a_handler_that_never_returns_is_retried_then_dead_lettered(rig: Rig) -> None:
    stuck = an_envelope("e-5", AvailabilityChanged(CHAIR, True, 1, 2))
    await rig.publish(PRODUCT_AVAILABILITY_CHANGED, encode(stuck))
    await eventually(lambda: len(rig.dead_letters(PRODUCT_AVAILABILITY_CHANGED)) == 1)
    [letter] = rig.dead_letters(PRODUCT_AVAILABILITY_CHANGED)
    assert letter["attempts"] == MAX_DELIVER
    assert "timed out after 0.05s" in letter["reason"]
    assert rig.processed(PRODUCT_AVAILABILITY_CHANGED, "retry") == MAX_DELIVER - 1


async def test_a_transient_failure_is_retried_then_applied(rig: Rig) -> None:
    rig.side.cache.outage.down = True
    await rig.publish(PRODUCT_CREATED, encode(created()))
    await eventually(lambda: rig.processed(PRODUCT_CREATED, "retry") >= 1)
    assert rig.applied == []
    rig.side.cache.outage.down = False
    await eventually(lambda: rig.processed(PRODUCT_CREATED, "ack") == 1)
    assert await rig.cached()
    assert rig.dead_letters(PRODUCT_CREATED) == []


async def test_a_failure_that_never_clears_is_dead_lettered_after_max_deliver(rig: Rig) -> None:
    rig.side.cache.outage.down = True
    await rig.publish(PRODUCT_CREATED, encode(created()))
    await eventually(lambda: len(rig.dead_letters(PRODUCT_CREATED)) == 1)
    [letter] = rig.dead_letters(PRODUCT_CREATED)
    assert letter["attempts"] == MAX_DELIVER
    assert f"gave up after {MAX_DELIVER} attempts" in letter["reason"]
    assert rig.processed(PRODUCT_CREATED, "retry") == MAX_DELIVER - 1
    assert rig.processed(PRODUCT_CREATED, "dead_letter") == 1


async def test_an_older_snapshot_event_leaves_the_newer_cached(rig: Rig) -> None:
    await rig.publish(PRODUCT_CREATED, encode(created("e-2", version=2, name="new")))
    await rig.publish(PRODUCT_CREATED, encode(created("e-1", version=1, name="old")))
    await eventually(lambda: rig.processed(PRODUCT_CREATED, "ack") == 2)
    assert (await rig.side.cache.get_many([CHAIR]))[CHAIR].name == "new"


async def test_replies_complete_the_waiting_request(rig: Rig, order_side: OrderSide) -> None:
    waiter = order_side.pending.open("r-1")
    reply = an_envelope("e-3", ProductDetailsProvided(CHAIR, "r-1", a_product(CHAIR)))
    await rig.publish(f"{PRODUCT_DETAILS_PROVIDED}.i-1", encode(reply))
    assert list(await asyncio.wait_for(waiter, 3)) == [a_product(CHAIR)]
    await eventually(rig.cached)


async def test_a_waiter_has_its_reply_before_the_consumer_writes_the_cache(
    rig: Rig, order_side: OrderSide
) -> None:
    waiter = order_side.pending.open("r-1")
    cached_when_answered: list[bool] = []
    waiter.add_done_callback(lambda _: cached_when_answered.append(CHAIR in order_side.cache._entries))
    provided = ProductDetailsProvided(CHAIR, "r-1", a_product(CHAIR))
    reply = an_envelope("e-3", provided)
    await rig.publish(f"{PRODUCT_DETAILS_PROVIDED}.i-1", encode(reply))
    await asyncio.wait_for(waiter, 3)
    await eventually(rig.cached)
    assert cached_when_answered == [False]


def assert_subscribed(routed: Mapping[str, EventHandler], specs: list[ConsumerSpec], instance: str) -> None:
    subjects = [pattern for spec in specs for pattern in spec.subjects]
    for event_type in routed:
        reply_subject = f"{event_type}.{instance}"
        assert matches_any(subjects, event_type) or matches_any(subjects, reply_subject), event_type


def test_the_order_service_subscribes_to_every_event_it_handles() -> None:
    side = build_order_side()
    routed = order_service_handlers(side.reactions, side.pending)
    assert_subscribed(routed, order_service_consumers("i-1"), "i-1")


def test_the_product_service_subscribes_to_every_event_it_handles() -> None:
    side = build_product_side()
    assert_subscribed(product_service_handlers(side.catalog, side.answer), product_service_consumers(), "-")


async def test_stopping_a_subscription_never_hangs_on_a_handler_that_just_finished() -> None:
    # asyncio.wait_for on 3.11 could swallow the cancel of a handler finishing in the same turn
    for _ in range(20):
        broker = InMemoryBroker()
        done: list[bytes] = []

        async def handle(delivery: Delivery, done: list[bytes] = done) -> None:
            done.append(delivery.data)
            await delivery.ack()

        await broker.subscribe(ConsumerSpec("c", ("product.>",), concurrency=4), handle)
        for n in range(4):
            await broker.publish("product.created", b"x", f"m-{n}")
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(broker.close())
        finished, _ = await asyncio.wait({closing}, timeout=2)
        assert finished, "broker.close() never returned"


@attrs.define(eq=False)
class FakeDelivery:
    """A delivery outside any broker, remembering how it was settled."""

    subject: str
    data: bytes
    attempt: int = 1
    settled_as: list[str] = attrs.field(factory=list)

    async def ack(self) -> None:
        self.settled_as.append("ack")

    async def nak(self, delay_s: float) -> None:
        self.settled_as.append("nak")

    async def term(self) -> None:
        self.settled_as.append("term")


@pytest.mark.parametrize(
    ("subject", "label"),
    [
        pytest.param(PRODUCT_PRICE_CHANGED, PRODUCT_PRICE_CHANGED, id="price-changed"),
        pytest.param(PRODUCT_UPDATED, PRODUCT_UPDATED, id="updated"),
        pytest.param(PRODUCT_CREATED, PRODUCT_CREATED, id="created"),
        pytest.param(ORDER_CREATED, ORDER_CREATED, id="order-created"),
        pytest.param(f"{PRODUCT_DETAILS_PROVIDED}.instance-1", PRODUCT_DETAILS_PROVIDED, id="reply-subject"),
        pytest.param("product.exploded", "unknown", id="unknown-subject"),
        pytest.param("product", "unknown", id="a-type-prefix"),
    ],
)
async def test_a_dead_letter_is_counted_under_the_type_of_its_subject(
    order_side: OrderSide, subject: str, label: str
) -> None:
    broker = InMemoryBroker()
    handlers = order_service_handlers(order_side.reactions, order_side.pending)
    consumer = a_consumer(order_side.clock, order_side.metrics, handlers, broker=broker)
    poison = FakeDelivery(subject, b"{not json")

    await consumer.handle_batch([poison])

    assert poison.settled_as == ["term"]
    assert len(broker.on_subject(f"deadletter.{subject}")) == 1
    assert order_side.sample("events_processed_total", type=label, outcome="dead_letter") == 1


async def test_a_snapshot_under_another_product_id_is_dead_lettered_and_not_cached(
    order_side: OrderSide,
) -> None:
    broker = InMemoryBroker()
    handlers = order_service_handlers(order_side.reactions, order_side.pending)
    consumer = a_consumer(order_side.clock, order_side.metrics, handlers, broker=broker)
    wire = json.loads(encode(an_envelope("e-1", ProductUpdated(CHAIR, a_product(CHAIR, version=7)))))
    wire["data"]["productId"] = "desk-01"
    update = FakeDelivery(PRODUCT_UPDATED, json.dumps(wire).encode())

    await consumer.handle_batch([update])

    assert update.settled_as == ["term"]
    [letter] = [json.loads(m.data) for m in broker.on_subject(f"deadletter.{PRODUCT_UPDATED}")]
    assert "data.productId must be the id of the product carried" in letter["reason"]
    assert await order_side.cache.get_many([CHAIR, "desk-01"]) == {}


@pytest.mark.parametrize(
    "callback",
    ["has space", "product.>", "", "order.created", "deadletter.product.updated", "product.price_changed"],
)
async def test_a_request_that_can_never_be_answered_is_dead_lettered_at_once(
    product_side: ProductSide, callback: str
) -> None:
    broker = InMemoryBroker()
    metrics = ServiceMetrics()
    handlers = product_service_handlers(product_side.catalog, product_side.answer)
    consumer = a_consumer(product_side.clock, metrics, handlers, name="product-service", broker=broker)
    wire = json.loads(
        encode(an_envelope("e-1", ProductDetailsRequested(CHAIR, "r-1", "product.details_provided")))
    )
    wire["data"]["callbackEvent"] = callback
    request = FakeDelivery(PRODUCT_DETAILS_REQUESTED, json.dumps(wire).encode())

    await consumer.handle_batch([request])

    assert request.settled_as == ["term"]
    [letter] = [json.loads(m.data) for m in broker.on_subject(f"deadletter.{PRODUCT_DETAILS_REQUESTED}")]
    assert "data.callbackEvent must be " in letter["reason"]
    assert letter["attempts"] == 1
    assert product_side.publisher.published == []
    dead = metrics.registry.get_sample_value(
        "events_processed_total", {"type": PRODUCT_DETAILS_REQUESTED, "outcome": "dead_letter"}
    )
    assert dead == 1


@attrs.define
class CountingProcessedEvents:
    """The in-memory store, counting the look-ups made of it."""

    inner: InMemoryProcessedEvents
    lookups: int = 0

    async def seen(self, event_id: str) -> bool:
        self.lookups += 1
        return await self.inner.seen(event_id)

    async def seen_among(self, event_ids: Sequence[str]) -> set[str]:
        self.lookups += 1
        return await self.inner.seen_among(event_ids)

    async def remember(self, event_id: str) -> None:
        await self.inner.remember(event_id)


async def test_a_batch_is_looked_up_once_and_each_delivery_settled_on_its_own(order_side: OrderSide) -> None:
    processed = CountingProcessedEvents(InMemoryProcessedEvents(clock=order_side.clock, ttl_s=3600))
    await processed.remember("e-old")
    broker = InMemoryBroker()
    handlers = order_service_handlers(order_side.reactions, order_side.pending)
    consumer = a_consumer(order_side.clock, order_side.metrics, handlers, broker=broker, processed=processed)
    fresh = FakeDelivery(PRODUCT_CREATED, encode(created("e-new")))
    duplicate = FakeDelivery(PRODUCT_CREATED, encode(created("e-old", name="Not applied")))
    poison = FakeDelivery(PRODUCT_CREATED, b"{not json")

    await consumer.handle_batch([duplicate, poison, fresh])

    assert (fresh.settled_as, duplicate.settled_as, poison.settled_as) == (["ack"], ["ack"], ["term"])
    assert processed.lookups == 1, "one look-up for the whole batch"
    assert await processed.seen("e-new")
    assert (await order_side.cache.get_many([CHAIR]))[CHAIR].name == a_product(CHAIR).name
    assert len(broker.on_subject(f"deadletter.{PRODUCT_CREATED}")) == 1
    assert order_side.sample("events_processed_total", type=PRODUCT_CREATED, outcome="duplicate") == 1


async def test_one_failing_event_of_a_batch_is_retried_and_the_others_acked(order_side: OrderSide) -> None:
    async def flaky(envelope: Envelope) -> None:
        if envelope.id == "e-2":
            raise StoreUnavailable("the order store is down")

    consumer = a_consumer(order_side.clock, order_side.metrics, {PRODUCT_CREATED: flaky})
    deliveries = [FakeDelivery(PRODUCT_CREATED, encode(created(f"e-{n}"))) for n in range(1, 4)]

    await consumer.handle_batch(deliveries)

    assert [d.settled_as for d in deliveries] == [["ack"], ["nak"], ["ack"]]


async def test_the_in_memory_broker_hands_over_what_is_queued_in_batches_of_its_concurrency() -> None:
    broker = InMemoryBroker()
    for n in range(12):
        await broker.publish("product.created", b"x", f"m-{n}")
    sizes: list[int] = []

    async def handle(deliveries: Sequence[Delivery]) -> None:
        sizes.append(len(deliveries))
        for delivery in deliveries:
            await delivery.ack()

    await broker.subscribe_batches(ConsumerSpec("c", ("product.>",), concurrency=8), handle)
    await eventually(lambda: sum(sizes) == 12)
    await broker.close()
    assert sizes == [8, 4]


async def test_the_in_memory_broker_keeps_batches_to_max_batch_with_several_in_flight() -> None:
    broker = InMemoryBroker()
    for n in range(12):
        await broker.publish("product.created", b"x", f"m-{n}")
    release = asyncio.Event()
    sizes: list[int] = []

    async def handle(deliveries: Sequence[Delivery]) -> None:
        sizes.append(len(deliveries))
        await release.wait()
        for delivery in deliveries:
            await delivery.ack()

    spec = ConsumerSpec("c", ("product.>",), concurrency=8, max_batch=3)
    await broker.subscribe_batches(spec, handle)
    await eventually(lambda: sum(sizes) == 8)  # the next batch went out while the first waited
    held = list(sizes)
    release.set()
    await eventually(lambda: sum(sizes) == 12)
    await broker.close()
    assert held == [3, 3, 2]
    assert max(sizes) == 3


async def test_a_slow_message_of_a_batch_holds_its_own_slot_only() -> None:
    broker = InMemoryBroker()
    for n in range(10):
        await broker.publish("product.created", b"slow" if n == 0 else b"x", f"m-{n}")
    release = asyncio.Event()
    done: list[bytes] = []

    async def handle(deliveries: Sequence[Delivery]) -> None:
        async def one(delivery: Delivery) -> None:
            if delivery.data == b"slow":
                await release.wait()
            done.append(delivery.data)
            await delivery.ack()

        await asyncio.gather(*map(one, deliveries))

    await broker.subscribe_batches(ConsumerSpec("c", ("product.>",), concurrency=4), handle)
    await eventually(lambda: len(done) == 9)  # the nine others, while the slow one waits
    release.set()
    await eventually(lambda: len(done) == 10)
    await broker.close()


def batch_consumer(order_side: OrderSide, alone: EventHandler, together: EventBatchHandler) -> EventConsumer:
    return a_consumer(
        order_side.clock,
        order_side.metrics,
        {PRODUCT_CREATED: alone},
        batch_handlers={PRODUCT_CREATED: together},
        handler_timeout_s=0.05,
    )


async def test_fresh_events_of_a_type_with_a_batch_handler_are_applied_together(
    order_side: OrderSide,
) -> None:
    calls: list[list[str]] = []

    async def alone(envelope: Envelope) -> None:
        calls.append([envelope.id])

    async def together(envelopes: Sequence[Envelope]) -> None:
        calls.append([envelope.id for envelope in envelopes])

    consumer = batch_consumer(order_side, alone, together)
    await consumer.processed.remember("e-2")
    deliveries = [FakeDelivery(PRODUCT_CREATED, encode(created(f"e-{n}"))) for n in range(1, 4)]

    await consumer.handle_batch(deliveries)

    assert calls == [["e-1", "e-3"]]
    assert [d.settled_as for d in deliveries] == [["ack"], ["ack"], ["ack"]]
    assert await consumer.processed.seen_among(["e-1", "e-3"]) == {"e-1", "e-3"}
    assert order_side.sample("events_processed_total", type=PRODUCT_CREATED, outcome="ack") == 2
    assert order_side.sample("events_processed_total", type=PRODUCT_CREATED, outcome="duplicate") == 1


async def test_when_the_batch_handler_fails_each_event_gets_its_own_outcome(order_side: OrderSide) -> None:
    async def alone(envelope: Envelope) -> None:
        if envelope.id == "e-2":
            raise InvalidRequest("this one is refused")

    async def together(envelopes: Sequence[Envelope]) -> None:
        raise StoreUnavailable("down for the batch")

    consumer = batch_consumer(order_side, alone, together)
    deliveries = [FakeDelivery(PRODUCT_CREATED, encode(created(f"e-{n}"))) for n in range(1, 4)]

    await consumer.handle_batch(deliveries)

    assert [d.settled_as for d in deliveries] == [["ack"], ["term"], ["ack"]]
    assert await consumer.processed.seen_among(["e-1", "e-2", "e-3"]) == {"e-1", "e-3"}


async def test_a_batch_handler_that_never_returns_leaves_each_event_to_be_retried(
    order_side: OrderSide,
) -> None:
    async def alone(envelope: Envelope) -> None:
        return None

    async def together(envelopes: Sequence[Envelope]) -> None:
        await asyncio.Event().wait()

    consumer = batch_consumer(order_side, alone, together)
    deliveries = [FakeDelivery(PRODUCT_CREATED, encode(created(f"e-{n}"))) for n in range(1, 3)]

    await consumer.handle_batch(deliveries)

    assert [d.settled_as for d in deliveries] == [["nak"], ["nak"]]
    assert order_side.sample("events_processed_total", type=PRODUCT_CREATED, outcome="retry") == 2


@pytest.mark.parametrize("with_batch_handler", [False, True])
async def test_two_copies_of_an_event_in_one_batch_have_one_effect(
    order_side: OrderSide, with_batch_handler: bool
) -> None:
    applied: list[str] = []

    async def alone(envelope: Envelope) -> None:
        applied.append(envelope.id)

    async def together(envelopes: Sequence[Envelope]) -> None:
        applied.extend(envelope.id for envelope in envelopes)

    consumer = batch_consumer(order_side, alone, together)
    if not with_batch_handler:
        consumer = attrs.evolve(consumer, batch_handlers={})
    deliveries = [
        FakeDelivery(PRODUCT_CREATED, encode(created(event_id))) for event_id in ("e-1", "e-2", "e-1")
    ]

    await consumer.handle_batch(deliveries)

    assert sorted(applied) == ["e-1", "e-2"]
    assert [d.settled_as for d in deliveries] == [["ack"], ["ack"], ["ack"]]
    assert order_side.sample("events_processed_total", type=PRODUCT_CREATED, outcome="duplicate") == 1
