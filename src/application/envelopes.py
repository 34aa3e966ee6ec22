"""Wraps event data in the integration's envelope, with ids and time from the ports."""

from __future__ import annotations

from datetime import datetime

import attrs

from application.ports import Clock, IdGenerator
from domain.events import Envelope, EventData, event_type_of

DATA_VERSION = "1.0"


@attrs.frozen
class EnvelopeFactory:
    source: str
    clock: Clock
    ids: IdGenerator

    def wrap(
        self,
        data: EventData,
        correlation_id: str | None = None,
        at: datetime | None = None,
        event_id: str | None = None,
    ) -> Envelope:
        """`at`: when what the event tells happened (a product change: its `updatedAt`); default now.
        `event_id`: a chosen id (one derived from what it answers); a fresh one by default."""
        event_id = event_id or self.ids.new_id()
        return Envelope(
            id=event_id,
            type=event_type_of(data),
            source=self.source,
            data_version=DATA_VERSION,
            timestamp=at if at is not None else self.clock.now(),
            correlation_id=correlation_id or event_id,
            data=data,
        )
