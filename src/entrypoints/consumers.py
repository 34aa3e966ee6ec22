"""Reliable event consumption: decode, skip duplicates, apply, then ack; retry or dead-letter.

A consumer acknowledges only after the effect is stored. A transient failure (a dependency
down) is retried with backoff; a message that can never succeed (bad JSON, missing fields,
unknown type or dataVersion, a handler refusing it) goes to `deadletter.<subject>` with the
reason and the original payload, and the consumer goes on.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import hashlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

import attrs
from prometheus_client import Counter

from adapters.broker import Broker, ConsumerSpec, Delivery, Subscription
from adapters.metrics import ServiceMetrics
from adapters.wire.converter import dumps, format_timestamp
from adapters.wire.event_json import decode
from application.ports import Clock, ProcessedEvents
from domain.errors import DependencyUnavailable, OrderingError, UndecodableEvent
from domain.events import EVENT_TYPES, Envelope

log = logging.getLogger(__name__)

EventHandler = Callable[[Envelope], Awaitable[None]]
EventBatchHandler = Callable[[Sequence[Envelope]], Awaitable[None]]
"""Applies several events of one type at once, or raises; then each is applied alone."""

HANDLER_SHARE_OF_ACK_WAIT = 0.8
RETRY_BASE_S = 0.5
RETRY_MAX_S = 30.0
MAX_LETTER_PAYLOAD_BYTES = 64 * 1024
"""A dead letter copies at most this much of the payload, as text and as base64: the bus refuses a
message over its max_payload (NATS: 1 MiB by default), and a letter that cannot be stored would
leave the message retried, then dropped. The whole message stays in its stream until max_age."""
MAX_ALONE_KEPT = 10_000
MAX_REASON_CHARS = 1000
"""A reason may quote the offending value (a type of a megabyte); letters and logs keep its start."""


def retry_delay(attempt: int) -> float:
    return float(min(RETRY_BASE_S * 2 ** (attempt - 1), RETRY_MAX_S))


@attrs.frozen
class EventConsumer:
    """Turns deliveries into calls of the handler registered for the envelope's type."""

    name: str
    handlers: Mapping[str, EventHandler]
    broker: Broker
    processed: ProcessedEvents
    metrics: ServiceMetrics
    clock: Clock
    max_deliver: int = 10
    handler_timeout_s: float = 24.0
    """A handler running longer counts as a failed attempt (retried, dead-lettered at the last).
    Below the broker's ack wait, so the consumer settles the message before the broker would
    redeliver it on its own, uncounted, and finally drop it after max_deliver."""
    batch_handlers: Mapping[str, EventBatchHandler] = attrs.field(factory=dict)
    """Per type, a handler for two or more fresh events of it in one batch (see _apply_together)."""
    _alone: dict[str, None] = attrs.field(factory=dict, init=False)
    """Ids of events whose batch timed out: next time each is applied alone, with a deadline of
    its own (retried together, they would time out together again, to the last attempt)."""
    _counters: dict[tuple[str, str], Counter] = attrs.field(factory=dict, init=False)
    """The `events_processed` child of each (type, outcome) met so far: `.labels()` hashes and
    looks up its label values on every call, a few times per event otherwise."""

    async def __call__(self, delivery: Delivery) -> None:
        await self.handle_batch([delivery])

    async def handle_batch(self, deliveries: Sequence[Delivery]) -> None:
        """Deliveries fetched together: their ids are looked up in one step, then each is
        applied and settled on its own, concurrently. Every delivery is settled, or the error
        that kept one unsettled is raised once all of them are done."""
        decoded: list[tuple[Delivery, Envelope, EventHandler]] = []
        poisoned: list[tuple[Delivery, str]] = []
        for delivery in deliveries:
            try:
                decoded.append(self._routed(delivery))
            except UndecodableEvent as poison:
                poisoned.append((delivery, poison.message))
        seen = await self._seen_among([envelope.id for _, envelope, _ in decoded])
        jobs: list[Coroutine[Any, Any, None]] = [
            self._dead_letter(delivery, reason, type_carried_on(delivery.subject))
            for delivery, reason in poisoned
        ]
        fresh: dict[str, list[tuple[Delivery, Envelope, EventHandler]]] = {}
        repeated: list[Delivery] = []
        taken: set[str] = set()
        for delivery, envelope, handler in decoded:
            if envelope.id in seen:
                jobs.append(self._duplicate(delivery, envelope))
            elif envelope.id in taken:
                repeated.append(delivery)
            else:
                taken.add(envelope.id)
                fresh.setdefault(envelope.type, []).append((delivery, envelope, handler))
        for event_type, group in fresh.items():
            together = self.batch_handlers.get(event_type)
            batchable = [job for job in group if job[1].id not in self._alone]
            if together is not None and len(batchable) > 1:
                jobs.append(self._apply_together(batchable, together))
                group = [job for job in group if job[1].id in self._alone]
            for delivery, envelope, handler in group:
                self._alone.pop(envelope.id, None)
                jobs.append(self._apply(delivery, envelope, handler))
        await _all_of(jobs)
        if repeated:
            # a second copy of an event in one batch waits for the first, then is a duplicate
            # (or, when the first's effect was not stored, is applied in its turn)
            await self.handle_batch(repeated)

    def _routed(self, delivery: Delivery) -> tuple[Delivery, Envelope, EventHandler]:
        envelope = decode(delivery.data)
        if not carried_on_its_subject(envelope.type, delivery.subject):
            raise UndecodableEvent(f"a {envelope.type} envelope arrived on {delivery.subject}")
        handler = self.handlers.get(envelope.type)
        if handler is None:
            raise UndecodableEvent(f"{self.name} does not handle {envelope.type}")
        return delivery, envelope, handler

    async def _duplicate(self, delivery: Delivery, envelope: Envelope) -> None:
        await delivery.ack()
        self._count(envelope.type, "duplicate")

    async def _apply_together(
        self, group: list[tuple[Delivery, Envelope, EventHandler]], together: EventBatchHandler
    ) -> None:
        """Fresh events of one type through its batch handler, then remembered and acked together.

        When the batch handler fails, each event is applied alone, within what is left of the
        handler timeout, to get its own outcome (acked, retried or dead-lettered): the effects
        are idempotent, so what the batch had stored already is stored again harmlessly. When
        it times out, each event has timed out, and is applied alone on its next delivery.
        """
        deadline = asyncio.get_running_loop().time() + self.handler_timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                await together([envelope for _, envelope, _ in group])
        except TimeoutError:
            log.warning(
                "handler of %d %s took over %.1fs", len(group), group[0][1].type, self.handler_timeout_s
            )
            reason = f"timed out after {self.handler_timeout_s:g}s"
            for _, envelope, _ in group:
                remember_bounded(self._alone, envelope.id, MAX_ALONE_KEPT)
            await _all_of(
                [self._retry_or_give_up(delivery, envelope, reason) for delivery, envelope, _ in group]
            )
            return
        except Exception as error:
            log.info("%d %s to be applied one by one: %r", len(group), group[0][1].type, error)
            await _all_of(
                [self._apply(delivery, envelope, handler, deadline) for delivery, envelope, handler in group]
            )
            return
        try:
            await self.processed.remember_all([envelope.id for _, envelope, _ in group])
        except DependencyUnavailable as error:
            log.warning("could not record %d events as processed: %s", len(group), error.message)
        failure: Exception | None = None
        for delivery, envelope, _ in group:
            try:
                await delivery.ack()
            except Exception as error:  # raised once the others are acked
                failure = failure or error
                continue
            self._acked(envelope)
        if failure is not None:
            raise failure

    async def _apply(
        self, delivery: Delivery, envelope: Envelope, handler: EventHandler, deadline: float | None = None
    ) -> None:
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + self.handler_timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                await handler(envelope)
        except TimeoutError:
            log.warning("handler of %s took over %.1fs", envelope.type, self.handler_timeout_s)
            await self._retry_or_give_up(delivery, envelope, f"timed out after {self.handler_timeout_s:g}s")
            return
        except DependencyUnavailable as error:
            await self._retry_or_give_up(delivery, envelope, error.message)
            return
        except OrderingError as refused:
            await self._dead_letter(delivery, f"refused: {refused.message}", envelope.type)
            return
        except Exception as unexpected:  # a bug or an unforeseen failure: retried, then dead-lettered
            log.exception("handler of %s failed unexpectedly", envelope.type)
            await self._retry_or_give_up(delivery, envelope, f"unexpected {type(unexpected).__name__}")
            return
        try:
            await self.processed.remember(envelope.id)
        except DependencyUnavailable as error:
            log.warning("could not record event %s as processed: %s", envelope.id, error.message)
        await delivery.ack()
        self._acked(envelope)

    def _acked(self, envelope: Envelope) -> None:
        self._count(envelope.type, "ack")
        log_applied(envelope)

    async def _seen_among(self, event_ids: list[str]) -> set[str]:
        if not event_ids:
            return set()
        try:
            return await self.processed.seen_among(event_ids)
        except DependencyUnavailable:
            return set()  # effects are idempotent; a rare second effect beats stalling

    async def _retry_or_give_up(self, delivery: Delivery, envelope: Envelope, reason: str) -> None:
        if delivery.attempt >= self.max_deliver:
            await self._dead_letter(
                delivery, f"gave up after {delivery.attempt} attempts: {reason}", envelope.type
            )
            return
        delay = retry_delay(delivery.attempt)
        log.warning("event %s (%s) will be retried in %.1fs: %s", envelope.id, envelope.type, delay, reason)
        await delivery.nak(delay)
        self._count(envelope.type, "retry")

    async def _dead_letter(self, delivery: Delivery, reason: str, event_type: str) -> None:
        subject = f"deadletter.{delivery.subject}"
        reason = _shortened(reason)
        kept = delivery.data[:MAX_LETTER_PAYLOAD_BYTES]
        letter = {
            "reason": reason,
            "subject": delivery.subject,
            "consumer": self.name,
            "attempts": delivery.attempt,
            "failedAt": format_timestamp(self.clock.now()),
            "payload": _as_text(delivery.data, kept),
            "payloadBase64": base64.b64encode(kept).decode("ascii"),
            "payloadBytes": len(delivery.data),
            "payloadSha256": hashlib.sha256(delivery.data).hexdigest(),
            "payloadTruncated": len(kept) < len(delivery.data),
        }
        # the subject too: the same bytes arriving on two subjects are two dead letters, not one
        msg_id = hashlib.sha256(f"{self.name}\0{delivery.subject}\0".encode() + delivery.data).hexdigest()
        try:
            await self.broker.publish(subject, dumps(letter), msg_id)
        except DependencyUnavailable as error:
            log.warning("dead letter not stored yet (%s); message will come again", error.message)
            await delivery.nak(retry_delay(delivery.attempt))
            self._count(event_type, "retry")
            return
        await delivery.term()
        self._count(event_type, "dead_letter")
        log.error("event dead-lettered to %s: %s", subject, reason)

    def _count(self, event_type: str, outcome: str) -> None:
        counter = self._counters.get((event_type, outcome))
        if counter is None:
            known = event_type if event_type in _KNOWN_TYPES else "unknown"
            counter = self.metrics.events_processed.labels(type=known, outcome=outcome)
            if known != "unknown":  # an unknown type is whatever a sender wrote: not kept
                self._counters[(event_type, outcome)] = counter
        counter.inc()


