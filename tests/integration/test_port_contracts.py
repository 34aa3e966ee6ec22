"""One contract per storage port, run against the in-memory twin and the Redis adapter alike.

The in-memory twins are the unit tests' fakes; passing the same tests as the Redis adapters
is what makes them trustworthy. The `memory` cases need no server and always run.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import attrs
import pytest

from adapters.redis.client import RedisClient
from application.ports import CachePut, CommitResult, IdempotencyRecord, ProductChange, StockChange
from domain.events import PriceChanged, ProductDiscontinued
from domain.orders import OrderFlag
from domain.products import MAX_VERSION, Product, ProductStatus
from tests.integration.redis_support import (
    START,
    Backend,
    a_product,
    an_event,
    an_order,
    memory_backend,
    newer,
    order_created,
    redis_backend,
)
from tests.integration.servers import RedisServer

SHORT_TTL_S = 0.2
PAST_SHORT_TTL_S = 0.35


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield memory_backend()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    if not server.is_running:
        server.start()
    client = RedisClient(server.url)
    await client.redis.flushall()
    try:
        yield redis_backend(client)
    finally:
        await client.close()


# --- ProductCache ---------------------------------------------------------------------------


async def test_cache_returns_what_was_put_with_exact_decimals(backend: Backend) -> None:
    cache = backend.cache(60)
    product = a_product("p-1", current_price=Decimal("0.10"), base_price=Decimal("999999999.99"))

    assert await cache.put(product) is CachePut.STORED

    found = await cache.get_many(["p-1", "unknown", "p-1"])
    assert found == {"p-1": product}
    assert (str(found["p-1"].current_price), str(found["p-1"].base_price)) == ("0.10", "999999999.99")
    assert await cache.get_many([]) == {}


async def test_older_version_never_overwrites_newer(backend: Backend) -> None:
    cache = backend.cache(60)
    v1 = a_product("p-1")
    v2 = newer(v1, current_price=Decimal("199.99"))

    assert await cache.put(v2) is CachePut.STORED
    assert await cache.put(v1) is CachePut.KEPT

    assert await cache.get_many(["p-1"]) == {"p-1": v2}


async def test_an_equal_version_is_not_stored(backend: Backend) -> None:
    cache = backend.cache(60)
    first = a_product("p-1", name="first")

    await cache.put(first)

    assert await cache.put(a_product("p-1", name="second")) is CachePut.KEPT
    assert await cache.get_many(["p-1"]) == {"p-1": first}


async def test_a_newer_version_replaces_the_cached_one(backend: Backend) -> None:
    cache = backend.cache(60)
    v1 = a_product("p-1")
    v3 = newer(newer(v1), current_price=Decimal("10.00"))

    await cache.put(v1)

    assert await cache.put(v3) is CachePut.STORED
    assert await cache.get_many(["p-1"]) == {"p-1": v3}


async def test_a_whole_snapshot_older_than_a_partial_entry_is_told_apart(backend: Backend) -> None:
    cache = backend.cache(60)
    v1 = a_product("p-1")
    partial_v2 = newer(v1, quantity_available=1)
    await cache.put(v1)
    await cache.put(partial_v2, partial=True)

    assert await cache.put(a_product("p-1", name="renamed at v1")) is CachePut.PATCHED_PAST
    assert await cache.put(a_product("p-1", name="a partial v1"), partial=True) is CachePut.KEPT
    assert await cache.get_many(["p-1"]) == {"p-1": partial_v2}
    whole_v2 = newer(v1, quantity_available=1, name="whole")
    assert await cache.put(whole_v2) is CachePut.STORED
    assert await cache.put(v1) is CachePut.KEPT, "a whole entry is not patched past"


async def test_a_partial_entry_yields_to_the_whole_snapshot_of_its_version_only(backend: Backend) -> None:
    cache = backend.cache(60)
    v1 = a_product("p-1")
    partial_v2 = newer(v1, quantity_available=1)
    whole_v2 = newer(v1, quantity_available=1, name="renamed in the same change")
    await cache.put(v1)

    assert await cache.put(partial_v2, partial=True) is CachePut.STORED
    assert await cache.put(newer(v1, quantity_available=2), partial=True) is CachePut.KEPT
    assert await cache.put(whole_v2) is CachePut.STORED
    assert await cache.put(partial_v2, partial=True) is CachePut.KEPT
    assert await cache.put(newer(v1, name="a second whole v2")) is CachePut.KEPT
    assert await cache.get_many(["p-1"]) == {"p-1": whole_v2}


async def test_put_many_stores_each_snapshot_by_the_same_rules_as_put(backend: Backend) -> None:
    cache = backend.cache(60)
    chair_v2 = newer(a_product("chair"), current_price=Decimal("12.34"))
    desk = a_product("desk", status=ProductStatus.DISCONTINUED)
    await cache.put(chair_v2)

    await cache.put_many([a_product("chair"), desk, a_product("lamp")])
    await cache.put_many([])

    assert await cache.get_many(["chair", "desk", "lamp"]) == {
        "chair": chair_v2,
        "desk": desk,
        "lamp": a_product("lamp"),
    }
    assert sorted(await cache.active_ids()) == ["chair", "lamp"]


async def test_put_many_of_partial_snapshots_follows_the_rules_of_a_partial_put(backend: Backend) -> None:
    cache = backend.cache(60)
    chair, desk = a_product("chair"), a_product("desk")
    whole_desk_v2 = newer(desk, name="whole v2")
    await cache.put_many([chair, desk])
    await cache.put(whole_desk_v2)

    await cache.put_many([newer(chair, current_price=Decimal("9.99")), newer(desk)], partial=True)
    await cache.put(newer(chair, name="whole v2 of the chair"))

    assert await cache.get_many(["chair", "desk"]) == {
        "chair": newer(chair, name="whole v2 of the chair"),
        "desk": whole_desk_v2,
    }
    assert sorted(await cache.active_ids()) == ["chair", "desk"]


def a_price_change(product: Product, new_price: str, base_price: str, version: int) -> PriceChanged:
    return PriceChanged(product.id, product.current_price, Decimal(new_price), Decimal(base_price), version)


async def test_price_patches_apply_over_the_version_just_before_and_tell_the_newer_prices(
    backend: Backend,
) -> None:
    cache = backend.cache(60)
    chair = a_product("chair", name='A "chair" with "currentPrice":1 in its name')
    desk_v3 = newer(newer(a_product("desk", current_price=Decimal("12.30"))))
    lamp = a_product("lamp", status=ProductStatus.INACTIVE)
    await cache.put_many([chair, desk_v3, lamp])

    newer_prices = await cache.patch_prices(
        [
            a_price_change(chair, "19.99", "25.00", 2),
            a_price_change(desk_v3, "1.00", "1.00", 2),  # older than what is cached
            a_price_change(lamp, "2.00", "2.00", 3),  # too far ahead: left to its snapshot
            PriceChanged("unknown", Decimal("1.00"), Decimal("2.00"), Decimal("2.00"), 2),
            a_price_change(chair, "999999999.99", "0.10", 3),  # the chair's next one, in order
        ]
    )
    await cache.patch_prices([])

    assert newer_prices == {"desk": Decimal("12.30")}
    chair_v3 = newer(newer(chair), current_price=Decimal("999999999.99"), base_price=Decimal("0.10"))
    assert await cache.get_many(["chair", "desk", "lamp", "unknown"]) == {
        "chair": chair_v3,
        "desk": desk_v3,
        "lamp": lamp,
    }
    assert sorted(await cache.active_ids()) == ["chair", "desk"]


async def test_a_price_patch_is_partial_and_yields_to_the_whole_snapshot_of_its_version(
    backend: Backend,
) -> None:
    cache = backend.cache(60)
    v1 = a_product("p-1", status=ProductStatus.DISCONTINUED)
    whole_v2 = newer(v1, current_price=Decimal("5.00"), name="renamed in the same change")
    await cache.put(v1)

    assert await cache.patch_prices([a_price_change(v1, "5.00", "249.99", 2)]) == {}
    assert await cache.get_many(["p-1"]) == {"p-1": newer(v1, current_price=Decimal("5.00"))}
    assert await cache.active_ids() == []
    assert await cache.put(whole_v2) is CachePut.STORED
    assert await cache.patch_prices([a_price_change(v1, "6.00", "249.99", 2)]) == {}
    assert await cache.get_many(["p-1"]) == {"p-1": whole_v2}


def a_stock_change(
    product: Product, quantity: int, version: int, minutes: int = 5, available: bool | None = None
) -> StockChange:
    """`available` as the product's status and the new stock say, unless given."""
    if available is None:
        available = product.status is ProductStatus.ACTIVE and quantity > 0
    at = START + timedelta(minutes=minutes, milliseconds=250)
    return StockChange(product.id, quantity, version, at, available)


