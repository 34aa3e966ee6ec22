"""Pull consumers: one JetStream consumer per subject of a ConsumerSpec, each with a fetch loop.

nats-server 2.9 gives a consumer one filter subject, so a spec with several subjects becomes
several consumers. A durable spec's consumers are named from the spec and the subject, so every
instance of a service binds the same ones and each message goes to one instance; a
non-durable spec (an instance's replies) gets consumers of its own that see only new messages
and are deleted when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import attrs
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from adapters.broker import STREAMS, ConsumerSpec, Handler, matches_any
from adapters.nats.connection import BUS_FAILURES, NATS_FAILURES, NatsConnection, described
from adapters.tasks import cancel_and_wait
from domain.errors import EventBusUnavailable

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 2.0
"""How long one pull request waits for messages; bounds the pause after a reconnect."""
FAILED_HANDLER_DELAY_S = 1.0
CONSUMER_CHECK_S = 15.0
"""While idle, how often a loop checks that its consumer still exists (a lost one fetches nothing)."""
EPHEMERAL_INACTIVE_S = 60.0
"""The server deletes a per-instance consumer nobody pulled from for this long (a crashed instance)."""
STOP_GRACE_S = 10.0
RETRY_MIN_S = 0.25
RETRY_MAX_S = 5.0
STREAM_NOT_FOUND = 10059

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def consumer_name(spec_name: str, subject: str) -> str:
    """`order-service` + `product.price_changed` -> `order-service_product_price_changed_<8 hex>`.

    Only `[A-Za-z0-9_-]`; the hash of the exact pair keeps `a.b` and `a_b` apart.
    """
    readable = _UNSAFE.sub("_", f"{spec_name}_{subject}")[:80]
    digest = hashlib.sha256(f"{spec_name}\0{subject}".encode()).hexdigest()[:8]
    return f"{readable}_{digest}"


def stream_of(subject: str) -> str:
    for stream, patterns in STREAMS.items():
        if matches_any(patterns, subject):
            return stream
    raise ValueError(f"no stream holds subject {subject}")


@attrs.define(eq=False)
class JetStreamDelivery:
    """One delivery of a JetStream message; ack, nak or term settle it."""

    msg: Msg
    settled: bool = False
    on_settled: Callable[[], None] = lambda: None
    """Called once, on the first settlement."""

    @property
    def subject(self) -> str:
        return self.msg.subject

    @property
    def data(self) -> bytes:
        return self.msg.data

    @property
    def attempt(self) -> int:
        return int(self.msg.metadata.num_delivered)

    async def ack(self) -> None:
        self._settle()
        await _translated(self.msg.ack())

    async def nak(self, delay_s: float) -> None:
        self._settle()
        await _translated(self.msg.nak(delay=delay_s if delay_s > 0 else None))

    async def term(self) -> None:
        self._settle()
        await _translated(self.msg.term())

    def _settle(self) -> None:
        if not self.settled:
            self.settled = True
            self.on_settled()


async def _translated(settle: Awaitable[None]) -> None:
    try:
        await settle
    except NATS_FAILURES as error:
        raise EventBusUnavailable(f"could not settle the message: {described(error)}") from error


DeliveriesHandler = Callable[[Sequence[JetStreamDelivery]], Awaitable[None]]


def one_at_a_time(handler: Handler) -> DeliveriesHandler:
    """A per-delivery handler over a fetched batch: each delivery runs on its own, concurrently,
    and one that fails is settled alone (the others keep their outcome)."""

    async def alone(delivery: JetStreamDelivery) -> None:
        try:
            await handler(delivery)
        except Exception:
            log.exception(
                "handler failed on %s; redelivery in %.1fs", delivery.subject, FAILED_HANDLER_DELAY_S
            )
            await settle_unsettled([delivery], FAILED_HANDLER_DELAY_S)

    async def each(deliveries: Sequence[JetStreamDelivery]) -> None:
        if len(deliveries) == 1:
            await alone(deliveries[0])
        else:
            await asyncio.gather(*map(alone, deliveries))

    return each


async def settle_unsettled(deliveries: Sequence[JetStreamDelivery], delay_s: float) -> None:
    for delivery in deliveries:
        if delivery.settled:
            continue
        try:
            await delivery.nak(delay_s)
        except EventBusUnavailable as error:
            log.warning("could not nak %s (ack_wait will redeliver it): %s", delivery.subject, error.message)


@attrs.define(eq=False)
class SubjectConsumer:
    """One JetStream pull consumer and the loop that fetches from it and runs the handler.

    Each fetch asks for as many messages as `spec.concurrency` leaves free; what it brings (a
    batch) goes to the handler in one task, under one deadline. A message's slot is free again
    once it is settled, so one slow message holds its own slot only, not its batch's.
    """

    connection: NatsConnection
    spec: ConsumerSpec
    subject: str
    handler: DeliveriesHandler
    name: str
    stream: str
    _psub: JetStreamContext.PullSubscription | None = None
    _psub_incarnation: int = -1
    """The connection incarnation `_psub` belongs to: a closed client's subscription is dead."""
    _ensured_generation: int = -1
    _bound: bool = False
    """The last bind() succeeded (a failed one, or a consumer check that failed, clears it)."""
    _checked_at: float = 0.0
    _in_flight: set[asyncio.Task[None]] = attrs.field(factory=set)
    _unsettled: int = 0
    _slot_freed: asyncio.Event = attrs.field(factory=asyncio.Event)
    _fetcher: asyncio.Task[None] | None = None

    @classmethod
    def of(
        cls, connection: NatsConnection, spec: ConsumerSpec, subject: str, handler: DeliveriesHandler
    ) -> SubjectConsumer:
        name = consumer_name(spec.name, subject)
        if not spec.durable:
            name = f"{name}_{uuid.uuid4().hex[:8]}"
        return cls(connection, spec, subject, handler, name, stream_of(subject))

    def start(self) -> None:
        self._fetcher = asyncio.create_task(self._fetch_forever(), name=f"fetch-{self.name}")

    async def stop(self) -> None:
        if self._fetcher is not None:
            await cancel_and_wait([self._fetcher])
        psub, self._psub = self._psub, None
        if psub is not None:
            with contextlib.suppress(*NATS_FAILURES):
                await psub.unsubscribe()
        if self._in_flight:
            _, late = await asyncio.wait(self._in_flight, timeout=min(STOP_GRACE_S, self.spec.ack_wait_s))
            await cancel_and_wait(late)
        if not self.spec.durable and self.connection.is_connected:
            with contextlib.suppress(*BUS_FAILURES):
                await self.connection.manager(1.0).delete_consumer(self.stream, self.name)

    @property
    def bound(self) -> bool:
        """Whether this process pulls from the consumer now: connected, and the last bind held."""
        return (
            self._bound
            and self._psub is not None
            and self._psub_incarnation == self.connection.incarnation
            and self.connection.is_connected
        )

    async def bind(self) -> None:
        """Make sure the consumer exists and this process has a pull subscription on it."""
        try:
            await self._bind()
        except Exception:
            self._bound = False
            raise
        self._bound = True

    # ----------------------------------------------------------------- internals
    async def _bind(self) -> None:
        js = self.connection.jetstream()
        if self._psub is not None and self._psub_incarnation != self.connection.incarnation:
            self._psub = None  # its client was closed for good; nothing to unsubscribe
        try:
            await self._ensure_consumer(js)
        except nats.js.errors.NotFoundError as missing:
            if missing.err_code != STREAM_NOT_FOUND:
                raise
            await self.connection.ensure_streams()
            await self._ensure_consumer(js)
        if self._psub is None:
            self._psub = await js.pull_subscribe_bind(consumer=self.name, stream=self.stream)
            self._psub_incarnation = self.connection.incarnation
        self._ensured_generation = self.connection.generation
        self._checked_at = time.monotonic()

    def _config(self) -> ConsumerConfig:
        config = ConsumerConfig(
            name=self.name,
            filter_subject=self.subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.spec.ack_wait_s,
            max_deliver=self.spec.max_deliver,
        )
        if self.spec.durable:
            config.durable_name = self.name
            config.deliver_policy = DeliverPolicy.ALL
        else:
            config.deliver_policy = DeliverPolicy.NEW
            config.inactive_threshold = EPHEMERAL_INACTIVE_S
        return config

    async def _ensure_consumer(self, js: JetStreamContext) -> None:
        if self._psub is None:
            # Create; a shared durable that exists gets its editable settings (ack_wait, max_deliver).
            try:
                await js.add_consumer(self.stream, self._config())
            except nats.js.errors.BadRequestError as refused:
                if not self.spec.durable:
                    raise
                await js.consumer_info(self.stream, self.name)  # raises when it does not exist
                log.warning("consumer %s kept with its existing configuration: %s", self.name, refused)
            return
        try:
            await js.consumer_info(self.stream, self.name)
        except nats.js.errors.NotFoundError as missing:
            if missing.err_code == STREAM_NOT_FOUND:
                raise
            log.warning("consumer %s on %s was gone; creating it again", self.name, self.stream)
            await js.add_consumer(self.stream, self._config())

    def _needs_binding(self) -> bool:
        return (
            self._psub is None
            or self._ensured_generation != self.connection.generation
            or time.monotonic() - self._checked_at > CONSUMER_CHECK_S
        )

    async def _fetch_forever(self) -> None:
        delay = RETRY_MIN_S
        while True:
            if not self.connection.is_connected:
                await self.connection.wait_connected()
            fetching = False
            try:
                if self._needs_binding():
                    await self.bind()
                await self._wait_for_a_free_slot()
                assert self._psub is not None
                fetching = True
                asked = self._free_slots()
                messages = await self._psub.fetch(asked, timeout=FETCH_TIMEOUT_S)
            except TimeoutError as error:
                if fetching:
                    # Nothing new (nats-py raises its own or asyncio's TimeoutError for an idle
                    # fetch); also what a fetch across a reconnect ends with.
                    continue
                log.warning("consumer %s: %s; retrying in %.2fs", self.name, described(error), delay)
                self._checked_at = 0.0
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            except BUS_FAILURES as error:
                log.warning("consumer %s: %s; retrying in %.2fs", self.name, described(error), delay)
                self._checked_at = 0.0  # check the consumer before the next fetch
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            except Exception:
                log.exception("consumer %s: unexpected failure; retrying in %.2fs", self.name, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            delay = RETRY_MIN_S
            self._checked_at = time.monotonic()
            if messages:
                deliveries = [JetStreamDelivery(msg, on_settled=self._one_settled) for msg in messages]
                self._unsettled += len(deliveries)
                task = asyncio.create_task(self._handle(deliveries), name=f"handle-{self.name}")
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            if self.spec.fetch_pause_s and len(messages) < asked:
                await asyncio.sleep(self.spec.fetch_pause_s)

    def _one_settled(self) -> None:
        self._unsettled -= 1
        self._slot_freed.set()

    def _free_slots(self) -> int:
        free = max(self.spec.concurrency - self._unsettled, 1)
        return free if self.spec.max_batch is None else min(free, self.spec.max_batch)

    async def _wait_for_a_free_slot(self) -> None:
        while self._unsettled >= self.spec.concurrency:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    async def _handle(self, deliveries: list[JetStreamDelivery]) -> None:
        try:
            async with asyncio.timeout(self.spec.ack_wait_s):
                await self.handler(deliveries)
        except Exception:
            log.exception(
                "handler of %s failed on %s; redelivery in %.1fs",
                self.spec.name,
                self.subject,
                FAILED_HANDLER_DELAY_S,
            )
            await settle_unsettled(deliveries, FAILED_HANDLER_DELAY_S)
            return
        await settle_unsettled(deliveries, 0.0)


@attrs.define(eq=False)
class JetStreamSubscription:
    """A ConsumerSpec's consumers, one per subject; stop() drains them all."""

    consumers: list[SubjectConsumer]
    registry: list[JetStreamSubscription]

    async def start(self) -> None:
        for consumer in self.consumers:
            if consumer.connection.is_connected:
                try:
                    await consumer.bind()  # so that a reply consumer exists before a request goes out
                except BUS_FAILURES as error:
                    log.warning("consumer %s not bound yet (%s); will retry", consumer.name, described(error))
            consumer.start()

    async def stop(self) -> None:
        await asyncio.gather(*(consumer.stop() for consumer in self.consumers))
        with contextlib.suppress(ValueError):
            self.registry.remove(self)
