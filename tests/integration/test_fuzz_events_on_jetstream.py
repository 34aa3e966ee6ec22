"""Hypothesis-drawn envelopes, valid and mangled, into the Order Service's real consumers on real JetStream.

The messages and the oracle are those of tests/event_fuzzing.py, which the unit tier feeds to the
in-memory broker. Here they travel as in production: a broker of the "Product Service" publishes
each one on a private nats-server (the subject is the event type; a `*_details_provided` reply goes
to the instance's reply subject, a batch reply sometimes to the shared subject the scheduled
refresh asks for), and the Order Service's consumers are subscribed as `order_lifecycle` subscribes
them: `subscribe_consumers` with `order_service_consumers` and the real `order_service_handlers`,
on a `JetStreamBroker` of their own, over the in-memory cache and stores of `build_order_container`.
Every example starts from no stream and no consumer, with a fresh container.

Each message is published, then waited for until the consumer has counted its settlement in
`events_processed_total`, so the handlers see the batch in its order (each subject has a JetStream
consumer of its own, so without the wait the order across subjects would be the server's, and the
oracle could not say which of two snapshots of one version wins). Every publish carries a
`Nats-Msg-Id` of its own, as a re-publish after JetStream's two-minute duplicate window would: a
repeated envelope id then reaches the consumer, whose processed-events store must hold it back.
What the server saw is read from outside the adapter: terminations from JetStream's advisories,
acks and redeliveries from the consumers' info, dead letters from their stream.

Sizes: the server keeps NATS's default max_payload (1 MiB), as the deploy files do. No message is
filtered out: one the publisher cannot store must be refused with EventBusUnavailable (its size
with headers is over max_payload), then is neither stored nor counted; any other must be stored
and settled. The strategies draw nothing over the limit (the longest "huge string" is 1,000,000
bytes plus the envelope) and seldom anything near it, so the last test pads drawn messages, valid
or not, to within 256 KiB either side of the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import nats
import pytest
from hypothesis import event, example, given, note
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.msg import Msg

from adapters.broker import DEAD_LETTERS, MSG_ID_HEADER, PRODUCT_EVENTS, headers_size, matches_any
from adapters.nats import JetStreamBroker
from adapters.wire.event_json import encode
from domain.errors import EventBusUnavailable
from domain.events import (
    PRODUCT_BATCH_DETAILS_PROVIDED,
    PRODUCT_CREATED,
    PRODUCT_DETAILS_PROVIDED,
    Envelope,
    ProductCreated,
)
from domain.products import Product
from entrypoints import Settings
from entrypoints.apps import build_order_container
from entrypoints.consumers import subscribe_consumers
from entrypoints.containers import OrderService, reply_subject
from entrypoints.event_routing import (
    order_service_batch_handlers,
    order_service_consumers,
    order_service_handlers,
)
from tests.event_fuzzing import (
    MUTATIONS,
    Poison,
    Valid,
    expected_cache,
    fuzz_settings,
    letter_holds,
    messages,
    poison,
    product_ids_of,
    valid_envelopes,
)
from tests.integration.servers import NatsServer
from tests.unit.builders import a_product
from tests.unit.fakes import START

pytestmark = pytest.mark.nats

EXAMPLES = int(os.environ.get("FUZZ_EVENTS_NATS_EXAMPLES", "40"))
"""Batches per run; raise it (and set FUZZ_EVENTS_RANDOM=1) for a deeper run than CI's."""
RANDOMISE = bool(os.environ.get("FUZZ_EVENTS_RANDOM"))
SETTLE_TIMEOUT_S = 10.0
"""How long one message may take from publish to settlement; far above the milliseconds it takes."""
INSTANCE = "fuzz-instance"
ORDER_SIDE = Settings(product_service_url="http://127.0.0.1:9", admin_token="t", instance_id=INSTANCE)
SPECS = order_service_consumers(INSTANCE)
LONGER_THAN_ANY_DRAWN_ID = "z" * 41
"""`ids` draws at most 40 characters, so the final event's ids can meet nothing of the batch."""
TERMINATED = f"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{PRODUCT_EVENTS}.>"
MAX_DELIVERIES = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{PRODUCT_EVENTS}.>"


def wire_subject(message: Valid | Poison, to_this_instance: bool) -> str:
    """The subject the Product Service sends the message on: its type, or the reply subject asked for."""
    if message.subject == PRODUCT_DETAILS_PROVIDED or (
        message.subject == PRODUCT_BATCH_DETAILS_PROVIDED and to_this_instance
    ):
        return reply_subject(message.subject, INSTANCE)
    return message.subject