async def test_a_stock_change_that_disagrees_with_the_cached_status_asks_for_the_whole_snapshot(
    backend: Backend,
) -> None:
    """A PATCH of status and stock publishes availability_changed too: patched over the version
    before, it would stamp the old status with the new version, and no product.updated of that
    version could then replace it once a later change was patched on top."""
    cache = backend.cache(60)
    v1 = a_product("p-1", quantity_available=12)
    await cache.put(v1)

    assert await cache.patch_stock([a_stock_change(v1, 10, 2, available=False)]) == {"p-1"}
    assert await cache.get_many(["p-1"]) == {"p-1": v1}


async def test_a_price_and_a_stock_change_of_one_version_both_land_whichever_comes_first(
    backend: Backend,
) -> None:
    cache = backend.cache(60)
    chair, desk = a_product("chair"), a_product("desk")
    await cache.put_many([chair, desk])

    assert await cache.patch_stock([a_stock_change(chair, 5, 2)]) == set()
    assert await cache.patch_prices([a_price_change(chair, "9.99", "249.99", 2)]) == {}
    assert await cache.patch_prices([a_price_change(desk, "9.99", "249.99", 2)]) == {}
    assert await cache.patch_stock([a_stock_change(desk, 5, 2)]) == set()

    at = START + timedelta(minutes=5, milliseconds=250)
    both = {"current_price": Decimal("9.99"), "quantity_available": 5, "updated_at": at}
    assert await cache.get_many(["chair", "desk"]) == {
        "chair": newer(chair, **both),
        "desk": newer(desk, **both),
    }


