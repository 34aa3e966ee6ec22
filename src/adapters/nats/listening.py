"""Core NATS subscriptions: the fast path beside the JetStream consumers (Broker.listen).

A message published with `fast` (or announced) goes out as a core copy on `_fast.<subject>`, a
subject no stream holds, besides the JetStream publish. The listeners subscribe to the copies:
a JetStream publish reached plain subscribers of its subject only together with its PubAck
(traced), i.e. once the stream had stored it. A listener gets the copies at most once; whatever
it misses (it was down, busy, or failed) the durable consumers deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import attrs
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from adapters.broker import FastDelivery, Handler
from adapters.nats.connection import BUS_FAILURES, NATS_FAILURES, NatsConnection, described
from adapters.nats.prompt import subscribe_direct
from adapters.tasks import cancel_and_wait

log = logging.getLogger(__name__)

RESUBSCRIBE_CHECK_S = 1.0
"""How often a listener checks that its client is the current one (a replaced client's
subscriptions are gone; nats-py itself renews them across a plain reconnect)."""
MAX_IN_FLIGHT = 64
"""Beyond this many messages in hand, a listener drops new ones: the durable consumers have them."""
STOP_GRACE_S = 5.0
FAST_PREFIX = "_fast."
"""The fast path's copies travel on `_fast.<subject>`: outside every stream (adapters.broker.STREAMS)."""


def fast_subject(subject: str) -> str:
    return FAST_PREFIX + subject


@attrs.define(eq=False)
class CoreListener:
    connection: NatsConnection
    subjects: tuple[str, ...]
    queue: str | None
    handler: Handler
    registry: list[CoreListener]
    max_in_flight: int = MAX_IN_FLIGHT
    _subscriptions: list[NatsSubscription] = attrs.field(factory=list)
    _incarnation: int = -1
    _watcher: asyncio.Task[None] | None = None
    _in_flight: set[asyncio.Task[None]] = attrs.field(factory=set)
    dropped: int = 0

    @property
    def name(self) -> str:
        return "listener:" + ",".join(self.subjects)

    @property
    def subscribed(self) -> bool:
        """Whether the copies reach this listener now: connected, subscribed on the current client."""
        return self.connection.is_connected and self._incarnation == self.connection.incarnation

    async def start(self) -> None:
        if self.connection.is_connected:
            await self._subscribe()  # so that it hears the very next publish
        self._watcher = asyncio.create_task(self._watch(), name=f"listen-{self.subjects[0]}")

    async def stop(self) -> None:
        if self._watcher is not None:
            await cancel_and_wait([self._watcher])
        await self._unsubscribe()
        if self._in_flight:
            _, late = await asyncio.wait(self._in_flight, timeout=STOP_GRACE_S)
            await cancel_and_wait(late)
        with contextlib.suppress(ValueError):
            self.registry.remove(self)

    async def _watch(self) -> None:
        while True:
            await self.connection.wait_connected()
            if self._incarnation != self.connection.incarnation:
                await self._subscribe()
            await asyncio.sleep(RESUBSCRIBE_CHECK_S)

    async def _subscribe(self) -> None:
        incarnation = self.connection.incarnation
        subscriptions: list[NatsSubscription] = []
        try:
            client = self.connection.client()
            for subject in self.subjects:
                subscriptions.append(
                    await subscribe_direct(
                        client, fast_subject(subject), self.queue or "", self._dispatch, self._received
                    )
                )
        except BUS_FAILURES as error:  # the client may be gone again already: the next check retries
            log.warning("listener on %s not subscribed yet: %s", ",".join(self.subjects), described(error))
            for subscription in subscriptions:  # all or none: a retry must not subscribe twice
                with contextlib.suppress(*NATS_FAILURES):
                    await subscription.unsubscribe()
            return
        self._subscriptions = subscriptions
        self._incarnation = incarnation

    async def _unsubscribe(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            with contextlib.suppress(*NATS_FAILURES):
                await subscription.unsubscribe()

    async def _received(self, msg: Msg) -> None:
        """nats-py awaits this before the subscription's next message (without subscribe_direct)."""
        self._dispatch(msg)

    def _dispatch(self, msg: Msg) -> None:
        """Each message to a task of its own: the next one is not held up by this one's handler."""
        if len(self._in_flight) >= self.max_in_flight:
            self.dropped += 1
            return
        task = asyncio.create_task(self._run(FastDelivery(msg.subject.removeprefix(FAST_PREFIX), msg.data)))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _run(self, delivery: FastDelivery) -> None:
        try:
            await self.handler(delivery)
        except Exception:
            log.exception("listener failed on %s", delivery.subject)