def consumer_of(subject: str) -> str:
    [spec] = [spec for spec in SPECS if matches_any(spec.subjects, subject)]
    return spec.name


def describe(message: Valid | Poison) -> str:
    return f"poison: {message.mutation}" if isinstance(message, Poison) else "valid"


# --- the rig: the Order Service's consumers as order_lifecycle subscribes them, on real JetStream --


@attrs.frozen
class Letter:
    subject: str
    body: dict[str, Any]


@attrs.define
class Rig:
    admin: Client
    product_broker: JetStreamBroker
    container: OrderService
    terminated: list[dict[str, Any]]
    """JetStream's advisories of the deliveries a consumer terminated (what a dead letter ends with)."""
    given_up: list[dict[str, Any]]
    """JetStream's advisories of messages delivered max_deliver times: there must be none."""
    published: int = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, url: str) -> AsyncIterator[Rig]:
        admin = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
        order_broker = JetStreamBroker(url, client_name="order-service", start_wait_s=SETTLE_TIMEOUT_S)
        product_broker = JetStreamBroker(url, client_name="product-service", start_wait_s=SETTLE_TIMEOUT_S)
        try:
            jsm = admin.jsm(timeout=5)
            for info in await jsm.streams_info():  # no message and no consumer of an example before
                await jsm.delete_stream(info.config.name or "")
            terminated: list[dict[str, Any]] = []
            given_up: list[dict[str, Any]] = []
            for subject, into in ((TERMINATED, terminated), (MAX_DELIVERIES, given_up)):
                await admin.subscribe(subject, cb=_appending_to(into))
            await admin.flush()
            await order_broker.start()
            await product_broker.start()
            assert order_broker.connection.is_connected, "the Order Service's broker did not connect"
            assert product_broker.connection.is_connected, "the Product Service's broker did not connect"
            container = build_order_container(ORDER_SIDE, order_broker)
            await subscribe_consumers(
                order_broker,
                SPECS,
                order_service_handlers(container.reactions(), container.pending()),
                container.processed(),
                container.core.metrics(),
                container.core.clock(),
                order_service_batch_handlers(container.reactions()),
            )
            yield cls(admin, product_broker, container, terminated, given_up)
        finally:
            await product_broker.close()
            await order_broker.close()  # stops the subscriptions too
            await admin.close()

    def processed(self) -> Counter[str]:
        """events_processed_total by outcome, over every type."""
        counts: Counter[str] = Counter()
        for metric in self.container.core.metrics().registry.collect():
            for sample in metric.samples:
                if sample.name == "events_processed_total" and sample.value:
                    counts[sample.labels["outcome"]] += int(sample.value)
        return counts

    async def stored_on(self, subject: str) -> int:
        """Messages PRODUCT_EVENTS holds on `subject`. Per subject: the Order Service publishes
        to the stream too (a details request when a cache is too far behind an event)."""
        info = await self.admin.jsm(timeout=5).stream_info(PRODUCT_EVENTS, subjects_filter=subject)
        return int((info.state.subjects or {}).get(subject, 0))

    async def deliver(self, subject: str, data: bytes, what: str) -> tuple[int, Counter[str]] | None:
        """Publish as the Product Service does and wait for the settlement: the stream sequence and
        the outcome counted; None when the bus refused to store the message."""
        before, stored_before = self.processed(), await self.stored_on(subject)
        self.published += 1
        msg_id = f"fuzz-{self.published}"
        size = len(data) + headers_size({MSG_ID_HEADER: msg_id})
        try:
            await self.product_broker.publish(subject, data, msg_id)
        except EventBusUnavailable:
            assert size > self.admin.max_payload, f"{what} ({size} bytes) refused, yet within max_payload"
            assert await self.stored_on(subject) == stored_before, f"{what} refused, yet stored"
            return None
        assert size <= self.admin.max_payload, f"{what} ({size} bytes) stored over max_payload"
        stored = await self.stored_on(subject) - stored_before
        assert stored == 1, f"{what} stored as {stored} messages"
        last = await self.admin.jsm(timeout=5).get_last_msg(PRODUCT_EVENTS, subject)
        assert (last.data or b"") == data, f"{what}: the last message on {subject} is another one"
        assert last.seq is not None
        seq = int(last.seq)
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while (after := self.processed()).total() == before.total():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not settled within {SETTLE_TIMEOUT_S}s")
            await asyncio.sleep(0.005)
        return seq, after - before

    async def settled_for_good(self, terminated_seqs: set[int]) -> None:
        """Every delivery acked or terminated on the server, none redelivered: nothing can come back.

        A consumer acks or terminates without waiting for the server, so wait until the server
        says so: no message pending or awaiting an ack, and a termination for each of `terminated_seqs`.
        """
        jsm = self.admin.jsm(timeout=5)
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            consumers = await jsm.consumers_info(PRODUCT_EVENTS)
            filters = sorted(c.config.filter_subject or "" for c in consumers)
            assert filters == sorted(s for spec in SPECS for s in spec.subjects), filters
            redelivered = [(c.name, c.num_redelivered) for c in consumers if c.num_redelivered]
            assert not redelivered, f"redelivered: {redelivered}"
            busy = [
                (c.name, c.num_pending, c.num_ack_pending)
                for c in consumers
                if c.num_pending or c.num_ack_pending
            ]
            advised = {int(a["stream_seq"]) for a in self.terminated}
            if not busy and advised == terminated_seqs:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"not settled: {busy}, terminated {advised} not {terminated_seqs}")
            await asyncio.sleep(0.01)
        assert len(self.terminated) == len(terminated_seqs), "a message terminated twice"
        assert all(a["deliveries"] == 1 for a in self.terminated), self.terminated
        assert self.given_up == [], "JetStream gave up on a message after max_deliver"

    async def dead_letters(self) -> list[Letter]:
        jsm = self.admin.jsm(timeout=5)
        state = (await jsm.stream_info(DEAD_LETTERS)).state
        letters = []
        for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
            stored = await jsm.get_msg(DEAD_LETTERS, seq)
            assert stored.data is not None
            letters.append(Letter(stored.subject or "", json.loads(stored.data)))
        return letters

    async def cached(self, product_ids: set[str]) -> dict[str, Product]:
        return await self.container.cache().get_many(sorted(product_ids))


