"""The Broker port over NATS JetStream (the in-memory twin is adapters.memory.broker).

The application starts even when NATS is down: the connection keeps trying in the background,
publishing raises EventBusUnavailable meanwhile (the outbox keeps its entries) and ping() says
False. No nats-py exception leaves this package.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import nats.js.errors
from nats.js.api import PubAck

from adapters.broker import (
    MSG_ID_HEADER,
    BatchHandler,
    ConsumerLag,
    ConsumerSpec,
    Handler,
    refuse_unpublishable,
    stream_holds,
)
from adapters.nats.connection import (
    BUS_FAILURES,
    NATS_FAILURES,
    NatsConnection,
    described,
    servers_of,
)
from adapters.nats.consuming import (
    DeliveriesHandler,
    JetStreamSubscription,
    SubjectConsumer,
    one_at_a_time,
)
from adapters.nats.listening import CoreListener, fast_subject
from adapters.nats.prompt import write_now
from domain.errors import EventBusUnavailable

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 2.0
PING_TIMEOUT_S = 1.0
START_WAIT_S = 2.0


class JetStreamBroker:
    """Streams created when missing, `Nats-Msg-Id` deduplication, durable and per-instance consumers."""

    def __init__(
        self,
        servers: str,
        stream_replicas: int = 1,
        client_name: str | None = None,
        start_wait_s: float = START_WAIT_S,
    ) -> None:
        self._connection = NatsConnection(servers_of(servers), stream_replicas, client_name)
        self._start_wait_s = start_wait_s
        self._subscriptions: list[JetStreamSubscription] = []
        self._listeners: list[CoreListener] = []

    @property
    def connection(self) -> NatsConnection:
        return self._connection

    async def start(self) -> None:
        """Connect, waiting a moment at most: a NATS that is down at boot must not stop the app."""
        await self._connection.open(self._start_wait_s)

    async def close(self) -> None:
        # Unsubscribing before the connection closes also keeps nats-py from waiting out its
        # drain timeout on a pull subscription that saw a fetch time out.
        await asyncio.gather(
            *(subscription.stop() for subscription in list(self._subscriptions)),
            *(listener.stop() for listener in list(self._listeners)),
        )
        await self._connection.close()

    async def publish(self, subject: str, data: bytes, msg_id: str, *, fast: bool = False) -> None:
        refuse_unpublishable(subject, data, msg_id, self._connection.max_payload)
        if not stream_holds(subject):
            await self._publish_plain(subject, data, msg_id)
            return
        if fast:
            await self.announce(subject, data)  # written at once (write_now), ahead of the stored one
        try:
            ack = await self._publish_once(subject, data, msg_id)
        except nats.js.errors.NoStreamResponseError:
            await self._connection.ensure_streams()  # deleted by an operator, or a new cluster
            try:
                ack = await self._publish_once(subject, data, msg_id)
            except NATS_FAILURES as error:
                raise EventBusUnavailable(f"could not publish {subject}: {described(error)}") from error
        except NATS_FAILURES as error:
            raise EventBusUnavailable(f"could not publish {subject}: {described(error)}") from error
        if ack.duplicate:
            log.debug("%s %s was stored before (seq %s)", subject, msg_id, ack.seq)

    async def subscribe(self, spec: ConsumerSpec, handler: Handler) -> JetStreamSubscription:
        return await self._subscribe(spec, one_at_a_time(handler))

    async def subscribe_batches(self, spec: ConsumerSpec, handler: BatchHandler) -> JetStreamSubscription:
        return await self._subscribe(spec, handler)

    async def _subscribe(self, spec: ConsumerSpec, handler: DeliveriesHandler) -> JetStreamSubscription:
        subscription = JetStreamSubscription(
            [SubjectConsumer.of(self._connection, spec, subject, handler) for subject in spec.subjects],
            self._subscriptions,
        )
        self._subscriptions.append(subscription)
        await subscription.start()
        return subscription

    async def listen(self, subjects: Sequence[str], queue: str | None, handler: Handler) -> CoreListener:
        """Core subscriptions on `subjects` (a queue group when `queue` is given)."""
        listener = CoreListener(self._connection, tuple(subjects), queue, handler, self._listeners)
        self._listeners.append(listener)
        await listener.start()
        return listener

    async def consumer_lag(self) -> dict[str, ConsumerLag]:
        """What JetStream reports for each consumer this process binds (empty while disconnected)."""
        if not self._connection.is_connected:
            return {}
        lag: dict[str, ConsumerLag] = {}
        manager = self._connection.manager(PING_TIMEOUT_S)
        for subscription in list(self._subscriptions):
            for consumer in subscription.consumers:
                try:
                    info = await manager.consumer_info(consumer.stream, consumer.name)
                except BUS_FAILURES:
                    continue
                lag[consumer.name] = ConsumerLag(info.num_pending or 0, info.num_ack_pending or 0)
        return lag

    def waiting(self) -> list[str]:
        """Consumers not bound and listeners not subscribed now (all of them while disconnected)."""
        unbound = [
            consumer.name
            for subscription in self._subscriptions
            for consumer in subscription.consumers
            if not consumer.bound
        ]
        return unbound + [listener.name for listener in self._listeners if not listener.subscribed]

    async def ping(self) -> bool:
        """True when connected and JetStream answers."""
        if not self._connection.is_connected:
            return False
        try:
            manager = self._connection.manager(PING_TIMEOUT_S)
            await asyncio.wait_for(manager.account_info(), PING_TIMEOUT_S + 0.5)
        except BUS_FAILURES:
            return False
        return True

    async def announce(self, subject: str, data: bytes) -> bool:
        """The listeners' copy, on a subject no stream holds (`_fast.<subject>`)."""
        try:
            client = self._connection.client()
            await client.publish(fast_subject(subject), data)
            write_now(client)  # someone waits for it (fast path): not on the flusher's next turn
        except BUS_FAILURES as error:  # the stored message is the backstop: its publish reports
            log.debug("fast copy of %s not sent: %r", subject, error)
            return False
        return True

    async def _publish_plain(self, subject: str, data: bytes, msg_id: str) -> None:
        """Core NATS, with the server's round trip awaited (flush): it has the message."""
        try:
            client = self._connection.client()
            await client.publish(subject, data, headers={MSG_ID_HEADER: msg_id})
            await client.flush(timeout=int(PUBLISH_TIMEOUT_S))
        except NATS_FAILURES as error:
            raise EventBusUnavailable(f"could not publish {subject}: {described(error)}") from error

    async def _publish_once(self, subject: str, data: bytes, msg_id: str) -> PubAck:
        js = self._connection.jetstream()  # fails at once while disconnected: nothing is buffered
        return await js.publish(subject, data, timeout=PUBLISH_TIMEOUT_S, headers={MSG_ID_HEADER: msg_id})