async def test_a_newer_partial_entry_tells_no_newer_price(backend: Backend) -> None:
    """A partial entry's price may predate the change (patched from an older snapshot): None
    says so (the change's own price re-validates the orders, and the snapshot is asked for)."""
    cache = backend.cache(60)
    v1 = a_product("p-1")
    await cache.put(v1)
    await cache.patch_stock([a_stock_change(v1, 11, 2)])
    await cache.patch_stock([a_stock_change(v1, 10, 3)])

    assert await cache.patch_prices([a_price_change(v1, "1.00", "249.99", 2)]) == {"p-1": None}


async def test_a_newer_partial_entry_tells_its_price_when_that_is_no_older_than_the_change(
    backend: Backend,
) -> None:
    """A late price change (v3 here, after v4's whole snapshot and a reservation's v5) must not
    re-validate orders at its stale price: the partial entry's prices are v4's, newer than it."""
    cache = backend.cache(60)
    v4 = a_product("p-1", version=4, current_price=Decimal("100.10"))
    await cache.put(v4)
    await cache.patch_stock([a_stock_change(v4, 11, 5)])

    assert await cache.patch_prices([a_price_change(v4, "200.00", "249.99", 3)]) == {"p-1": Decimal("100.10")}
    assert await cache.patch_prices([a_price_change(v4, "200.00", "249.99", 4)]) == {"p-1": Decimal("100.10")}


