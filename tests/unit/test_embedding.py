"""INTERFACE §7: the factories build complete apps that mount under a prefix and share nothing."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from entrypoints import Settings, create_order_app, create_product_app
from entrypoints.http.order_api import ORDER_SERVICE
from entrypoints.openapi import order_openapi, product_openapi


async def test_the_order_app_works_mounted_under_a_prefix_of_a_host_app() -> None:
    product = TestServer(create_product_app(Settings()))
    await product.start_server()
    parent = web.Application()
    url = str(product.make_url("")).rstrip("/")
    parent.add_subapp("/orders-svc/", create_order_app(Settings(product_service_url=url, admin_token="t")))
    client = TestClient(TestServer(parent))
    await client.start_server()
    try:
        async with client.get("/orders-svc/ready") as response:
            assert response.status == 200, "the sub-app's cleanup_ctx ran: consumers are subscribed"
        order = {"userId": "u-1", "items": [{"productId": "unknown", "quantity": 1}]}
        async with client.post("/orders-svc/api/v1/orders", json=order) as response:
            assert response.status == 422
            assert (await response.json())["error"]["code"] == "product_not_found"
        async with client.get("/orders-svc/metrics") as response:
            assert 'route="/orders-svc/api/v1/orders",status="422"' in await response.text()
        async with client.get("/orders-svc/openapi.json") as response:
            document = await response.json()
            assert document["servers"] == [{"url": "/orders-svc"}], "its paths are under the prefix"
            assert "/api/v1/orders" in document["paths"]
        async with client.session.get(str(product.make_url("/openapi.json"))) as response:
            assert "servers" not in await response.json(), "served at the root: no prefix to tell"
    finally:
        await client.close()
        await product.close()


def test_two_apps_built_in_one_process_share_no_state() -> None:
    first, second = create_order_app(Settings()), create_order_app(Settings())
    a, b = first[ORDER_SERVICE], second[ORDER_SERVICE]
    assert a.orders() is not b.orders()
    assert a.cache() is not b.cache()
    assert a.core.broker() is not b.core.broker()
    assert a.core.metrics().registry is not b.core.metrics().registry


def test_each_service_documents_only_the_schemas_its_routes_use() -> None:
    assert "Order" not in product_openapi()["components"]["schemas"]
    assert "NewProduct" not in order_openapi()["components"]["schemas"]
    assert {"Error", "Product"} <= set(product_openapi()["components"]["schemas"])
