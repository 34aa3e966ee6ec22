"""Use cases: the scheduled refresh of active products, and the outbox relay."""

from __future__ import annotations

import asyncio
import logging

import attrs
import pytest

from adapters.memory.broker import InMemoryBroker
from adapters.publisher import BrokerEventPublisher
from application.create_order import CreateOrder
from application.outbox_relay import RELAY_LEASE, RelayOutbox
from application.ports import Lock
from application.refresh import PUBLISH_WINDOW, REFRESH_LOCK
from domain.errors import EventBusUnavailable, StoreUnavailable
from domain.events import (
    ORDER_CREATED,
    PRODUCT_BATCH_DETAILS_PROVIDED,
    PRODUCT_BATCH_DETAILS_REQUESTED,
    ProductBatchDetailsRequested,
)
from domain.orders import OrderLine
from domain.products import ProductStatus

from .builders import CHAIR, a_product
from .wiring import OrderSide, build_order_side


async def cache_products(side: OrderSide, count: int, **overrides: object) -> list[str]:
    ids = [f"p-{n:03d}" for n in range(count)]
    for product_id in ids:
        await side.cache.put(a_product(product_id, **overrides))
    return ids


def requests_of(side: OrderSide) -> list[ProductBatchDetailsRequested]:
    found = []
    for envelope in side.publisher.of_type(PRODUCT_BATCH_DETAILS_REQUESTED):
        assert isinstance(envelope.data, ProductBatchDetailsRequested)
        found.append(envelope.data)
    return found


async def test_refresh_asks_for_active_products_in_chunks_of_the_batch_size() -> None:
    side = build_order_side(batch_size=50, batch_delay_s=1.0)
    ids = await cache_products(side, 120)
    report = await side.refresh_all()
    assert (report.ran, report.products, report.batches) == (True, 120, 3)
    batches = requests_of(side)
    assert [len(b.product_ids) for b in batches] == [50, 50, 20]
    assert [pid for b in batches for pid in b.product_ids] == sorted(ids)
    assert side.clock.sleeps == [1.0, 1.0]


async def test_with_a_delay_the_batches_go_one_at_a_time() -> None:
    side = build_order_side(batch_size=10, batch_delay_s=1.0)
    side.publisher.ack_turns = 3
    await cache_products(side, 50)
    await side.refresh_all()
    assert side.publisher.most_in_flight == 1
    assert side.clock.sleeps == [1.0] * 4


async def test_without_a_delay_the_batches_overlap_their_acks_within_the_window() -> None:
    side = build_order_side(batch_size=10, batch_delay_s=0)
    side.publisher.ack_turns = 3
    ids = await cache_products(side, 200)
    report = await side.refresh_all()
    assert (report.products, report.batches) == (200, 20)
    assert side.publisher.most_in_flight == PUBLISH_WINDOW
    assert sorted(pid for b in requests_of(side) for pid in b.product_ids) == sorted(ids)
    assert side.clock.sleeps == []


async def test_without_a_delay_a_failed_publish_stops_the_run_and_nothing_stays_in_flight() -> None:
    side = build_order_side(batch_size=10, batch_delay_s=0)
    side.publisher.ack_turns = 3
    side.publisher.fail_after = 5
    await cache_products(side, 200)
    with pytest.raises(EventBusUnavailable):
        await side.refresh_all()
    assert side.publisher.in_flight == 0
    assert len(requests_of(side)) < 5 + PUBLISH_WINDOW
    assert await side.lock.acquire(REFRESH_LOCK, 300), "the lock was released"


async def test_refresh_requests_are_in_refresh_mode_and_correlated(order_side: OrderSide) -> None:
    await cache_products(order_side, 3)
    await order_side.refresh_all()
    [envelope] = order_side.publisher.of_type(PRODUCT_BATCH_DETAILS_REQUESTED)
    data = envelope.data
    assert isinstance(data, ProductBatchDetailsRequested)
    assert data.refresh_mode is True
    assert data.callback_event == PRODUCT_BATCH_DETAILS_PROVIDED
    assert envelope.correlation_id == data.request_id


async def test_refresh_skips_products_that_are_not_active(order_side: OrderSide) -> None:
    await cache_products(order_side, 2)
    await order_side.cache.put(a_product("gone", status=ProductStatus.DISCONTINUED))
    await order_side.cache.put(a_product("paused", status=ProductStatus.INACTIVE))
    await order_side.refresh_all()
    assert [b.product_ids for b in requests_of(order_side)] == [("p-000", "p-001")]


async def test_refresh_with_nothing_cached_publishes_nothing(order_side: OrderSide) -> None:
    report = await order_side.refresh_all()
    assert (report.ran, report.batches) == (True, 0)
    assert order_side.publisher.published == []


async def test_the_lock_prevents_a_second_concurrent_refresh(order_side: OrderSide) -> None:
    await cache_products(order_side, 120)
    first, second = await asyncio.gather(order_side.refresh_all(), order_side.refresh_all())
    assert sorted([first.ran, second.ran]) == [False, True]
    assert len(requests_of(order_side)) == 3


