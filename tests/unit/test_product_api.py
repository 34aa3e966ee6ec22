"""The reference Product Service's HTTP API (INTERFACE §3) through aiohttp's test client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import ClientResponse
from openapi_spec_validator import validate

from domain.events import (
    PRODUCT_AVAILABILITY_CHANGED,
    PRODUCT_CREATED,
    PRODUCT_PRICE_CHANGED,
    PRODUCT_UPDATED,
)

from .error_bodies import check_invalid_request
from .polling import eventually
from .running import JSON, Running, dumps, json_of, start, stop


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    services = await start()
    yield services
    await stop(services)


NEW = {
    "name": "Footrest",
    "basePrice": Decimal("35.00"),
    "currentPrice": Decimal("35.00"),
    "currency": "USD",
    "status": "ACTIVE",
    "quantityAvailable": 3,
}


async def post(running: Running, path: str, body: Any) -> ClientResponse:
    return await running.product.post(path, data=dumps(body), headers=JSON)


async def patch(running: Running, product_id: str, body: Any) -> ClientResponse:
    return await running.product.patch(f"/api/v1/products/{product_id}", data=dumps(body), headers=JSON)


async def error_of(response: ClientResponse, status: int, code: str) -> dict[str, Any]:
    body = await json_of(response)
    assert response.status == status, body
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    error: dict[str, Any] = body["error"]
    return error


async def published_types(running: Running) -> list[str]:
    return [m.subject for m in running.broker.messages if m.subject.startswith("product.")]


async def test_create_answers_201_with_version_one(running: Running) -> None:
    response = await post(running, "/api/v1/products", NEW)
    product = await json_of(response)
    assert response.status == 201
    assert {k: product[k] for k in NEW} == NEW
    assert product["version"] == 1
    assert product["updatedAt"].endswith("Z")
    assert response.headers["Location"] == f"/api/v1/products/{product['id']}"


async def test_create_publishes_product_created(running: Running) -> None:
    await post(running, "/api/v1/products", NEW)

    async def published() -> bool:
        return PRODUCT_CREATED in await published_types(running)

    await eventually(published)


async def test_create_with_a_chosen_id_then_the_same_id_again_is_409(running: Running) -> None:
    first = await post(running, "/api/v1/products", {**NEW, "id": "footrest-1"})
    assert first.status == 201
    assert (await json_of(first))["id"] == "footrest-1"
    error = await error_of(
        await post(running, "/api/v1/products", {**NEW, "id": "footrest-1"}), 409, "product_already_exists"
    )
    assert error["details"] == {"productId": "footrest-1"}


async def test_get_answers_200_or_404(running: Running) -> None:
    created = await json_of(await post(running, "/api/v1/products", NEW))
    found = await running.product.get(f"/api/v1/products/{created['id']}")
    assert found.status == 200
    assert await json_of(found) == created
    await error_of(await running.product.get("/api/v1/products/nope"), 404, "product_not_found")


async def test_batch_answers_the_known_products_in_the_asked_order(running: Running) -> None:
    one = await json_of(await post(running, "/api/v1/products", {**NEW, "id": "a"}))
    two = await json_of(await post(running, "/api/v1/products", {**NEW, "id": "b"}))
    response = await post(running, "/api/v1/products/batch", {"ids": ["b", "ghost", "a"]})
    assert response.status == 200
    assert await json_of(response) == [two, one]


@pytest.mark.parametrize(
    "body",
    [{"ids": []}, {"ids": [f"p{n}" for n in range(101)]}, {"ids": "a"}, {"ids": [""]}, {"ids": [1]}, {}],
)
async def test_a_bad_batch_is_400(running: Running, body: Any) -> None:
    await error_of(await post(running, "/api/v1/products/batch", body), 400, "invalid_request")


async def test_a_price_patch_answers_200_and_publishes_updated_and_price_changed(running: Running) -> None:
    created = await json_of(await post(running, "/api/v1/products", NEW))
    response = await patch(running, created["id"], {"currentPrice": Decimal("30.00")})
    product = await json_of(response)
    assert response.status == 200
    assert (product["currentPrice"], product["version"]) == (Decimal("30.00"), 2)

    async def published() -> bool:
        return await published_types(running) == [PRODUCT_CREATED, PRODUCT_UPDATED, PRODUCT_PRICE_CHANGED]

    await eventually(published)


async def test_a_stock_patch_publishes_availability_changed(running: Running) -> None:
    created = await json_of(await post(running, "/api/v1/products", NEW))
    await patch(running, created["id"], {"quantityAvailable": 0})

    async def published() -> bool:
        return PRODUCT_AVAILABILITY_CHANGED in await published_types(running)

    await eventually(published)


async def test_a_no_op_patch_answers_200_and_keeps_the_version(running: Running) -> None:
    created = await json_of(await post(running, "/api/v1/products", NEW))
    response = await patch(running, created["id"], {"name": NEW["name"], "quantityAvailable": 3})
    assert response.status == 200
    assert await json_of(response) == created


async def test_patching_an_unknown_product_is_404(running: Running) -> None:
    await error_of(await patch(running, "nope", {"name": "x"}), 404, "product_not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "Nothing to change"),
        ({"name": None}, "Nothing to change"),
        ({"name": "   "}, "name"),
        ({"currentPrice": Decimal("-1")}, "currentPrice"),
        ({"basePrice": Decimal("1.001")}, "basePrice"),
        ({"currentPrice": "12.00"}, "currentPrice"),
        ({"status": "GONE"}, "status"),
        ({"quantityAvailable": -1}, "quantityAvailable"),
        ({"quantityAvailable": 1.5}, "quantityAvailable"),
        ({"version": 7}, "version"),
        ({"currency": "EUR"}, "currency"),
    ],
)
async def test_a_bad_patch_is_400_naming_the_field(running: Running, body: Any, field: str) -> None:
    created = await json_of(await post(running, "/api/v1/products", NEW))
    error = await error_of(await patch(running, created["id"], body), 400, "invalid_request")
    assert field in error["message"]
    check_invalid_request(error)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"basePrice": Decimal("19.999")}, "basePrice"),
        ({"currentPrice": Decimal("-0.01")}, "currentPrice"),
        ({"currentPrice": Decimal("1000000000")}, "currentPrice"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "DOLLAR"}, "currency"),
        ({"currency": "U5D"}, "currency"),
        ({"currency": "US$"}, "currency"),
        ({"status": "active"}, "status"),
        ({"quantityAvailable": -3}, "quantityAvailable"),
        ({"quantityAvailable": True}, "quantityAvailable"),
        ({"id": ""}, "id"),
        ({"id": "x" * 129}, "id"),
        ({"version": 3}, "version"),
    ],
)
async def test_a_bad_new_product_is_400_naming_the_field(running: Running, changes: Any, field: str) -> None:
    error = await error_of(
        await post(running, "/api/v1/products", {**NEW, **changes}), 400, "invalid_request"
    )
    assert field in error["message"]
    check_invalid_request(error)


async def test_a_product_without_a_required_field_is_400(running: Running) -> None:
    body = {k: v for k, v in NEW.items() if k != "currency"}
    error = await error_of(await post(running, "/api/v1/products", body), 400, "invalid_request")
    assert error["message"] == "currency is required"
    check_invalid_request(error)


async def test_money_round_trips_exactly(running: Running) -> None:
    created = await json_of(await post(running, "/api/v1/products", {**NEW, "currentPrice": Decimal("0.10")}))
    raw = await (await running.product.get(f"/api/v1/products/{created['id']}")).read()
    assert b'"currentPrice":0.10' in raw


async def test_ops_routes_answer(running: Running) -> None:
    health = await running.product.get("/health")
    assert health.status == 200
    assert (await json_of(health))["status"] == "ok"
    assert (await running.product.get("/ready")).status == 200
    metrics = await running.product.get("/metrics")
    assert "http_requests_total" in await metrics.text()
    document = await (await running.product.get("/openapi.json")).json()
    validate(document)
    assert {"/api/v1/products", "/api/v1/products/{id}", "/api/v1/products/batch"} <= set(document["paths"])
