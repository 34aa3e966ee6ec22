"""Schemathesis fuzzes both live services from their OpenAPI documents: no 5xx, every answer as documented."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Coroutine, Iterator
from decimal import Decimal
from typing import Any, TypeVar

import attrs
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings

from adapters.memory.broker import InMemoryBroker
from domain.orders import OrderItem
from entrypoints import Settings, create_order_app, create_product_app
from entrypoints.apps import build_order_container, build_product_container
from entrypoints.demo import DEMO_PRODUCTS, seed_demo_catalog
from entrypoints.http.order_api import ORDER_SERVICE
from entrypoints.http.product_api import PRODUCT_SERVICE
from entrypoints.openapi import order_openapi, product_openapi

from .builders import CHAIR, an_order
from .error_bodies import check_invalid_request, leaks_beside_fields

T = TypeVar("T")

ADMIN_TOKEN = "t"
PRODUCT_IDS = [product.id for product in DEMO_PRODUCTS if product.id is not None]
ORDER_IDS = ("fuzz-order-1", "fuzz-order-2")
EXAMPLES = int(os.environ.get("FUZZ_HTTP_EXAMPLES", "30"))
"""Per operation; raise it (and set FUZZ_HTTP_RANDOM=1) for a deeper run than CI's."""
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("FUZZ_HTTP_RANDOM"),
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _config(known_ids: list[str], operations: list[dict[str, Any]], *, admin: bool) -> schemathesis.Config:
    """Steer ids towards ones that exist half of the time; send the admin token where asked for."""
    known = {"dictionary": "known-ids", "probability": 0.5}
    config: dict[str, Any] = {
        "request-timeout": 10,
        "dictionaries": {"known-ids": {"values": known_ids}},
        "parameters": {
            "path.id": known,
            "query.productId": known,
            "body.ids[*]": known,
            "body.items[*].productId": known,
        },
        "operations": operations,
    }
    if admin:
        config["auth"] = {"openapi": {"adminToken": {"bearer": ADMIN_TOKEN}}}
    return schemathesis.Config.from_dict(config)


PRODUCT_OPERATIONS = [
    # `/api/v1/products/batch` is also `/api/v1/products/{id}` with the id "batch", so a 405 there
    # rightly allows GET and PATCH too, which the document lists under the templated path only.
    {"include-path": "/api/v1/products/batch", "checks": {"allow_header_conformance": {"enabled": False}}},
]
ORDER_OPERATIONS = [
    # A well-formed order may still name an unknown, discontinued or inactive product: 422 (INTERFACE §4).
    {
        "include-path": "/api/v1/orders",
        "include-method": "POST",
        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", 404, 409, 422]}},
    },
]


# Loaded from the functions that serve /openapi.json (test_served_documents_are_the_fuzzed_ones
# checks that they match), because the plugin's fixture-loaded schemas do not run on pytest 9.
product_api = schemathesis.openapi.from_dict(
    product_openapi(), config=_config(PRODUCT_IDS, PRODUCT_OPERATIONS, admin=False)
)
order_api = schemathesis.openapi.from_dict(
    order_openapi(), config=_config([*PRODUCT_IDS, *ORDER_IDS], ORDER_OPERATIONS, admin=True)
)


def integer_literals(value: Any) -> Any:
    """2.0 -> 2 throughout a body.

    JSON Schema counts 2.0 as an integer, but our wire deliberately wants integers written as
    integers (STYLE.md: no silent coercion; test_wire covers the 400 for 2.0), so leave that
    difference out of the fuzzing instead of reporting it on every run.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: integer_literals(item) for key, item in value.items()}
    if isinstance(value, list):
        return [integer_literals(item) for item in value]
    return value


@attrs.frozen
class LiveServices:
    product_url: str
    order_url: str


class BackgroundLoop:
    """An event loop of its own in a daemon thread, since schemathesis calls block (requests)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzzed-services", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


async def _listen(app: web.Application, runners: list[web.AppRunner]) -> str:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    runners.append(runner)
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


