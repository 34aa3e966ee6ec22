"""No input, however malformed, gets a 500 or a stack trace: a 4xx with the one error body (INTERFACE §4)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientResponse, StreamReader, web
from aiohttp.test_utils import make_mocked_request

from entrypoints.http.parsing import read_body
from entrypoints.http.schemas import CreateOrderRequest

from .error_bodies import check_invalid_request
from .running import ADMIN_TOKEN, JSON, Running, json_of, start, stop


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    services = await start()
    yield services
    await stop(services)


def order(**fields: Any) -> str:
    body: dict[str, Any] = {"userId": "u-1", "items": [{"productId": "p-1", "quantity": 1}]}
    body.update(fields)
    return json.dumps(body)


def item(**fields: Any) -> str:
    line: dict[str, Any] = {"productId": "p-1", "quantity": 1}
    line.update(fields)
    return json.dumps({"userId": "u-1", "items": [line]})


MALFORMED_ORDERS: list[Any] = [
    pytest.param(b"", 400, "body", id="empty-body"),
    pytest.param(b"   \n", 400, "body", id="blank-body"),
    pytest.param(b"{not json", 400, "JSON", id="bad-json"),
    pytest.param(b'{"userId": "u-1", "items": [', 400, "JSON", id="truncated-json"),
    pytest.param(b"[]", 400, "object", id="array-body"),
    pytest.param(b'"an order"', 400, "object", id="string-body"),
    pytest.param(b"null", 400, "object", id="null-body"),
    pytest.param(b"\xff\xfe\xfd", 400, "UTF-8", id="not-utf8"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, 400, "JSON", id="nested-too-deep"),
    pytest.param(order(userId=7).encode(), 400, "userId", id="userId-number"),
    pytest.param(order(userId="").encode(), 400, "userId", id="userId-empty"),
    pytest.param(order(userId="   ").encode(), 400, "userId must be a non-blank string", id="userId-blank"),
    pytest.param(
        order(userId="\t\n").encode(), 400, "userId must be a non-blank string", id="userId-whitespace"
    ),
    pytest.param(order(userId="u" * 129).encode(), 400, "userId", id="userId-too-long"),
    pytest.param(
        json.dumps({"items": [{"productId": "p", "quantity": 1}]}).encode(),
        400,
        "userId",
        id="userId-missing",
    ),
    pytest.param(json.dumps({"userId": "u-1"}).encode(), 400, "items", id="items-missing"),
    pytest.param(order(items=[]).encode(), 400, "items", id="items-empty"),
    pytest.param(
        order(items=[{"productId": f"p{n}", "quantity": 1} for n in range(101)]).encode(),
        400,
        "items",
        id="items-101",
    ),
    pytest.param(order(items={"productId": "p"}).encode(), 400, "items must be an array", id="items-object"),
    pytest.param(order(items="p-1").encode(), 400, "items must be an array", id="items-string"),
    pytest.param(order(items=[None]).encode(), 400, "items[0] must be an object", id="item-null"),
    pytest.param(order(items=[5]).encode(), 400, "items[0] must be an object", id="item-number"),
    pytest.param(item(quantity=0).encode(), 400, "quantity", id="quantity-zero"),
    pytest.param(item(quantity=-1).encode(), 400, "quantity", id="quantity-negative"),
    pytest.param(item(quantity=10_001).encode(), 400, "quantity", id="quantity-over-10000"),
    pytest.param(item(quantity=2.5).encode(), 400, "quantity", id="quantity-fraction"),
    pytest.param(item(quantity=2.0).encode(), 400, "quantity", id="quantity-float"),
    pytest.param(item(quantity="2").encode(), 400, "quantity", id="quantity-string"),
    pytest.param(item(quantity=True).encode(), 400, "quantity", id="quantity-bool"),
    pytest.param(item(quantity=None).encode(), 400, "quantity", id="quantity-null"),
    pytest.param(
        item().replace('"quantity": 1', '"quantity": 1e2').encode(), 400, "quantity", id="quantity-exponent"
    ),
    pytest.param(item().replace('"quantity": 1', '"quantity": NaN').encode(), 400, "JSON", id="quantity-nan"),
    pytest.param(
        item().replace('"quantity": 1', '"quantity": 1e99999999999999999999').encode(),
        400,
        "JSON",
        id="quantity-out-of-range",
    ),
    pytest.param(
        item().replace('"quantity": 1', '"quantity": ' + "9" * 5000).encode(),
        400,
        "items[0].quantity must be an integer from 1 to 10000",
        id="quantity-5000-digits",
    ),
    pytest.param(item(productId="").encode(), 400, "productId", id="productId-empty"),
    pytest.param(item(productId="p" * 129).encode(), 400, "productId", id="productId-too-long"),
    pytest.param(item(productId=12).encode(), 400, "productId", id="productId-number"),
    pytest.param(item(variantId=5).encode(), 400, "items[0].variantId must be", id="variantId-number"),
    pytest.param(item(variantId="").encode(), 400, "variantId", id="variantId-empty"),
    pytest.param(order(coupon="FREE").encode(), 400, "coupon", id="unknown-field"),
    pytest.param(item(price=1).encode(), 400, "price", id="unknown-item-field"),
    pytest.param(item(productId="no-such-product").encode(), 422, "no-such-product", id="unknown-product"),
    pytest.param(item(productId="\ud800").encode(), 422, "product", id="lone-surrogate-product"),
]


def assert_error_body(body: Any, status: int, response: ClientResponse) -> None:
    assert 400 <= response.status < 500, body
    assert response.status == status, body
    assert response.content_type == "application/json"
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["code"], str)
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["code"].replace("_", "").isalpha()


@pytest.mark.parametrize(("raw", "status", "named"), MALFORMED_ORDERS)
async def test_a_malformed_order_is_a_4xx_with_the_error_body(
    running: Running, raw: bytes, status: int, named: str
) -> None:
    response = await running.order.post("/api/v1/orders", data=raw, headers=JSON)
    text = await response.text()
    assert "Traceback" not in text
    body = json.loads(text)
    assert_error_body(body, status, response)
    if status == 400:
        assert named in body["error"]["message"]
        check_invalid_request(body["error"])
    else:
        assert named in body["error"]["message"] + json.dumps(body["error"]["details"])


async def test_a_body_over_one_mebibyte_is_413(running: Running) -> None:
    raw = order(userId="u" * (1024 * 1024)).encode()
    response = await running.order.post("/api/v1/orders", data=raw, headers=JSON)
    body = await json_of(response)
    assert_error_body(body, 413, response)
    assert body["error"]["code"] == "payload_too_large"
    product = await running.product.post("/api/v1/products", data=raw, headers=JSON)
    assert product.status == 413


async def test_a_body_of_exactly_the_limit_is_read(running: Running) -> None:
    padding = 1024 * 1024 - len(order(userId=""))
    raw = order(userId="u" * padding).encode()
    assert len(raw) == 1024 * 1024
    response = await running.order.post("/api/v1/orders", data=raw, headers=JSON)
    assert response.status == 400  # read, then refused for the userId's length: not 413
    assert "userId" in (await json_of(response))["error"]["message"]


async def test_an_overlong_idempotency_key_is_400(running: Running) -> None:
    response = await running.order.post(
        "/api/v1/orders", data=item(), headers={**JSON, "Idempotency-Key": "k" * 256}
    )
    body = await json_of(response)
    assert_error_body(body, 400, response)
    assert body["error"]["message"] == "Idempotency-Key must be a string of 1 to 255 characters"
    check_invalid_request(body["error"])


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/orders/%00", 404),
        ("/api/v1/orders/" + "x" * 4000, 400),  # over 128 characters, as a product id
        ("/api/v1/orders/%ED%A0%80/pricing-validation", 404),
    ],
)
async def test_odd_order_ids_in_the_path_are_404_or_400_when_too_long(
    running: Running, path: str, status: int
) -> None:
    response = await running.order.request("GET" if "pricing" not in path else "POST", path)
    assert_error_body(await json_of(response), status, response)


async def raw_request(running: Running, request: bytes) -> tuple[int, bytes]:
    """Send bytes a well-behaved client library would refuse to send."""
    url = running.order.make_url("/")
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.parametrize("token", [b"\xff\xfe", "tök".encode(), ADMIN_TOKEN.encode() + b"\xc3"])
async def test_an_admin_token_that_is_not_valid_utf8_is_403(running: Running, token: bytes) -> None:
    status, body = await raw_request(
        running,
        b"POST /admin/refresh HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n"
        b"Authorization: Bearer " + token + b"\r\n\r\n",
    )
    assert status == 403, body
    assert json.loads(body)["error"]["code"] == "forbidden"


async def test_an_idempotency_key_that_is_not_valid_utf8_is_handled(running: Running) -> None:
    raw = item(productId="no-such-product").encode()
    status, body = await raw_request(
        running,
        b"POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
        b"Idempotency-Key: \xff\xfe\r\nContent-Length: " + str(len(raw)).encode() + b"\r\n\r\n" + raw,
    )
    assert status == 422, body
    assert json.loads(body)["error"]["code"] == "product_not_found"


async def test_a_body_that_cannot_be_decompressed_is_400(running: Running) -> None:
    response = await running.order.post(
        "/api/v1/orders",
        data=b"this is not gzip",
        headers={**JSON, "Content-Encoding": "gzip", "Connection": "close"},
    )
    body = await json_of(response)
    assert_error_body(body, 400, response)
    assert body["error"]["message"] == "The request body could not be read"


async def test_a_gzip_bomb_is_413_not_inflated_into_memory(running: Running) -> None:
    raw = gzip.compress(order(userId="u" * (8 * 1024 * 1024)).encode())
    assert len(raw) < 64 * 1024
    response = await running.order.post(
        "/api/v1/orders", data=raw, headers={**JSON, "Content-Encoding": "gzip", "Connection": "close"}
    )
    assert_error_body(await json_of(response), 413, response)


PRODUCT = {
    "name": "Footrest",
    "basePrice": 35,
    "currentPrice": 35,
    "currency": "USD",
    "status": "ACTIVE",
    "quantityAvailable": 3,
}

SENTENCES: list[Any] = [
    pytest.param("/api/v1/orders", order(items="p-1"), "items", "items must be an array of 1 to 100 objects"),
    pytest.param("/api/v1/orders", order(items=[5]), "items[0]", "items[0] must be an object"),
    pytest.param(
        "/api/v1/orders",
        item(quantity="2"),
        "items[0].quantity",
        "items[0].quantity must be an integer from 1 to 10000",
    ),
    pytest.param(
        "/api/v1/orders",
        item(variantId=5),
        "items[0].variantId",
        "items[0].variantId must be a non-empty string of at most 128 characters, or null",
    ),
    pytest.param(
        "/api/v1/orders",
        order(userId="   "),
        "userId",
        "userId must be a non-blank string of at most 128 characters",
    ),
    pytest.param("/api/v1/orders", item(price=1), "items[0].price", "items[0].price is not a known field"),
    pytest.param("/api/v1/orders", json.dumps({"items": []}), "userId", "userId is required"),
    pytest.param(
        "/api/v1/products/batch", json.dumps({"ids": "p-1"}), "ids", "ids must be an array of 1 to 100 ids"
    ),
    pytest.param("/api/v1/products/batch", json.dumps({"ids": [7]}), "ids[0]", "ids[0] must be a string"),
    pytest.param(
        "/api/v1/products",
        json.dumps({**PRODUCT, "status": "FOO"}),
        "status",
        "status must be one of ACTIVE, INACTIVE, DISCONTINUED",
    ),
    pytest.param(
        "/api/v1/products",
        json.dumps({**PRODUCT, "basePrice": "35"}),
        "basePrice",
        "basePrice must be a number from 0 below 1000000000 with at most 2 decimals",
    ),
    pytest.param(
        "/api/v1/products",
        json.dumps({**PRODUCT, "name": 5}),
        "name",
        "name must be a non-blank string of at most 200 characters",
    ),
    pytest.param(
        "/api/v1/products",
        json.dumps({**PRODUCT, "quantityAvailable": "3"}),
        "quantityAvailable",
        "quantityAvailable must be an integer from 0 to 1000000000",
    ),
]


@pytest.mark.parametrize(("path", "raw", "field", "sentence"), SENTENCES)
async def test_a_400_says_in_words_which_field_must_be_what(
    running: Running, path: str, raw: str, field: str, sentence: str
) -> None:
    client = running.order if path.startswith("/api/v1/orders") else running.product
    response = await client.post(path, data=raw.encode(), headers=JSON)
    body = await json_of(response)
    assert_error_body(body, 400, response)
    check_invalid_request(body["error"])
    assert body["error"]["message"] == sentence
    assert body["error"]["details"]["field"] == field


async def test_every_problem_of_a_body_is_listed_the_first_one_as_the_message(running: Running) -> None:
    raw = json.dumps({**PRODUCT, "basePrice": "35", "status": "FOO", "colour": "red"}).encode()
    body = await json_of(await running.product.post("/api/v1/products", data=raw, headers=JSON))
    check_invalid_request(body["error"])
    assert body["error"]["details"] == {
        "field": "basePrice",
        "problems": [
            {
                "field": "basePrice",
                "message": "basePrice must be a number from 0 below 1000000000 with at most 2 decimals",
            },
            {"field": "status", "message": "status must be one of ACTIVE, INACTIVE, DISCONTINUED"},
            {"field": "colour", "message": "colour is not a known field"},
        ],
    }


async def test_a_patch_status_names_its_values(running: Running) -> None:
    created = await json_of(
        await running.product.post("/api/v1/products", data=json.dumps(PRODUCT).encode(), headers=JSON)
    )
    response = await running.product.patch(
        f"/api/v1/products/{created['id']}", data=b'{"status": "FOO"}', headers=JSON
    )
    body = await json_of(response)
    assert response.status == 400
    check_invalid_request(body["error"])
    assert body["error"]["message"] == "status must be one of ACTIVE, INACTIVE, DISCONTINUED, or null"


class _Protocol:
    """What aiohttp's StreamReader asks of its connection: nothing here ever pauses."""

    _reading_paused = False
    connected = True

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def test_a_body_that_never_finishes_arriving_is_408() -> None:
    """Before: aiohttp waited for the rest of the body for as long as the client liked (a
    connection sending nothing after `{` was still open 150 s later)."""
    payload = StreamReader(_Protocol(), 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(b'{"userId": "u-1", ')  # and never the rest, nor the end
    request = make_mocked_request(
        "POST", "/api/v1/orders", headers={"Content-Length": "1000"}, payload=payload
    )

    with pytest.raises(web.HTTPRequestTimeout):
        await read_body(request, CreateOrderRequest, timeout_s=0.05)