async def _all_of(jobs: list[Coroutine[Any, Any, None]]) -> None:
    """Run the jobs concurrently to their end; then raise the first failure, if any."""
    if len(jobs) == 1:
        await jobs[0]
        return
    failures = [
        outcome
        for outcome in await asyncio.gather(*jobs, return_exceptions=True)
        if isinstance(outcome, BaseException)
    ]
    if failures:
        raise failures[0]


def remember_bounded(ids: dict[str, None], event_id: str, kept: int) -> None:
    """Add `event_id`, forgetting the oldest beyond `kept` (a dict keeps insertion order)."""
    ids[event_id] = None
    if len(ids) > kept:
        del ids[next(iter(ids))]


def log_applied(envelope: Envelope, path: str = "stream") -> None:
    """The INFO line of an applied event; `path`: `stream` (a durable consumer) or `fast`."""
    log.info(
        "event applied",
        extra={
            "eventId": envelope.id,
            "eventType": envelope.type,
            "correlationId": envelope.correlation_id,
            "path": path,
        },
    )


def carried_on_its_subject(event_type: str, subject: str) -> bool:
    """The subject is the event type (INTERFACE §5), or a reply subject under it
    (`product.details_provided.<instance>`). Anything else is a mislabelled message."""
    return subject == event_type or subject.startswith(event_type + ".")