async def test_the_price_version_follows_price_patches_and_survives_other_partial_writes(
    backend: Backend,
) -> None:
    cache = backend.cache(60)
    v1 = a_product("p-1")
    await cache.put(v1)
    await cache.patch_prices([a_price_change(v1, "5.00", "249.99", 2)])  # prices of v2
    await cache.patch_stock([a_stock_change(v1, 11, 3)])
    discontinued_v4 = newer(
        newer(newer(v1, current_price=Decimal("5.00"), quantity_available=11)),
        status=ProductStatus.DISCONTINUED,
    )
    assert await cache.put(discontinued_v4, partial=True) is CachePut.STORED

    assert await cache.patch_prices([a_price_change(v1, "7.00", "249.99", 2)]) == {"p-1": Decimal("5.00")}
    assert await cache.patch_prices([a_price_change(v1, "7.00", "249.99", 3)]) == {"p-1": None}


async def test_a_partial_write_over_older_prices_keeps_telling_them_older(backend: Backend) -> None:
    cache = backend.cache(60)
    v1 = a_product("p-1")
    await cache.put(v1)
    await cache.patch_stock([a_stock_change(v1, 11, 2)])  # prices of v1
    assert (
        await cache.put(newer(newer(v1), status=ProductStatus.DISCONTINUED), partial=True) is CachePut.STORED
    )

    assert await cache.patch_prices([a_price_change(v1, "7.00", "249.99", 2)]) == {"p-1": None}


async def test_stock_patches_apply_over_the_version_just_before_and_tell_who_is_behind(
    backend: Backend,
) -> None:
    cache = backend.cache(60)
    chair = a_product("chair", name='A "chair" with "quantityAvailable":1,"version":9 in its name')
    desk_v3 = newer(newer(a_product("desk")))
    lamp = a_product("lamp", status=ProductStatus.INACTIVE)
    await cache.put_many([chair, desk_v3, lamp])

    behind = await cache.patch_stock(
        [
            a_stock_change(chair, 7, 2),
            a_stock_change(desk_v3, 1, 2),  # older than what is cached
            a_stock_change(lamp, 2, 3),  # too far ahead: left to its snapshot
            StockChange("unknown", 1, 2, START, True),
            a_stock_change(chair, 0, 3, minutes=6),  # the chair's next one, in order
        ]
    )
    await cache.patch_stock([])

    assert behind == {"lamp"}
    chair_v3 = newer(
        newer(chair),
        quantity_available=0,
        updated_at=START + timedelta(minutes=6, milliseconds=250),
    )
    assert await cache.get_many(["chair", "desk", "lamp", "unknown"]) == {
        "chair": chair_v3,
        "desk": desk_v3,
        "lamp": lamp,
    }
    assert sorted(await cache.active_ids()) == ["chair", "desk"]


async def test_a_stock_patch_is_partial_and_yields_to_the_whole_snapshot_of_its_version(
    backend: Backend,
) -> None:
    cache = backend.cache(60)
    v1 = a_product("p-1", status=ProductStatus.DISCONTINUED)
    whole_v2 = newer(v1, quantity_available=3, name="renamed in the same change")
    await cache.put(v1)

    assert await cache.patch_stock([a_stock_change(v1, 3, 2)]) == set()
    patched = newer(v1, quantity_available=3, updated_at=START + timedelta(minutes=5, milliseconds=250))
    assert await cache.get_many(["p-1"]) == {"p-1": patched}
    assert await cache.active_ids() == []
    assert await cache.put(whole_v2) is CachePut.STORED
    assert await cache.patch_stock([a_stock_change(v1, 4, 2)]) == set()
    assert await cache.get_many(["p-1"]) == {"p-1": whole_v2}


async def test_a_cached_entry_read_again_after_a_change_is_the_change(backend: Backend) -> None:
    """The Redis adapter reuses the snapshot it decoded last for the same stored text only."""
    cache = backend.cache(60)
    v1 = a_product("p-1")
    await cache.put(v1)
    assert await cache.get_many(["p-1"]) == {"p-1": v1}
    assert await cache.get_many(["p-1"]) == {"p-1": v1}

    v2 = newer(v1, quantity_available=3)
    await cache.put(v2, partial=True)
    assert await cache.get_many(["p-1"]) == {"p-1": v2}
    v2_whole = newer(v1, quantity_available=3, name="whole")
    await cache.put(v2_whole)
    assert await cache.get_many(["p-1"]) == {"p-1": v2_whole}


