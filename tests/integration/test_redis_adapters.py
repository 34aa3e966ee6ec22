"""What only the Redis adapters can show: concurrency, key layout, leases across instances, wiring."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from redis.exceptions import ResponseError

from adapters.memory.order_store import InMemoryOrderStore
from adapters.nats.streams import MAX_AGE_S
from adapters.redis.client import RedisClient
from adapters.redis.keys import ORDER_SERVICE, PRODUCT_SERVICE, Keyspace
from adapters.redis.order_store import IDEMPOTENCY_TTL_S, RedisOrderStore
from adapters.redis.outbox import RedisOutbox
from adapters.redis.product_cache import RedisProductCache
from adapters.redis.product_store import RESERVATION_TTL_S, RedisProductStore
from adapters.redis.small_ports import RedisLock, RedisProcessedEvents
from adapters.wire.converter import loads
from application.ports import CachePut, CommitResult, IdempotencyRecord, ProductChange
from domain.errors import StoreUnavailable
from domain.orders import OrderFlag
from entrypoints.apps import build_order_container, build_product_container
from entrypoints.settings import Settings
from tests.integration.redis_support import a_product, an_order, newer, order_created
from tests.integration.servers import RedisServer, free_port

pytestmark = pytest.mark.redis

ORDERS = Keyspace(ORDER_SERVICE)
PRODUCTS = Keyspace(PRODUCT_SERVICE)


@pytest.fixture
async def client(redis_clean: RedisServer) -> AsyncIterator[RedisClient]:
    client = RedisClient(redis_clean.url)
    try:
        yield client
    finally:
        await client.close()


def order_store(client: RedisClient) -> RedisOrderStore:
    return RedisOrderStore(client, ORDERS, RedisOutbox(client, ORDERS))


async def test_concurrent_puts_in_random_order_end_at_the_newest_version(client: RedisClient) -> None:
    cache = RedisProductCache(client, ORDERS, ttl_s=60)
    versions = [a_product("p-1", version=v, quantity_available=v) for v in range(1, 51)]
    random.shuffle(versions)

    stored = await asyncio.gather(*(cache.put(p) for p in versions))

    assert stored[versions.index(next(p for p in versions if p.version == 50))] is CachePut.STORED
    assert (await cache.get_many(["p-1"]))["p-1"].version == 50


async def test_two_concurrent_adds_with_one_idempotency_key_store_one_order(redis_clean: RedisServer) -> None:
    instances = [RedisClient(redis_clean.url), RedisClient(redis_clean.url)]
    try:
        stores = [order_store(c) for c in instances]
        for attempt in range(20):
            key = f"key-{attempt}"
            first, second = an_order(f"o-{attempt}-a"), an_order(f"o-{attempt}-b")

            results = await asyncio.gather(
                stores[0].add(first, [order_created(first)], IdempotencyRecord(key, "f", first.id)),
                stores[1].add(second, [order_created(second)], IdempotencyRecord(key, "f", second.id)),
            )

            winner = await stores[0].idempotency_record(key)
            assert winner is not None
            assert sorted(results, key=lambda r: r is not None) == [None, winner]
            loser = second.id if winner.order_id == first.id else first.id
            assert await stores[1].get(loser) is None
            assert await stores[1].get(winner.order_id) is not None
        assert await stores[0].outbox.count() == 20
        assert len(await stores[0].recent_ids(100)) == 20
    finally:
        for instance in instances:
            await instance.close()


async def test_concurrent_flags_on_one_order_are_each_counted_once(client: RedisClient) -> None:
    store = order_store(client)
    await store.add(an_order("o-1"), [], None)

    added = await asyncio.gather(
        *(store.add_flag("o-1", flag) for flag in [*OrderFlag] * 10),
    )

    assert sum(added) == len(OrderFlag)
    order = await store.get("o-1")
    assert order is not None
    assert order.flags == tuple(sorted(OrderFlag))


async def test_every_key_is_namespaced_by_its_service(client: RedisClient) -> None:
    cache = RedisProductCache(client, ORDERS, ttl_s=60)
    store = order_store(client)
    catalog = RedisProductStore(client, PRODUCTS, RedisOutbox(client, PRODUCTS))
    chair = a_product("chair")
    order = an_order("o-1", product_ids=("chair",))
    await cache.put(chair)
    await store.add(order, [order_created(order)], IdempotencyRecord("k", "f", "o-1"))
    await store.add_flag("o-1", OrderFlag.PRICE_REVIEW)
    await catalog.create(chair, [order_created(order)])
    await catalog.commit([ProductChange(chair, newer(chair))], [], reservation_for="o-1")
    await RedisLock(client, PRODUCTS).acquire("relay", 60)

    keys = sorted(await client.redis.keys("*"))  # a test may use KEYS; the adapters never do

    assert keys == [
        "order-service:idempotency:k",
        "order-service:order-flags:o-1",
        "order-service:order:o-1",
        "order-service:orders-by-flag:PRICE_REVIEW",
        "order-service:orders-by-product:chair",
        "order-service:orders-by-time",
        "order-service:outbox:entries",
        "order-service:outbox:queue",
        "order-service:outbox:seq",
        "order-service:product-cache:active-by-expiry",
        "product-service:lock:relay",
        "product-service:outbox:entries",
        "product-service:outbox:queue",
        "product-service:outbox:seq",
        "product-service:product:chair",
        "product-service:products",
        "product-service:reservation:o-1",
        "product:chair",
    ]
    assert 59_000 < await client.redis.pttl("product:chair") <= 60_000
    assert await client.redis.pttl("order-service:order:o-1") == -1, "orders do not expire"
    assert await client.redis.ttl("order-service:idempotency:k") == IDEMPOTENCY_TTL_S
    assert await client.redis.ttl("product-service:reservation:o-1") == RESERVATION_TTL_S
    assert RESERVATION_TTL_S > MAX_AGE_S, "a marker outlives the order.created it guards against"


async def test_stored_json_is_the_wire_format_with_exact_numbers(client: RedisClient) -> None:
    cache = RedisProductCache(client, ORDERS, ttl_s=60)
    await cache.put(a_product("p-1", current_price=Decimal("19.90")))

    stored = loads(await client.redis.get("product:p-1") or "")

    assert stored["currentPrice"] == Decimal("19.90")
    assert str(stored["currentPrice"]) == "19.90"
    assert stored["version"] == 1


async def test_the_catalog_decodes_an_unchanged_product_once_and_a_changed_one_again(
    client: RedisClient,
) -> None:
    catalog = RedisProductStore(client, PRODUCTS, RedisOutbox(client, PRODUCTS))
    v1 = a_product("p-1")
    await catalog.create(v1, [])

    first, again = await catalog.get("p-1"), await catalog.get("p-1")
    assert first == v1
    assert again is first
    v2 = newer(v1, name="Renamed")
    await catalog.commit([ProductChange(v1, v2)], [])
    assert await catalog.get("p-1") == v2


async def test_an_expired_lease_released_late_does_not_free_the_next_holders_lease(
    redis_clean: RedisServer,
) -> None:
    first_client, second_client = RedisClient(redis_clean.url), RedisClient(redis_clean.url)
    try:
        first, second = RedisLock(first_client, ORDERS), RedisLock(second_client, ORDERS)
        assert await first.acquire("refresh", 0.1) is True
        assert await second.acquire("refresh", 60) is False
        await asyncio.sleep(0.2)
        assert await second.acquire("refresh", 60) is True

        await first.release("refresh")

        assert await first.acquire("refresh", 60) is False
        await second.release("refresh")
        assert await first.acquire("refresh", 60) is True
    finally:
        await first_client.close()
        await second_client.close()


async def test_an_unreadable_cache_entry_is_a_miss_and_the_next_put_replaces_it(client: RedisClient) -> None:
    cache = RedisProductCache(client, ORDERS, ttl_s=60)
    await client.redis.set("product:p-1", "not json")

    assert await cache.get_many(["p-1"]) == {}
    assert await cache.put(a_product("p-1")) is CachePut.STORED
    assert await cache.get_many(["p-1"]) == {"p-1": a_product("p-1")}


async def test_the_script_cache_is_refilled_after_script_flush(client: RedisClient) -> None:
    cache = RedisProductCache(client, ORDERS, ttl_s=60)
    await cache.put(a_product("p-1"))
    await client.redis.script_flush()

    assert await cache.put(newer(a_product("p-1"))) is CachePut.STORED


async def test_concurrent_puts_after_script_flush_each_refill_and_apply(client: RedisClient) -> None:
    cache = RedisProductCache(client, ORDERS, ttl_s=60)
    await client.redis.script_flush()

    stored = await asyncio.gather(*(cache.put(a_product(f"p-{n}")) for n in range(5)))

    assert stored == [CachePut.STORED] * 5
    assert len(await cache.get_many([f"p-{n}" for n in range(5)])) == 5


async def test_scripts_and_set_reads_of_one_loop_turn_share_one_connection(client: RedisClient) -> None:
    cache = RedisProductCache(client, ORDERS, ttl_s=60)
    orders = RedisOrderStore(client, ORDERS, RedisOutbox(client, ORDERS))
    await cache.put(a_product("p-0"))

    await asyncio.gather(
        *(cache.put(a_product(f"p-{n}")) for n in range(1, 30)),
        *(orders.ids_holding(f"p-{n}") for n in range(30)),
    )

    info = await client.redis.info("clients")
    # the auto-pipeline holds a connection of its own; this check takes a second one
    assert info["connected_clients"] == 2, "59 concurrent commands went out on one connection"


async def test_a_pipelined_put_many_refills_the_script_cache_after_script_flush(client: RedisClient) -> None:
    cache = RedisProductCache(client, ORDERS, ttl_s=60)
    await client.redis.script_flush()

    await cache.put_many([a_product("p-1"), a_product("p-2")])

    assert await cache.get_many(["p-1", "p-2"]) == {"p-1": a_product("p-1"), "p-2": a_product("p-2")}


async def test_settings_pick_the_storage_and_nothing_connects_before_use() -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"

    on_redis = build_order_container(Settings(redis_url=unreachable))
    catalog_on_redis = build_product_container(Settings(redis_url=unreachable))
    in_memory = build_order_container(Settings())

    assert isinstance(on_redis.orders(), RedisOrderStore)
    assert on_redis.orders().outbox is on_redis.outbox()
    assert isinstance(on_redis.cache(), RedisProductCache)
    assert isinstance(catalog_on_redis.store(), RedisProductStore)
    assert on_redis.orders().client is on_redis.cache().client, "one pool per service"
    assert isinstance(in_memory.orders(), InMemoryOrderStore)
    assert in_memory.orders().outbox is in_memory.outbox()
    assert await on_redis.redis_client().ping() is False
    await on_redis.redis_client().close()


async def test_commands_of_one_loop_turn_share_one_connection_and_one_round_trip(
    client: RedisClient,
) -> None:
    processed = RedisProcessedEvents(client, ORDERS, ttl_s=60)
    await asyncio.gather(*(processed.remember(f"e-{n}") for n in range(0, 50, 2)))

    seen = await asyncio.gather(*(processed.seen(f"e-{n}") for n in range(50)))

    assert seen == [n % 2 == 0 for n in range(50)]
    info = await client.redis.info("clients")
    # the auto-pipeline holds a connection of its own; this check takes a second one
    assert info["connected_clients"] == 2, "50 concurrent commands went out on one connection"


async def test_scripts_and_plain_commands_of_concurrent_callers_share_one_connection(
    client: RedisClient,
) -> None:
    cache = RedisProductCache(client, Keyspace(ORDER_SERVICE), ttl_s=60)
    processed = RedisProcessedEvents(client, ORDERS, ttl_s=60)

    stored = await asyncio.gather(
        *(cache.put(a_product(f"p-{n}")) for n in range(30)),
        *(processed.seen(f"e-{n}") for n in range(30)),
    )

    assert stored == [CachePut.STORED] * 30 + [False] * 30
    assert len(await cache.get_many([f"p-{n}" for n in range(30)])) == 30
    info = await client.redis.info("clients")
    # the auto-pipeline holds a connection of its own; this check takes a second one
    assert info["connected_clients"] == 2, "60 concurrent scripts and reads went out on one connection"


async def test_an_error_in_a_batched_command_reaches_its_caller_only(client: RedisClient) -> None:
    await client.redis.set("text", "not a number")
    results = await asyncio.gather(
        client.batched.execute("INCR", "counter"),
        client.batched.execute("INCR", "text"),
        client.batched.execute("GET", "text"),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert isinstance(results[1], ResponseError)
    assert results[2] == "not a number"


async def test_a_batch_sent_to_a_stopped_server_fails_every_caller_as_an_outage(
    client: RedisClient, redis_clean: RedisServer
) -> None:
    processed = RedisProcessedEvents(client, ORDERS, ttl_s=60)
    await processed.remember("e-1")
    redis_clean.stop()
    try:
        outcomes = await asyncio.gather(*(processed.seen(f"e-{n}") for n in range(5)), return_exceptions=True)
        assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes), outcomes
    finally:
        redis_clean.start()
    assert await processed.seen("e-1") is False, "a fresh server: nothing remembered, and answering"


async def test_callers_queued_behind_a_send_are_answered_when_its_caller_gives_up(
    client: RedisClient,
) -> None:
    await client.redis.set("k", "v")
    leader = asyncio.create_task(client.batched.execute("GET", "k"))
    followers = [asyncio.create_task(client.batched.execute("GET", "k")) for _ in range(2)]
    await asyncio.sleep(0)  # the leader's GET is out; the two queued behind it
    leader.cancel()

    assert await asyncio.wait_for(asyncio.gather(*followers), 5) == ["v", "v"]
    # redis-py may still finish a command it has sent; either way the leader is settled
    assert leader.cancelled() or leader.result() == "v"


async def test_a_held_connection_the_server_dropped_is_replaced_by_the_next_command(
    client: RedisClient,
) -> None:
    await client.redis.set("k", "v")
    assert await client.batched.execute("GET", "k") == "v"  # the held connection is open
    killed = await client.redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert killed == 1

    assert await client.batched.execute("GET", "k") == "v"


async def test_a_caller_that_gives_up_mid_reply_leaves_no_reply_for_the_next_one(client: RedisClient) -> None:
    await client.redis.set("k", "v")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.batched.execute("BLPOP", "nothing-here", 1), 0.05)

    assert await client.batched.execute("GET", "k") == "v"
    assert await client.batched.execute("MGET", "k", "other") == ["v", None]


async def test_the_outbox_removes_more_ids_at_once_than_one_lua_unpack_takes(client: RedisClient) -> None:
    outbox = RedisOutbox(client, Keyspace(ORDER_SERVICE))
    ids = [f"e-{n}" for n in range(9000)]  # Lua's unpack refuses over 8000 values
    await client.redis.hset(outbox.keys.outbox_entries, mapping=dict.fromkeys(ids, "{}"))
    await client.redis.zadd(outbox.keys.outbox_queue, {event_id: n for n, event_id in enumerate(ids)})

    await outbox.remove([*ids, "unknown"])

    assert await outbox.count() == 0
    assert await client.redis.hlen(outbox.keys.outbox_entries) == 0


async def test_a_commit_over_a_record_whose_timestamp_reads_otherwise_is_not_a_conflict(
    client: RedisClient,
) -> None:
    """A soak livelocked when the commit compared `updatedAt` as text: a record stored as
    `...:41.000Z` re-encodes as `...:41Z`, and every reservation of it conflicted."""
    catalog = RedisProductStore(client, PRODUCTS, RedisOutbox(client, PRODUCTS))
    raw = (
        '{"id":"p-1","name":"Mug","basePrice":43.67,"currentPrice":43.67,"currency":"USD",'
        '"status":"ACTIVE","quantityAvailable":10,"version":2,"updatedAt":"2026-11-30T00:17:41.000Z"}'
    )
    await client.redis.set(PRODUCTS.product("p-1"), raw)
    await client.redis.sadd(PRODUCTS.products, "p-1")
    before = await catalog.get("p-1")
    assert before is not None

    after = newer(before, quantity_available=9)
    assert (
        await catalog.commit([ProductChange(before, after)], [], reservation_for="o-1")
        is CommitResult.COMMITTED
    )
    assert await catalog.get("p-1") == after
