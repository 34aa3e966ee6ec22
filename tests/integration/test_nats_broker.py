"""The JetStream broker against a real nats-server: streams, dedupe, shared and per-instance consumers."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence

import nats
import pytest
from nats.js.api import AckPolicy, DeliverPolicy, StorageType

from adapters.broker import (
    DEAD_LETTERS,
    MSG_ID_HEADER,
    ORDER_EVENTS,
    PRODUCT_EVENTS,
    ConsumerSpec,
    Delivery,
    headers_size,
)
from adapters.nats.consuming import consumer_name
from domain.errors import EventBusUnavailable
from tests.integration.nats_support import Brokers, Recorder, eventually, jetstream_admin, stored_count
from tests.integration.servers import NatsServer

pytestmark = pytest.mark.nats


@pytest.fixture
async def brokers(nats_clean: NatsServer) -> AsyncIterator[Brokers]:
    made = Brokers(nats_clean.url)
    try:
        yield made
    finally:
        await made.close_all()


async def test_start_creates_the_three_streams_once(brokers: Brokers) -> None:
    await brokers.new()
    await brokers.new()  # a second service racing to create them finds them there

    async with jetstream_admin(brokers.url) as jsm:
        streams = {info.config.name: info.config for info in await jsm.streams_info()}
    assert set(streams) == {PRODUCT_EVENTS, ORDER_EVENTS, DEAD_LETTERS}
    product = streams[PRODUCT_EVENTS]
    assert product.subjects == ["product.>"]
    assert product.storage == StorageType.FILE
    assert product.num_replicas == 1
    assert product.duplicate_window == 120.0
    assert product.max_age == 7 * 24 * 3600.0
    assert streams[DEAD_LETTERS].subjects == ["deadletter.>"]


async def test_publish_of_one_msg_id_twice_is_stored_once(brokers: Brokers) -> None:
    broker = await brokers.new()

    await broker.publish("product.created", b'{"n": 1}', "event-1")
    await broker.publish("product.created", b'{"n": 1}', "event-1")
    await broker.publish("product.created", b'{"n": 2}', "event-2")

    assert await stored_count(brokers.url, PRODUCT_EVENTS) == 2


async def test_a_subject_no_stream_holds_is_published_plainly_to_its_subscribers(
    brokers: Brokers, nats_clean: NatsServer
) -> None:
    broker = await brokers.new()
    nc = await nats.connect(nats_clean.url)
    try:
        heard = await nc.subscribe("asker.inbox")
        await nc.flush()  # the server knows the subscription before the publish
        await broker.publish("asker.inbox", b"{}", "event-x")
        message = await heard.next_msg(timeout=5)
    finally:
        await nc.close()

    assert (message.data, message.headers) == (b"{}", {"Nats-Msg-Id": "event-x"})
    async with jetstream_admin(nats_clean.url) as jsm:
        assert all(info.state.messages == 0 for info in await jsm.streams_info()), "stored nowhere"


async def test_a_durable_consumer_shared_by_two_instances_handles_each_message_once(
    brokers: Brokers,
) -> None:
    spec = ConsumerSpec(name="svc", subjects=("product.created", "product.updated"))
    first, second = await brokers.new(), await brokers.new()
    one, two = Recorder(), Recorder()
    await first.subscribe(spec, one)
    await second.subscribe(spec, two)

    sent = {f"m{i}".encode() for i in range(40)}
    for i, payload in enumerate(sorted(sent)):
        subject = "product.created" if i % 2 else "product.updated"
        await first.publish(subject, payload, payload.decode())

    await eventually(lambda: len(one.seen) + len(two.seen) >= len(sent), what="all handled")
    await asyncio.sleep(0.3)  # room for a wrong second delivery to show up
    handled = one.payloads + two.payloads
    assert sorted(handled) == sorted(sent)


async def test_durable_consumers_are_one_per_subject_with_safe_names(brokers: Brokers) -> None:
    broker = await brokers.new()
    spec = ConsumerSpec(name="order-service", subjects=("product.created", "product.price_changed"))
    await broker.subscribe(spec, Recorder())

    async with jetstream_admin(brokers.url) as jsm:
        consumers = {info.name: info.config for info in await jsm.consumers_info(PRODUCT_EVENTS)}
    expected = {consumer_name("order-service", s): s for s in spec.subjects}
    assert set(consumers) == set(expected)
    for name, subject in expected.items():
        assert re.fullmatch(r"[A-Za-z0-9_-]+", name)
        config = consumers[name]
        assert config.durable_name == name
        assert config.filter_subject == subject
        assert config.ack_policy == AckPolicy.EXPLICIT
        assert config.ack_wait == spec.ack_wait_s
        assert config.max_deliver == spec.max_deliver


def test_consumer_names_keep_similar_subjects_apart() -> None:
    dotted = consumer_name("svc", "product.price_changed")
    underscored = consumer_name("svc", "product_price.changed")

    assert dotted.startswith("svc_product_price_changed_")
    assert dotted != underscored
    assert consumer_name("a b*>", "x.>") == consumer_name("a b*>", "x.>")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", consumer_name("a b*>", "x.>"))


async def test_nak_with_a_delay_redelivers_after_the_delay_as_attempt_2(brokers: Brokers) -> None:
    broker = await brokers.new()

    async def nak_first(delivery: Delivery) -> None:
        if delivery.attempt == 1:
            await delivery.nak(0.6)
        else:
            await delivery.ack()

    recorder = Recorder(nak_first)
    await broker.subscribe(ConsumerSpec(name="svc", subjects=("product.updated",)), recorder)
    await broker.publish("product.updated", b"x", "e-1")

    await eventually(lambda: len(recorder.seen) >= 2, what="redelivery")
    (_, _, first, at1), (_, _, second, at2) = recorder.seen
    assert (first, second) == (1, 2)
    assert at2 - at1 >= 0.5
    await asyncio.sleep(0.3)
    assert len(recorder.seen) == 2


async def test_term_is_never_redelivered(brokers: Brokers) -> None:
    broker = await brokers.new()

    async def term(delivery: Delivery) -> None:
        await delivery.term()

    recorder = Recorder(term)
    await broker.subscribe(ConsumerSpec(name="svc", subjects=("order.created",), ack_wait_s=0.5), recorder)
    await broker.publish("order.created", b"x", "e-1")

    await eventually(lambda: len(recorder.seen) == 1)
    await asyncio.sleep(1.2)  # beyond ack_wait
    assert len(recorder.seen) == 1


async def test_a_handler_that_raises_gets_the_message_again(brokers: Brokers) -> None:
    broker = await brokers.new()

    async def fail_first(delivery: Delivery) -> None:
        if delivery.attempt == 1:
            raise RuntimeError("boom")
        await delivery.ack()

    recorder = Recorder(fail_first)
    await broker.subscribe(ConsumerSpec(name="svc", subjects=("product.created",)), recorder)
    await broker.publish("product.created", b"x", "e-1")

    await eventually(lambda: len(recorder.seen) >= 2, what="redelivery after a failure")
    assert [attempt for _, _, attempt, _ in recorder.seen] == [1, 2]


async def test_a_handler_that_settles_nothing_gets_the_message_again(brokers: Brokers) -> None:
    broker = await brokers.new()

    async def forget_first(delivery: Delivery) -> None:
        if delivery.attempt > 1:
            await delivery.ack()

    recorder = Recorder(forget_first)
    await broker.subscribe(ConsumerSpec(name="svc", subjects=("product.created",)), recorder)
    await broker.publish("product.created", b"x", "e-1")

    await eventually(lambda: len(recorder.seen) >= 2, within=2.0, what="redelivery of an unsettled one")


async def test_a_new_durable_consumer_reads_the_stream_from_the_start(brokers: Brokers) -> None:
    broker = await brokers.new()
    await broker.publish("product.created", b"old", "e-old")

    recorder = Recorder()
    await broker.subscribe(ConsumerSpec(name="svc", subjects=("product.created",)), recorder)

    await eventually(lambda: recorder.payloads == [b"old"])


async def test_a_per_instance_consumer_sees_only_new_messages_and_goes_away_on_stop(
    brokers: Brokers,
) -> None:
    broker = await brokers.new()
    subject = "product.details_provided.instance-a"
    await broker.publish(subject, b"before", "e-before")
    await broker.publish("product.details_provided.instance-b", b"other", "e-other")

    recorder = Recorder()
    spec = ConsumerSpec(name="replies-instance-a", subjects=(subject,), durable=False)
    subscription = await broker.subscribe(spec, recorder)
    await broker.publish(subject, b"after", "e-after")

    await eventually(lambda: recorder.payloads == [b"after"])
    async with jetstream_admin(brokers.url) as jsm:
        (info,) = await jsm.consumers_info(PRODUCT_EVENTS)
        assert info.config.durable_name is None
        assert info.config.deliver_policy == DeliverPolicy.NEW

    await subscription.stop()

    async with jetstream_admin(brokers.url) as jsm:
        assert await jsm.consumers_info(PRODUCT_EVENTS) == []


async def test_concurrency_is_bounded_by_the_spec(brokers: Brokers) -> None:
    broker = await brokers.new()
    running = peak = 0

    async def slow(delivery: Delivery) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.1)
        running -= 1
        await delivery.ack()

    recorder = Recorder(slow)
    await broker.subscribe(ConsumerSpec(name="svc", subjects=("order.created",), concurrency=3), recorder)
    for i in range(12):
        await broker.publish("order.created", b"x", f"e-{i}")

    await eventually(lambda: len(recorder.seen) == 12 and running == 0)
    assert peak == 3


async def test_messages_fetched_together_reach_a_batch_handler_together(brokers: Brokers) -> None:
    broker = await brokers.new()
    for i in range(12):
        await broker.publish("order.created", f"{i}".encode(), f"e-{i}")
    batches: list[list[bytes]] = []

    async def handle(deliveries: Sequence[Delivery]) -> None:
        batches.append([delivery.data for delivery in deliveries])
        for delivery in deliveries:
            await delivery.ack()

    spec = ConsumerSpec(name="svc", subjects=("order.created",), concurrency=8)
    await broker.subscribe_batches(spec, handle)

    await eventually(lambda: sum(map(len, batches)) == 12)
    assert sorted(int(data) for batch in batches for data in batch) == list(range(12))
    assert max(map(len, batches)) <= 8, "batches of up to the concurrency"
    assert len(batches) < 12


async def test_batches_keep_to_max_batch_and_the_next_is_fetched_while_one_is_handled(
    brokers: Brokers,
) -> None:
    broker = await brokers.new()
    for i in range(12):
        await broker.publish("order.created", f"{i}".encode(), f"e-{i}")
    release = asyncio.Event()
    batches: list[list[bytes]] = []

    async def handle(deliveries: Sequence[Delivery]) -> None:
        batches.append([delivery.data for delivery in deliveries])
        await release.wait()
        for delivery in deliveries:
            await delivery.ack()

    spec = ConsumerSpec(name="svc", subjects=("order.created",), concurrency=8, max_batch=4)
    await broker.subscribe_batches(spec, handle)

    await eventually(lambda: sum(map(len, batches)) == 8, what="two batches in flight at once")
    in_flight = len(batches)
    release.set()
    await eventually(lambda: sum(map(len, batches)) == 12)
    assert sorted(int(data) for batch in batches for data in batch) == list(range(12))
    assert in_flight >= 2
    assert max(map(len, batches)) <= 4


async def test_the_unsettled_messages_of_a_failed_batch_come_again_and_the_settled_ones_not(
    brokers: Brokers,
) -> None:
    broker = await brokers.new()
    for i in range(2):
        await broker.publish("order.created", f"{i}".encode(), f"e-{i}")
    seen: list[tuple[bytes, int]] = []

    async def ack_the_first_then_fail(deliveries: Sequence[Delivery]) -> None:
        seen.extend((delivery.data, delivery.attempt) for delivery in deliveries)
        if len(deliveries) == 1:
            await deliveries[0].ack()
            return
        await deliveries[0].ack()
        raise RuntimeError("a bug after the first")

    spec = ConsumerSpec(name="svc", subjects=("order.created",), concurrency=4)
    await broker.subscribe_batches(spec, ack_the_first_then_fail)

    await eventually(lambda: len(seen) >= 3, within=5.0, what="redelivery of the unsettled one")
    await asyncio.sleep(0.3)
    assert seen == [(b"0", 1), (b"1", 1), (b"1", 2)]


async def test_a_slow_message_of_a_batch_holds_its_own_slot_only(brokers: Brokers) -> None:
    broker = await brokers.new()
    for i in range(10):
        await broker.publish("order.created", b"slow" if i == 0 else b"x", f"e-{i}")
    release = asyncio.Event()
    done: list[bytes] = []

    async def handle(deliveries: Sequence[Delivery]) -> None:
        async def one(delivery: Delivery) -> None:
            if delivery.data == b"slow":
                await release.wait()
            done.append(delivery.data)
            await delivery.ack()

        await asyncio.gather(*map(one, deliveries))

    await broker.subscribe_batches(
        ConsumerSpec(name="svc", subjects=("order.created",), concurrency=4), handle
    )
    await eventually(lambda: len(done) == 9, what="the nine others, while the slow one waits")
    release.set()
    await eventually(lambda: len(done) == 10)


async def test_ping_says_whether_jetstream_answers(brokers: Brokers) -> None:
    broker = await brokers.new()

    assert await broker.ping() is True
    await broker.close()
    assert await broker.ping() is False


async def test_stop_and_close_return_promptly_right_after_a_fetch_timeout(brokers: Brokers) -> None:
    broker = await brokers.new()
    subscription = await broker.subscribe(
        ConsumerSpec(name="svc", subjects=("product.created", "order.created")), Recorder()
    )
    await asyncio.sleep(2.3)  # every fetch has timed out once by now

    began = time.monotonic()
    await subscription.stop()
    await broker.close()
    assert time.monotonic() - began < 2.0


async def test_a_message_within_max_payload_but_over_it_with_its_headers_is_refused_and_the_bus_stays_up(
    brokers: Brokers,
) -> None:
    # The server counts the headers (Nats-Msg-Id) into max_payload and drops a client that sends
    # more; nats-py checks the payload alone, and may even take the server's -ERR as final.
    broker = await brokers.new()
    admin = await nats.connect(brokers.url, allow_reconnect=False)
    max_payload = admin.max_payload  # what the server announces: 1 MiB unless configured
    await admin.close()
    subscription = await broker.subscribe(ConsumerSpec(name="svc", subjects=("product.created",)), Recorder())
    connection = broker.connection.generation
    fits = max_payload - headers_size({MSG_ID_HEADER: "fits-1"})

    began = time.monotonic()
    with pytest.raises(EventBusUnavailable, match="max_payload"):
        await broker.publish("product.created", b"x" * (fits + 1), "over-1")
    assert time.monotonic() - began < 1.0  # refused here, not a publish timeout
    await broker.publish("product.created", b"x" * fits, "fits-1")

    await asyncio.sleep(0.2)
    assert broker.connection.is_connected
    assert broker.connection.generation == connection, "the connection was dropped"
    await broker.publish("product.created", b"{}", "small")
    assert await stored_count(brokers.url, PRODUCT_EVENTS) == 2
    await subscription.stop()


async def test_a_listener_hears_the_fast_copy_and_the_consumer_gets_the_stored_message(
    brokers: Brokers,
) -> None:
    broker = await brokers.new()
    heard, consumed = Recorder(), Recorder()
    await broker.listen(["product.details_requested"], "answerers", heard)
    await broker.subscribe(ConsumerSpec(name="svc", subjects=("product.details_requested",)), consumed)

    await broker.publish("product.details_requested", b'{"n": 1}', "request-1", fast=True)
    await broker.publish("product.details_requested", b'{"n": 1}', "request-1", fast=True)  # stored once

    await eventually(lambda: len(heard.seen) == 2 and len(consumed.seen) == 1, what="heard and consumed")
    assert heard.payloads == [b'{"n": 1}', b'{"n": 1}']
    assert [subject for subject, *_ in heard.seen] == ["product.details_requested"] * 2
    assert await stored_count(brokers.url, PRODUCT_EVENTS) == 1, "the copies are stored by no stream"


async def test_an_announced_message_is_heard_and_stored_nowhere(brokers: Brokers) -> None:
    broker = await brokers.new()
    heard = Recorder()
    await broker.listen(["product.details_requested"], None, heard)

    assert await broker.announce("product.details_requested", b"copy")

    await eventually(lambda: heard.payloads == [b"copy"], what="the copy heard")
    assert await stored_count(brokers.url, PRODUCT_EVENTS) == 0


async def test_a_listener_does_not_hear_a_publish_without_its_fast_copy(brokers: Brokers) -> None:
    broker = await brokers.new()
    heard, consumed = Recorder(), Recorder()
    await broker.listen(["product.details_requested"], None, heard)
    await broker.subscribe(ConsumerSpec(name="svc", subjects=("product.details_requested",)), consumed)

    await broker.publish("product.details_requested", b"stored only", "request-1")
    await broker.publish("product.details_requested", b"fast", "request-2", fast=True)

    await eventually(lambda: len(consumed.seen) == 2, what="both consumed")
    await asyncio.sleep(0.1)  # room for a wrong delivery to the listener to show up
    assert heard.payloads == [b"fast"]


async def test_a_queue_group_of_listeners_hears_each_message_once(brokers: Brokers) -> None:
    first, second = await brokers.new(), await brokers.new()
    heard_first, heard_second = Recorder(), Recorder()
    await first.listen(["product.details_requested"], "answerers", heard_first)
    await second.listen(["product.details_requested"], "answerers", heard_second)

    for n in range(20):
        await first.publish("product.details_requested", f'{{"n": {n}}}'.encode(), f"request-{n}", fast=True)

    await eventually(lambda: len(heard_first.seen) + len(heard_second.seen) == 20, what="20 heard")
    await asyncio.sleep(0.1)
    assert len(heard_first.seen) + len(heard_second.seen) == 20


async def test_a_stopped_listener_hears_nothing_more(brokers: Brokers) -> None:
    broker = await brokers.new()
    heard = Recorder()
    listener = await broker.listen(["order.created"], None, heard)
    await listener.stop()
    await broker.publish("order.created", b"{}", "order-1", fast=True)
    await asyncio.sleep(0.2)
    assert heard.seen == []


async def test_a_paced_consumer_takes_what_gathered_in_one_fetch(brokers: Brokers) -> None:
    broker = await brokers.new()
    consumed = Recorder()
    spec = ConsumerSpec(name="svc", subjects=("product.details_requested",), fetch_pause_s=0.5)
    await broker.subscribe(spec, consumed)
    await broker.publish("product.details_requested", b"first", "request-0")
    await eventually(lambda: len(consumed.seen) == 1, what="the first delivered")
    for n in range(1, 6):  # published during the pause that follows a fetch short of its batch
        await broker.publish("product.details_requested", b"later", f"request-{n}")
    await eventually(lambda: len(consumed.seen) == 6, what="the rest delivered")
    later = [at for _, _, _, at in consumed.seen[1:]]
    assert max(later) - min(later) < 0.1  # together, after the pause
    assert min(later) - consumed.seen[0][3] > 0.4
