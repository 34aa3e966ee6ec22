"""Two loop turns off a core message's way, by reaching into nats-py 2.x's client.

nats-py hands each received message to a task of the subscription's own (through a queue), which
calls the callback, which here starts the handler's task: two turns of the loop before any work.
And a publish only buffers its bytes and wakes the client's flusher task, which writes them a
turn later. On the request-reply fast path both sides pay both, on a round trip of ~0.5 ms.

`subscribe_direct` has the client's reader hand a message straight to a plain function, and
`write_now` writes what is buffered at once. Both check for the internals they use and fall back
to the public API without them, so an upgrade of nats-py costs speed, not correctness; the
NATS tests exercise both paths.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import DEFAULT_SUB_PENDING_BYTES_LIMIT, Subscription

log = logging.getLogger(__name__)


def write_now(client: Client) -> None:
    """What the client has buffered for the server is written now, not on its flusher's next turn."""
    pending = getattr(client, "_pending", None)
    transport = getattr(client, "_transport", None)
    if not pending or transport is None or not client.is_connected or not isinstance(pending, list):
        return
    try:
        transport.writelines(pending)
    except (OSError, RuntimeError):  # a closing transport: the flusher and the reconnect logic own it
        return
    client._pending = []
    client._pending_data_size = 0


async def subscribe_direct(
    client: Client,
    subject: str,
    queue: str,
    on_message: Callable[[Msg], None],
    fallback: Callable[[Msg], Awaitable[None]],
    *,
    pending_bytes_limit: int = DEFAULT_SUB_PENDING_BYTES_LIMIT,
) -> Subscription:
    """A core subscription whose messages reach `on_message` from the client's reader, in order,
    with no task in between; `fallback` is the usual callback when the internals are not there."""
    subscription = await client.subscribe(subject, queue=queue, pending_bytes_limit=pending_bytes_limit)
    waiting = getattr(subscription, "_pending_queue", None)
    if not isinstance(waiting, asyncio.Queue) or not hasattr(subscription, "_pending_size"):
        await subscription.unsubscribe()
        return await client.subscribe(
            subject, queue=queue, cb=fallback, pending_bytes_limit=pending_bytes_limit
        )
    subscription._pending_queue = _HandOver(subscription, on_message)
    while not waiting.empty():  # arrived before the swap
        subscription._pending_queue.put_nowait(waiting.get_nowait())
    return subscription


class _HandOver(asyncio.Queue[Msg]):
    """Stands in for a subscription's queue: what nats-py puts in goes to `on_message` at once."""

    def __init__(self, subscription: Subscription, on_message: Callable[[Msg], None]) -> None:
        super().__init__()
        self._subscription = subscription
        self._on_message = on_message

    def put_nowait(self, item: Msg) -> None:
        self._subscription._pending_size -= len(item.data)  # counted as queued by nats-py
        try:
            self._on_message(item)
        except Exception:  # never into the client's reader
            log.exception("core message on %s not handled", item.subject)
