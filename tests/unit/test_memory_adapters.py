"""The in-memory adapters (the embedded default and the unit tier's fakes) keep their ports' promises."""

from __future__ import annotations

import asyncio

import pytest

from adapters.broker import MSG_ID_HEADER, ConsumerLag, ConsumerSpec, Delivery, headers_size, subject_matches
from adapters.memory.broker import InMemoryBroker
from adapters.memory.order_store import InMemoryOrderStore
from adapters.memory.outbox import InMemoryOutbox
from adapters.memory.product_cache import InMemoryProductCache
from adapters.memory.product_store import InMemoryProductStore
from adapters.memory.small_ports import InMemoryLock, InMemoryProcessedEvents
from application.ports import CachePut, CommitResult, IdempotencyRecord, ProductChange
from domain.errors import CacheUnavailable, EventBusUnavailable, StoreUnavailable
from domain.orders import OrderFlag
from domain.products import ProductStatus

from .builders import CHAIR, DESK, a_product, an_order, newer
from .fakes import ManualClock
from .polling import eventually


async def test_cache_keeps_the_newest_version() -> None:
    cache = InMemoryProductCache(clock=ManualClock(), ttl_s=60)
    v2 = newer(a_product())
    assert await cache.put(v2) is CachePut.STORED
    assert await cache.put(a_product()) is CachePut.KEPT
    assert await cache.put(a_product(version=2, name="same version")) is CachePut.KEPT
    assert (await cache.get_many([CHAIR]))[CHAIR] == v2


async def test_cache_entries_expire_after_the_ttl() -> None:
    clock = ManualClock()
    cache = InMemoryProductCache(clock=clock, ttl_s=60)
    await cache.put(newer(a_product()))
    clock.advance(59.9)
    assert CHAIR in await cache.get_many([CHAIR])
    clock.advance(0.1)
    assert await cache.get_many([CHAIR]) == {}
    # an expired entry no longer blocks an older version
    assert await cache.put(a_product()) is CachePut.STORED


async def test_cache_lists_only_live_active_products() -> None:
    clock = ManualClock()
    cache = InMemoryProductCache(clock=clock, ttl_s=60)
    await cache.put(a_product(CHAIR))
    await cache.put(a_product(DESK, status=ProductStatus.INACTIVE))
    assert await cache.active_ids() == [CHAIR]
    clock.advance(61)
    assert await cache.active_ids() == []


async def test_cache_outage_raises_cache_unavailable() -> None:
    cache = InMemoryProductCache(clock=ManualClock(), ttl_s=60)
    cache.outage.down = True
    with pytest.raises(CacheUnavailable):
        await cache.get_many([CHAIR])


async def test_lock_is_held_until_released_or_expired() -> None:
    clock = ManualClock()
    lock = InMemoryLock(clock=clock)
    assert await lock.acquire("job", 10)
    assert not await lock.acquire("job", 10)
    assert await lock.acquire("other", 10)
    await lock.release("job")
    assert await lock.acquire("job", 10)
    clock.advance(10)
    assert await lock.acquire("job", 10)


async def test_processed_events_are_remembered_for_the_ttl() -> None:
    clock = ManualClock()
    processed = InMemoryProcessedEvents(clock=clock, ttl_s=100)
    assert not await processed.seen("e-1")
    await processed.remember("e-1")
    assert await processed.seen("e-1")
    clock.advance(100)
    assert not await processed.seen("e-1")


async def test_order_store_keeps_the_first_order_of_an_idempotency_key() -> None:
    outbox = InMemoryOutbox()
    store = InMemoryOrderStore(outbox=outbox)
    record = IdempotencyRecord("k", "fp", "order-1")
    assert await store.add(an_order("order-1"), [], record) is None
    assert await store.add(an_order("order-2"), [], IdempotencyRecord("k", "fp2", "order-2")) == record
    assert await store.get("order-2") is None
    assert await store.ids_holding(CHAIR) == ["order-1"]


async def test_order_store_flags_once_and_lists_by_flag() -> None:
    store = InMemoryOrderStore(outbox=InMemoryOutbox())
    await store.add(an_order("order-1"), [], None)
    assert await store.add_flag("order-1", OrderFlag.PRICE_REVIEW)
    assert not await store.add_flag("order-1", OrderFlag.PRICE_REVIEW)
    assert not await store.add_flag("missing", OrderFlag.PRICE_REVIEW)
    assert await store.ids_flagged(OrderFlag.PRICE_REVIEW) == ["order-1"]
    assert await store.ids_flagged(OrderFlag.DISCONTINUED_PRODUCT) == []


