"""Use case: the scheduled refresh of active products over events (the seed's §5.2)."""

from __future__ import annotations

import logging

import attrs

from application.envelopes import EnvelopeFactory
from application.ports import Clock, EventPublisher, Lock, ProductCache
from domain.events import PRODUCT_BATCH_DETAILS_PROVIDED, ProductBatchDetailsRequested

log = logging.getLogger(__name__)

REFRESH_LOCK = "refresh-active-products"


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
            for number, batch in enumerate(batches):
                if number and self.batch_delay_s > 0:
                    await self.clock.sleep(self.batch_delay_s)
                request_id = self.envelopes.ids.new_id()
                await self.publisher.publish(
                    self.envelopes.wrap(
                        ProductBatchDetailsRequested(
                            product_ids=tuple(batch),
                            request_id=request_id,
                            callback_event=PRODUCT_BATCH_DETAILS_PROVIDED,
                            refresh_mode=True,
                        ),
                        correlation_id=request_id,
                    )
                )
                log.info("scheduled refresh for %s products", len(batch))
            return RefreshReport(ran=True, products=len(ids), batches=len(batches))
        finally:
            await self.lock.release(REFRESH_LOCK)