def type_carried_on(subject: str) -> str:
    """The known event type `subject` carries (see carried_on_its_subject), else "unknown": a
    metric label of a poison message, bounded whatever subjects senders pick."""
    candidate = subject
    while candidate:
        if candidate in _KNOWN_TYPES:
            return candidate
        candidate = candidate.rpartition(".")[0]
    return "unknown"


def _as_text(data: bytes, kept: bytes) -> str | None:
    """`kept`, the start of `data`, as text (less a character cut at its end); None if `data` is not UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return codecs.getincrementaldecoder("utf-8")().decode(kept, final=False)


def _shortened(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else f"{reason[:MAX_REASON_CHARS]}..."


_KNOWN_TYPES = frozenset(EVENT_TYPES)


async def subscribe_consumers(
    broker: Broker,
    specs: list[ConsumerSpec],
    handlers: Mapping[str, EventHandler],
    processed: ProcessedEvents,
    metrics: ServiceMetrics,
    clock: Clock,
    batch_handlers: Mapping[str, EventBatchHandler] | None = None,
) -> list[Subscription]:
    """One EventConsumer per spec, all dispatching to `handlers` (and `batch_handlers`)."""
    return [
        await broker.subscribe_batches(
            spec,
            EventConsumer(
                name=spec.name,
                handlers=handlers,
                broker=broker,
                processed=processed,
                metrics=metrics,
                clock=clock,
                max_deliver=spec.max_deliver,
                handler_timeout_s=spec.ack_wait_s * HANDLER_SHARE_OF_ACK_WAIT,
                batch_handlers=batch_handlers or {},
            ).handle_batch,
        )
        for spec in specs
    ]
