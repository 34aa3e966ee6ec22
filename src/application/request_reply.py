"""Async request-reply with correlation ids (the seed's §5.1), with the synchronous fallback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

import attrs

from application.ports import Clock, IdGenerator, Telemetry
from application.product_fetching import ProductFetcher
from application.snapshot_requests import AskForSnapshot
from domain.errors import (
    DependencyUnavailable,
    ProductNotFound,
    ProductServiceUnavailable,
)
from domain.events import Envelope
from domain.products import Product

log = logging.getLogger(__name__)

STORE_AFTER_S = 0.02
"""An announced request is stored once its reply came, or this much later at the latest (the
Product Service's fast path missed it: the durable consumer answers, a little later)."""


class PendingReplies:
    """Requests waiting for their reply, by request id. No entry outlives its waiter."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Sequence[Product | None]]] = {}
        self._publishing: set[asyncio.Task[None]] = set()

    def open(self, request_id: str) -> asyncio.Future[Sequence[Product | None]]:
        future: asyncio.Future[Sequence[Product | None]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def close(self, request_id: str) -> None:
        future = self._waiting.pop(request_id, None)
        if future is None:
            return
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()  # a failure handed over as the caller gave up: seen, not reported

    def publish_aside(self, request_id: str, publishing: Coroutine[Any, Any, None]) -> None:
        """Publish the request beside its waiter: a publish that fails hands its error to the
        waiter (the fallback starts at once), and an ack that comes after the reply keeps
        nobody waiting (the reply shows the request arrived; JetStream acks are often later)."""
        task = asyncio.ensure_future(publishing)
        self._publishing.add(task)
        task.add_done_callback(lambda done: self._published(request_id, done))

    def complete(self, request_id: str, products: Sequence[Product | None]) -> bool:
        """Hand the reply to its waiter; False when nobody waits (late, or another instance's)."""
        future = self._waiting.pop(request_id, None)
        if future is None or future.done():
            return False
        future.set_result(products)
        return True

    def fail_all(self) -> None:
        """On shutdown: every waiter stops waiting at once, and no publish is awaited."""
        for request_id in list(self._waiting):
            self.close(request_id)
        for task in list(self._publishing):
            task.cancel()

    def _published(self, request_id: str, task: asyncio.Task[None]) -> None:
        self._publishing.discard(task)
        if task.cancelled() or (error := task.exception()) is None:
            return
        future = self._waiting.get(request_id)
        if future is not None and not future.done():
            future.set_exception(error)
        else:
            log.warning("details request %s: its publish failed once nobody waited: %r", request_id, error)

    def __len__(self) -> int:
        return len(self._waiting)


@attrs.frozen
class RefreshedProduct:
    product: Product
    source: str
    """`event` (the async reply), `http` (synchronous fallback) or `cache`."""
    elapsed_ms: float
    """To 0.01 ms, as the access log's `elapsedMs`: a reply takes well under a millisecond."""


@attrs.frozen
class RefreshProductNow:
    """Ask for one product over events; on timeout ask over HTTP; when that fails, the cache."""

    pending: PendingReplies
    ask: AskForSnapshot
    fetcher: ProductFetcher
    clock: Clock
    ids: IdGenerator
    telemetry: Telemetry
    timeout_s: float
    store_after_s: float = STORE_AFTER_S

    async def __call__(self, product_id: str) -> RefreshedProduct:
        started = self.clock.monotonic()
        reply, sent = await self._ask_over_events(product_id)
        if sent:  # a request the bus refused is no async request: it neither timed out nor took time
            self.telemetry.async_request_finished(self.clock.monotonic() - started, timed_out=reply is None)
        if reply is not None:
            if not reply or reply[0] is None:
                raise ProductNotFound(product_id)
            # no cache write here: the reply's consumer stores the snapshot (INTERFACE §5) once it
            # has handed it over, so the answer does not wait for a write made anyway
            return self._done(reply[0], "event", started)
        try:
            fresh = await self.fetcher.lookup.get_product(product_id)
        except ProductServiceUnavailable:
            cached = (await self.fetcher.cached([product_id])).get(product_id)
            if cached is None:
                raise
            return self._done(cached, "cache", started)
        if fresh is None:
            raise ProductNotFound(product_id)
        await self.fetcher.remember([fresh])
        return self._done(fresh, "http", started)

    async def _ask_over_events(self, product_id: str) -> tuple[Sequence[Product | None] | None, bool]:
        """The reply's products, or None when it did not come in time; and whether the request
        went out (False: the event bus refused it)."""
        request_id = self.ids.new_id()
        waiter = self.pending.open(request_id)
        try:
            # not wait_for: it hands the reply over through a future of its own, a loop turn later
            async with asyncio.timeout(self.timeout_s):
                request = self.ask.request(product_id, request_id)
                announced = await self.ask.announce(request)
                self.pending.publish_aside(request_id, self._store(request, announced, waiter))
                return await waiter, True
        except DependencyUnavailable as error:
            log.warning("async details request for %s not sent: %r", product_id, error)
            return None, False
        except (TimeoutError, asyncio.CancelledError) as error:
            task = asyncio.current_task()
            if isinstance(error, asyncio.CancelledError) and task and task.cancelling():
                raise
            log.warning("async details request for %s got no reply: %r", product_id, error)
            return None, True
        finally:
            self.pending.close(request_id)

    async def _store(
        self, request: Envelope, announced: bool, waiter: asyncio.Future[Sequence[Product | None]]
    ) -> None:
        """The request stored, for the durable consumers: once the reply came, when its copy
        reached the fast path; published during the round trip, its JetStream write and ack
        took CPU from it (two cores: both services, NATS and Redis)."""
        if announced:
            await asyncio.wait([waiter], timeout=self.store_after_s)
        await self.ask.store(request, announced=announced)

    def _done(self, product: Product, source: str, started: float) -> RefreshedProduct:
        elapsed = (self.clock.monotonic() - started) * 1000
        return RefreshedProduct(product, source, round(elapsed, 2))
