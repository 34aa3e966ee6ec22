"""Two Order Service instances, one Product Service, real Redis and NATS: as an operator runs it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import nats
import pytest
import pytest_asyncio

from tests.integration.servers import NatsServer, RedisServer
from tests.integration.service_processes import (
    ServiceProcess,
    call,
    order_service,
    product_service,
)

pytestmark = [pytest.mark.redis, pytest.mark.nats]

TOKEN = "it-admin-token"


async def eventually(check: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    began = time.monotonic()
    while not await check():
        if time.monotonic() - began > within:
            raise AssertionError(f"{what}: not within {within}s")
        await asyncio.sleep(0.1)
    return time.monotonic() - began


class Stack:
    def __init__(self, redis: RedisServer, nats_server: NatsServer) -> None:
        self.redis = redis
        self.nats = nats_server
        self.base = {
            "REDIS_URL": redis.url,
            "NATS_URL": nats_server.url,
            "ADMIN_TOKEN": TOKEN,
            "REFRESH_CRON": "0 0 1 1 *",
            "LOG_LEVEL": "WARNING",
            "RETRY_INITIAL_INTERVAL_MS": "50",
            "REFRESH_BATCH_SIZE": "50",
            "REFRESH_BATCH_DELAY_MS": "500",
        }
        self.products = product_service(self.base)
        self.base["PRODUCT_SERVICE_URL"] = self.products.url
        self.order_a = order_service(self.base, "order-a")
        self.order_b = order_service(self.base, "order-b")
        self.processes: list[ServiceProcess] = [self.products, self.order_a, self.order_b]

    async def start(self) -> None:
        for process in self.processes:
            await process.start()

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
            process.log_path.unlink(missing_ok=True)  # a failure showed its tail already


@pytest_asyncio.fixture
async def stack(redis_clean: RedisServer, nats_clean: NatsServer) -> AsyncIterator[Stack]:
    running = Stack(redis_clean, nats_clean)
    try:
        await running.start()
        yield running
    finally:
        running.stop()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def new_product(http: aiohttp.ClientSession, stack: Stack, stock: int = 100) -> dict[str, Any]:
    status, product = await call(
        http,
        "POST",
        f"{stack.products.url}/api/v1/products",
        {
            "name": "Desk",
            "basePrice": 100.00,
            "currentPrice": 100.00,
            "currency": "USD",
            "status": "ACTIVE",
            "quantityAvailable": stock,
        },
    )
    assert status == 201, product
    return product


async def place(http: aiohttp.ClientSession, url: str, product_id: str, quantity: int = 1) -> dict[str, Any]:
    status, order = await call(
        http,
        "POST",
        f"{url}/api/v1/orders",
        {"userId": "u-1", "items": [{"productId": product_id, "quantity": quantity}]},
    )
    assert status == 201, order
    return order


async def metric(http: aiohttp.ClientSession, url: str, line_start: str) -> float:
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


async def order_created_ids(nats_url: str) -> list[str]:
    """Every order id of every `order.created` stored in ORDER_EVENTS, duplicates included."""
    import json

    nc = await nats.connect(nats_url, allow_reconnect=False, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info("ORDER_EVENTS")
        except nats.js.errors.NotFoundError:
            return []
        ids = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            message = await js.get_msg("ORDER_EVENTS", seq)
            if message.subject == "order.created" and message.data:
                ids.append(json.loads(message.data)["data"]["orderId"])
        return ids
    finally:
        await nc.close()


async def test_changes_propagate_to_both_instances_and_each_event_is_applied_once(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    product = await new_product(http, stack, stock=100)
    pid = product["id"]
    on_a = await place(http, stack.order_a.url, pid, quantity=3)
    on_b = await place(http, stack.order_b.url, pid, quantity=4)

    async def stock_reserved() -> bool:
        _, current = await call(http, "GET", f"{stack.products.url}/api/v1/products/{pid}")
        return bool(current["quantityAvailable"] == 93)

    reserved_in = await eventually(stock_reserved, 10, "stock reserved for both orders")

    await call(http, "PATCH", f"{stack.products.url}/api/v1/products/{pid}", {"currentPrice": 150.00})

    async def both_under_review() -> bool:
        _, listed = await call(http, "GET", f"{stack.order_b.url}/api/v1/orders?flag=PRICE_REVIEW")
        return {o["id"] for o in listed["items"]} == {on_a["id"], on_b["id"]}

    review_in = await eventually(both_under_review, 10, "price change flags both orders")

    await call(http, "PATCH", f"{stack.products.url}/api/v1/products/{pid}", {"status": "DISCONTINUED"})

    async def both_discontinued() -> bool:
        _, listed = await call(http, "GET", f"{stack.order_a.url}/api/v1/orders?productId={pid}")
        return (
            all("DISCONTINUED_PRODUCT" in o["flags"] for o in listed["items"]) and len(listed["items"]) == 2
        )

    discontinued_in = await eventually(both_discontinued, 10, "discontinuation flags both orders")
    assert max(reserved_in, review_in, discontinued_in) < 10

    price_changed_acks = 0.0
    for instance in (stack.order_a, stack.order_b):
        price_changed_acks += await metric(
            http, instance.url, 'events_processed_total{outcome="ack",type="product.price_changed"}'
        )
    assert price_changed_acks == 1, "the shared durable consumer applies each event on one instance"


async def test_every_async_refresh_on_either_instance_is_answered_by_event(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    product = await new_product(http, stack)
    sources = []
    for instance in (stack.order_a, stack.order_b) * 5:
        status, body = await call(
            http, "POST", f"{instance.url}/admin/products/{product['id']}/refresh", token=TOKEN
        )
        assert status == 200, body
        sources.append(body["source"])
        assert body["product"]["id"] == product["id"]
    assert sources == ["event"] * 10


async def test_orders_taken_while_nats_is_down_are_published_exactly_once(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    product = await new_product(http, stack, stock=1000)
    await asyncio.sleep(0.5)
    stack.nats.stop()
    taken = [await place(http, (stack.order_a, stack.order_b)[i % 2].url, product["id"]) for i in range(30)]
    stack.nats.start()

    async def all_published() -> bool:
        return len(await order_created_ids(stack.nats.url)) >= 30

    await eventually(all_published, 20, "30 order.created after NATS returned")
    await asyncio.sleep(1.0)
    published = await order_created_ids(stack.nats.url)
    assert sorted(published) == sorted(o["id"] for o in taken)


async def test_outbox_entries_pending_at_sigkill_go_out_after_restart(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    product = await new_product(http, stack, stock=1000)
    await asyncio.sleep(0.5)
    stack.order_b.stop()
    stack.nats.stop()
    taken = [await place(http, stack.order_a.url, product["id"]) for _ in range(10)]
    stack.order_a.kill()
    stack.nats.start()
    revived = order_service(stack.base, "order-a")
    stack.processes.append(revived)
    await revived.start()

    async def all_published() -> bool:
        return len(await order_created_ids(stack.nats.url)) >= 10

    await eventually(all_published, 20, "orders pending at SIGKILL published after restart")
    await asyncio.sleep(1.0)
    assert sorted(await order_created_ids(stack.nats.url)) == sorted(o["id"] for o in taken)


async def stream_messages(nats_url: str, stream: str, subject_prefix: str) -> list[dict[str, Any]]:
    import json

    nc = await nats.connect(nats_url, allow_reconnect=False, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        found = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            message = await js.get_msg(stream, seq)
            if message.subject and message.subject.startswith(subject_prefix) and message.data:
                found.append(json.loads(message.data))
        return found
    finally:
        await nc.close()


async def test_a_refresh_asked_of_both_instances_runs_once_in_batches_and_replies_update_the_cache(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    import redis.asyncio as aioredis

    products = [await new_product(http, stack) for _ in range(120)]

    async def all_cached() -> bool:
        client = aioredis.Redis.from_url(stack.redis.url)
        try:
            return bool(await client.exists(*[f"product:{p['id']}" for p in products]) == 120)
        finally:
            await client.aclose()

    await eventually(all_cached, 20, "120 products cached from their events")

    stale = products[0]["id"]
    client = aioredis.Redis.from_url(stack.redis.url)
    try:
        cached = json.loads(await client.get(f"product:{stale}"))
        await client.delete(f"product:{stale}")
        await client.set(f"product:{stale}", json.dumps({**cached, "name": "stale", "version": 0}))
    finally:
        await client.aclose()

    statuses = await asyncio.gather(
        *(call(http, "POST", f"{o.url}/admin/refresh", token=TOKEN) for o in (stack.order_a, stack.order_b))
    )
    assert [status for status, _ in statuses] == [202, 202]

    async def refreshed() -> bool:
        client = aioredis.Redis.from_url(stack.redis.url)
        try:
            return bool(json.loads(await client.get(f"product:{stale}"))["name"] == "Desk")
        finally:
            await client.aclose()

    await eventually(refreshed, 20, "the refresh reply replaced the stale cache entry")
    await asyncio.sleep(1.5)
    requests = await stream_messages(stack.nats.url, "PRODUCT_EVENTS", "product.batch_details_requested")
    assert len(requests) == 3, "120 active products in batches of 50, and one run for both instances"
    assert all(r["data"]["refreshMode"] is True for r in requests)
    assert sorted(len(r["data"]["productIds"]) for r in requests) == [20, 50, 50]
    replies = await stream_messages(stack.nats.url, "PRODUCT_EVENTS", "product.batch_details_provided")
    assert {r["data"]["requestId"] for r in replies} == {r["data"]["requestId"] for r in requests}
