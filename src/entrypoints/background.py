"""Long-running loops of a service: the outbox relay and the cron-scheduled refresh."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from croniter import croniter

from adapters.metrics import ServiceMetrics
from adapters.redis.client import prompt_lane
from adapters.tasks import cancel_and_wait
from application.outbox_relay import RelayOutbox
from application.ports import Clock
from domain.errors import DependencyUnavailable

log = logging.getLogger(__name__)

RELAY_IDLE_S = 1.0
"""How long an idle relay waits when not woken: then its sweep looks for entries it was not
told of (another instance's, a crash's, those whose first publish failed)."""
RELAY_RETRY_S = 0.05
RELAY_LINGER_S = 0.02
"""Once woken, the relay waits this long before its pass, so that what is stored meanwhile goes
in the same pass: at 200 orders/s one wake-up and one removal serve ~4 orders instead of one
each. Events leave up to this much later; the consumers of order.created linger longer anyway."""
RELAY_MAX_BACKOFF_S = 5.0


class OutboxWakeup:
    """Set by whoever stores an outbox entry in this process, so the relay publishes at once."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


async def wait_or_stop(stop: asyncio.Event, seconds: float, wakeup: OutboxWakeup | None = None) -> bool:
    """Sleep up to `seconds` (less when woken); True when asked to stop meanwhile."""
    waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(stop.wait())]
    if wakeup is not None:
        waiters.append(asyncio.ensure_future(wakeup.wait()))
    try:
        await asyncio.wait(waiters, timeout=max(seconds, 0.0), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return stop.is_set()


async def relay_outbox_forever(
    relay: RelayOutbox, metrics: ServiceMetrics, stop: asyncio.Event, wakeup: OutboxWakeup
) -> None:
    """Publish pending events soon after they are stored (RELAY_LINGER_S); back off while the
    bus or store is down."""
    backoff = RELAY_RETRY_S
    while True:
        wakeup.clear()
        woken_by: OutboxWakeup | None = wakeup
        try:
            await relay()
            if relay.pending is not None:
                metrics.outbox_pending.set(relay.pending)
            if relay.stalled:  # the bus refused what the pass had in hand
                backoff = min(backoff * 2, RELAY_MAX_BACKOFF_S)
                delay, woken_by = backoff, None
            elif relay.more:
                delay = 0.0
            else:
                backoff, delay = RELAY_RETRY_S, RELAY_IDLE_S
        except DependencyUnavailable as error:
            relay.note_outage(error.message)
            backoff = min(backoff * 2, RELAY_MAX_BACKOFF_S)
            delay, woken_by = backoff, None
        except Exception:
            log.exception("outbox relay pass failed")
            delay, woken_by = RELAY_MAX_BACKOFF_S, None
        if await wait_or_stop(stop, delay, woken_by):
            return
        woken = delay > 0 and woken_by is not None and woken_by.is_set()
        if woken and await wait_or_stop(stop, RELAY_LINGER_S):  # woken: gather a little more
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
        except DependencyUnavailable as error:  # an outage, not a bug: one line, no traceback
            log.warning("scheduled job did not run: %s", error.message)
        except Exception:
            log.exception("scheduled job failed")


class BackgroundTasks:
    """Fire-and-forget work started by a request, kept referenced and cancelled at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()

    def start(self, work: Awaitable[object]) -> None:
        async def run() -> object:
            try:
                with prompt_lane(False):  # nobody waits on it: it queues with the background work
                    return await work
            except DependencyUnavailable as error:  # an outage, not a bug: one line, no traceback
                log.warning("background task stopped: %s", error.message)
                return None
            except Exception:
                log.exception("background task failed")
                return None

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_all(self) -> None:
        await cancel_and_wait(list(self._tasks))
