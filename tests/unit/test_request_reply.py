"""Use case: async request-reply with correlation ids, then the synchronous call, then the cache."""

from __future__ import annotations

import asyncio
import time

import attrs
import pytest

from application.request_reply import PendingReplies, RefreshedProduct, RefreshProductNow
from domain.errors import EventBusUnavailable, ProductNotFound, ProductServiceUnavailable
from domain.events import PRODUCT_DETAILS_REQUESTED, Envelope, ProductDetailsRequested
from domain.products import Product

from .builders import CHAIR, a_product, newer
from .fakes import RecordingPublisher
from .polling import eventually
from .wiring import REPLY_SUBJECT, OrderSide


async def published_request(side: OrderSide) -> ProductDetailsRequested:
    """Wait (a few loop turns) until the request is on the bus, and return it."""
    for _ in range(100):
        requests = side.publisher.of_type(PRODUCT_DETAILS_REQUESTED)
        if requests:
            data = requests[-1].data
            assert isinstance(data, ProductDetailsRequested)
            return data
        await asyncio.sleep(0)
    raise AssertionError("no product.details_requested was published")


async def answered_with(side: OrderSide, reply: list[Product | None]) -> RefreshedProduct:
    call = asyncio.create_task(side.refresh_product(CHAIR))
    request = await published_request(side)
    assert side.pending.complete(request.request_id, reply)
    return await call


async def test_a_reply_in_time_answers_from_the_event(order_side: OrderSide) -> None:
    refreshed = await answered_with(order_side, [a_product(CHAIR)])
    assert refreshed.source == "event"
    assert refreshed.product == a_product(CHAIR)
    assert await order_side.cache.get_many([CHAIR]) == {}, "the reply's consumer stores it, not the waiter"
    assert order_side.lookup.calls == []
    assert len(order_side.pending) == 0


async def test_the_request_names_the_reply_subject_and_correlates(order_side: OrderSide) -> None:
    await answered_with(order_side, [a_product(CHAIR)])
    [(subject, envelope)] = order_side.publisher.published
    assert isinstance(envelope.data, ProductDetailsRequested)
    assert subject == PRODUCT_DETAILS_REQUESTED
    assert envelope.data.callback_event == REPLY_SUBJECT
    assert envelope.data.product_id == CHAIR
    assert envelope.correlation_id == envelope.data.request_id


async def test_a_reply_saying_unknown_is_not_found(order_side: OrderSide) -> None:
    with pytest.raises(ProductNotFound):
        await answered_with(order_side, [None])
    assert len(order_side.pending) == 0


async def test_no_reply_in_time_falls_back_to_http(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR))
    refreshed = await order_side.refresh_product(CHAIR)
    assert refreshed.source == "http"
    assert order_side.lookup.calls == [("get_product", (CHAIR,))]
    assert order_side.sample("async_request_timeouts_total") == 1
    assert len(order_side.pending) == 0


async def test_http_fallback_refreshes_the_cache(order_side: OrderSide) -> None:
    await order_side.cache.put(a_product(CHAIR))
    order_side.lookup.add(newer(a_product(CHAIR), name="fresh"))
    await order_side.refresh_product(CHAIR)
    cached = (await order_side.cache.get_many([CHAIR]))[CHAIR]
    assert cached.name == "fresh"


async def test_no_reply_and_http_down_answers_from_the_cache(order_side: OrderSide) -> None:
    await order_side.cache.put(a_product(CHAIR))
    order_side.lookup.available = False
    refreshed = await order_side.refresh_product(CHAIR)
    assert refreshed.source == "cache"
    assert refreshed.product == a_product(CHAIR)


async def test_nobody_knows_the_product_and_http_is_down_is_unavailable(order_side: OrderSide) -> None:
    order_side.lookup.available = False
    with pytest.raises(ProductServiceUnavailable):
        await order_side.refresh_product(CHAIR)
    assert len(order_side.pending) == 0


async def test_http_saying_unknown_is_not_found(order_side: OrderSide) -> None:
    with pytest.raises(ProductNotFound):
        await order_side.refresh_product(CHAIR)


async def test_a_dead_bus_goes_straight_to_http_without_waiting(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR))
    order_side.publisher.down = True
    refresh = attrs.evolve(order_side.refresh_product, timeout_s=30.0)
    started = time.perf_counter()
    refreshed = await refresh(CHAIR)
    assert refreshed.source == "http"
    assert time.perf_counter() - started < 5.0
    assert len(order_side.pending) == 0
    # a request never sent did not time out, and is no async request to time
    assert order_side.sample("async_request_timeouts_total") == 0
    assert order_side.sample("async_request_seconds_count") == 0


async def test_a_late_reply_finds_nobody_waiting(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR))
    await order_side.refresh_product(CHAIR)
    request = await published_request(order_side)
    assert not order_side.pending.complete(request.request_id, [a_product(CHAIR)])


async def test_a_cancelled_caller_leaves_no_pending_entry(order_side: OrderSide) -> None:
    call = asyncio.create_task(order_side.refresh_product(CHAIR))
    await published_request(order_side)
    assert len(order_side.pending) == 1
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert len(order_side.pending) == 0