def _appending_to(advisories: list[dict[str, Any]]) -> Any:
    async def append(msg: Msg) -> None:
        advisories.append(json.loads(msg.data))

    return append


# --- properties ---------------------------------------------------------------------------------


async def feed(
    url: str, batch: Sequence[tuple[Valid | Poison, bool]], max_payload: int | None = None
) -> None:
    """Feed the batch, one message settled before the next, then a valid event the consumer must apply."""
    async with Rig.running(url) as rig:
        if max_payload is not None:
            assert rig.admin.max_payload == max_payload, "the server's max_payload is not the one assumed"
        seen: set[str] = set()
        expected: Counter[str] = Counter()
        stored: list[Valid | Poison] = []
        poisoned: dict[tuple[str, bytes], Poison] = {}
        terminated_seqs: set[int] = set()
        for number, (message, to_this_instance) in enumerate(batch):
            subject = wire_subject(message, to_this_instance)
            what = f"message {number} ({describe(message)})"
            event(describe(message))
            note(f"{what} on {subject}, {len(message.data)} bytes: {message.data[:200]!r}")
            delivered = await rig.deliver(subject, message.data, what)
            if delivered is None:
                event("refused by the bus: over max_payload")
                continue
            seq, outcome = delivered
            stored.append(message)
            if isinstance(message, Valid):
                kind = "duplicate" if message.envelope.id in seen else "ack"
                seen.add(message.envelope.id)
            else:
                kind = "dead_letter"
                poisoned[(subject, message.data)] = message
                terminated_seqs.add(seq)
            assert outcome == Counter({kind: 1}), f"{what}: expected {kind}, counted {dict(outcome)}"
            expected[kind] += 1

        final = a_valid_event_after_the_batch()
        delivered = await rig.deliver(final.type, encode(final), "the valid event after the batch")
        assert delivered is not None
        assert delivered[1] == Counter({"ack": 1}), "the consumer no longer applies a valid event"
        assert await rig.cached({final.data.product_id}) == {final.data.product_id: final.data.product}
        expected["ack"] += 1

        await rig.settled_for_good(terminated_seqs)
        assert rig.processed() == expected, "a message was handled again after its settlement"
        letters = await rig.dead_letters()
        for (subject, data), bad in poisoned.items():
            [letter] = [
                one for one in letters if one.body["subject"] == subject and letter_holds(one.body, data)
            ]
            assert letter.subject == f"deadletter.{subject}"
            assert letter.body["consumer"] == consumer_of(subject)
            assert letter.body["reason"], bad.mutation
            assert letter.body["attempts"] == 1
        assert len(letters) == len(poisoned), "a dead letter for a message that is not poison"
        touched = set().union(*(product_ids_of(m.envelope) for m in stored if isinstance(m, Valid)))
        assert await rig.cached(touched) == await expected_cache(stored)


