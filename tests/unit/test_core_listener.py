"""The core-NATS listener keeps trying to subscribe while its client flaps."""

from __future__ import annotations

from typing import Any, cast

import attrs
import pytest

from adapters.broker import Delivery
from adapters.nats import listening
from adapters.nats.connection import NatsConnection
from adapters.nats.listening import CoreListener
from domain.errors import EventBusUnavailable

from .polling import eventually


@attrs.define
class NoSubscription:
    """Has none of nats-py's internals: the listener falls back to a callback subscription."""

    client: RecordingClient
    subject: str

    async def unsubscribe(self) -> None:
        self.client.subjects.remove(self.subject)


@attrs.define
class RecordingClient:
    """Stands in for nats-py's client: records the subjects subscribed to (and not unsubscribed)."""

    subjects: list[str] = attrs.field(factory=list)
    callbacks: list[Any] = attrs.field(factory=list)

    async def subscribe(
        self, subject: str, queue: str = "", cb: Any = None, **options: Any
    ) -> NoSubscription:
        self.subjects.append(subject)
        self.callbacks.append(cb)
        return NoSubscription(self, subject)


@attrs.define
class FlappingConnection:
    """Says it is connected, yet its client is gone again the first `gone` times it is asked."""

    gone: int
    incarnation: int = 1
    is_connected: bool = False
    asked: int = 0
    current: RecordingClient = attrs.field(factory=RecordingClient)

    async def wait_connected(self) -> None:
        return None

    def client(self) -> RecordingClient:
        self.asked += 1
        if self.asked <= self.gone:
            raise EventBusUnavailable("The event bus (NATS) is not connected")
        return self.current


async def test_a_client_gone_again_while_subscribing_is_retried_at_the_next_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(listening, "RESUBSCRIBE_CHECK_S", 0.01)
    connection = FlappingConnection(gone=2)

    async def handler(delivery: Delivery) -> None:
        return None

    listener = CoreListener(
        cast(NatsConnection, connection), ("product.details_requested",), None, handler, []
    )
    await listener.start()
    try:
        await eventually(lambda: connection.current.subjects == ["_fast.product.details_requested"], within=2)
        assert connection.current.callbacks[-1] is not None, "without nats-py's internals: a callback"
        assert listener._watcher is not None
        assert not listener._watcher.done(), "the watcher lives on"
    finally:
        await listener.stop()
    assert connection.asked == 3


@attrs.define
class RefusingOnceClient(RecordingClient):
    """Refuses the subscription to `refused` once, as a client that goes away mid-way would."""

    refused: str = ""

    async def subscribe(
        self, subject: str, queue: str = "", cb: Any = None, **options: Any
    ) -> NoSubscription:
        if subject == self.refused:
            self.refused = ""
            raise EventBusUnavailable("The event bus (NATS) is not connected")
        return await super().subscribe(subject, queue, cb, **options)


async def test_a_listener_is_subscribed_to_every_subject_once_or_says_it_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(listening, "RESUBSCRIBE_CHECK_S", 0.01)
    client = RefusingOnceClient(refused="_fast.product.batch_details_provided.i-1")
    connection = FlappingConnection(gone=0, is_connected=True, current=client)

    async def handler(delivery: Delivery) -> None:
        return None

    subjects = ("product.details_provided.i-1", "product.batch_details_provided.i-1")
    listener = CoreListener(cast(NatsConnection, connection), subjects, None, handler, [])
    await listener.start()
    try:
        assert not listener.subscribed, "half of its subjects is not subscribed"
        await eventually(lambda: listener.subscribed, within=2)
        assert sorted(client.subjects) == sorted(f"_fast.{subject}" for subject in subjects)
        connection.is_connected = False
        assert not listener.subscribed
    finally:
        await listener.stop()
