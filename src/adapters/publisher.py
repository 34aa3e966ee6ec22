"""The EventPublisher port over a Broker: encodes the envelope, `Nats-Msg-Id` = envelope id."""

from __future__ import annotations

from typing import Any

import attrs

from adapters.broker import Broker
from adapters.metrics import ServiceMetrics
from adapters.wire.event_json import encode
from domain.errors import EventBusUnavailable
from domain.events import Envelope


@attrs.frozen
class BrokerEventPublisher:
    broker: Broker
    metrics: ServiceMetrics
    fast_types: frozenset[str] = frozenset()
    """Event types published with a copy for the fast path's listeners (Broker.publish `fast`)."""
    _counters: dict[tuple[str, str], Any] = attrs.field(factory=dict, init=False, repr=False)
    """events_published_total children by (type, outcome): `labels()` costs more than `inc()`."""

    async def announce(self, envelope: Envelope, subject: str | None = None) -> bool:
        return await self.broker.announce(subject or envelope.type, encode(envelope))

    async def publish(
        self, envelope: Envelope, subject: str | None = None, *, announced: bool = False
    ) -> None:
        try:
            await self.broker.publish(
                subject or envelope.type,
                encode(envelope),
                envelope.id,
                fast=not announced and envelope.type in self.fast_types,
            )
        except EventBusUnavailable:
            self._count(envelope.type, "error")
            raise
        self._count(envelope.type, "ok")

    def _count(self, event_type: str, outcome: str) -> None:
        counter = self._counters.get((event_type, outcome))
        if counter is None:
            counter = self._counters[event_type, outcome] = self.metrics.events_published.labels(
                type=event_type, outcome=outcome
            )
        counter.inc()