def a_product_created(name: str) -> Envelope:
    """A product.created whose ids no drawn message can share."""
    product = a_product(f"{name}-{LONGER_THAN_ANY_DRAWN_ID}")
    return Envelope(
        f"{name}-{LONGER_THAN_ANY_DRAWN_ID}",
        PRODUCT_CREATED,
        "product-service",
        "1.0",
        START,
        name,
        ProductCreated(product.id, product),
    )


def a_valid_event_after_the_batch() -> Envelope:
    return a_product_created("final")


def an_edge_event() -> Envelope:
    return a_product_created("edge")


def ensure_running(server: NatsServer) -> None:
    if not server.is_running:  # a fault test may have stopped the session's server
        server.start()


routed = st.tuples(messages, st.booleans())
"""A message, and whether a batch reply answers this instance's request (else the refresh's)."""


@fuzz_settings(EXAMPLES, randomise=RANDOMISE)
@given(batch=st.lists(routed, min_size=1, max_size=6))
def test_on_jetstream_valid_events_are_applied_poison_is_dead_lettered_and_the_consumer_goes_on(
    nats_server: NatsServer, batch: list[tuple[Valid | Poison, bool]]
) -> None:
    ensure_running(nats_server)
    asyncio.run(feed(nats_server.url, batch))


@fuzz_settings(max(EXAMPLES // 8, 2), randomise=RANDOMISE)
@given(every_kind=st.tuples(*(poison([mutation]) for mutation in MUTATIONS)), good=valid_envelopes)
def test_on_jetstream_every_kind_of_poison_in_one_batch_then_a_valid_event(
    nats_server: NatsServer, every_kind: tuple[Poison, ...], good: Envelope
) -> None:
    """Each mutation at least once per run, whatever the batches above happened to draw."""
    ensure_running(nats_server)
    asyncio.run(feed(nats_server.url, [*((bad, True) for bad in every_kind), (Valid(good), False)]))


NATS_DEFAULT_MAX_PAYLOAD = 1024 * 1024
LIMIT = NATS_DEFAULT_MAX_PAYLOAD - headers_size({MSG_ID_HEADER: "fuzz-1"})
"""The largest payload the server takes with the Nats-Msg-Id of the rig's first publish."""


def padded(data: bytes, size: int) -> bytes:
    """`data` grown to `size` bytes by spaces before its last byte: JSON whitespace, so a valid
    envelope stays the same envelope and a poison one stays poison (data already larger is kept)."""
    return data[:-1] + b" " * (size - len(data)) + data[-1:] if size > len(data) else data


@attrs.frozen
class PaddedValid(Valid):
    size: int

    @property
    def data(self) -> bytes:
        return padded(encode(self.envelope), self.size)


def grown(message: Valid | Poison, size: int) -> Valid | Poison:
    if isinstance(message, Valid):
        return PaddedValid(message.envelope, size)
    return Poison(message.subject, padded(message.data, size), message.mutation)


@fuzz_settings(max(EXAMPLES // 4, 2), randomise=RANDOMISE)
@given(message=messages, offset=st.integers(min_value=-256 * 1024, max_value=256 * 1024))
@example(message=Valid(an_edge_event()), offset=0).via("the largest message the bus takes")
@example(message=Valid(an_edge_event()), offset=1).via("one byte more")
@example(message=Poison(PRODUCT_CREATED, b"[]", "not an object"), offset=0).via("the largest poison")
def test_on_jetstream_a_message_around_max_payload_is_settled_below_it_and_refused_above_it(
    nats_server: NatsServer, message: Valid | Poison, offset: int
) -> None:
    """A message padded to max_payload + `offset` bytes: up to the limit it is applied or dead-lettered
    like any other (a dead letter must fit on the bus too), over it the publisher refuses it and
    nothing counts it; the consumer goes on either way."""
    ensure_running(nats_server)
    asyncio.run(feed(nats_server.url, [(grown(message, LIMIT + offset), True)], NATS_DEFAULT_MAX_PAYLOAD))