async def test_shutdown_releases_every_waiter_to_the_fallback(order_side: OrderSide) -> None:
    order_side.lookup.add(a_product(CHAIR))
    order_side.refresh_product = attrs.evolve(order_side.refresh_product, timeout_s=30.0)
    call = asyncio.create_task(order_side.refresh_product(CHAIR))
    await published_request(order_side)
    order_side.pending.fail_all()
    refreshed = await asyncio.wait_for(call, 5)
    assert refreshed.source == "http"
    assert len(order_side.pending) == 0


async def test_pending_replies_hand_each_reply_to_its_own_waiter() -> None:
    pending = PendingReplies()
    first, second = pending.open("r-1"), pending.open("r-2")
    assert pending.complete("r-2", [a_product(CHAIR, name="two")])
    assert not first.done()
    assert second.result()[0] == a_product(CHAIR, name="two")
    assert not pending.complete("r-2", [None])
    assert not pending.complete("unknown", [None])
    pending.close("r-1")
    assert first.cancelled()
    assert len(pending) == 0


@attrs.define
class AckHeldBack:
    """An EventPublisher whose message is out at once and whose ack comes when `ack` is set."""

    inner: RecordingPublisher
    ack: asyncio.Event = attrs.field(factory=asyncio.Event)
    fails: bool = False

    async def announce(self, envelope: Envelope, subject: str | None = None) -> bool:
        return False

    async def publish(
        self, envelope: Envelope, subject: str | None = None, *, announced: bool = False
    ) -> None:
        await self.inner.publish(envelope, subject)
        await self.ack.wait()
        if self.fails:
            raise EventBusUnavailable("the ack said the stream did not store it")


async def test_a_reply_before_its_requests_ack_answers_without_waiting_for_the_ack(
    order_side: OrderSide, caplog: pytest.LogCaptureFixture
) -> None:
    held = AckHeldBack(order_side.publisher, fails=True)
    ask = attrs.evolve(order_side.refresh_product.ask, publisher=held)
    refresh = attrs.evolve(order_side.refresh_product, ask=ask, timeout_s=30.0)
    call = asyncio.create_task(refresh(CHAIR))
    request = await published_request(order_side)
    assert order_side.pending.complete(request.request_id, [a_product(CHAIR)])

    refreshed = await asyncio.wait_for(call, 5)

    assert refreshed.source == "event"
    held.ack.set()  # late, and a failure: the caller has its answer; the failure is logged
    await eventually(lambda: "publish failed once nobody waited" in caplog.text)


async def test_elapsed_ms_keeps_hundredths_of_a_millisecond(order_side: OrderSide) -> None:
    call = asyncio.create_task(order_side.refresh_product(CHAIR))
    request = await published_request(order_side)
    order_side.clock.advance(0.000_437)
    assert order_side.pending.complete(request.request_id, [a_product(CHAIR)])
    refreshed = await call
    assert refreshed.elapsed_ms == 0.44


@attrs.define
class Announcing:
    """An EventPublisher whose copies reach the fast path; the stored publishes go to `inner`."""

    inner: RecordingPublisher
    announced: list[Envelope] = attrs.field(factory=list)

    async def announce(self, envelope: Envelope, subject: str | None = None) -> bool:
        self.announced.append(envelope)
        return True

    async def publish(
        self, envelope: Envelope, subject: str | None = None, *, announced: bool = False
    ) -> None:
        assert announced, "an announced request gets no second copy"
        await self.inner.publish(envelope, subject)


def announcing(side: OrderSide, store_after_s: float) -> tuple[Announcing, RefreshProductNow]:
    publisher = Announcing(side.publisher)
    ask = attrs.evolve(side.refresh_product.ask, publisher=publisher)
    return publisher, attrs.evolve(side.refresh_product, ask=ask, timeout_s=30.0, store_after_s=store_after_s)


async def test_an_announced_request_is_stored_once_its_reply_came(order_side: OrderSide) -> None:
    publisher, refresh = announcing(order_side, store_after_s=30.0)
    call = asyncio.create_task(refresh(CHAIR))
    await eventually(lambda: len(publisher.announced) == 1)
    for _ in range(20):
        await asyncio.sleep(0)
    assert order_side.publisher.published == [], "not stored while its reply is on the way"
    [request] = publisher.announced
    assert isinstance(request.data, ProductDetailsRequested)
    assert order_side.pending.complete(request.data.request_id, [a_product(CHAIR)])
    assert (await call).source == "event"
    await eventually(lambda: order_side.publisher.envelopes == [request])


async def test_an_announced_request_without_a_reply_is_stored_all_the_same(order_side: OrderSide) -> None:
    publisher, refresh = announcing(order_side, store_after_s=0.01)
    call = asyncio.create_task(refresh(CHAIR))
    await eventually(lambda: len(order_side.publisher.published) == 1)
    [request] = publisher.announced
    assert order_side.publisher.envelopes == [request]
    assert isinstance(request.data, ProductDetailsRequested)
    assert order_side.pending.complete(request.data.request_id, [a_product(CHAIR)])
    assert (await call).source == "event"
