"""The real EventConsumer on JetStream: a poison message is dead-lettered and the consumer goes on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import attrs
import pytest

from adapters.broker import DEAD_LETTERS, ConsumerSpec
from adapters.memory.small_ports import InMemoryProcessedEvents
from adapters.metrics import ServiceMetrics
from adapters.system import SystemClock, UuidIds
from adapters.wire.event_json import encode
from application.envelopes import EnvelopeFactory
from domain.events import PRODUCT_PRICE_CHANGED, PRODUCT_UPDATED, Envelope, PriceChanged, ProductUpdated
from domain.products import Product, ProductStatus
from entrypoints import Settings
from entrypoints.apps import build_order_container
from entrypoints.consumers import EventConsumer, subscribe_consumers
from entrypoints.event_routing import order_service_batch_handlers, order_service_handlers
from tests.integration.nats_support import (
    Brokers,
    eventually,
    jetstream_admin,
    stored_count,
)
from tests.integration.servers import NatsServer

pytestmark = pytest.mark.nats

POISON = b'{"id": "not json at all'


@pytest.fixture
async def brokers(nats_clean: NatsServer) -> AsyncIterator[Brokers]:
    made = Brokers(nats_clean.url)
    try:
        yield made
    finally:
        await made.close_all()


def product_updated() -> Envelope:
    product = Product(
        id="e8acc97f-c204-4c53-9c33-5d91a1061618",
        name="Ergonomic Office Chair",
        base_price=Decimal("249.99"),
        current_price=Decimal("249.99"),
        currency="USD",
        status=ProductStatus.ACTIVE,
        quantity_available=12,
        version=3,
        updated_at=datetime(2026, 11, 23, 10, tzinfo=UTC),
    )
    envelopes = EnvelopeFactory(source="product-service", clock=SystemClock(), ids=UuidIds())
    return envelopes.wrap(ProductUpdated(product_id=product.id, product=product))


async def test_a_poison_message_is_dead_lettered_with_its_reason_and_the_next_one_applied(
    brokers: Brokers,
) -> None:
    broker = await brokers.new()
    applied: list[Envelope] = []

    async def apply(envelope: Envelope) -> None:
        applied.append(envelope)

    clock = SystemClock()
    metrics = ServiceMetrics()
    spec = ConsumerSpec(name="order-service", subjects=(PRODUCT_UPDATED,), concurrency=1)
    consumer = EventConsumer(
        name=spec.name,
        handlers={PRODUCT_UPDATED: apply},
        broker=broker,
        processed=InMemoryProcessedEvents(clock=clock, ttl_s=3600),
        metrics=metrics,
        clock=clock,
        max_deliver=spec.max_deliver,
    )
    await broker.subscribe(spec, consumer)
    valid = product_updated()

    await broker.publish(PRODUCT_UPDATED, POISON, "poison-1")
    await broker.publish(PRODUCT_UPDATED, encode(valid), valid.id)

    await eventually(lambda: [e.id for e in applied] == [valid.id], what="the valid event applied")
    async with jetstream_admin(brokers.url) as jsm:
        letter = await jsm.get_last_msg(DEAD_LETTERS, f"deadletter.{PRODUCT_UPDATED}")
    assert letter.data is not None
    body = json.loads(letter.data)
    assert body["subject"] == PRODUCT_UPDATED
    assert body["consumer"] == "order-service"
    assert body["reason"]
    assert body["payload"] == POISON.decode()
    assert body["attempts"] == 1

    await asyncio.sleep(1.2)  # terminated, not redelivered: one letter, one application
    assert await stored_count(brokers.url, DEAD_LETTERS) == 1
    assert len(applied) == 1
    dead = metrics.registry.get_sample_value(
        "events_processed_total", {"type": PRODUCT_UPDATED, "outcome": "dead_letter"}
    )
    assert dead == 1


async def test_price_changes_fetched_together_are_each_applied_acked_or_dead_lettered_once(
    brokers: Brokers,
) -> None:
    broker = await brokers.new()
    container = build_order_container(
        Settings(product_service_url="http://127.0.0.1:9", admin_token="t"), broker
    )
    base = product_updated().data
    assert isinstance(base, ProductUpdated)
    products = [attrs.evolve(base.product, id=f"p-{n}", version=1) for n in range(6)]
    await container.cache().put_many(products)
    envelopes = EnvelopeFactory(source="product-service", clock=SystemClock(), ids=UuidIds())
    changes = [
        envelopes.wrap(PriceChanged(p.id, p.current_price, Decimal("199.00"), p.base_price, 2))
        for p in products
    ]
    for change in changes:
        await broker.publish(PRODUCT_PRICE_CHANGED, encode(change), change.id)
    await broker.publish(PRODUCT_PRICE_CHANGED, POISON, "poison-1")
    await broker.publish(PRODUCT_PRICE_CHANGED, encode(changes[0]), "the same event again")
    metrics = container.core.metrics()

    def settled(outcome: str, event_type: str = PRODUCT_PRICE_CHANGED) -> float:
        return (
            metrics.registry.get_sample_value(
                "events_processed_total", {"type": event_type, "outcome": outcome}
            )
            or 0
        )

    spec = ConsumerSpec(name="order-service", subjects=(PRODUCT_PRICE_CHANGED,))
    await subscribe_consumers(
        broker,
        [spec],
        order_service_handlers(container.reactions(), container.pending()),
        container.processed(),
        metrics,
        container.core.clock(),
        order_service_batch_handlers(container.reactions()),
    )

    await eventually(lambda: settled("ack") + settled("duplicate") + settled("dead_letter") == 8)
    cached = await container.cache().get_many([p.id for p in products])
    assert {p.id: (p.version, p.current_price) for p in cached.values()} == {
        p.id: (2, Decimal("199.00")) for p in products
    }
    assert (settled("ack"), settled("duplicate"), settled("dead_letter")) == (6, 1, 1)
    await asyncio.sleep(1.2)  # nothing redelivered
    assert settled("retry") == 0
    assert settled("ack") == 6