async def test_order_store_outage_is_store_unavailable() -> None:
    outbox = InMemoryOutbox()
    store = InMemoryOrderStore(outbox=outbox)
    outbox.outage.down = True
    with pytest.raises(StoreUnavailable):
        await store.get("order-1")


async def test_product_store_commits_only_while_the_before_is_current() -> None:
    store = InMemoryProductStore(outbox=InMemoryOutbox())
    v1 = a_product()
    assert await store.create(v1, [])
    assert not await store.create(v1, [])
    v2 = newer(v1, quantity_available=3)
    assert await store.commit([ProductChange(v1, v2)], []) is CommitResult.COMMITTED
    assert await store.commit([ProductChange(v1, newer(v1))], []) is CommitResult.CONFLICT
    assert await store.get(CHAIR) == v2


async def test_product_store_remembers_a_reservation() -> None:
    store = InMemoryProductStore(outbox=InMemoryOutbox())
    assert await store.commit([], [], reservation_for="order-1") is CommitResult.COMMITTED
    assert await store.commit([], [], reservation_for="order-1") is CommitResult.ALREADY_RESERVED


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("product.>", "product.created", True),
        ("product.>", "product.details_provided.i1", True),
        ("product.>", "product", False),
        ("product.*", "product.created", True),
        ("product.*", "product.details_provided.i1", False),
        ("order.created", "order.created", True),
        ("order.created", "order.created.x", False),
        ("deadletter.>", "deadletter.product.created", True),
    ],
)
def test_subject_wildcards_follow_nats(pattern: str, subject: str, matches: bool) -> None:
    assert subject_matches(pattern, subject) is matches


