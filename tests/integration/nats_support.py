"""Helpers of the NATS integration tests: brokers that close themselves, polling, a JetStream admin."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
import nats
from nats.js import JetStreamManager

from adapters.broker import Delivery
from adapters.nats import JetStreamBroker


@attrs.define
class Brokers:
    """Builds started JetStreamBrokers (one per simulated instance) and closes them all."""

    url: str
    started: list[JetStreamBroker] = attrs.field(factory=list)

    async def new(self, *, url: str | None = None, start_wait_s: float = 2.0) -> JetStreamBroker:
        broker = JetStreamBroker(url or self.url, client_name="test", start_wait_s=start_wait_s)
        self.started.append(broker)
        await broker.start()
        return broker

    async def close_all(self) -> None:
        for broker in self.started:
            await broker.close()


async def eventually(condition: Callable[[], bool], within: float = 5.0, what: str = "condition") -> float:
    """Poll until `condition()` holds; the seconds it took."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > within:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - began


async def eventually_async(
    condition: Callable[[], Awaitable[bool]], within: float = 5.0, what: str = "condition"
) -> None:
    began = time.monotonic()
    while not await condition():
        if time.monotonic() - began > within:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def jetstream_admin(url: str) -> AsyncIterator[JetStreamManager]:
    """A plain nats-py connection to look at streams and consumers from outside the adapter."""
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
    try:
        yield nc.jsm(timeout=2)
    finally:
        await nc.close()


async def stored_count(url: str, stream: str) -> int:
    async with jetstream_admin(url) as jsm:
        info = await jsm.stream_info(stream)
        return int(info.state.messages)


@attrs.define
class Recorder:
    """A handler that records each delivery, then settles it as `decide(delivery)` says."""

    decide: Callable[[Delivery], Awaitable[None]] | None = None
    seen: list[tuple[str, bytes, int, float]] = attrs.field(factory=list)

    async def __call__(self, delivery: Delivery) -> None:
        self.seen.append((delivery.subject, delivery.data, delivery.attempt, time.monotonic()))
        if self.decide is None:
            await delivery.ack()
        else:
            await self.decide(delivery)

    @property
    def payloads(self) -> list[bytes]:
        return [data for _, data, _, _ in self.seen]
