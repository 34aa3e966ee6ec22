"""Use case: publish what the outbox holds, removing each entry only after the broker's ack."""

from __future__ import annotations

import logging

import attrs

from application.ports import EventPublisher, Outbox
from domain.errors import EventBusUnavailable

log = logging.getLogger(__name__)


@attrs.frozen
class RelayOutbox:
    outbox: Outbox
    publisher: EventPublisher
    batch_size: int = 100

    async def __call__(self) -> int:
        """One pass; returns how many were published. Stops at the first publish failure."""
        published = 0
        for envelope in await self.outbox.pending(self.batch_size):
            try:
                await self.publisher.publish(envelope)
            except EventBusUnavailable as error:
                log.warning("outbox relay paused, event bus unavailable: %s", error.message)
                break
            await self.outbox.remove([envelope.id])
            published += 1
        return published
