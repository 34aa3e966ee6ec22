"""Redis stopped, crashed or frozen under the adapters: fast domain errors, nothing half-written, recovery.

These run on a redis-server of their own with an append-only file fsynced on every write, so
what was stored before an outage is still there after the restart and can be checked.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from adapters.redis.client import RedisClient
from adapters.redis.keys import ORDER_SERVICE, PRODUCT_SERVICE, Keyspace
from adapters.redis.order_store import RedisOrderStore
from adapters.redis.outbox import RedisOutbox
from adapters.redis.product_cache import RedisProductCache
from adapters.redis.product_store import RedisProductStore
from adapters.redis.small_ports import RedisLock, RedisProcessedEvents
from application.ports import IdempotencyRecord
from domain.errors import CacheUnavailable, DependencyUnavailable, StoreUnavailable
from domain.orders import Order, OrderFlag
from tests.integration.redis_support import (
    DurableRedisServer,
    a_product,
    an_order,
    order_created,
    running_and_empty,
    running_for_a_module,
)
from tests.integration.servers import RedisServer

pytestmark = pytest.mark.redis

ORDERS = Keyspace(ORDER_SERVICE)
PRODUCTS = Keyspace(PRODUCT_SERVICE)
FAST_S = 0.5
"""A refused connection must fail at once: well under the 1 s socket timeout."""
TIMEOUT_BOUND_S = 2.5
"""A frozen server must fail within the socket timeout (1 s) plus slack, never hang."""


@pytest.fixture(scope="module")
def durable_server(redis_server: RedisServer) -> Iterator[DurableRedisServer]:
    yield from running_for_a_module(DurableRedisServer(binary=redis_server.binary))


@pytest.fixture
async def durable(durable_server: DurableRedisServer) -> DurableRedisServer:
    return await running_and_empty(durable_server)


@pytest.fixture
async def client(durable: DurableRedisServer) -> AsyncIterator[RedisClient]:
    client = RedisClient(durable.url)
    try:
        yield client
    finally:
        await client.close()


def order_store(client: RedisClient) -> RedisOrderStore:
    return RedisOrderStore(client, ORDERS, RedisOutbox(client, ORDERS))


async def fails_with(error: type[DependencyUnavailable], call: Awaitable[Any]) -> float:
    """Await `call`, expecting `error` (never a redis exception); returns how long it took."""
    began = time.monotonic()
    with pytest.raises(error) as raised:
        await call
    assert raised.value.code == error.code
    return time.monotonic() - began


async def test_a_stopped_redis_makes_the_cache_unavailable_at_once_and_it_recovers(
    durable: DurableRedisServer, client: RedisClient, server_timings: dict[str, float]
) -> None:
    cache = RedisProductCache(client, ORDERS, ttl_s=60)
    chair = a_product("chair")
    await cache.put(chair)

    durable.stop()
    elapsed = await fails_with(CacheUnavailable, cache.get_many(["chair"]))
    await fails_with(CacheUnavailable, cache.put(a_product("desk")))
    await fails_with(CacheUnavailable, cache.active_ids())
    assert await client.ping() is False
    server_timings["redis stopped: cache get -> CacheUnavailable"] = elapsed
    assert elapsed < FAST_S

    durable.start()
    began = time.monotonic()
    assert await cache.get_many(["chair"]) == {"chair": chair}, "the same instance, no restart"
    server_timings["redis restarted: first cache get answered"] = time.monotonic() - began
    assert await client.ping() is True


async def test_a_stopped_redis_makes_every_store_unavailable_and_nothing_is_half_written(
    durable: DurableRedisServer, client: RedisClient
) -> None:
    orders = order_store(client)
    catalog = RedisProductStore(client, PRODUCTS, RedisOutbox(client, PRODUCTS))
    processed = RedisProcessedEvents(client, ORDERS, ttl_s=60)
    lock = RedisLock(client, ORDERS)
    kept, refused = an_order("o-kept"), an_order("o-refused")
    await orders.add(kept, [order_created(kept)], IdempotencyRecord("k-kept", "f", kept.id))

    durable.stop()
    elapsed = await fails_with(
        StoreUnavailable,
        orders.add(refused, [order_created(refused)], IdempotencyRecord("k-refused", "f", refused.id)),
    )
    assert elapsed < FAST_S
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: orders.get(kept.id),
        lambda: orders.idempotency_record("k-kept"),
        lambda: orders.ids_holding("p-1"),
        lambda: orders.ids_flagged(OrderFlag.PRICE_REVIEW),
        lambda: orders.recent_ids(10),
        lambda: orders.add_flag(kept.id, OrderFlag.PRICE_REVIEW),
        lambda: orders.outbox.pending(10),
        lambda: orders.outbox.count(),
        lambda: orders.outbox.remove(["e-1"]),
        lambda: orders.outbox.add([order_created(refused)]),
        lambda: catalog.create(a_product("chair"), []),
        lambda: catalog.commit([], [], reservation_for="o-1"),
        lambda: catalog.get("chair"),
        lambda: catalog.all_ids(),
        lambda: processed.seen("e-1"),
        lambda: processed.remember("e-1"),
        lambda: lock.acquire("relay", 30),
    ]
    for call in calls:
        await fails_with(StoreUnavailable, call())

    durable.start()
    assert await orders.get(kept.id) == kept
    assert await orders.get(refused.id) is None
    assert await orders.idempotency_record("k-refused") is None
    assert await orders.recent_ids(10) == [kept.id]
    assert [e.id for e in await orders.outbox.pending(10)] == [f"evt-{kept.id}"]
    assert await orders.add(refused, [order_created(refused)], None) is None, "the same instance recovers"
    assert await orders.outbox.count() == 2


async def test_a_crash_during_concurrent_adds_leaves_each_order_whole_or_absent(
    durable: DurableRedisServer, client: RedisClient
) -> None:
    orders = order_store(client)
    batch = [an_order(f"o-{n:03}", product_ids=("p-1", "p-2")) for n in range(300)]
    twenty_stored = asyncio.Event()

    async def add(order: Order) -> IdempotencyRecord | None:
        try:
            return await orders.add(
                order, [order_created(order)], IdempotencyRecord(f"k-{order.id}", "f", order.id)
            )
        finally:
            if sum(task.done() for task in adds) >= 19:
                twenty_stored.set()

    adds = [asyncio.create_task(add(order)) for order in batch]
    await twenty_stored.wait()

    await asyncio.to_thread(durable.kill)
    outcomes = await asyncio.gather(*adds, return_exceptions=True)
    durable.start()

    assert all(o is None or isinstance(o, StoreUnavailable) for o in outcomes), {type(o) for o in outcomes}
    pending = {e.id for e in await orders.outbox.pending(1000)}
    recent = set(await orders.recent_ids(1000))
    holding = [set(await orders.ids_holding(p)) for p in ("p-1", "p-2")]
    stored = []
    for order in batch:
        parts = [
            await orders.get(order.id) == order,
            await orders.idempotency_record(f"k-{order.id}") is not None,
            f"evt-{order.id}" in pending,
            order.id in recent,
            order.id in holding[0],
            order.id in holding[1],
        ]
        assert all(parts) or not any(parts), f"{order.id} half-written: {parts}"
        stored.append(all(parts))
    assert sum(stored) >= 20
    assert await orders.outbox.count() == sum(stored)
    for order, outcome in zip(batch, outcomes, strict=True):
        if outcome is None:
            assert stored[batch.index(order)], f"{order.id} was acknowledged but lost"


async def test_a_frozen_redis_fails_within_the_socket_timeout_and_it_recovers(
    durable: DurableRedisServer, client: RedisClient, server_timings: dict[str, float]
) -> None:
    cache = RedisProductCache(client, ORDERS, ttl_s=60)
    orders = order_store(client)
    await cache.put(a_product("chair"))
    assert durable.pid is not None

    os.kill(durable.pid, signal.SIGSTOP)
    try:
        elapsed = await fails_with(CacheUnavailable, cache.get_many(["chair"]))
        server_timings["redis frozen: cache get -> CacheUnavailable"] = elapsed
        assert elapsed < TIMEOUT_BOUND_S
        assert await fails_with(StoreUnavailable, orders.recent_ids(1)) < TIMEOUT_BOUND_S
    finally:
        os.kill(durable.pid, signal.SIGCONT)

    assert await cache.get_many(["chair"]) == {"chair": a_product("chair")}
    assert await client.ping() is True
