"""Use case: the scheduled refresh of active products over events (the seed's §5.2)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import attrs

from application.envelopes import EnvelopeFactory
from application.ports import Clock, EventPublisher, Lock, ProductCache
from domain.events import PRODUCT_BATCH_DETAILS_PROVIDED, Envelope, ProductBatchDetailsRequested

log = logging.getLogger(__name__)

REFRESH_LOCK = "refresh-active-products"
PUBLISH_WINDOW = 8
"""With no delay between batches, this many publishes wait for their broker ack at once: the
round trips overlap instead of adding up (200 batches one by one cost 200 round trips)."""


@attrs.frozen
class RefreshReport:
    ran: bool
    """False when another instance held the lock for this tick."""
    products: int = 0
    batches: int = 0


@attrs.frozen
class RefreshActiveProducts:
    cache: ProductCache
    publisher: EventPublisher
    envelopes: EnvelopeFactory
    clock: Clock
    lock: Lock
    batch_size: int
    batch_delay_s: float
    lock_ttl_s: float = 300.0

    async def __call__(self) -> RefreshReport:
        if not await self.lock.acquire(REFRESH_LOCK, self.lock_ttl_s):
            log.info("refresh skipped: another instance holds the lock")
            return RefreshReport(ran=False)
        try:
            ids = sorted(await self.cache.active_ids())
            batches = [ids[i : i + self.batch_size] for i in range(0, len(ids), self.batch_size)]
            if self.batch_delay_s > 0:
                await self._publish_paced(batches)
            else:
                await self._publish_windowed([self._request(batch) for batch in batches])
            log.info("refresh asked for %s products in %s batches", len(ids), len(batches))
            return RefreshReport(ran=True, products=len(ids), batches=len(batches))
        finally:
            await self.lock.release(REFRESH_LOCK)

    def _request(self, batch: Sequence[str]) -> Envelope:
        request_id = self.envelopes.ids.new_id()
        return self.envelopes.wrap(
            ProductBatchDetailsRequested(
                product_ids=tuple(batch),
                request_id=request_id,
                callback_event=PRODUCT_BATCH_DETAILS_PROVIDED,
                refresh_mode=True,
            ),
            correlation_id=request_id,
        )

    async def _publish_paced(self, batches: Sequence[Sequence[str]]) -> None:
        """One batch, then `batch_delay_s`, then the next: the Product Service is spared a burst."""
        for number, batch in enumerate(batches):
            if number:
                await self.clock.sleep(self.batch_delay_s)
            await self.publisher.publish(self._request(batch))

    async def _publish_windowed(self, requests: Sequence[Envelope]) -> None:
        """Up to PUBLISH_WINDOW publishes in flight; the first failure cancels the rest and is raised."""
        in_flight: set[asyncio.Task[None]] = set()
        try:
            for request in requests:
                if len(in_flight) >= PUBLISH_WINDOW:
                    done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    _raise_first_failure(done)
                in_flight.add(asyncio.ensure_future(self.publisher.publish(request)))
            if in_flight:
                done, in_flight = await asyncio.wait(in_flight)
                _raise_first_failure(done)
        finally:
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.wait(in_flight)


def _raise_first_failure(done: set[asyncio.Task[None]]) -> None:
    for task in done:
        task.result()
