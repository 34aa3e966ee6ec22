"""Use case: publish what the outbox holds, removing each entry only after the broker's ack.

Two paths. What this process appended itself is published at once, with no lease: nobody else
touches an entry that young (the fast path, one round trip to remove a batch). A sweep, at most
every `sweep_interval_s` and under a lease shared by every instance, publishes the entries older
than `grace_s`: those whose fast publish failed (the bus was down), and those of an instance
that died before publishing them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

import attrs

from application.ports import Clock, EventPublisher, Lock, Outbox
from domain.errors import EventBusUnavailable
from domain.events import Envelope

log = logging.getLogger(__name__)

RELAY_LEASE = "outbox-relay"


@attrs.define(eq=False)
class RelayOutbox:
    """One pass: the fresh entries, then a sweep when one is due.

    A double publish would be harmless anyway: every publish carries `Nats-Msg-Id` = envelope
    id, so the broker stores an event once.
    """

    outbox: Outbox
    publisher: EventPublisher
    lock: Lock
    clock: Clock
    batch_size: int = 100
    lease_s: float = 30.0
    sweep_interval_s: float = 1.0
    grace_s: float = 5.0
    """How old an entry must be before the sweep takes it (clocks of instances may differ a bit)."""
    pending: int | None = attrs.field(default=None, init=False)
    """Entries in the outbox at the last sweep (None before the first)."""
    stalled: bool = attrs.field(default=False, init=False)
    """The last pass failed to publish entries it had in hand (the bus refused them)."""
    more: bool = attrs.field(default=False, init=False)
    """The last sweep filled its batch: the next pass sweeps again, whenever it runs."""
    _next_sweep: float = attrs.field(default=0.0, init=False)

    async def __call__(self) -> int:
        """One pass; returns how many were published. Entries whose publish failed stay."""
        fresh = self.outbox.take_appended()
        published = failed = 0
        for start in range(0, len(fresh), self.batch_size):
            done, refused = await self._publish_and_remove(fresh[start : start + self.batch_size])
            published, failed = published + done, failed + refused
        self.stalled = failed > 0
        if self.more or self.clock.monotonic() >= self._next_sweep:
            self._next_sweep = self.clock.monotonic() + self.sweep_interval_s
            published += await self._sweep()
        return published

    async def _sweep(self) -> int:
        self.more = False
        if not await self.lock.acquire(RELAY_LEASE, self.lease_s):
            self.pending = await self.outbox.count()  # another instance sweeps meanwhile
            return 0
        try:
            batch = await self.outbox.pending(self.batch_size)
            due_before = self.clock.now() - timedelta(seconds=self.grace_s)
            due = [envelope for envelope in batch if envelope.timestamp <= due_before]
            published, failed = await self._publish_and_remove(due)
            self.stalled = self.stalled or failed > 0
            self.more = len(batch) == self.batch_size and published == len(due) and published > 0
            self.pending = await self.outbox.count()
            return published
        finally:
            await self.lock.release(RELAY_LEASE)

    async def _publish_and_remove(self, envelopes: Sequence[Envelope]) -> tuple[int, int]:
        """(published, failed); the published ones are removed from the outbox."""
        if not envelopes:
            return 0, 0
        outcomes = await asyncio.gather(*(self._publish(e) for e in envelopes))
        done = [envelope.id for envelope, ok in zip(envelopes, outcomes, strict=True) if ok]
        if done:
            await self.outbox.remove(done)
        return len(done), len(envelopes) - len(done)

    async def _publish(self, envelope: Envelope) -> bool:
        try:
            await self.publisher.publish(envelope)
        except EventBusUnavailable as error:
            log.warning("outbox relay: %s not published yet: %s", envelope.type, error.message)
            return False
        return True
