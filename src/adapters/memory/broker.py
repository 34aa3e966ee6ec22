"""An in-memory broker that behaves like JetStream where it matters to our code.

Delivery is asynchronous and at least once: a handler that naks, fails to settle within
`ack_wait_s`, or raises gets the message again (up to `max_deliver`); a publish with a
`msg_id` seen before is stored once; durable consumers are shared by every subscriber with
the same name, so each message goes to one of them. Listeners (the fast path) get every
publish at once, duplicates included, as core NATS subscribers do; one per queue group.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Sequence

import attrs

from adapters.broker import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    BatchHandler,
    ConsumerLag,
    ConsumerSpec,
    FastDelivery,
    Handler,
    matches_any,
    refuse_unpublishable,
    stream_holds,
)
from adapters.memory.faults import Outage
from adapters.tasks import cancel_and_wait
from domain.errors import EventBusUnavailable

log = logging.getLogger(__name__)


@attrs.frozen
class StoredMessage:
    seq: int
    subject: str
    data: bytes
    msg_id: str


@attrs.define(eq=False)
class _MemoryDelivery:
    message: StoredMessage
    attempt: int
    _consumer: _Consumer
    settled: bool = False
    on_settled: Callable[[], None] = lambda: None
    """Called once, on the first settlement."""

    @property
    def subject(self) -> str:
        return self.message.subject

    @property
    def data(self) -> bytes:
        return self.message.data

    async def ack(self) -> None:
        self._settle()

    async def nak(self, delay_s: float) -> None:
        if not self.settled:
            self._settle()
            self._consumer.redeliver(self.message, self.attempt, delay_s)

    async def term(self) -> None:
        self._settle()

    def _settle(self) -> None:
        if not self.settled:
            self.settled = True
            self.on_settled()


@attrs.define(eq=False)
class _Consumer:
    spec: ConsumerSpec
    queue: asyncio.Queue[tuple[StoredMessage, int]] = attrs.field(factory=asyncio.Queue)
    timers: set[asyncio.TimerHandle] = attrs.field(factory=set)
    delivered: int = 0

    def offer(self, message: StoredMessage) -> None:
        if matches_any(self.spec.subjects, message.subject):
            self.queue.put_nowait((message, 1))

    def redeliver(self, message: StoredMessage, attempt: int, delay_s: float) -> None:
        if attempt >= self.spec.max_deliver:
            log.warning("message %s dropped after %s deliveries", message.seq, attempt)
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def put_back() -> None:
            self.timers.discard(handle)
            self.queue.put_nowait((message, attempt + 1))

        handle = loop.call_later(max(delay_s, 0.0), put_back)
        self.timers.add(handle)


@attrs.define(eq=False)
class _MemorySubscription:
    """`spec.concurrency` loops, each handling one message at a time."""

    consumer: _Consumer
    handler: Handler
    tasks: list[asyncio.Task[None]] = attrs.field(factory=list)

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self._work(), name=f"consume-{self.consumer.spec.name}")
            for _ in range(self.consumer.spec.concurrency)
        ]

    async def _work(self) -> None:
        while True:
            message, attempt = await self.consumer.queue.get()
            delivery = _MemoryDelivery(message, attempt, self.consumer)
            self.consumer.delivered += 1
            await _handled(self.consumer, [delivery], lambda ds: self.handler(ds[0]))

    async def stop(self) -> None:
        await cancel_and_wait(self.tasks)


@attrs.define(eq=False)
class _MemoryBatchSubscription:
    """As the JetStream consumer: what is queued, up to the free slots (and `max_batch`), goes
    out as one batch to a task of its own; a slot is free again once its message is settled."""

    consumer: _Consumer
    handler: BatchHandler
    tasks: set[asyncio.Task[None]] = attrs.field(factory=set)
    unsettled: int = 0
    slot_freed: asyncio.Event = attrs.field(factory=asyncio.Event)

    def start(self) -> None:
        self.tasks.add(asyncio.create_task(self._dispatch(), name=f"consume-{self.consumer.spec.name}"))

    async def _dispatch(self) -> None:
        queue, limit = self.consumer.queue, self.consumer.spec.concurrency
        while True:
            while self.unsettled >= limit:
                self.slot_freed.clear()
                await self.slot_freed.wait()
            taken = [await queue.get()]
            room = limit - self.unsettled
            if self.consumer.spec.max_batch is not None:
                room = min(room, self.consumer.spec.max_batch)
            while len(taken) < room and not queue.empty():
                taken.append(queue.get_nowait())
            deliveries = [
                _MemoryDelivery(message, attempt, self.consumer, on_settled=self._one_settled)
                for message, attempt in taken
            ]
            self.consumer.delivered += len(deliveries)
            self.unsettled += len(deliveries)
            task = asyncio.create_task(_handled(self.consumer, deliveries, self.handler))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _one_settled(self) -> None:
        self.unsettled -= 1
        self.slot_freed.set()

    async def stop(self) -> None:
        await cancel_and_wait(list(self.tasks))


async def _handled(consumer: _Consumer, deliveries: list[_MemoryDelivery], handler: BatchHandler) -> None:
    try:
        # not asyncio.wait_for: on 3.11 it swallows a cancel that lands as the handler
        # finishes, and stop() would then wait forever on this loop
        async with asyncio.timeout(consumer.spec.ack_wait_s):
            await handler(deliveries)
    except Exception:
        log.exception("handler failed on %s", deliveries[0].subject)
    for delivery in deliveries:
        if not delivery.settled:
            await delivery.nak(0.0)


@attrs.define(eq=False)
class _Listener:
    subjects: tuple[str, ...]
    queue: str | None
    handler: Handler
    tasks: set[asyncio.Task[None]] = attrs.field(factory=set)
    stopped: bool = False

    def hand(self, subject: str, data: bytes) -> None:
        if self.stopped:
            return
        task = asyncio.create_task(self._run(FastDelivery(subject, data)), name=f"listen-{subject}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, delivery: FastDelivery) -> None:
        try:
            await self.handler(delivery)
        except Exception:
            log.exception("listener failed on %s", delivery.subject)

    async def stop(self) -> None:
        self.stopped = True
        await cancel_and_wait(list(self.tasks))


@attrs.define
class InMemoryBroker:
    outage: Outage = attrs.field(factory=lambda: Outage(EventBusUnavailable))
    messages: list[StoredMessage] = attrs.field(factory=list)
    plain: list[StoredMessage] = attrs.field(factory=list)
    """What was published on subjects no stream holds (replies to an asker's own subject)."""
    _msg_ids: set[str] = attrs.field(factory=set)
    _consumers: dict[str, _Consumer] = attrs.field(factory=dict)
    _subscriptions: list[_MemorySubscription | _MemoryBatchSubscription] = attrs.field(factory=list)
    _listeners: list[_Listener] = attrs.field(factory=list)
    _turns: itertools.count[int] = attrs.field(factory=itertools.count)
    max_payload: int = DEFAULT_MAX_PAYLOAD_BYTES
    """Refused above this, headers counted, as nats-server does: a size bug shows in the unit tier."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for subscription in self._subscriptions:
            await subscription.stop()
        for listener in list(self._listeners):
            await listener.stop()
        for consumer in self._consumers.values():
            for timer in consumer.timers:
                timer.cancel()

    async def publish(self, subject: str, data: bytes, msg_id: str, *, fast: bool = False) -> None:
        self.outage.check()
        refuse_unpublishable(subject, data, msg_id, self.max_payload)
        if not stream_holds(subject):
            self.plain.append(StoredMessage(len(self.plain) + 1, subject, data, msg_id))
            return  # heard by its subscribers, kept by no stream: no consumer gets it
        if fast:
            self._hand_to_listeners(subject, data)
        if msg_id in self._msg_ids:
            return
        self._msg_ids.add(msg_id)
        message = StoredMessage(len(self.messages) + 1, subject, data, msg_id)
        self.messages.append(message)
        for consumer in self._consumers.values():
            consumer.offer(message)

    async def announce(self, subject: str, data: bytes) -> bool:
        if self.outage.down:
            return False
        self._hand_to_listeners(subject, data)
        return True

    async def subscribe(self, spec: ConsumerSpec, handler: Handler) -> _MemorySubscription:
        subscription = _MemorySubscription(self._consumer(spec), handler)
        subscription.start()
        self._subscriptions.append(subscription)
        return subscription

    async def subscribe_batches(self, spec: ConsumerSpec, handler: BatchHandler) -> _MemoryBatchSubscription:
        batches = _MemoryBatchSubscription(self._consumer(spec), handler)
        batches.start()
        self._subscriptions.append(batches)
        return batches

    def _consumer(self, spec: ConsumerSpec) -> _Consumer:
        # JetStream has a consumer per spec name and subject: two specs of one name are two consumers
        durable_key = f"{spec.name}:{','.join(spec.subjects)}"
        consumer = self._consumers.get(durable_key) if spec.durable else None
        if consumer is None:
            consumer = _Consumer(spec)
            if spec.durable:
                # A new durable consumer starts from the beginning of the stream, as on JetStream.
                for message in self.messages:
                    consumer.offer(message)
            self._consumers[durable_key if spec.durable else f"{spec.name}#{id(consumer)}"] = consumer
        return consumer

    async def listen(self, subjects: Sequence[str], queue: str | None, handler: Handler) -> _Listener:
        listener = _Listener(tuple(subjects), queue, handler)
        self._listeners.append(listener)
        return listener

    def _hand_to_listeners(self, subject: str, data: bytes) -> None:
        groups: dict[str, list[_Listener]] = {}
        for listener in self._listeners:
            if listener.stopped or not matches_any(listener.subjects, subject):
                continue
            if listener.queue is None:
                listener.hand(subject, data)
            else:
                groups.setdefault(listener.queue, []).append(listener)
        for members in groups.values():
            members[next(self._turns) % len(members)].hand(subject, data)

    async def ping(self) -> bool:
        return not self.outage.down

    async def consumer_lag(self) -> dict[str, ConsumerLag]:
        """Queued messages count as pending; the twin does not track in-flight ones apart. By
        spec name (never the key an ephemeral consumer is held under): the specs of one name
        add up."""
        lag: dict[str, int] = {}
        for consumer in self._consumers.values():
            name = consumer.spec.name
            lag[name] = lag.get(name, 0) + consumer.queue.qsize()
        return {name: ConsumerLag(pending, 0) for name, pending in lag.items()}

    def waiting(self) -> list[str]:
        """None: an in-memory subscription is bound once made."""
        return []

    def on_subject(self, subject: str) -> list[StoredMessage]:
        return [m for m in self.messages if m.subject == subject]
