"""Wraps event data in the integration's envelope, with ids and time from the ports."""

from __future__ import annotations

import attrs

from application.ports import Clock, IdGenerator
from domain.events import Envelope, EventData, event_type_of

DATA_VERSION = "1.0"


@attrs.frozen
class EnvelopeFactory:
    source: str
    clock: Clock
    ids: IdGenerator

    def wrap(self, data: EventData, correlation_id: str | None = None) -> Envelope:
        event_id = self.ids.new_id()
        return Envelope(
            id=event_id,
            type=event_type_of(data),
            source=self.source,
            data_version=DATA_VERSION,
            timestamp=self.clock.now(),
            correlation_id=correlation_id or event_id,
            data=data,
        )