async def test_active_ids_follow_the_latest_cached_status(backend: Backend) -> None:
    cache = backend.cache(60)
    chair = a_product("chair")
    desk = a_product("desk", status=ProductStatus.INACTIVE)
    lamp = a_product("lamp")
    await cache.put(chair)
    await cache.put(desk)
    await cache.put(lamp)
    await cache.put(newer(lamp, status=ProductStatus.DISCONTINUED))
    await cache.put(newer(desk, status=ProductStatus.ACTIVE))

    assert sorted(await cache.active_ids()) == ["chair", "desk"]


async def test_cached_products_expire_after_the_ttl(backend: Backend) -> None:
    cache = backend.cache(SHORT_TTL_S)
    v2 = newer(a_product("p-1"))
    await cache.put(v2)
    assert await cache.active_ids() == ["p-1"]

    await asyncio.sleep(PAST_SHORT_TTL_S)

    assert await cache.get_many(["p-1"]) == {}
    assert await cache.active_ids() == []
    assert await cache.put(a_product("p-1")) is CachePut.STORED, "an expired entry blocks no older version"


async def test_a_rewritten_entry_stays_active_for_a_ttl_from_its_last_write(backend: Backend) -> None:
    cache = backend.cache(1.0)
    v1 = a_product("p-1")
    await cache.put(v1)
    await asyncio.sleep(0.6)
    await cache.put(newer(v1))
    await asyncio.sleep(0.6)  # past the first write's TTL, well within the second's

    assert await cache.active_ids() == ["p-1"]


async def test_an_entry_told_again_lives_a_ttl_from_then_though_not_rewritten(backend: Backend) -> None:
    """A refresh sweep's answer is mostly the version already cached: it must keep the entry
    cached (the second audit: idle products left the cache and the refresh set for good)."""
    cache = backend.cache(1.0)
    v2 = newer(a_product("p-1"), quantity_available=3)
    await cache.put(v2)
    await asyncio.sleep(0.6)
    outcome = await cache.put(v2)
    await asyncio.sleep(0.6)  # past the write's TTL, well within the renewed one

    assert outcome is CachePut.KEPT
    assert await cache.get_many(["p-1"]) == {"p-1": v2}
    assert await cache.active_ids() == ["p-1"]


@pytest.mark.parametrize("cached", ["whole", "partial"])
async def test_an_entry_newer_than_the_answers_is_not_kept_alive_by_them(
    backend: Backend, cached: str
) -> None:
    """A version no answer reaches (an event forged at version 2**53-1, or a Product Service whose
    store started again at 1) must leave with its TTL, not live on while answers renew it (the
    security pass); the next answer after that is stored."""
    cache = backend.cache(1.0)
    v1 = a_product("p-1")
    forged = attrs.evolve(v1, version=MAX_VERSION, current_price=Decimal("0.01"))
    await cache.put(forged, partial=cached == "partial")
    await asyncio.sleep(0.6)
    outcome = await cache.put(v1)
    await asyncio.sleep(0.6)  # past the forged entry's TTL

    assert outcome is (CachePut.PATCHED_PAST if cached == "partial" else CachePut.KEPT)
    assert await cache.get_many(["p-1"]) == {}
    assert await cache.active_ids() == []
    assert await cache.put(v1) is CachePut.STORED


# --- OrderStore and its Outbox --------------------------------------------------------------


async def test_an_added_order_is_stored_with_its_event(backend: Backend) -> None:
    orders, outbox = backend.order_store()
    order = an_order("o-1", product_ids=("p-1", "p-2"))
    event = order_created(order)

    assert await orders.add(order, [event], None) is None

    assert await orders.get("o-1") == order
    assert await orders.get("unknown") is None
    assert await outbox.pending(10) == [event]
    assert outbox.take_appended() == [event], "handed to this process's relay once"
    assert outbox.take_appended() == []
    assert sorted(await orders.ids_holding("p-1")) == ["o-1"]
    assert sorted(await orders.ids_holding("p-2")) == ["o-1"]
    assert await orders.ids_holding("p-3") == []
    assert await orders.ids_holding_each(["p-1", "p-3", "p-2"]) == {"p-1": ["o-1"], "p-3": [], "p-2": ["o-1"]}
    assert await orders.ids_holding_each([]) == {}


