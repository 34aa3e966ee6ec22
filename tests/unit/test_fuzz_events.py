"""Hypothesis feeds valid and mangled envelopes to the Order Service's real consumer on the in-memory bus.

The envelopes and the oracle live in tests/event_fuzzing.py; the same ones go through real JetStream
in tests/integration/test_fuzz_events_on_jetstream.py.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

from adapters.broker import ConsumerSpec, Delivery
from adapters.memory.broker import InMemoryBroker
from adapters.wire.event_json import decode, encode
from domain.events import PRODUCT_BATCH_DETAILS_PROVIDED, Envelope, ProductBatchDetailsProvided
from domain.products import Product
from entrypoints import Settings
from entrypoints.apps import build_order_container
from entrypoints.consumers import EventConsumer
from entrypoints.event_routing import order_service_handlers
from tests.event_fuzzing import (
    HANDLED,
    Poison,
    Valid,
    expected_cache,
    fuzz_settings,
    letter_holds,
    messages,
    poison,
    product_ids_of,
    snapshots_in,
    valid_envelopes,
)

from .builders import a_product
from .fakes import START
from .strategies import envelopes

MAX_DELIVER = 3
SETTLE_TIMEOUT_S = 5.0
EXAMPLES = int(os.environ.get("FUZZ_EVENTS_EXAMPLES", "150"))
"""Per property; raise it (and set FUZZ_EVENTS_RANDOM=1) for a deeper run than CI's."""
FUZZ = fuzz_settings(EXAMPLES, randomise=bool(os.environ.get("FUZZ_EVENTS_RANDOM")))


# --- the rig: a real EventConsumer on a real in-memory broker ---------------------------------


@attrs.define
class Outcome:
    subject: str
    data: bytes
    attempt: int
    settlements: list[str]
    raised: BaseException | None


class RecordingDelivery:
    """The broker's delivery, noting each settlement the consumer makes."""

    def __init__(self, inner: Delivery) -> None:
        self.inner = inner
        self.settlements: list[str] = []

    @property
    def subject(self) -> str:
        return self.inner.subject

    @property
    def data(self) -> bytes:
        return self.inner.data

    @property
    def attempt(self) -> int:
        return self.inner.attempt

    async def ack(self) -> None:
        self.settlements.append("ack")
        await self.inner.ack()

    async def nak(self, delay_s: float) -> None:
        self.settlements.append("nak")
        await self.inner.nak(delay_s)

    async def term(self) -> None:
        self.settlements.append("term")
        await self.inner.term()


class Rig:
    """The Order Service's consumer as `order_lifecycle` builds it, on product events."""

    def __init__(self) -> None:
        self.broker = InMemoryBroker()
        self.container = build_order_container(
            Settings(product_service_url="http://127.0.0.1:9", admin_token="t"), self.broker
        )
        self.consumer = EventConsumer(
            name="order-service",
            handlers=order_service_handlers(self.container.reactions(), self.container.pending()),
            broker=self.broker,
            processed=self.container.processed(),
            metrics=self.container.core.metrics(),
            clock=self.container.core.clock(),
            max_deliver=MAX_DELIVER,
        )
        self.outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
        self.published = 0

    async def __aenter__(self) -> Rig:
        # the handled subjects only (not product.>: the handlers themselves publish
        # product.details_requested when the cache is too far behind a stock change)
        spec = ConsumerSpec(name="order-service", subjects=tuple(sorted(HANDLED)), max_deliver=MAX_DELIVER)
        await self.broker.subscribe(spec, self._handle)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.broker.close()

    async def _handle(self, delivery: Delivery) -> None:
        recording = RecordingDelivery(delivery)
        raised: BaseException | None = None
        try:
            await self.consumer(recording)
        except Exception as error:  # the property under test: this never happens
            raised = error
            await delivery.term()
        self.outcomes.put_nowait(
            Outcome(delivery.subject, delivery.data, delivery.attempt, recording.settlements, raised)
        )

    async def deliver(self, subject: str, data: bytes) -> Outcome:
        """Publish one message and wait for the consumer to be done with it."""
        self.published += 1
        await self.broker.publish(subject, data, f"m-{self.published}")
        return await asyncio.wait_for(self.outcomes.get(), SETTLE_TIMEOUT_S)

    def dead_letters(self, subject: str) -> list[dict[str, Any]]:
        return [json.loads(m.data) for m in self.broker.on_subject(f"deadletter.{subject}")]

    async def cached(self, product_ids: set[str]) -> dict[str, Product]:
        return await self.container.cache().get_many(sorted(product_ids))

    def processed(self) -> Counter[str]:
        """events_processed_total by outcome, over every type."""
        counts: Counter[str] = Counter()
        for metric in self.container.core.metrics().registry.collect():
            for sample in metric.samples:
                if sample.name == "events_processed_total" and sample.value:
                    counts[sample.labels["outcome"]] += int(sample.value)
        return counts