async def test_a_lock_held_elsewhere_skips_the_tick_and_is_left_alone(order_side: OrderSide) -> None:
    await cache_products(order_side, 1)
    assert await order_side.lock.acquire(REFRESH_LOCK, 300)
    assert not (await order_side.refresh_all()).ran
    assert order_side.publisher.published == []
    assert not await order_side.lock.acquire(REFRESH_LOCK, 300)


async def test_the_lock_is_released_after_a_run_even_when_publishing_fails(order_side: OrderSide) -> None:
    await cache_products(order_side, 1)
    order_side.publisher.down = True
    with pytest.raises(EventBusUnavailable):
        await order_side.refresh_all()
    order_side.publisher.down = False
    assert (await order_side.refresh_all()).ran


# --- the outbox relay ---------------------------------------------------------------------------


async def orders_in_outbox(side: OrderSide, count: int) -> None:
    side.lookup.add(a_product(CHAIR, quantity_available=1000))
    for _ in range(count):
        await side.create_order(CreateOrder("u-1", (OrderLine(CHAIR, 1),)))


async def test_relay_publishes_and_then_removes(order_side: OrderSide) -> None:
    await orders_in_outbox(order_side, 3)
    assert await order_side.relay() == 3
    assert await order_side.outbox.count() == 0
    assert [e.type for e in order_side.publisher.envelopes] == [ORDER_CREATED] * 3


async def test_relay_keeps_every_entry_while_the_bus_is_down(order_side: OrderSide) -> None:
    await orders_in_outbox(order_side, 3)
    order_side.publisher.down = True
    assert await order_side.relay() == 0
    assert await order_side.outbox.count() == 3
    order_side.publisher.down = False
    assert await order_side.relay() == 3
    assert await order_side.outbox.count() == 0


async def test_relay_removes_only_what_was_published(order_side: OrderSide) -> None:
    await orders_in_outbox(order_side, 4)
    pending_before = [e.id for e in await order_side.outbox.pending(10)]
    order_side.publisher.fail_after = 2
    assert await order_side.relay() == 2
    published = [e.id for e in order_side.publisher.envelopes]
    left = [e.id for e in await order_side.outbox.pending(10)]
    assert sorted(published + left) == sorted(pending_before)
    assert not set(published) & set(left)


async def test_relay_over_the_in_memory_broker_stores_each_event_once(order_side: OrderSide) -> None:
    broker = InMemoryBroker()
    relay = attrs.evolve(sweeping(order_side), publisher=BrokerEventPublisher(broker, order_side.metrics))
    await orders_in_outbox(order_side, 2)
    broker.outage.down = True
    assert await relay() == 0
    broker.outage.down = False
    order_side.clock.advance(5.0)
    assert await relay() == 2
    assert len(broker.on_subject(ORDER_CREATED)) == 2
    assert order_side.sample("events_published_total", type=ORDER_CREATED, outcome="ok") == 2
    assert order_side.sample("events_published_total", type=ORDER_CREATED, outcome="error") == 2


async def another_instances_orders_in_outbox(side: OrderSide, count: int) -> None:
    """Entries in the shared outbox that this process did not append (it is not told of them)."""
    await orders_in_outbox(side, count)
    side.outbox.take_appended()


async def test_the_sweep_drains_in_batches_over_several_passes(order_side: OrderSide) -> None:
    relay = attrs.evolve(order_side.relay, batch_size=2)
    await another_instances_orders_in_outbox(order_side, 5)
    assert [await relay(), await relay(), await relay(), await relay()] == [2, 2, 1, 0]
    assert [relay.more, relay.pending] == [False, 0]


async def test_entries_this_process_appended_are_published_without_the_lease(order_side: OrderSide) -> None:
    assert await order_side.lock.acquire(RELAY_LEASE, 60)  # another instance sweeps
    await orders_in_outbox(order_side, 3)

    assert await order_side.relay() == 3

    assert await order_side.outbox.count() == 0
    assert order_side.relay.pending == 0


def sweeping(side: OrderSide) -> RelayOutbox:
    return attrs.evolve(side.relay, sweep_interval_s=1.0, grace_s=5.0)


async def test_the_sweep_leaves_entries_younger_than_the_grace_to_their_writer(order_side: OrderSide) -> None:
    relay = sweeping(order_side)
    await another_instances_orders_in_outbox(order_side, 2)
    assert await relay() == 0
    assert relay.pending == 2
    assert not relay.stalled, "young entries of another instance are not a stall"

    order_side.clock.advance(5.0)

    assert await relay() == 2
    assert await order_side.outbox.count() == 0


