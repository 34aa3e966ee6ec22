"""Log lines name the service they come from, also where one process runs both (embedded mode)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from entrypoints.logs import SERVICE, configure_logging

from .running import start, stop


@pytest.fixture
def json_lines(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Logging as `order-service` (what the embedded mode's process configures); the lines read
    back. Configured on first use: capsys captures from the test's call on, not its setup."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]

    try:
        yield lines
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def log_as_the_embedded_process() -> None:
    configure_logging("INFO", "json", "order-service", "unit")


async def test_each_service_names_its_own_request_lines_in_one_process(
    json_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    log_as_the_embedded_process()
    running = await start()
    try:
        await running.product.get("/health")
        await running.order.get("/health")
        await running.product.get("/api/v1/products/no-such-product")
    finally:
        await stop(running)

    requests = [(line["route"], line["service"]) for line in json_lines() if "route" in line]
    assert ("/api/v1/products/{id}", "product-service") in requests
    assert requests.count(("/health", "product-service")) >= 1
    assert requests.count(("/health", "order-service")) == 1
    assert {service for route, service in requests if route.startswith("/api/v1/products")} == {
        "product-service"
    }


def test_a_line_outside_any_app_names_the_process_service(
    json_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    log_as_the_embedded_process()
    logging.getLogger("unit").warning("outside")
    token = SERVICE.set("product-service")
    try:
        logging.getLogger("unit").warning("inside")
    finally:
        SERVICE.reset(token)

    logging.getLogger("unit").warning("named", extra={"service": "product-service"})

    assert [(line["event"], line["service"]) for line in json_lines()] == [
        ("outside", "order-service"),
        ("inside", "product-service"),
        ("named", "product-service"),
    ]


async def test_a_correlation_id_follows_the_order_into_the_product_service(
    json_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    log_as_the_embedded_process()
    running = await start()
    try:
        product = await running.create_product(name="Mug")
        json_lines()  # what came before
        order = {"userId": "u-1", "items": [{"productId": product["id"], "quantity": 1}]}
        given = await running.order.post("/api/v1/orders", json=order, headers={"X-Correlation-Id": "corr-1"})
        given_id = (await given.json())["id"]
        minted = await running.order.post("/api/v1/orders", json=order)
        smuggled = await running.order.get("/health", headers={"X-Correlation-Id": "a b\tc"})
    finally:
        await stop(running)

    assert (given.status, given.headers["X-Correlation-Id"]) == (201, "corr-1")
    assert minted.status == 201
    minted_id = minted.headers["X-Correlation-Id"]
    assert re.fullmatch("[0-9a-f]{32}", minted_id), minted_id
    assert smuggled.headers["X-Correlation-Id"] not in ("a b\tc", "", minted_id)
    lines = json_lines()
    requests = [(line["service"], line["route"], line["correlationId"]) for line in lines if "route" in line]
    for correlation_id in ("corr-1", minted_id):
        assert ("order-service", "/api/v1/orders", correlation_id) in requests
        assert ("product-service", "/api/v1/products/batch", correlation_id) in requests
    created = [(line["correlationId"], line["orderId"]) for line in lines if line["event"] == "order created"]
    assert created[0] == ("corr-1", given_id), "the request's correlation id, not the order id"


def test_a_newline_in_a_logged_id_does_not_start_a_line_in_the_console_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("INFO", "console", "order-service", "unit")
        forged = "x\n2026-11-30T00:00:00Z [error    ] FORGED"
        logging.getLogger("unit").warning("order %s holds unknown product %s", "o-1", forged)
        logging.getLogger("unit").error("boom\tand\x1b[31mred", exc_info=ValueError("why"))
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = capsys.readouterr().err.splitlines()

    assert not [line for line in lines if "FORGED" in line and "holds unknown product" not in line]
    assert any("holds unknown product x\\n2026" in line for line in lines)
    assert any("boom\\tand\\x1b[31mred" in line for line in lines)
    assert any("ValueError" in line for line in lines), "the traceback is still printed"
