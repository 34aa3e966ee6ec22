"""Both services as aiohttp apps on a real Redis: orders stored there, a Redis outage is a 503, then recovery.

The order app and the product app share one in-memory broker, as `--embedded` wires them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp.test_utils import TestServer

from adapters.memory.broker import InMemoryBroker
from adapters.redis.order_store import RedisOrderStore
from adapters.redis.product_store import RedisProductStore
from entrypoints.apps import (
    build_order_container,
    build_product_container,
    create_order_app,
    create_product_app,
)
from entrypoints.http.order_api import ORDER_SERVICE
from entrypoints.http.product_api import PRODUCT_SERVICE
from entrypoints.settings import Settings
from tests.integration.servers import RedisServer, free_port

pytestmark = pytest.mark.redis

NEW_PRODUCT = {
    "name": "Ergonomic Office Chair",
    "basePrice": 249.99,
    "currentPrice": 249.99,
    "currency": "USD",
    "status": "ACTIVE",
    "quantityAvailable": 100,
}


@attrs.frozen
class Services:
    order: TestServer
    product: TestServer
    http: aiohttp.ClientSession

    async def call(self, server: TestServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, str(server.make_url(path)), json=body) as response:
            return response.status, await response.json()

    async def order_chair(self, product_id: str) -> tuple[int, Any]:
        body = {"userId": "u-1", "items": [{"productId": product_id, "quantity": 2}]}
        return await self.call(self.order, "POST", "/api/v1/orders", body)


async def start_services(order_settings: Settings, product_settings: Settings) -> AsyncIterator[Services]:
    broker = InMemoryBroker()
    product = TestServer(
        create_product_app(product_settings, container=build_product_container(product_settings, broker)),
        port=product_settings.product_service_port,
    )
    order = TestServer(
        create_order_app(order_settings, container=build_order_container(order_settings, broker))
    )
    await product.start_server()
    try:
        await order.start_server()
        try:
            async with aiohttp.ClientSession() as http:
                yield Services(order, product, http)
        finally:
            await order.close()
    finally:
        await product.close()


def settings_for(redis_url: str | None, product_port: int) -> Settings:
    return Settings(
        redis_url=redis_url,
        product_service_port=product_port,
        product_service_url=f"http://127.0.0.1:{product_port}",
        retry_max_attempts=1,
        retry_initial_interval_ms=10,
    )


@pytest.fixture
async def order_on_redis(redis_clean: RedisServer) -> AsyncIterator[Services]:
    """The Order Service on Redis; the Product Service in memory, so it stays up while Redis is down."""
    port = free_port()
    async for services in start_services(settings_for(redis_clean.url, port), settings_for(None, port)):
        yield services


@pytest.fixture
async def catalog_on_redis(redis_clean: RedisServer) -> AsyncIterator[Services]:
    port = free_port()
    settings = settings_for(redis_clean.url, port)
    async for services in start_services(settings, settings):
        yield services


async def test_an_order_outage_on_redis_is_a_503_and_the_app_recovers_without_a_restart(
    order_on_redis: Services, redis_clean: RedisServer
) -> None:
    services = order_on_redis
    assert isinstance(services.order.app[ORDER_SERVICE].orders(), RedisOrderStore)
    status, product = await services.call(services.product, "POST", "/api/v1/products", NEW_PRODUCT)
    assert status == 201
    status, order = await services.order_chair(product["id"])
    assert status == 201, order
    assert await services.call(services.order, "GET", f"/api/v1/orders/{order['id']}") == (200, order)
    status, ready = await services.call(services.order, "GET", "/ready")
    assert (status, ready["checks"]["redis"]) == (200, {"status": "up"})

    redis_clean.stop()

    status, refused = await services.order_chair(product["id"])
    assert status == 503
    assert refused["error"]["code"] == "store_unavailable"
    assert refused["error"]["message"]
    assert "details" in refused["error"]
    status, not_ready = await services.call(services.order, "GET", "/ready")
    assert status == 503
    assert not_ready["error"]["code"] == "not_ready"
    assert not_ready["error"]["details"]["down"] == ["redis"]
    assert "redis" in not_ready["error"]["message"]
    status, health = await services.call(services.order, "GET", "/health")
    assert (status, health["status"], health["checks"]["redis"]) == (200, "degraded", {"status": "down"})

    redis_clean.start()

    status, again = await services.order_chair(product["id"])
    assert status == 201, again
    status, ready = await services.call(services.order, "GET", "/ready")
    assert status == 200, ready
    assert ready["checks"]["redis"] == {"status": "up"}


async def test_the_catalog_on_redis_is_unavailable_during_an_outage_and_recovers(
    catalog_on_redis: Services, redis_clean: RedisServer
) -> None:
    services = catalog_on_redis
    assert isinstance(services.product.app[PRODUCT_SERVICE].store(), RedisProductStore)
    status, product = await services.call(services.product, "POST", "/api/v1/products", NEW_PRODUCT)
    assert status == 201
    status, order = await services.order_chair(product["id"])
    assert status == 201, order

    redis_clean.stop()

    status, refused = await services.call(services.product, "POST", "/api/v1/products", NEW_PRODUCT)
    assert (status, refused["error"]["code"]) == (503, "store_unavailable")
    status, not_ready = await services.call(services.product, "GET", "/ready")
    assert (status, not_ready["error"]["details"]["down"]) == (503, ["redis"])

    redis_clean.start()

    status, created = await services.call(services.product, "POST", "/api/v1/products", NEW_PRODUCT)
    assert status == 201, created
    assert await services.call(services.product, "GET", f"/api/v1/products/{created['id']}") == (200, created)
    assert (await services.call(services.product, "GET", "/ready"))[0] == 200


async def test_with_the_shared_redis_down_an_order_is_store_unavailable(
    catalog_on_redis: Services, redis_clean: RedisServer
) -> None:
    """Both services on one Redis: the Product Service answers 503 and the cache fallback cannot be read."""
    services = catalog_on_redis
    status, product = await services.call(services.product, "POST", "/api/v1/products", NEW_PRODUCT)
    assert status == 201

    redis_clean.stop()

    status, refused = await services.order_chair(product["id"])
    assert (status, refused["error"]["code"]) == (503, "store_unavailable"), refused
    assert refused["error"]["details"]["productIds"] == [product["id"]]

    redis_clean.start()  # empty again: the product is created anew

    status, product = await services.call(services.product, "POST", "/api/v1/products", NEW_PRODUCT)
    assert status == 201
    status, again = await services.order_chair(product["id"])
    assert status == 201, again