async def _seed_orders(order_app: web.Application) -> None:
    """Orders with known ids (one priced below today's price), so lookups and validation find some."""
    orders = order_app[ORDER_SERVICE].orders()
    for order_id, price in zip(ORDER_IDS, (Decimal("249.99"), Decimal("199.99")), strict=True):
        items = (OrderItem(CHAIR, None, "Ergonomic Office Chair", 2, price),)
        await orders.add(an_order(order_id, items), (), None)


async def _start(runners: list[web.AppRunner]) -> LiveServices:
    """Both services as `make run` wires them: one in-memory broker, real HTTP between them."""
    broker = InMemoryBroker()
    product_settings = Settings(admin_token=ADMIN_TOKEN)
    product_app = create_product_app(
        product_settings, container=build_product_container(product_settings, broker)
    )
    product_url = await _listen(product_app, runners)
    await seed_demo_catalog(product_app[PRODUCT_SERVICE].catalog())
    order_settings = Settings(
        product_service_url=product_url,
        admin_token=ADMIN_TOKEN,
        retry_initial_interval_ms=10,
        # generous: a call timing out on a busy CI machine would be a 503, which the fuzzing reports
        product_request_timeout_ms=2000,
        async_request_timeout_ms=2000,
        refresh_batch_delay_ms=0,
    )
    order_app = create_order_app(order_settings, container=build_order_container(order_settings, broker))
    order_url = await _listen(order_app, runners)
    await _seed_orders(order_app)
    return LiveServices(product_url, order_url)


async def _stop(runners: list[web.AppRunner]) -> None:
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServices]:
    background = BackgroundLoop()
    runners: list[web.AppRunner] = []
    try:
        yield background.run(_start(runners))
    finally:
        background.run(_stop(runners))
        background.close()


def test_served_documents_are_the_fuzzed_ones(live: LiveServices) -> None:
    for url, document in ((live.product_url, product_openapi()), (live.order_url, order_openapi())):
        served = requests.get(f"{url}/openapi.json", timeout=5)
        assert served.status_code == 200
        assert served.headers["Content-Type"].startswith("application/json")
        assert served.json() == json.loads(json.dumps(document))


# --- what the fuzzing found, pinned down -----------------------------------------------------


def test_a_405_says_which_methods_are_allowed(live: LiveServices) -> None:
    response = requests.delete(f"{live.order_url}/api/v1/orders", timeout=5)
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(",")) >= {"GET", "POST"}
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_a_product_id_a_header_cannot_carry_still_gets_its_location(live: LiveServices) -> None:
    body = {
        "id": "odd\nid/\x1e",
        "name": "Odd",
        "basePrice": 1,
        "currentPrice": 1,
        "currency": "USD",
        "status": "ACTIVE",
        "quantityAvailable": 1,
    }
    created = requests.post(f"{live.product_url}/api/v1/products", json=body, timeout=5)
    assert created.status_code == 201
    assert created.headers["Location"] == "/api/v1/products/odd%0Aid%2F%1E"
    fetched = requests.get(f"{live.product_url}{created.headers['Location']}", timeout=5)
    assert fetched.json()["id"] == "odd\nid/\x1e"


def errors_in_words(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """A 400 names the field(s) in the documented details shape; no error speaks Python."""
    if response.status_code < 400 or not response.headers.get("content-type", [""])[0].startswith(
        "application/json"
    ):
        return
    error = response.json()["error"]
    if response.status_code == 400:
        check_invalid_request(error)
    else:
        details = error["details"] if isinstance(error["details"], dict) else {}
        echoed = [value for value in details.values() if isinstance(value, str)]  # ids the client chose
        assert not leaks_beside_fields(error["message"], echoed), error


@product_api.parametrize()
@FUZZ
def test_product_service_answers_every_request_as_documented(
    case: schemathesis.Case, live: LiveServices
) -> None:
    case.body = integer_literals(case.body)
    case.call_and_validate(base_url=live.product_url, additional_checks=[errors_in_words])


@order_api.parametrize()
@FUZZ
def test_order_service_answers_every_request_as_documented(
    case: schemathesis.Case, live: LiveServices
) -> None:
    case.body = integer_literals(case.body)
    case.call_and_validate(base_url=live.order_url, additional_checks=[errors_in_words])