async def test_a_taken_idempotency_key_returns_the_earlier_record_and_stores_nothing(
    backend: Backend,
) -> None:
    orders, outbox = backend.order_store()
    first, second = an_order("o-1"), an_order("o-2")
    record = IdempotencyRecord("key-1", "fingerprint-1", "o-1")

    assert await orders.add(first, [order_created(first)], record) is None
    outbox.take_appended()
    earlier = await orders.add(
        second, [order_created(second)], IdempotencyRecord("key-1", "fingerprint-2", "o-2")
    )

    assert earlier == record
    assert await orders.idempotency_record("key-1") == record
    assert await orders.idempotency_record("key-2") is None
    assert await orders.get("o-2") is None
    assert sorted(await orders.ids_holding("p-1")) == ["o-1"]
    assert await orders.recent_ids(10) == ["o-1"]
    assert await outbox.count() == 1
    assert outbox.take_appended() == [], "nothing was appended by the refused add"


async def test_a_flag_is_added_once(backend: Backend) -> None:
    orders, _ = backend.order_store()
    await orders.add(an_order("o-1"), [], None)
    await orders.add(an_order("o-2"), [], None)

    assert await orders.add_flag("o-1", OrderFlag.PRICE_REVIEW) is True
    assert await orders.add_flag("o-1", OrderFlag.PRICE_REVIEW) is False
    assert await orders.add_flag("o-1", OrderFlag.DISCONTINUED_PRODUCT) is True
    assert await orders.add_flag("unknown", OrderFlag.PRICE_REVIEW) is False

    flagged = await orders.get("o-1")
    assert flagged is not None
    assert flagged.flags == (OrderFlag.DISCONTINUED_PRODUCT, OrderFlag.PRICE_REVIEW)
    assert flagged.total_amount == Decimal("0.30")
    assert await orders.ids_flagged(OrderFlag.PRICE_REVIEW) == ["o-1"]
    assert await orders.ids_flagged(OrderFlag.DISCONTINUED_PRODUCT) == ["o-1"]
    assert await orders.ids_flagged(OrderFlag.PRICE_REVIEW) == ["o-1"]


async def test_flags_an_order_is_created_with_are_indexed(backend: Backend) -> None:
    orders, _ = backend.order_store()
    await orders.add(an_order("o-1", flags=(OrderFlag.PRICE_REVIEW,)), [], None)

    assert await orders.ids_flagged(OrderFlag.PRICE_REVIEW) == ["o-1"]
    assert await orders.add_flag("o-1", OrderFlag.PRICE_REVIEW) is False


async def test_recent_ids_are_the_newest_oldest_first(backend: Backend) -> None:
    orders, _ = backend.order_store()
    later = START + timedelta(microseconds=1)
    for order_id, created_at in [("o-c", later), ("o-b", START), ("o-a", START), ("o-d", START)]:
        await orders.add(an_order(order_id, created_at=created_at), [], None)

    assert await orders.recent_ids(3) == ["o-b", "o-d", "o-c"]
    assert await orders.recent_ids(10) == ["o-a", "o-b", "o-d", "o-c"]
    assert await orders.recent_ids(1) == ["o-c"]


async def test_the_outbox_hands_out_events_oldest_first_until_removed(backend: Backend) -> None:
    _, outbox = backend.order_store()
    events = [an_event(f"e-{n}", seconds=n) for n in (3, 1, 2)]

    await outbox.add(events[:2])
    await outbox.add(events[2:])
    await outbox.add([events[0]])  # stored again: keeps its place

    assert await outbox.count() == 3
    assert await outbox.pending(10) == events
    assert await outbox.pending(2) == events[:2]
    assert await outbox.pending(0) == []

    await outbox.remove([events[0].id, "unknown"])
    await outbox.remove([])

    assert await outbox.pending(10) == events[1:]
    assert await outbox.count() == 2


