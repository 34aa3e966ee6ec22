"""The JetStream broker when nats-server goes away: fast failures, reconnection, nothing stored twice."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator

import pytest

from adapters.broker import PRODUCT_EVENTS, ConsumerSpec
from adapters.nats import JetStreamBroker
from domain.errors import EventBusUnavailable
from tests.integration.nats_support import (
    Brokers,
    Recorder,
    eventually,
    eventually_async,
    jetstream_admin,
    stored_count,
)
from tests.integration.servers import NatsServer, find_binary

pytestmark = pytest.mark.nats


@pytest.fixture
async def brokers(nats_clean: NatsServer) -> AsyncIterator[Brokers]:
    made = Brokers(nats_clean.url)
    try:
        yield made
    finally:
        await made.close_all()


async def publish_until_stored(
    broker: JetStreamBroker, subject: str, msg_id: str, within: float = 10.0, *, fast: bool = False
) -> int:
    """What the outbox relay does: retry with the same msg id until the bus takes it; the tries."""
    began, tries = time.monotonic(), 0
    while True:
        tries += 1
        try:
            await broker.publish(subject, msg_id.encode(), msg_id, fast=fast)
        except EventBusUnavailable:
            if time.monotonic() - began > within:
                raise
            await asyncio.sleep(0.1)
        else:
            return tries


def disconnected(broker: JetStreamBroker) -> bool:
    return not broker.connection.is_connected


async def test_publish_while_nats_is_down_fails_fast_and_buffers_nothing(
    brokers: Brokers, nats_clean: NatsServer
) -> None:
    broker = await brokers.new()
    nats_clean.stop()
    await eventually(lambda: disconnected(broker), what="disconnect noticed")

    began = time.monotonic()
    with pytest.raises(EventBusUnavailable):
        await broker.publish("product.created", b"while-down", "e-down")
    assert time.monotonic() - began < 0.5
    assert await broker.ping() is False

    nats_clean.start()
    await eventually_async(broker.ping, within=10, what="reconnected")
    assert await stored_count(brokers.url, PRODUCT_EVENTS) == 0  # not sent later behind our back

    await publish_until_stored(broker, "product.created", "e-down")
    await publish_until_stored(broker, "product.created", "e-down")
    assert await stored_count(brokers.url, PRODUCT_EVENTS) == 1


async def test_consumption_resumes_after_a_nats_restart_and_nothing_is_stored_twice(
    brokers: Brokers, nats_clean: NatsServer
) -> None:
    publisher, consumer = await brokers.new(), await brokers.new()
    recorder = Recorder()
    await consumer.subscribe(ConsumerSpec(name="svc", subjects=("product.created",)), recorder)
    before = [f"before-{i}" for i in range(5)]
    for msg_id in before:
        await publisher.publish("product.created", msg_id.encode(), msg_id)
    await eventually(lambda: len(recorder.seen) == 5, what="consumed before the restart")
    await asyncio.sleep(0.2)  # let the acks reach the server

    nats_clean.restart(kill=True)

    after = [f"after-{i}" for i in range(5)]
    for msg_id in before + after:  # the relay may send again what it sent just before the crash
        await publish_until_stored(publisher, "product.created", msg_id)
    await eventually(lambda: len(recorder.seen) >= 10, within=10, what="consumed after the restart")
    await asyncio.sleep(0.3)

    assert await stored_count(brokers.url, PRODUCT_EVENTS) == 10
    assert sorted(recorder.payloads) == sorted(m.encode() for m in before + after)


async def test_streams_and_consumers_come_back_when_the_server_lost_its_state(
    brokers: Brokers, nats_clean: NatsServer
) -> None:
    broker = await brokers.new()
    durable, replies = Recorder(), Recorder()
    await broker.subscribe(ConsumerSpec(name="svc", subjects=("product.updated",)), durable)
    await broker.subscribe(
        ConsumerSpec(name="replies-a", subjects=("product.details_provided.a",), durable=False), replies
    )

    nats_clean.stop()
    shutil.rmtree(nats_clean.store_dir)  # a brand-new server: no stream, no consumer
    nats_clean.start()

    await publish_until_stored(broker, "product.updated", "e-1")
    await eventually(lambda: durable.payloads == [b"e-1"], within=10, what="durable consumer recreated")

    async def reply_consumer_is_back() -> bool:
        async with jetstream_admin(nats_clean.url) as jsm:
            return len(await jsm.consumers_info(PRODUCT_EVENTS)) == 2

    await eventually_async(reply_consumer_is_back, what="reply consumer recreated")
    await publish_until_stored(broker, "product.details_provided.a", "e-2")
    await eventually(lambda: replies.payloads == [b"e-2"], within=10, what="reply consumer consumed")


async def test_the_broker_starts_while_nats_is_down_and_connects_when_it_comes_up(
    brokers: Brokers, nats_clean: NatsServer
) -> None:
    binary = find_binary("nats-server")
    assert binary is not None
    later = NatsServer(binary=binary)
    try:
        began = time.monotonic()
        broker = await brokers.new(url=later.url, start_wait_s=0.5)
        assert time.monotonic() - began < 1.5
        recorder = Recorder()
        subscription = await broker.subscribe(ConsumerSpec(name="svc", subjects=("order.created",)), recorder)
        assert await broker.ping() is False
        with pytest.raises(EventBusUnavailable):
            await broker.publish("order.created", b"x", "e-early")

        later.start()
        await eventually_async(broker.ping, within=10, what="connected once the server is up")
        await publish_until_stored(broker, "order.created", "e-1")
        await eventually(lambda: recorder.payloads == [b"e-1"], within=10, what="consumed")
        await subscription.stop()
        await broker.close()
    finally:
        later.cleanup()


async def test_close_while_nats_never_came_up_returns_promptly(brokers: Brokers) -> None:
    broker = await brokers.new(url="nats://127.0.0.1:1", start_wait_s=0.2)
    await broker.subscribe(ConsumerSpec(name="svc", subjects=("order.created",)), Recorder())

    began = time.monotonic()
    await broker.close()
    assert time.monotonic() - began < 1.0


async def test_a_client_closed_for_good_is_replaced_and_consumption_goes_on(brokers: Brokers) -> None:
    """nats-py closes its client for good on some server errors; the connection opens a new one."""
    broker = await brokers.new()
    durable, replies = Recorder(), Recorder()
    await broker.subscribe(ConsumerSpec(name="svc", subjects=("product.updated",)), durable)
    await broker.subscribe(
        ConsumerSpec(name="replies-a", subjects=("product.details_provided.a",), durable=False), replies
    )
    await publish_until_stored(broker, "product.updated", "e-1")
    await eventually(lambda: durable.payloads == [b"e-1"], what="consumed before the close")
    first = broker.connection.incarnation

    client = broker.connection._client
    assert client is not None
    await client.close()  # what nats-py does itself after such an error

    await eventually(lambda: broker.connection.incarnation > first, what="a new client opened")
    await publish_until_stored(broker, "product.updated", "e-2")
    await publish_until_stored(broker, "product.details_provided.a", "e-3")
    await eventually(lambda: durable.payloads == [b"e-1", b"e-2"], within=10, what="durable consumer again")
    await eventually(lambda: replies.payloads == [b"e-3"], within=10, what="reply consumer again")


async def test_a_listener_hears_again_after_a_restart_and_after_its_client_was_replaced(
    brokers: Brokers, nats_clean: NatsServer
) -> None:
    broker = await brokers.new()
    heard = Recorder()
    await broker.listen(["product.details_requested"], "answerers", heard)

    nats_clean.stop()
    nats_clean.start()
    await eventually(lambda: broker.connection.is_connected, within=10, what="reconnected")
    await publish_until_stored(broker, "product.details_requested", "r-1", fast=True)
    await eventually(lambda: b"r-1" in heard.payloads, within=5, what="heard after the restart")

    first = broker.connection.incarnation
    client = broker.connection._client
    assert client is not None
    await client.close()
    await eventually(lambda: broker.connection.incarnation > first, what="a new client opened")
    await eventually(lambda: broker.connection.is_connected, within=10, what="the new client connected")

    async def heard_after_replacement() -> bool:
        await publish_until_stored(broker, "product.details_requested", f"r-{time.monotonic()}", fast=True)
        await asyncio.sleep(0.1)
        return any(payload.startswith(b"r-") and payload != b"r-1" for payload in heard.payloads)

    await eventually_async(heard_after_replacement, within=10, what="heard on the new client")
