"""In-memory outbox: events waiting for the relay, in the order they were stored."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from adapters.memory.faults import Outage
from adapters.outbox_feed import AppendedEntries
from domain.errors import StoreUnavailable
from domain.events import Envelope


@attrs.define
class InMemoryOutbox:
    outage: Outage = attrs.field(factory=lambda: Outage(StoreUnavailable))
    _entries: dict[str, Envelope] = attrs.field(factory=dict, init=False)
    _appended: AppendedEntries = attrs.field(factory=AppendedEntries, init=False)

    def add_now(self, envelopes: Sequence[Envelope]) -> None:
        """For the stores that write their state and events together."""
        for envelope in envelopes:
            self._entries[envelope.id] = envelope
        self._appended.note(envelopes)

    def take_appended(self) -> list[Envelope]:
        return self._appended.take()

    async def add(self, envelopes: Sequence[Envelope]) -> None:
        self.outage.check()
        self.add_now(envelopes)

    async def pending(self, limit: int) -> list[Envelope]:
        self.outage.check()
        return list(self._entries.values())[:limit]

    async def remove(self, envelope_ids: Sequence[str]) -> None:
        self.outage.check()
        for envelope_id in envelope_ids:
            self._entries.pop(envelope_id, None)

    async def count(self) -> int:
        self.outage.check()
        return len(self._entries)