async def test_broker_redelivers_a_nakked_message_with_the_next_attempt_number() -> None:
    broker = InMemoryBroker()
    attempts: list[int] = []

    async def handle(delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        if delivery.attempt < 3:
            await delivery.nak(0.0)
        else:
            await delivery.ack()

    await broker.subscribe(ConsumerSpec("c", ("product.>",), max_deliver=5), handle)
    await broker.publish("product.created", b"{}", "m-1")
    await eventually(lambda: attempts == [1, 2, 3])
    await asyncio.sleep(0.02)
    assert attempts == [1, 2, 3]
    await broker.close()


async def test_broker_redelivers_unsettled_and_failing_handlers_up_to_max_deliver() -> None:
    broker = InMemoryBroker()
    attempts: list[int] = []

    async def handle(delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        if delivery.attempt == 1:
            raise RuntimeError("a bug in a handler")

    await broker.subscribe(ConsumerSpec("c", ("product.>",), max_deliver=3), handle)
    await broker.publish("product.created", b"{}", "m-1")
    await eventually(lambda: attempts == [1, 2, 3])
    await asyncio.sleep(0.02)
    assert attempts == [1, 2, 3]
    await broker.close()


async def test_a_durable_consumer_is_shared_and_starts_from_the_stream_start() -> None:
    broker = InMemoryBroker()
    await broker.publish("product.created", b"early", "m-0")
    seen: list[tuple[str, bytes]] = []

    def recorder(name: str) -> object:
        async def handle(delivery: Delivery) -> None:
            seen.append((name, delivery.data))
            await delivery.ack()

        return handle

    spec = ConsumerSpec("shared", ("product.>",))
    await broker.subscribe(spec, recorder("a"))  # type: ignore[arg-type]
    await broker.subscribe(spec, recorder("b"))  # type: ignore[arg-type]
    for n in range(1, 6):
        await broker.publish("product.created", f"m{n}".encode(), f"m-{n}")
    await eventually(lambda: len(seen) == 6)
    await asyncio.sleep(0.02)
    assert sorted(data for _, data in seen) == [b"early", b"m1", b"m2", b"m3", b"m4", b"m5"]
    await broker.close()


async def test_broker_publishes_plainly_what_no_stream_holds_and_refuses_while_down() -> None:
    broker = InMemoryBroker()
    await broker.publish("_INBOX.asker", b"{}", "m-1")
    assert ([m.subject for m in broker.plain], broker.messages) == (["_INBOX.asker"], [])
    broker.outage.down = True
    assert not await broker.ping()
    with pytest.raises(EventBusUnavailable):
        await broker.publish("product.created", b"{}", "m-2")


async def test_the_in_memory_broker_refuses_what_nats_server_would_refuse_for_size() -> None:
    broker = InMemoryBroker(max_payload=200)
    fits = 200 - headers_size({MSG_ID_HEADER: "m-1"})
    await broker.publish("product.updated", b"x" * fits, "m-1")
    with pytest.raises(EventBusUnavailable, match="over max_payload 200"):
        await broker.publish("product.updated", b"x" * (fits + 1), "m-2")
    assert [m.msg_id for m in broker.messages] == ["m-1"]


async def test_two_durable_specs_of_one_name_are_two_consumers() -> None:
    broker = InMemoryBroker()
    seen: list[str] = []

    async def record(delivery: Delivery) -> None:
        seen.append(delivery.subject)
        await delivery.ack()

    await broker.subscribe(ConsumerSpec("svc", ("product.details_requested",)), record)
    await broker.subscribe(ConsumerSpec("svc", ("order.created",)), record)
    await broker.publish("product.details_requested", b"{}", "m-1")
    await broker.publish("order.created", b"{}", "m-2")
    await eventually(lambda: sorted(seen) == ["order.created", "product.details_requested"])
    await broker.close()


async def test_listeners_hear_every_fast_publish_at_once_duplicates_included() -> None:
    broker = InMemoryBroker()
    heard: list[bytes] = []

    async def listen(delivery: Delivery) -> None:
        heard.append(delivery.data)

    await broker.listen(["product.details_provided.*"], None, listen)
    await broker.publish("product.details_provided.i-1", b"one", "m-1", fast=True)
    await broker.publish("product.details_provided.i-1", b"one", "m-1", fast=True)  # stored once, heard twice
    await broker.publish("product.details_requested", b"other", "m-2", fast=True)
    await eventually(lambda: heard == [b"one", b"one"])
    assert len(broker.on_subject("product.details_provided.i-1")) == 1
    await broker.close()


async def test_listeners_do_not_hear_a_publish_without_its_fast_copy() -> None:
    broker = InMemoryBroker()
    heard: list[bytes] = []

    async def listen(delivery: Delivery) -> None:
        heard.append(delivery.data)

    await broker.listen(["product.details_requested"], None, listen)
    await broker.publish("product.details_requested", b"stored only", "m-1")
    await broker.publish("product.details_requested", b"fast", "m-2", fast=True)
    await eventually(lambda: heard == [b"fast"])
    assert len(broker.on_subject("product.details_requested")) == 2
    await broker.close()


async def test_an_announced_copy_is_heard_and_stored_nowhere_and_not_sent_while_down() -> None:
    broker = InMemoryBroker()
    heard: list[bytes] = []

    async def listen(delivery: Delivery) -> None:
        heard.append(delivery.data)

    await broker.listen(["product.details_requested"], None, listen)
    assert await broker.announce("product.details_requested", b"copy")
    broker.outage.down = True
    assert not await broker.announce("product.details_requested", b"lost")
    await eventually(lambda: heard == [b"copy"])
    assert broker.messages == []
    await broker.close()


async def test_a_queue_group_hands_each_message_to_one_listener() -> None:
    broker = InMemoryBroker()
    heard: list[tuple[str, bytes]] = []

    def listener(name: str) -> object:
        async def listen(delivery: Delivery) -> None:
            heard.append((name, delivery.data))
            await delivery.ack()  # nothing to settle: a no-op

        return listen

    for name in ("a", "b"):
        await broker.listen(["product.details_requested"], "group", listener(name))  # type: ignore[arg-type]
    for n in range(4):
        await broker.publish("product.details_requested", f"m{n}".encode(), f"m-{n}", fast=True)
    await eventually(lambda: len(heard) == 4)
    await asyncio.sleep(0.02)
    assert sorted(data for _, data in heard) == [b"m0", b"m1", b"m2", b"m3"]
    assert {name for name, _ in heard} == {"a", "b"}
    await broker.close()


async def test_a_stopped_listener_hears_nothing_more() -> None:
    broker = InMemoryBroker()
    heard: list[bytes] = []

    async def listen(delivery: Delivery) -> None:
        heard.append(delivery.data)

    listener = await broker.listen(["order.created"], None, listen)
    await listener.stop()
    await broker.publish("order.created", b"late", "m-1", fast=True)
    await asyncio.sleep(0.02)
    assert heard == []
    await broker.close()


async def test_the_lag_of_two_specs_of_one_name_is_reported_under_that_name() -> None:
    broker = InMemoryBroker()

    async def never(delivery: Delivery) -> None:
        await asyncio.Event().wait()

    await broker.subscribe(ConsumerSpec("svc", ("product.details_requested",), concurrency=1), never)
    await broker.subscribe(ConsumerSpec("svc", ("order.created",), concurrency=1), never)
    for n in range(3):
        await broker.publish("product.details_requested", b"{}", f"r-{n}")
        await broker.publish("order.created", b"{}", f"o-{n}")
    await asyncio.sleep(0.02)
    assert await broker.consumer_lag() == {"svc": ConsumerLag(4, 0)}  # one of each in hand
    await broker.close()
