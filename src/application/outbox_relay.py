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
    stall_log_interval_s: float = 30.0
    """While publishes keep failing, how often the warning is repeated (one line, with the count)."""
    _next_sweep: float = attrs.field(default=0.0, init=False)
    _stall_logged_at: float | None = attrs.field(default=None, init=False)
    """When the stall was last logged; None while publishing works."""

    async def __call__(self) -> int:
        """One pass; returns how many were published. Entries whose publish failed stay."""
        fresh = self.outbox.take_appended()
        published = failed = 0
        for start in range(0, len(fresh), self.batch_size):
            done, refused = await self._publish_and_remove(fresh[start : start + self.batch_size])
            published, failed = published + done, failed + refused
        self.stalled = failed > 0
        swept = False
        if self.more or self.clock.monotonic() >= self._next_sweep:
            self._next_sweep = self.clock.monotonic() + self.sweep_interval_s
            published += await self._sweep()
            swept = True
        # back only once this pass reached the store (a sweep) or the bus (a publish): a pass with
        # nothing fresh and no sweep due touches neither, and proves nothing
        if (swept or published) and not self.stalled and self._stall_logged_at is not None:
            self._stall_logged_at = None
            log.info("outbox relay: publishing again (%s published in this pass)", published)
        return published

    def note_outage(self, reason: str) -> None:
        """A pass that could not run (its store or lease is unavailable): logged as a stall is,
        once, then once every `stall_log_interval_s`; the next pass that runs says it is back."""
        if self._stall_due():
            log.warning("outbox relay waiting: %s", reason)

    def _stall_due(self) -> bool:
        now = self.clock.monotonic()
        if self._stall_logged_at is not None and now - self._stall_logged_at < self.stall_log_interval_s:
            return False
        self._stall_logged_at = now
        return True

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
        done = [envelope.id for envelope, refusal in zip(envelopes, outcomes, strict=True) if refusal is None]
        if done:
            await self.outbox.remove(done)
        refusals = [refusal for refusal in outcomes if refusal is not None]
        if refusals:
            self._log_stall(len(refusals), refusals[0])
        return len(done), len(refusals)

    async def _publish(self, envelope: Envelope) -> str | None:
        """None once published; the bus's reason when it refused."""
        try:
            await self.publisher.publish(envelope)
        except EventBusUnavailable as error:
            return error.message
        return None

    def _log_stall(self, failed: int, reason: str) -> None:
        """One line when publishing starts to fail, then one every `stall_log_interval_s`: an
        outage of minutes at hundreds of orders a second would otherwise log a line per event per pass."""
        if not self._stall_due():
            return
        log.warning(
            "outbox relay: %s events not published yet, kept in the outbox (outbox_pending counts them): %s",
            failed,
            reason,
        )
