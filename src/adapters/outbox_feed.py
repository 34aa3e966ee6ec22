"""What this process appended to its outbox and has not handed to the relay yet."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from domain.events import Envelope

APPENDED_KEPT = 10_000
"""Beyond this many unpublished appends the oldest are forgotten here; they are still in the
outbox, where the relay's sweep finds them."""


class AppendedEntries:
    """Filled by the store right after a write that appended entries; emptied by the relay."""

    def __init__(self, kept: int = APPENDED_KEPT) -> None:
        self._entries: deque[Envelope] = deque(maxlen=kept)

    def note(self, envelopes: Sequence[Envelope]) -> None:
        self._entries.extend(envelopes)

    def take(self) -> list[Envelope]:
        taken = list(self._entries)
        self._entries.clear()
        return taken
