"""nats-py's internals used by adapters.nats.prompt, on a real server: what they change and keep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from adapters.nats.prompt import subscribe_direct, write_now
from tests.integration.nats_support import eventually
from tests.integration.servers import NatsServer

pytestmark = pytest.mark.nats


@pytest.fixture
async def client(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    try:
        yield client
    finally:
        await client.close()


async def unused(msg: Msg) -> None:
    raise AssertionError(f"the fallback callback got {msg.subject}")


async def test_messages_reach_the_function_in_order_and_none_counts_as_pending(client: Client) -> None:
    """A byte limit of 10 messages: were handed-over bytes still counted as queued, nats-py would
    drop every message after the tenth as a slow consumer's."""
    got: list[bytes] = []
    subscription = await subscribe_direct(
        client, "prompt.in-order", "", lambda msg: got.append(msg.data), unused, pending_bytes_limit=1000
    )
    for i in range(50):
        await client.publish("prompt.in-order", f"{i:03d}".encode() * 33)
    await client.flush()
    await eventually(lambda: len(got) == 50)
    assert got == [f"{i:03d}".encode() * 33 for i in range(50)]
    assert subscription.pending_bytes == 0
    assert subscription.pending_msgs == 0
    await subscription.unsubscribe()


async def test_a_failing_function_does_not_stop_the_client_reading(client: Client) -> None:
    got: list[bytes] = []

    def fails_first(msg: Msg) -> None:
        got.append(msg.data)
        if len(got) == 1:
            raise RuntimeError("handler bug")

    await subscribe_direct(client, "prompt.failing", "", fails_first, unused)
    await client.publish("prompt.failing", b"one")
    await client.publish("prompt.failing", b"two")
    await client.flush()
    await eventually(lambda: got == [b"one", b"two"])
    assert client.is_connected


async def test_write_now_empties_the_clients_buffer_before_the_flusher_runs(client: Client) -> None:
    got: list[bytes] = []
    await subscribe_direct(client, "prompt.written", "", lambda msg: got.append(msg.data), unused)
    await client.publish("prompt.written", b"x")
    assert client.pending_data_size > 0, "nats-py buffers a publish until its flusher's turn"
    write_now(client)
    assert client.pending_data_size == 0
    await eventually(lambda: got == [b"x"])


async def test_write_now_leaves_a_disconnected_clients_buffer_alone(nats_server: NatsServer) -> None:
    client = await nats.connect(nats_server.url)
    await client.close()
    write_now(client)  # nothing to write to: no error
    assert not client.is_connected
    await asyncio.sleep(0)