# --- properties ---------------------------------------------------------------------------------


async def feed(batch: list[Valid | Poison]) -> None:
    async with Rig() as rig:
        seen: set[str] = set()
        expected: Counter[str] = Counter()
        for message in batch:
            outcome = await rig.deliver(message.subject, message.data)
            assert outcome.raised is None, f"the consumer raised {outcome.raised!r}"
            assert outcome.attempt == 1, "nothing here may be delivered twice"
            if isinstance(message, Valid):
                assert outcome.settlements == ["ack"]
                if message.envelope.id in seen:
                    expected["duplicate"] += 1  # acked, with no second effect
                    continue
                expected["ack"] += 1
                seen.add(message.envelope.id)
                for product in snapshots_in(message.envelope):
                    cached = (await rig.cached({product.id})).get(product.id)
                    assert cached is not None
                    assert cached.version >= product.version
            else:
                assert outcome.settlements == ["term"], message.mutation
                expected["dead_letter"] += 1
                [letter] = [
                    letter
                    for letter in rig.dead_letters(message.subject)
                    if letter_holds(letter, message.data)
                ]
                assert letter["subject"] == message.subject
                assert letter["reason"], message.mutation
        await asyncio.sleep(0)
        assert rig.outcomes.empty(), "a message came back after it was settled"
        assert rig.processed() == expected
        touched = set().union(*(product_ids_of(m.envelope) for m in batch if isinstance(m, Valid)))
        assert await rig.cached(touched) == await expected_cache(batch)


@FUZZ
@given(st.lists(messages, min_size=1, max_size=6))
def test_the_consumer_settles_every_message_applies_the_valid_and_dead_letters_the_rest(
    batch: list[Valid | Poison],
) -> None:
    asyncio.run(feed(batch))


@FUZZ
@given(poison(), valid_envelopes)
def test_a_valid_event_after_a_poison_one_is_still_applied(bad: Poison, good: Envelope) -> None:
    asyncio.run(feed([bad, Valid(good)]))


async def test_a_huge_but_well_formed_event_is_applied() -> None:
    """The largest batch reply (1000 products, MAX_BATCH_IDS) of products at the Product
    Service's limits (128-character ids, 200-character names), under the broker's max_payload
    (1 MiB, headers counted, as on nats-server)."""
    products = tuple(
        attrs.evolve(a_product(f"p-{number:04}-" + "x" * 121), name="n" * 200) for number in range(1_000)
    )
    reply = ProductBatchDetailsProvided(tuple(p.id for p in products), "r-1", products)
    envelope = Envelope("e-1", PRODUCT_BATCH_DETAILS_PROVIDED, "product-service", "1.0", START, "c-1", reply)
    raw = encode(envelope)
    assert 600_000 < len(raw) < 1_000_000
    async with Rig() as rig:
        outcome = await rig.deliver(PRODUCT_BATCH_DETAILS_PROVIDED, raw)
        assert outcome.settlements == ["ack"]
        assert list((await rig.cached({p.id for p in products})).values()) == list(products)


@FUZZ
@given(envelopes())
def test_every_envelope_survives_the_wire_unchanged(envelope: Envelope) -> None:
    assert decode(encode(envelope)) == envelope
    assert encode(decode(encode(envelope))) == encode(envelope)
