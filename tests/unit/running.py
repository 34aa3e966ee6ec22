"""Both services running on loopback test servers, as `order-service serve --embedded` runs them."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import attrs
import simplejson
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from adapters.memory.broker import InMemoryBroker
from entrypoints import Settings
from entrypoints.apps import (
    build_order_container,
    build_product_container,
    create_order_app,
    create_product_app,
)
from entrypoints.containers import OrderService, ProductService
from entrypoints.http.order_api import ORDER_SERVICE
from entrypoints.http.product_api import PRODUCT_SERVICE

from .polling import eventually

ADMIN_TOKEN = "unit-admin-token"

FAST = Settings(
    admin_token=ADMIN_TOKEN,
    instance_id="unit",
    product_request_timeout_ms=2000,
    retry_max_attempts=2,
    retry_initial_interval_ms=10,
    breaker_failure_threshold=100,
    async_request_timeout_ms=2000,
    refresh_batch_delay_ms=0,
)


@attrs.define
class Running:
    order: TestClient[web.Request, web.Application]
    product: TestClient[web.Request, web.Application]
    broker: InMemoryBroker

    @property
    def order_service(self) -> OrderService:
        return self.order.app[ORDER_SERVICE]

    @property
    def product_service(self) -> ProductService:
        return self.product.app[PRODUCT_SERVICE]

    async def stop_product_service(self) -> None:
        await self.product.close()

    async def create_product(self, **fields: Any) -> dict[str, Any]:
        body = {
            "name": "Ergonomic Office Chair",
            "basePrice": Decimal("249.99"),
            "currentPrice": Decimal("249.99"),
            "currency": "USD",
            "status": "ACTIVE",
            "quantityAvailable": 12,
        }
        body.update(fields)
        response = await self.product.post("/api/v1/products", data=dumps(body), headers=JSON)
        assert response.status == 201, await response.text()
        created: dict[str, Any] = await json_of(response)
        return created

    async def order_cached(self, product_id: str, version: int = 1) -> None:
        """Wait until the Order Service heard of the product (product.created over the shared bus)."""

        async def cached() -> bool:
            found = await self.order_service.cache().get_many([product_id])
            return product_id in found and found[product_id].version >= version

        await eventually(cached)


JSON = {"Content-Type": "application/json"}


def dumps(body: Any) -> str:
    """JSON with Decimals written exactly (json.dumps cannot write a Decimal as a number)."""
    return simplejson.dumps(body, use_decimal=True)


async def json_of(response: ClientResponse) -> Any:
    return json.loads(await response.read(), parse_float=Decimal)


async def start(settings: Settings = FAST, *, shared_broker: bool = True) -> Running:
    broker = InMemoryBroker()
    product_app = create_product_app(settings, container=build_product_container(settings, broker))
    product = TestClient(TestServer(product_app))
    await product.start_server()
    url = str(product.make_url("")).rstrip("/")
    order_settings = attrs.evolve(settings, product_service_url=url)
    order_broker = broker if shared_broker else InMemoryBroker()
    order_app = create_order_app(
        order_settings, container=build_order_container(order_settings, order_broker)
    )
    order = TestClient(TestServer(order_app))
    await order.start_server()
    return Running(order=order, product=product, broker=broker)


async def stop(running: Running) -> None:
    await running.order.close()
    await running.product.close()
