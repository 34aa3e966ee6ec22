"""The EventPublisher port over a Broker: encodes the envelope, `Nats-Msg-Id` = envelope id."""

from __future__ import annotations

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

    async def publish(self, envelope: Envelope, subject: str | None = None) -> None:
        try:
            await self.broker.publish(subject or envelope.type, encode(envelope), envelope.id)
        except EventBusUnavailable:
            self.metrics.events_published.labels(type=envelope.type, outcome="error").inc()
            raise
        self.metrics.events_published.labels(type=envelope.type, outcome="ok").inc()
