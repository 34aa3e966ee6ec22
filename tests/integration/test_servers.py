"""Demonstrates the private-server fixtures, including stop/kill/restart faults."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
import redis.asyncio as aioredis
from nats.js.api import StorageType
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.integration.servers import NatsServer, RedisServer, find_binary

SYSTEM_PORTS = {6379, 4222}


def test_find_binary() -> None:
    assert find_binary("definitely-not-a-real-binary-xyz") is None
    assert find_binary("sh") is not None


# ----------------------------------------------------------------------- redis
async def test_redis_set_get(redis_clean: RedisServer) -> None:
    assert redis_clean.port not in SYSTEM_PORTS
    assert redis_clean.url == f"redis://127.0.0.1:{redis_clean.port}/0"
    client = aioredis.Redis.from_url(redis_clean.url)
    try:
        await client.set("greeting", b"hello")
        assert await client.get("greeting") == b"hello"
    finally:
        await client.aclose()


@pytest.mark.parametrize("mode", ["stop", "kill"])
async def test_redis_down_raises_then_reconnects_after_restart(redis_clean: RedisServer, mode: str) -> None:
    port = redis_clean.port
    # Little retrying so the "server down" call fails fast.
    client = aioredis.Redis.from_url(redis_clean.url, retry=Retry(NoBackoff(), 1), socket_connect_timeout=1)
    try:
        await client.set("k", b"v")
        if mode == "stop":
            redis_clean.stop()
        else:
            redis_clean.kill()
        assert not redis_clean.is_running

        with pytest.raises(RedisConnectionError):
            await client.get("k")

        redis_clean.start()
        assert redis_clean.port == port
        # Same client object: the pool drops the dead connection and reconnects.
        assert await client.ping()
        assert await client.get("k") is None  # no persistence: data is gone
        await client.set("k", b"v2")
        assert await client.get("k") == b"v2"
    finally:
        await client.aclose()


async def test_redis_clean_flushes_between_tests(redis_clean: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_clean.url)
    try:
        assert await client.dbsize() == 0
    finally:
        await client.aclose()


# ------------------------------------------------------------------------ nats
async def test_nats_jetstream_dedup_by_msg_id(nats_clean: NatsServer) -> None:
    assert nats_clean.port not in SYSTEM_PORTS
    assert nats_clean.url == f"nats://127.0.0.1:{nats_clean.port}"
    nc = await nats.connect(nats_clean.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="ORDERS", subjects=["orders.>"], duplicate_window=60.0)

        first = await js.publish("orders.new", b"o-1", headers={"Nats-Msg-Id": "order-1"})
        second = await js.publish("orders.new", b"o-1 again", headers={"Nats-Msg-Id": "order-1"})

        assert first.stream == "ORDERS"
        assert not first.duplicate
        assert second.duplicate is True
        assert second.seq == first.seq
        info = await js.stream_info("ORDERS")
        assert info.state.messages == 1
    finally:
        await nc.close()


async def test_nats_clean_deleted_streams(nats_clean: NatsServer) -> None:
    nc = await nats.connect(nats_clean.url)
    try:
        assert await nc.jsm().streams_info() == []
    finally:
        await nc.close()


@pytest.mark.parametrize("mode", ["stop", "kill"])
async def test_nats_restart_keeps_stream_and_client_reconnects(
    nats_clean: NatsServer, server_timings: dict[str, float], mode: str
) -> None:
    port = nats_clean.port
    disconnected = asyncio.Event()
    reconnected = asyncio.Event()

    async def on_disconnect() -> None:
        disconnected.set()

    async def on_reconnect() -> None:
        reconnected.set()

    nc = await nats.connect(
        [nats_clean.url],
        max_reconnect_attempts=-1,  # retry forever
        reconnect_time_wait=0.1,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )
    try:
        js = nc.jetstream()
        await js.add_stream(name="EVENTS", subjects=["events.>"], storage=StorageType.FILE)
        await js.publish("events.a", b"before", headers={"Nats-Msg-Id": "e-1"})

        t0 = time.monotonic()
        nats_clean.restart(kill=(mode == "kill"))
        t_restarted = time.monotonic()
        assert nats_clean.port == port

        await asyncio.wait_for(reconnected.wait(), timeout=10)
        t_reconnected = time.monotonic()
        assert disconnected.is_set()
        assert nc.is_connected

        ack = await js.publish("events.a", b"after", headers={"Nats-Msg-Id": "e-2"})
        # The stream (file storage) survived the restart with its message.
        assert ack.stream == "EVENTS"
        assert ack.seq == 2
        # Dedup state survives as well: re-publishing e-1 is a duplicate.
        dup = await js.publish("events.a", b"before", headers={"Nats-Msg-Id": "e-1"})
        assert dup.duplicate is True
        info = await js.stream_info("EVENTS")
        assert info.state.messages == 2

        server_timings[f"nats {mode}+start (until /healthz ok)"] = t_restarted - t0
        server_timings[f"nats {mode}+start -> client reconnected"] = t_reconnected - t0
    finally:
        await nc.close()