# --- ProductStore and its Outbox ------------------------------------------------------------


async def test_a_product_is_created_once(backend: Backend) -> None:
    store, outbox = backend.product_store()
    chair = a_product("chair")
    created = an_event("created")

    assert await store.create(chair, [created]) is True
    assert await store.create(a_product("chair", name="other"), [an_event("again")]) is False

    assert await store.get("chair") == chair
    assert await store.get("unknown") is None
    assert await store.get_many(["chair", "unknown"]) == {"chair": chair}
    assert await store.all_ids() == ["chair"]
    assert await outbox.pending(10) == [created]
    assert outbox.take_appended() == [created], "not the refused second create's"


async def test_a_commit_stores_every_change_and_its_events(backend: Backend) -> None:
    store, outbox = backend.product_store()
    chair, desk = a_product("chair"), a_product("desk")
    await store.create(chair, [])
    await store.create(desk, [])
    changes = [
        ProductChange(chair, newer(chair, quantity_available=1)),
        ProductChange(desk, newer(desk, current_price=Decimal("99.90"))),
    ]
    events = [an_event("e-1"), an_event("e-2")]

    assert await store.commit(changes, events) is CommitResult.COMMITTED

    assert await store.get_many(["chair", "desk"]) == {c.after.id: c.after for c in changes}
    assert sorted(await store.all_ids()) == ["chair", "desk"]
    assert await outbox.pending(10) == events


async def test_a_stale_change_is_a_conflict_and_stores_nothing(backend: Backend) -> None:
    store, outbox = backend.product_store()
    chair, desk = a_product("chair"), a_product("desk")
    await store.create(chair, [])
    await store.create(desk, [])
    current = newer(desk)
    assert await store.commit([ProductChange(desk, current)], []) is CommitResult.COMMITTED

    stale = [
        ProductChange(chair, newer(chair, quantity_available=0)),
        ProductChange(desk, newer(desk, quantity_available=0)),
    ]
    assert await store.commit(stale, [an_event("e-1")], reservation_for="o-1") is CommitResult.CONFLICT

    assert await store.get_many(["chair", "desk"]) == {"chair": chair, "desk": current}
    assert await outbox.count() == 0
    assert outbox.take_appended() == []
    unknown = a_product("unknown")
    assert await store.commit([ProductChange(unknown, newer(unknown))], []) is CommitResult.CONFLICT
    assert await store.get("unknown") is None
    assert await store.commit([], [], reservation_for="o-1") is CommitResult.COMMITTED, "not reserved"


async def test_an_order_is_reserved_once(backend: Backend) -> None:
    store, outbox = backend.product_store()
    chair = a_product("chair")
    await store.create(chair, [])
    reserved = newer(chair, quantity_available=10)
    discontinued = ProductDiscontinued("chair", 2)

    first = await store.commit([ProductChange(chair, reserved)], [an_event("e-1")], reservation_for="o-1")
    again = await store.commit(
        [ProductChange(reserved, newer(reserved, quantity_available=8))],
        [an_event("e-2", discontinued)],
        reservation_for="o-1",
    )

    assert (first, again) == (CommitResult.COMMITTED, CommitResult.ALREADY_RESERVED)
    assert await store.get("chair") == reserved
    assert [e.id for e in await outbox.pending(10)] == ["e-1"]
    assert await store.commit([], [], reservation_for="o-2") is CommitResult.COMMITTED
    assert await store.commit([], [], reservation_for="o-2") is CommitResult.ALREADY_RESERVED


# --- ProcessedEvents and Lock ---------------------------------------------------------------


async def test_a_remembered_event_is_seen_until_its_ttl_ends(backend: Backend) -> None:
    processed = backend.processed(SHORT_TTL_S)
    assert await processed.seen("e-1") is False

    await processed.remember("e-1")

    assert await processed.seen("e-1") is True
    assert await processed.seen("e-2") is False
    await asyncio.sleep(PAST_SHORT_TTL_S)
    assert await processed.seen("e-1") is False


