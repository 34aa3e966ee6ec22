"""/ready over a real nats-server: 503 naming the consumers while they are not bound, 200 once they are."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from nats.js.api import StreamConfig

from entrypoints.apps import (
    build_order_container,
    build_product_container,
    create_order_app,
    create_product_app,
)
from entrypoints.settings import Settings
from tests.integration.nats_support import eventually_async, jetstream_admin
from tests.integration.servers import NatsServer

pytestmark = pytest.mark.nats

AppFactory = Callable[[Settings], web.Application]


def order_app(settings: Settings) -> web.Application:
    return create_order_app(settings, container=build_order_container(settings))


def product_app(settings: Settings) -> web.Application:
    return create_product_app(settings, container=build_product_container(settings))


async def answer(server: TestServer, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(str(server.make_url(path))) as response:
        return response.status, await response.json()


@contextlib.asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[TestServer]:
    server = TestServer(app)
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@pytest.mark.parametrize("factory", [order_app, product_app], ids=["order", "product"])
async def test_ready_is_503_naming_the_consumers_while_their_streams_cannot_be_created(
    nats_clean: NatsServer, factory: AppFactory
) -> None:
    # Three replicas on a single server: the streams are refused, so no consumer can bind.
    settings = Settings(
        nats_url=nats_clean.url,
        nats_stream_replicas=3,
        instance_id="ready-1",
        product_service_url="http://127.0.0.1:9",
    )
    async with running(factory(settings)) as server:
        status, body = await answer(server, "/ready")
        assert status == 503, body
        assert body["error"]["details"]["down"] == ["consumers"]
        checks = body["error"]["details"]["checks"]
        assert checks["nats"] == {"status": "up"}
        assert checks["consumers"]["status"] == "down"
        assert checks["consumers"]["waiting"], "the consumers not bound are named"
        assert all(isinstance(name, str) for name in checks["consumers"]["waiting"])
        status, health = await answer(server, "/health")
        assert health["status"] == "degraded"
        assert health["checks"]["consumers"]["status"] == "down"


async def test_ready_turns_200_once_the_consumers_bind(nats_clean: NatsServer) -> None:
    async with jetstream_admin(nats_clean.url) as jsm:
        # Holds the subjects of PRODUCT_EVENTS and ORDER_EVENTS, so neither can be created yet.
        await jsm.add_stream(StreamConfig(name="SQUATTER", subjects=["product.>", "order.>"]))
    settings = Settings(
        nats_url=nats_clean.url, instance_id="ready-2", product_service_url="http://127.0.0.1:9"
    )
    async with running(order_app(settings)) as server:
        status, body = await answer(server, "/ready")
        assert status == 503, body
        waiting = body["error"]["details"]["checks"]["consumers"]["waiting"]
        assert any("product_price_changed" in name for name in waiting), waiting
        assert not any(name.startswith("listener:") for name in waiting), "core listeners need no stream"

        async with jetstream_admin(nats_clean.url) as jsm:
            await jsm.delete_stream("SQUATTER")

        async def ready() -> bool:
            status, body = await answer(server, "/ready")
            return status == 200 and body["checks"]["consumers"] == {"status": "up"}

        await eventually_async(ready, within=20, what="/ready 200 once the consumers are bound")


async def test_a_stream_the_server_refuses_is_logged_with_the_servers_reason(
    nats_clean: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(nats_url=nats_clean.url, nats_stream_replicas=3, instance_id="ready-3")
    caplog.set_level(logging.WARNING, logger="adapters.nats")
    async with running(product_app(settings)):
        pass
    refused = [r.getMessage() for r in caplog.records if "streams not ensured yet" in r.getMessage()]
    assert refused, caplog.text
    # nats-server 2.x: "replicas > 1 not supported in non-clustered mode" (err_code 10074)
    assert "replicas" in refused[0], refused[0]
    assert "err_code=" in refused[0], refused[0]
