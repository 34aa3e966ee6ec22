"""The fast path of request-reply: core-delivered copies of details requests and replies, handled at once.

The durable consumers stay the backstop (at least once): whatever the fast path misses or fails
on, they deliver. To keep the two from applying one event twice in this process, the fast path
claims an envelope id while it handles it; a durable consumer asking whether that id was
processed waits for the claim, and hears "yes" without a round trip to the store. The other
way round, the fast path leaves alone an event a durable consumer here has taken on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

import attrs

from adapters.broker import Broker, Delivery, Subscription
from adapters.metrics import ServiceMetrics
from adapters.wire.event_json import decode
from application.ports import ProcessedEvents
from domain.errors import DependencyUnavailable, UndecodableEvent
from domain.events import Envelope
from entrypoints.consumers import EventHandler, carried_on_its_subject, log_applied, remember_bounded

log = logging.getLogger(__name__)

FAST_HANDLER_TIMEOUT_S = 5.0
"""A fast-path handler running longer gives up: the event is the durable consumer's then."""
HANDLED_KEPT = 10_000
"""How many ids handled here are known without asking the store (the newest)."""
RECORD_DELAY_S = 0.05
"""What the fast path handled is recorded in the store this much later, together with whatever
else it handled meanwhile: the write leaves after the reply has been taken in, not in the same
instant on the same two cores, and a busy instance writes once per while, not once per request.
This process knows at once (its durable consumers ask it first); another instance's durable
consumer may answer such a request again meanwhile, and the reply (its id derived from the
request's) is stored once by JetStream's duplicate window."""


@attrs.frozen
class FastPathSpec:
    """Subjects to listen on; with `queue`, one instance of the service gets each message."""

    name: str
    subjects: tuple[str, ...]
    queue: str | None = None
    shared: bool = True
    """Whether another process's durable consumer may get these events too: then what the fast
    path handled is recorded in the store, not only in this process."""


@attrs.define(eq=False)
class ProcessedHere:
    """ProcessedEvents with what this process is handling, or handled lately, in front of the store."""

    store: ProcessedEvents
    kept: int = HANDLED_KEPT
    _claims: dict[str, asyncio.Event] = attrs.field(factory=dict)
    _handled: dict[str, None] = attrs.field(factory=dict)
    _taken: dict[str, None] = attrs.field(factory=dict)
    """Ids a durable consumer here asked about and got "not processed" for: it is handling them."""
    record_delay_s: float = RECORD_DELAY_S
    _unrecorded: list[str] = attrs.field(factory=list)
    _record_due: asyncio.TimerHandle | None = None
    _recording: set[asyncio.Task[None]] = attrs.field(factory=set)

    def claim(self, event_id: str) -> bool:
        """True when the fast path may handle the event now: nobody here handles or handled it."""
        if event_id in self._claims or event_id in self._handled or event_id in self._taken:
            return False
        self._claims[event_id] = asyncio.Event()
        return True

    def release(self, event_id: str, handled: bool) -> None:
        if handled:
            self._mark(event_id)
        claim = self._claims.pop(event_id, None)
        if claim is not None:
            claim.set()

    async def seen(self, event_id: str) -> bool:
        return event_id in await self.seen_among([event_id])

    async def seen_among(self, event_ids: Sequence[str]) -> set[str]:
        """Those of `event_ids` handled here or remembered in the store (one look-up there).

        An id not handled here is taken before the store is asked, with no wait in between: a
        fast-path copy arriving during the look-up then leaves it to the durable consumer, which
        would otherwise apply it as well.
        """
        while in_hand := [self._claims[i] for i in event_ids if i in self._claims]:
            await asyncio.gather(*(claim.wait() for claim in in_hand))  # each within FAST_HANDLER_TIMEOUT_S
        known = {event_id for event_id in event_ids if event_id in self._handled}
        asked = [event_id for event_id in event_ids if event_id not in known]
        for event_id in asked:
            remember_bounded(self._taken, event_id, self.kept)
        stored = await self.store.seen_among(asked) if asked else set()
        for event_id in stored:
            self._mark(event_id)  # processed elsewhere: handled, as far as this process goes
        return known | stored

    async def remember(self, event_id: str, *, in_store: bool = True) -> None:
        self._mark(event_id)
        if in_store:
            await self.store.remember(event_id)

    async def remember_all(self, event_ids: Sequence[str]) -> None:
        for event_id in event_ids:
            self._mark(event_id)
        await self.store.remember_all(event_ids)

    def remember_soon(self, event_id: str) -> None:
        """Handled, here at once; in the store within `record_delay_s` (RECORD_DELAY_S)."""
        self._mark(event_id)
        self._unrecorded.append(event_id)
        if self._record_due is None:
            self._record_due = asyncio.get_running_loop().call_later(self.record_delay_s, self._record_now)

    async def close(self) -> None:
        """Record at once what waits, and wait for the writes out (a stopping service, after its
        listeners)."""
        if self._record_due is not None:
            self._record_due.cancel()
        self._record_now()
        if self._recording:
            await asyncio.wait(self._recording)

    def _record_now(self) -> None:
        self._record_due = None
        recording, self._unrecorded = self._unrecorded, []
        if recording:
            task = asyncio.create_task(self._record(recording), name="record-processed")
            self._recording.add(task)
            task.add_done_callback(self._recording.discard)

    async def _record(self, event_ids: list[str]) -> None:
        try:
            await self.store.remember_all(event_ids)
        except DependencyUnavailable as error:
            log.warning("could not record %d events as processed: %s", len(event_ids), error.message)

    def _mark(self, event_id: str) -> None:
        self._taken.pop(event_id, None)
        remember_bounded(self._handled, event_id, self.kept)


@attrs.frozen
class FastPathConsumer:
    """Applies a core-delivered event unless this process has it in hand; on any failure it
    lets it go (no retry, no dead letter): the durable consumer does both."""

    spec: FastPathSpec
    handlers: Mapping[str, EventHandler]
    processed: ProcessedHere
    metrics: ServiceMetrics

    async def __call__(self, delivery: Delivery) -> None:
        try:
            envelope = decode(delivery.data)
        except UndecodableEvent:
            return
        handler = self.handlers.get(envelope.type)
        if handler is None or not carried_on_its_subject(envelope.type, delivery.subject):
            return
        if not self.processed.claim(envelope.id):
            return
        handled = False
        try:
            async with asyncio.timeout(FAST_HANDLER_TIMEOUT_S):
                await handler(envelope)
            handled = True
        except Exception as error:
            log.info(
                "fast path %s left %s %s to the durable consumer: %r",
                self.spec.name,
                envelope.type,
                envelope.id,
                error,
            )
        finally:
            self.processed.release(envelope.id, handled)
        if handled:
            await self._done(envelope)

    async def _done(self, envelope: Envelope) -> None:
        self.metrics.events_processed.labels(type=envelope.type, outcome="ack").inc()
        if self.spec.shared:
            self.processed.remember_soon(envelope.id)
        else:
            await self.processed.remember(envelope.id, in_store=False)
        log_applied(envelope, path="fast")


async def listen_fast(
    broker: Broker,
    specs: list[FastPathSpec],
    handlers: Mapping[str, EventHandler],
    processed: ProcessedHere,
    metrics: ServiceMetrics,
) -> list[Subscription]:
    return [
        await broker.listen(spec.subjects, spec.queue, FastPathConsumer(spec, handlers, processed, metrics))
        for spec in specs
    ]