async def test_the_remembered_ones_among_many_ids_are_told_in_one_look_up(backend: Backend) -> None:
    processed = backend.processed(SHORT_TTL_S)
    assert await processed.seen_among([]) == set()
    await processed.remember("e-1")
    await processed.remember("e-3")

    assert await processed.seen_among(["e-1", "e-2", "e-3", "e-1"]) == {"e-1", "e-3"}
    await processed.remember_all(["e-4", "e-5", "e-4"])
    await processed.remember_all([])
    assert await processed.seen_among(["e-2", "e-4", "e-5"]) == {"e-4", "e-5"}
    await asyncio.sleep(PAST_SHORT_TTL_S)
    assert await processed.seen_among(["e-1", "e-3"]) == set()


async def test_a_lock_is_held_once_until_released_or_expired(backend: Backend) -> None:
    lock = backend.lock()

    assert await lock.acquire("refresh", 60) is True
    assert await lock.acquire("refresh", 60) is False
    assert await lock.acquire("relay", 60) is True
    await lock.release("refresh")
    assert await lock.acquire("refresh", SHORT_TTL_S) is True
    await lock.release("never-held")

    await asyncio.sleep(PAST_SHORT_TTL_S)

    assert await lock.acquire("refresh", 60) is True


async def test_commits_sent_together_apply_in_the_order_sent(backend: Backend) -> None:
    """What Catalog.reserve_for_orders relies on: each commit planned on the one before it, all
    sent at once (on Redis: one auto-pipelined write), all apply."""
    store, _ = backend.product_store()
    v1 = a_product("chair", quantity_available=10)
    assert await store.create(v1, [])
    chain = [v1]
    for taken in (1, 2, 3):
        chain.append(newer(chain[-1], quantity_available=chain[-1].quantity_available - taken))

    results = await asyncio.gather(
        *(
            store.commit([ProductChange(before, after)], [], reservation_for=f"o-{n}")
            for n, (before, after) in enumerate(itertools.pairwise(chain))
        )
    )

    assert results == [CommitResult.COMMITTED] * 3
    assert await store.get("chair") == chain[-1]


async def test_a_change_planned_on_a_conflicting_one_conflicts_though_its_version_is_current(
    backend: Backend,
) -> None:
    """The soak of session 6: a reservation chained on one that conflicted (a PATCH had written
    v2 in between) found v2 stored, passed a version-only check and put back the old prices."""
    store, _ = backend.product_store()
    v1 = a_product("chair", quantity_available=10, current_price=Decimal("10.00"))
    assert await store.create(v1, [])
    first = newer(v1, quantity_available=9)  # the batch's first reservation, planned on v1
    second = newer(first, quantity_available=8)  # the next one, planned on the first
    patched = newer(v1, current_price=Decimal("20.00"))  # a PATCH gets there first
    assert await store.commit([ProductChange(v1, patched)], []) is CommitResult.COMMITTED

    results = await asyncio.gather(
        store.commit([ProductChange(v1, first)], [], reservation_for="o-1"),
        store.commit([ProductChange(first, second)], [], reservation_for="o-2"),
    )

    assert results == [CommitResult.CONFLICT, CommitResult.CONFLICT]
    assert await store.get("chair") == patched


async def test_newest_of_ranks_the_ids_given_by_creation_time(backend: Backend) -> None:
    orders, _ = backend.order_store()
    later = START + timedelta(microseconds=1)
    for order_id, created_at in [("o-c", later), ("o-b", START), ("o-a", START), ("o-d", START)]:
        await orders.add(an_order(order_id, created_at=created_at), [], None)

    assert await orders.newest_of(["o-c", "o-a", "o-d", "o-b"], 2) == ["o-d", "o-c"]
    assert await orders.newest_of(["o-a", "unknown", "o-c", "o-a"], 10) == ["o-a", "o-c"]
    assert await orders.newest_of(["o-b", "o-a"], 0) == ["o-a", "o-b"]
    assert await orders.newest_of([], 5) == []