async def test_the_sweep_runs_once_a_sweep_interval_unless_its_last_batch_was_full(
    order_side: OrderSide,
) -> None:
    relay = attrs.evolve(sweeping(order_side), batch_size=2)
    await another_instances_orders_in_outbox(order_side, 5)
    order_side.clock.advance(5.0)

    assert [await relay(), relay.more] == [2, True]
    assert [await relay(), relay.more] == [2, True], "a full batch: the next pass sweeps again"
    assert [await relay(), relay.more] == [1, False]


async def test_the_sweep_runs_at_most_once_a_sweep_interval(order_side: OrderSide) -> None:
    relay = attrs.evolve(order_side.relay, sweep_interval_s=1.0)  # no grace: due at once
    await another_instances_orders_in_outbox(order_side, 1)
    assert await relay() == 1
    await another_instances_orders_in_outbox(order_side, 1)
    order_side.clock.advance(0.5)
    assert await relay() == 0, "half a sweep interval after the last sweep"
    order_side.clock.advance(0.5)
    assert await relay() == 1


async def test_a_fresh_entry_whose_publish_failed_is_swept_once_the_bus_is_back(
    order_side: OrderSide,
) -> None:
    relay = sweeping(order_side)
    order_side.publisher.down = True
    await orders_in_outbox(order_side, 2)
    assert await relay() == 0
    assert relay.stalled
    order_side.publisher.down = False
    order_side.clock.advance(5.0)

    assert await relay() == 2
    assert not relay.stalled


async def test_an_outage_is_logged_once_per_interval_not_once_per_event(
    order_side: OrderSide, caplog: pytest.LogCaptureFixture
) -> None:
    relay = sweeping(order_side)
    order_side.publisher.down = True
    with caplog.at_level(logging.INFO, logger="application.outbox_relay"):
        for _ in range(3):  # three passes, 5 entries each, within one interval
            await orders_in_outbox(order_side, 5)
            assert await relay() == 0
            order_side.clock.advance(1.0)
        assert [r.levelno for r in caplog.records] == [logging.WARNING]
        assert "5 events not published yet" in caplog.records[0].getMessage()

        order_side.clock.advance(relay.stall_log_interval_s)
        await relay()
        assert [r.levelno for r in caplog.records] == [logging.WARNING] * 2, "repeated after the interval"

        order_side.publisher.down = False
        order_side.clock.advance(5.0)
        assert await relay() == 15
        assert caplog.records[-1].levelno == logging.INFO
        assert "publishing again" in caplog.records[-1].getMessage()


async def test_a_relay_that_cannot_run_says_so_once_per_interval_and_when_it_runs_again(
    order_side: OrderSide, caplog: pytest.LogCaptureFixture
) -> None:
    """The fifth audit: with Redis down, "outbox relay waiting" came once a second or so."""
    relay = sweeping(order_side)
    with caplog.at_level(logging.INFO, logger="application.outbox_relay"):
        for _ in range(8):  # passes backing off while the store is down, within one interval
            relay.note_outage("The lock store is unavailable")
            order_side.clock.advance(1.0)
        assert [r.getMessage() for r in caplog.records] == [
            "outbox relay waiting: The lock store is unavailable"
        ]
        order_side.clock.advance(relay.stall_log_interval_s)
        relay.note_outage("The lock store is unavailable")
        assert len(caplog.records) == 2, "repeated after the interval"

        assert await relay() == 0  # the store is back, nothing to publish
        assert caplog.records[-1].levelno == logging.INFO
        assert "publishing again" in caplog.records[-1].getMessage()


@attrs.define
class LockStore:
    """The Lock port over a store that can be down (as Redis was in the re-check)."""

    inner: Lock
    down: bool = False

    async def acquire(self, name: str, ttl_s: float) -> bool:
        if self.down:
            raise StoreUnavailable("The lock store is unavailable")
        return await self.inner.acquire(name, ttl_s)

    async def release(self, name: str) -> None:
        if self.down:
            raise StoreUnavailable("The lock store is unavailable")
        await self.inner.release(name)


async def test_passes_between_failed_sweeps_do_not_claim_the_relay_is_back(
    order_side: OrderSide, caplog: pytest.LogCaptureFixture
) -> None:
    """The re-check: with Redis down, passes with no sweep due said "publishing again" between
    the failing sweeps (36 pairs in 40 s), and nothing when Redis really came back."""
    store = LockStore(order_side.lock)
    relay = attrs.evolve(sweeping(order_side), lock=store)
    store.down = True
    with caplog.at_level(logging.INFO, logger="application.outbox_relay"):
        for _ in range(10):  # a failing sweep, then a pass with no sweep due, and so on
            with pytest.raises(StoreUnavailable):
                await relay()
            relay.note_outage("The lock store is unavailable")
            assert await relay() == 0  # nothing fresh, no sweep due: touches nothing
            order_side.clock.advance(relay.sweep_interval_s)
        assert [r.getMessage() for r in caplog.records] == [
            "outbox relay waiting: The lock store is unavailable"
        ]

        store.down = False
        assert await relay() == 0
        assert caplog.records[-1].levelno == logging.INFO
        assert "publishing again" in caplog.records[-1].getMessage()
