"""Long-running loops of a service: the outbox relay and the cron-scheduled refresh."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from croniter import croniter

from adapters.metrics import ServiceMetrics
from application.outbox_relay import RelayOutbox
from application.ports import Clock
from domain.errors import DependencyUnavailable

log = logging.getLogger(__name__)

RELAY_IDLE_S = 0.05
RELAY_MAX_BACKOFF_S = 5.0


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when asked to stop meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.0))
    return stop.is_set()


async def relay_outbox_forever(relay: RelayOutbox, metrics: ServiceMetrics, stop: asyncio.Event) -> None:
    """Publish pending events as they come; back off while the bus or the store is down."""
    backoff = RELAY_IDLE_S
    while True:
        try:
            published = await relay()
            pending = await relay.outbox.count()
            metrics.outbox_pending.set(pending)
            stalled = pending > 0 and published == 0
            backoff = min(backoff * 2, RELAY_MAX_BACKOFF_S) if stalled else RELAY_IDLE_S
            delay = 0.0 if published and pending else backoff
        except DependencyUnavailable as error:
            log.warning("outbox relay waiting: %s", error.message)
            backoff = min(backoff * 2, RELAY_MAX_BACKOFF_S)
            delay = backoff
        except Exception:
            log.exception("outbox relay pass failed")
            delay = RELAY_MAX_BACKOFF_S
        if await wait_or_stop(stop, delay):
            return


async def run_on_schedule(
    cron: str, job: Callable[[], Awaitable[object]], clock: Clock, stop: asyncio.Event
) -> None:
    """Run `job` at every tick of `cron` (UTC) until stopped; a failing tick is logged."""
    while True:
        now = clock.now()
        next_tick: datetime = croniter(cron, now).get_next(datetime)
        if await wait_or_stop(stop, (next_tick - now).total_seconds()):
            return
        try:
            await job()
        except Exception:
            log.exception("scheduled job failed")


class BackgroundTasks:
    """Fire-and-forget work started by a request, kept referenced and cancelled at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()

    def start(self, work: Awaitable[object]) -> None:
        async def run() -> object:
            try:
                return await work
            except Exception:
                log.exception("background task failed")
                return None

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
