"""Use case: publish what the outbox holds, removing each entry only after the broker's ack."""

from __future__ import annotations

import asyncio
import logging

import attrs

from application.ports import EventPublisher, Lock, Outbox
from domain.errors import EventBusUnavailable
from domain.events import Envelope

log = logging.getLogger(__name__)

RELAY_LEASE = "outbox-relay"


@attrs.frozen
class RelayOutbox:
    """One pass publishes a batch; a lease keeps instances sharing one outbox from racing.

    A double publish would be harmless anyway: every publish carries `Nats-Msg-Id` = envelope
    id, so the broker stores an event once.
    """

    outbox: Outbox
    publisher: EventPublisher
    lock: Lock
    batch_size: int = 100
    lease_s: float = 30.0

    async def __call__(self) -> int:
        """One pass; returns how many were published. Entries whose publish failed stay."""
        if not await self.lock.acquire(RELAY_LEASE, self.lease_s):
            return 0
        try:
            batch = await self.outbox.pending(self.batch_size)
            if not batch:
                return 0
            outcomes = await asyncio.gather(*(self._publish(e) for e in batch))
            done = [envelope.id for envelope, ok in zip(batch, outcomes, strict=True) if ok]
            if done:
                await self.outbox.remove(done)
            return len(done)
        finally:
            await self.lock.release(RELAY_LEASE)

    async def _publish(self, envelope: Envelope) -> bool:
        try:
            await self.publisher.publish(envelope)
        except EventBusUnavailable as error:
            log.warning("outbox relay: %s not published yet: %s", envelope.type, error.message)
            return False
        return True
