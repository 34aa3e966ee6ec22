"""Key tracking on a real Redis: reads kept in the process, dropped as Redis reports writes.

A server of this module's own: the tests restart it and kill its clients.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from adapters.redis.client import RedisClient
from adapters.redis.keys import PRODUCT_SERVICE, Keyspace
from adapters.redis.outbox import RedisOutbox
from adapters.redis.product_store import RedisProductStore
from adapters.redis.tracking import TrackedValues
from application.ports import ProductChange
from domain.products import Product
from tests.integration.redis_support import a_product, newer, running_and_empty, running_for_a_module
from tests.integration.servers import RedisServer
from tests.unit.polling import eventually

pytestmark = pytest.mark.redis

KEYS = Keyspace(PRODUCT_SERVICE)
CHECK_EVERY_S = 0.2


@pytest.fixture(scope="module")
def own_server(redis_server: RedisServer) -> Iterator[RedisServer]:
    yield from running_for_a_module(RedisServer(binary=redis_server.binary))


@pytest.fixture
async def server(own_server: RedisServer) -> RedisServer:
    return await running_and_empty(own_server)


@pytest.fixture
async def client(server: RedisServer) -> AsyncIterator[RedisClient]:
    client = RedisClient(server.url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def tracked(server: RedisServer) -> AsyncIterator[TrackedValues]:
    tracked = TrackedValues(server.url, KEYS.product_prefix, check_every_s=CHECK_EVERY_S)
    await tracked.start()
    try:
        await eventually(lambda: tracked.live)
        yield tracked
    finally:
        await tracked.stop()


def store_of(client: RedisClient, tracked: TrackedValues) -> RedisProductStore:
    return RedisProductStore(client, KEYS, RedisOutbox(client, KEYS), tracked=tracked)


async def a_chair_read_once(store: RedisProductStore, tracked: TrackedValues) -> Product:
    """Created, its create reported (a report drops what was read before it), read once: kept."""
    chair = a_product("chair")
    reports = tracked.reports
    assert await store.create(chair, [])
    await eventually(lambda: tracked.reports > reports)
    assert await store.get("chair") == chair
    return chair


async def test_a_product_read_again_unchanged_is_served_without_redis(
    client: RedisClient, tracked: TrackedValues
) -> None:
    store = store_of(client, tracked)
    chair = a_product("chair")
    assert await store.create(chair, [])
    await eventually(lambda: tracked.reports == 1)  # of the create: it would drop a value read before it
    assert await store.get("chair") == chair
    assert tracked.hits == 0
    assert await store.get("chair") == chair
    assert await store.get_many(["chair", "unknown"]) == {"chair": chair}
    assert tracked.hits == 2


async def test_a_write_by_another_client_is_reported_and_the_next_read_sees_it(
    client: RedisClient, tracked: TrackedValues
) -> None:
    store = store_of(client, tracked)
    chair = await a_chair_read_once(store, tracked)
    other = store_of(client, TrackedValues(client.url, KEYS.product_prefix))  # another instance, untracked
    dearer = newer(chair, current_price=chair.current_price + 1)
    await other.commit([ProductChange(chair, dearer)], [])
    await eventually(lambda: tracked.get(KEYS.product("chair")) is None, within=2.0)
    assert tracked.reports >= 1
    assert await store.get("chair") == dearer


async def test_this_processes_own_write_is_seen_by_the_very_next_read(
    client: RedisClient, tracked: TrackedValues
) -> None:
    store = store_of(client, tracked)
    chair = await a_chair_read_once(store, tracked)
    dearer = newer(chair, current_price=chair.current_price + 1)
    await store.commit([ProductChange(chair, dearer)], [])
    assert await store.get("chair") == dearer, "no wait for Redis's report"


async def test_a_flush_of_the_database_forgets_every_value(
    client: RedisClient, tracked: TrackedValues
) -> None:
    store = store_of(client, tracked)
    assert await store.create(a_product("chair"), [])
    await store.get("chair")
    await client.redis.flushdb()
    await eventually(lambda: len(tracked) == 0, within=2.0)
    assert await store.get("chair") is None


async def test_a_restarted_redis_stops_the_serving_at_once_and_tracking_comes_back(
    server: RedisServer, client: RedisClient, tracked: TrackedValues
) -> None:
    store = store_of(client, tracked)
    chair = a_product("chair")
    assert await store.create(chair, [])
    await store.get("chair")
    server.restart()  # it keeps nothing: the product is gone
    await eventually(lambda: not tracked.live, within=1.0)
    assert await store.get("chair") is None
    await eventually(lambda: tracked.live, within=5.0)
    reports = tracked.reports
    assert await store.create(chair, [])
    await eventually(lambda: tracked.reports > reports)
    await store.get("chair")
    assert await store.get("chair") == chair
    assert tracked.hits == 1


async def test_a_killed_tracking_connection_is_noticed_and_nothing_is_served_meanwhile(
    client: RedisClient, tracked: TrackedValues
) -> None:
    """Killing the tracking client ends the reports without a word to the subscriber: the
    periodic CLIENT TRACKINGINFO check is what notices it."""
    store = store_of(client, tracked)
    assert await store.create(a_product("chair"), [])
    await eventually(lambda: tracked.reports == 1)
    await store.get("chair")
    assert tracked.get(KEYS.product("chair")) is not None
    clients = await client.redis.client_list()
    tracking = [c for c in clients if "t" in c["flags"]]
    assert len(tracking) == 1
    await client.redis.client_kill_filter(_id=tracking[0]["id"])
    await eventually(lambda: not tracked.live, within=CHECK_EVERY_S * 5)
    assert tracked.get(KEYS.product("chair")) is None
    await eventually(lambda: tracked.live, within=5.0)
