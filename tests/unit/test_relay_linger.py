"""The outbox relay, once woken, waits a moment so that entries stored meanwhile share its pass."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from adapters.metrics import ServiceMetrics
from application.outbox_relay import RelayOutbox
from entrypoints import background
from entrypoints.background import OutboxWakeup, relay_outbox_forever
from tests.unit.polling import eventually


class CountingRelay:
    """Stands in for RelayOutbox: each pass takes what was stored since the last one."""

    def __init__(self) -> None:
        self.stored: list[int] = []
        self.passes: list[list[int]] = []
        self.pending: int | None = None
        self.stalled = False
        self.more = False

    async def __call__(self) -> int:
        taken, self.stored = self.stored, []
        self.passes.append(taken)
        return len(taken)


async def test_entries_stored_one_after_another_after_a_wake_up_go_in_one_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(background, "RELAY_LINGER_S", 0.2)
    relay, wakeup, stop = CountingRelay(), OutboxWakeup(), asyncio.Event()
    running = asyncio.create_task(
        relay_outbox_forever(cast(RelayOutbox, relay), ServiceMetrics(), stop, wakeup)
    )
    await eventually(lambda: len(relay.passes) == 1)  # the pass at start

    for entry in range(3):  # three requests, a few loop turns apart
        relay.stored.append(entry)
        wakeup.set()
        for _ in range(5):
            await asyncio.sleep(0)
    await eventually(lambda: len(relay.passes) == 2)

    assert relay.passes[1] == [0, 1, 2]
    stop.set()
    await running
