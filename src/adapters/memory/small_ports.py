"""In-memory processed-event ids and locks, both expiring by the clock."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from application.ports import Clock


@attrs.define
class InMemoryProcessedEvents:
    clock: Clock
    ttl_s: float
    _seen: dict[str, float] = attrs.field(factory=dict, init=False)

    async def seen(self, event_id: str) -> bool:
        expires = self._seen.get(event_id)
        return expires is not None and expires > self.clock.monotonic()

    async def seen_among(self, event_ids: Sequence[str]) -> set[str]:
        return {event_id for event_id in event_ids if await self.seen(event_id)}

    async def remember_all(self, event_ids: Sequence[str]) -> None:
        for event_id in event_ids:
            await self.remember(event_id)

    async def remember(self, event_id: str) -> None:
        now = self.clock.monotonic()
        if len(self._seen) > 100_000:
            self._seen = {k: v for k, v in self._seen.items() if v > now}
        self._seen[event_id] = now + self.ttl_s


@attrs.define
class InMemoryLock:
    clock: Clock
    _held: dict[str, float] = attrs.field(factory=dict, init=False)

    async def acquire(self, name: str, ttl_s: float) -> bool:
        now = self.clock.monotonic()
        if self._held.get(name, 0.0) > now:
            return False
        self._held[name] = now + ttl_s
        return True

    async def release(self, name: str) -> None:
        self._held.pop(name, None)
