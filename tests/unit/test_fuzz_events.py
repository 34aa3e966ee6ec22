"""Hypothesis feeds valid and mangled envelopes to the Order Service's real consumer on the in-memory bus."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.broker import ConsumerSpec, Delivery
from adapters.memory.broker import InMemoryBroker
from adapters.wire.converter import dumps, loads
from adapters.wire.event_json import decode, encode, envelope_to_wire
from domain.events import (
    EVENT_TYPES,
    PRODUCT_CREATED,
    AvailabilityChanged,
    Envelope,
    EventData,
    PriceChanged,
    ProductBatchDetailsProvided,
    ProductCreated,
    ProductDetailsProvided,
    ProductDiscontinued,
    ProductUpdated,
    event_type_of,
)
from domain.products import Product
from entrypoints import Settings
from entrypoints.apps import build_order_container
from entrypoints.consumers import EventConsumer
from entrypoints.event_routing import order_service_handlers

from .builders import a_product
from .fakes import START
from .strategies import envelopes, ids, money, products, quantities, timestamps, versions

MAX_DELIVER = 3
SETTLE_TIMEOUT_S = 5.0
EXAMPLES = int(os.environ.get("FUZZ_EVENTS_EXAMPLES", "150"))
"""Per property; raise it (and set FUZZ_EVENTS_RANDOM=1) for a deeper run than CI's."""
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("FUZZ_EVENTS_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def _handled_types() -> frozenset[str]:
    container = build_order_container(Settings())
    return frozenset(order_service_handlers(container.reactions(), container.pending()))


HANDLED = _handled_types()
"""The event types the Order Service applies; the NATS subject of each is the type itself."""


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


# --- what gets fed ------------------------------------------------------------------------------


@attrs.frozen
class Valid:
    envelope: Envelope

    @property
    def subject(self) -> str:
        return self.envelope.type

    @property
    def data(self) -> bytes:
        return encode(self.envelope)


@attrs.frozen
class Poison:
    subject: str
    data: bytes
    mutation: str


# Few product ids and low versions half of the time, so events meet the same product in turn.
product_ids = st.sampled_from(["p-1", "p-2", "p-3"]) | ids
low_versions = st.integers(min_value=1, max_value=4) | versions


@st.composite
def product_snapshots(draw: st.DrawFn) -> Product:
    return attrs.evolve(draw(products()), id=draw(product_ids), version=draw(low_versions))


handled_data: st.SearchStrategy[EventData] = st.one_of(
    product_snapshots().map(lambda p: ProductCreated(p.id, p)),
    product_snapshots().map(lambda p: ProductUpdated(p.id, p)),
    st.builds(PriceChanged, product_ids, money(), money(), money(), low_versions),
    st.builds(ProductDiscontinued, product_ids, low_versions),
    st.builds(AvailabilityChanged, product_ids, st.booleans(), quantities, low_versions),
    st.builds(ProductDetailsProvided, product_ids, ids, st.none() | product_snapshots()),
    st.builds(
        ProductBatchDetailsProvided,
        st.lists(product_ids, max_size=3).map(tuple),
        ids,
        st.lists(product_snapshots(), max_size=3).map(tuple),
    ),
)


@st.composite
def handled_envelopes(draw: st.DrawFn) -> Envelope:
    """Envelopes of the types the Order Service applies, as the Product Service would send them."""
    data = draw(handled_data)
    return Envelope(
        id=draw(ids),
        type=event_type_of(data),
        source="product-service",
        data_version="1.0",
        timestamp=draw(timestamps()),
        correlation_id=draw(ids),
        data=data,
    )


valid_envelopes = handled_envelopes()


def json_of(envelope: Envelope) -> Any:
    """The envelope as plain JSON values (Decimal for non-integral numbers), ready to mangle."""
    return loads(dumps(envelope_to_wire(envelope)))


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key or index below the root, depth first."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def get_at(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


def set_at(node: Any, path: tuple[Any, ...], value: Any) -> None:
    get_at(node, path[:-1])[path[-1]] = value


SENTINEL = "\u0000fuzz-raw-token\u0000"


def with_raw(wire: Any, path: tuple[Any, ...], raw: bytes) -> bytes:
    """The wire as JSON with the value at `path` replaced by raw JSON text (deep nesting, 1e400...)."""
    mangled = copy.deepcopy(wire)
    set_at(mangled, path, SENTINEL)
    encoded = dumps(mangled)
    marker = json.dumps(SENTINEL).encode()
    assert encoded.count(marker) == 1
    return encoded.replace(marker, raw)


def wrong_type_for(value: Any) -> st.SearchStrategy[Any]:
    """A JSON value no field holding `value` accepts (no field the Order Service reads is nullable)."""
    if isinstance(value, str):
        return st.sampled_from([0, 7, True, [], {}, [value], {"value": value}])
    if isinstance(value, bool):
        return st.sampled_from([0, 1, "true", [], {}])
    if isinstance(value, int | Decimal):
        return st.sampled_from(["1", "12.50", True, False, [], {}, [1]])
    if isinstance(value, dict):
        return st.sampled_from(["x", 1, True, [], [value]])
    if isinstance(value, list):
        return st.sampled_from(["x", 1, True, {}, {"0": value}])
    return st.sampled_from(["x", 1, True, [], {}])


def _huge(size: int) -> str:
    return "x" * size


@st.composite
def poison(draw: st.DrawFn) -> Poison:
    """A handled envelope mangled one way, so that it can never be applied."""
    envelope = draw(valid_envelopes)
    subject = envelope.type
    wire = json_of(envelope)
    mutation = draw(
        st.sampled_from(
            [
                "wrong type",
                "missing field",
                "huge string",
                "wrong dataVersion",
                "unknown type",
                "not UTF-8",
                "deep nesting",
                "unreadable number",
                "not a version",
                "three decimals",
                "not an object",
                "garbage",
            ]
        )
    )
    mangled = copy.deepcopy(wire)
    all_paths = list(paths(wire))
    if mutation == "wrong type":
        path = draw(st.sampled_from(all_paths).filter(lambda p: get_at(wire, p) is not None))
        set_at(mangled, path, draw(wrong_type_for(get_at(wire, path))))
    elif mutation == "missing field":
        path = draw(st.sampled_from([p for p in all_paths if isinstance(p[-1], str)]))
        del get_at(mangled, path[:-1])[path[-1]]
    elif mutation == "huge string":
        size = draw(st.integers(min_value=10_000, max_value=1_000_000))
        mangled[draw(st.sampled_from(["type", "dataVersion", "timestamp"]))] = _huge(size)
    elif mutation == "wrong dataVersion":
        mangled["dataVersion"] = draw(
            st.sampled_from(["2.0", "1", "", "1.0.0", " 1.0", "1.0\n", 1, Decimal("1.0"), None, [], {}])
            | st.text(max_size=10).filter(lambda v: v != "1.0")
        )
    elif mutation == "unknown type":
        mangled["type"] = draw(
            st.sampled_from([*sorted(set(EVENT_TYPES) - HANDLED), "product.renamed", "PRODUCT.CREATED", ""])
            | st.text(max_size=40).filter(lambda v: v not in HANDLED)
        )
    elif mutation == "not UTF-8":
        raw = dumps(wire)
        at = draw(st.integers(min_value=0, max_value=len(raw)))
        bad = draw(st.sampled_from([b"\x80", b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
        return Poison(subject, raw[:at] + bad + raw[at:], mutation)
    elif mutation == "deep nesting":
        depth = draw(st.integers(min_value=5_000, max_value=200_000))
        return Poison(
            subject, with_raw(wire, draw(st.sampled_from(all_paths)), b"[" * depth + b"]" * depth), mutation
        )
    elif mutation == "unreadable number":
        token = draw(
            st.sampled_from(
                [b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity", b"1e99999999999999999999"]
            )
        )
        return Poison(subject, with_raw(wire, draw(st.sampled_from(all_paths)), token), mutation)
    elif mutation == "not a version":
        versions = [p for p in all_paths if p[-1] == "version"]
        if not versions:
            return Poison(subject, dumps({**wire, "dataVersion": "0.9"}), "wrong dataVersion")
        set_at(mangled, draw(st.sampled_from(versions)), draw(st.integers(max_value=0)))
    elif mutation == "three decimals":
        prices = [p for p in all_paths if p[-1] in ("oldPrice", "newPrice", "basePrice", "currentPrice")]
        if not prices:
            return Poison(subject, dumps({**wire, "dataVersion": "0.9"}), "wrong dataVersion")
        cents = draw(st.integers(min_value=-(10**11), max_value=10**11))
        thousandths = cents * 10 + draw(st.integers(min_value=1, max_value=9))
        set_at(mangled, draw(st.sampled_from(prices)), Decimal(thousandths).scaleb(-3))
    elif mutation == "not an object":
        return Poison(
            subject, draw(st.sampled_from([b"[]", b"null", b'"event"', b"1", b"true", b"[{}]"])), mutation
        )
    else:
        return Poison(subject, draw(st.binary(max_size=200)), mutation)
    return Poison(subject, dumps(mangled), mutation)


messages: st.SearchStrategy[Valid | Poison] = st.one_of(valid_envelopes.map(Valid), poison())


# --- the expected effect of a valid event, by the rule "newest version wins" ----------------------


def snapshots_in(envelope: Envelope) -> list[Product]:
    data = envelope.data
    if isinstance(data, ProductCreated | ProductUpdated):
        return [data.product]
    if isinstance(data, ProductDetailsProvided):
        return [data.product_details] if data.product_details is not None else []
    if isinstance(data, ProductBatchDetailsProvided):
        return list(data.products)
    return []


def product_ids_of(envelope: Envelope) -> set[str]:
    ids = {p.id for p in snapshots_in(envelope)}
    product_id = getattr(envelope.data, "product_id", None)
    return ids | ({product_id} if isinstance(product_id, str) else set())


async def expected_cache(batch: list[Valid | Poison]) -> dict[str, Product]:
    """The same valid events, handed straight to the handlers of a second container (no consumer)."""
    reference = build_order_container(Settings())
    handlers = order_service_handlers(reference.reactions(), reference.pending())
    seen: set[str] = set()
    touched: set[str] = set()
    for message in batch:
        if isinstance(message, Valid) and message.envelope.id not in seen:
            seen.add(message.envelope.id)
            touched |= product_ids_of(message.envelope)
            await handlers[message.envelope.type](message.envelope)
    return await reference.cache().get_many(sorted(touched))


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
                    if base64.b64decode(letter["payloadBase64"]) == message.data
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
    product = attrs.evolve(a_product("p-" + "x" * 100_000), name="n" * 1_000_000)
    envelope = Envelope(
        "e-1", PRODUCT_CREATED, "product-service", "1.0", START, "c-1", ProductCreated(product.id, product)
    )
    async with Rig() as rig:
        outcome = await rig.deliver(PRODUCT_CREATED, encode(envelope))
        assert outcome.settlements == ["ack"]
        assert (await rig.cached({product.id}))[product.id] == product


@FUZZ
@given(envelopes())
def test_every_envelope_survives_the_wire_unchanged(envelope: Envelope) -> None:
    assert decode(encode(envelope)) == envelope
    assert encode(decode(encode(envelope))) == encode(envelope)
