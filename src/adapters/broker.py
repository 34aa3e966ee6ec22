"""What the event consumers and the publisher need from a message broker (JetStream or in-memory)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import attrs

from domain.errors import EventBusUnavailable

PRODUCT_EVENTS = "PRODUCT_EVENTS"
ORDER_EVENTS = "ORDER_EVENTS"
DEAD_LETTERS = "DEAD_LETTERS"

STREAMS: dict[str, tuple[str, ...]] = {
    PRODUCT_EVENTS: ("product.>",),
    ORDER_EVENTS: ("order.>",),
    DEAD_LETTERS: ("deadletter.>",),
}


class Delivery(Protocol):
    """One delivery of a stored message; exactly one of ack, nak or term settles it."""

    @property
    def subject(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def attempt(self) -> int:
        """1 on the first delivery."""
        ...

    async def ack(self) -> None: ...

    async def nak(self, delay_s: float) -> None: ...

    async def term(self) -> None: ...


Handler = Callable[[Delivery], Awaitable[None]]
BatchHandler = Callable[[Sequence[Delivery]], Awaitable[None]]
"""Deliveries of one subject fetched together; the handler settles each of them."""


@attrs.frozen
class ConsumerSpec:
    """A consumer: `durable` is shared by every instance of a service; None is per instance."""

    name: str
    subjects: tuple[str, ...]
    durable: bool = True
    max_deliver: int = 10
    ack_wait_s: float = 30.0
    concurrency: int = 16
    """Messages in flight at most; a fetch asks for as many as are free (a batch), up to `max_batch`."""
    max_batch: int | None = None
    """A batch holds at most this many (None: as many as `concurrency` leaves free). Below the
    concurrency, the next batch is fetched and decoded while the one before waits on its stores."""
    fetch_pause_s: float = 0.0
    """After a fetch that did not fill up, wait this long before the next, so that one fetch
    takes many messages instead of one round trip each (a linger: a backstop behind a fast
    path waits long, a busy consumer briefly)."""


class Subscription(Protocol):
    async def stop(self) -> None:
        """Stop fetching and wait for the in-flight handlers to finish."""
        ...


class Broker(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, subject: str, data: bytes, msg_id: str, *, fast: bool = False) -> None:
        """Store the message once per `msg_id`; raise EventBusUnavailable when it cannot.

        With `fast`, the listeners of `subject` (`listen`) get a copy first, at most once and
        before the stream stores it; without, they do not hear the message at all.

        A subject no stream holds (a reply subject of the asker's choosing, such as an inbox)
        is published plainly: its subscribers hear it, once, and nothing stores it."""
        ...

    async def announce(self, subject: str, data: bytes) -> bool:
        """The fast path's copy alone: handed to the listeners of `subject` at once, at most
        once, stored nowhere. False when it could not go out (never raises): a `publish`
        without `fast` stores the message afterwards."""
        ...

    async def subscribe(self, spec: ConsumerSpec, handler: Handler) -> Subscription: ...

    async def subscribe_batches(self, spec: ConsumerSpec, handler: BatchHandler) -> Subscription:
        """As `subscribe`, with the deliveries fetched together handed over together."""
        ...

    async def listen(self, subjects: Sequence[str], queue: str | None, handler: Handler) -> Subscription:
        """The fast path: the copies of what is published with `fast` on `subjects` from now
        on, handed over as they are published (before any stream stores the message), at most
        once, to one listener per `queue` (each listener when None). Nothing is redelivered:
        settling a delivery does nothing, and a durable consumer of the same subjects must stay
        as the backstop (it alone gets what is published without `fast`)."""
        ...

    async def ping(self) -> bool: ...

    async def consumer_lag(self) -> dict[str, ConsumerLag]:
        """Per consumer of this process: messages not yet delivered, delivered but unacked."""
        ...

    def waiting(self) -> list[str]:
        """The consumers and listeners of this process not bound (subscribed) now, by name."""
        ...


@attrs.frozen
class ConsumerLag:
    pending: int
    ack_pending: int


@attrs.frozen
class FastDelivery:
    """A message handed to a listener: one attempt, nothing to settle."""

    subject: str
    data: bytes
    attempt: int = 1

    async def ack(self) -> None:
        return None

    async def nak(self, delay_s: float) -> None:
        return None

    async def term(self) -> None:
        return None


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcards: `*` is one token, a final `>` one or more."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":  # noqa: S105 - a NATS wildcard, not a secret
            return len(tokens) > index
        if index >= len(tokens) or (token != "*" and token != tokens[index]):  # noqa: S105
            return False
    return len(tokens) == len(wanted)


def matches_any(patterns: Sequence[str], subject: str) -> bool:
    return any(subject_matches(p, subject) for p in patterns)


MSG_ID_HEADER = "Nats-Msg-Id"
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
"""nats-server's default max_payload: the largest message, headers included."""


def headers_size(headers: dict[str, str]) -> int:
    """The bytes `headers` add to a message (`NATS/1.0`, one `key: value` line each, a blank line)."""
    return len(b"NATS/1.0\r\n\r\n") + sum(
        len(f"{key}: {value}\r\n".encode()) for key, value in headers.items()
    )


@functools.lru_cache(maxsize=1024)
def stream_holds(subject: str) -> bool:
    """Whether one of the streams stores `subject` (asked on every publish, of few subjects)."""
    return any(matches_any(patterns, subject) for patterns in STREAMS.values())


def refuse_unpublishable(subject: str, data: bytes, msg_id: str, max_payload: int) -> None:
    """EventBusUnavailable for a message over `max_payload` with its `Nats-Msg-Id` header
    counted (nats-server counts headers; nats-py checks the payload alone)."""
    size = len(data) + headers_size({MSG_ID_HEADER: msg_id})
    if size > max_payload:
        raise EventBusUnavailable(
            f"could not publish {subject}: {size} bytes with headers, over max_payload {max_payload}"
        )
