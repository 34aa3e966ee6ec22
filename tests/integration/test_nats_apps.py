"""Both services as aiohttp apps over one real nats-server, each with its own JetStream broker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import attrs
import nats
import pytest
from aiohttp.test_utils import TestServer

from adapters.broker import ORDER_EVENTS, PRODUCT_EVENTS
from adapters.nats import JetStreamBroker
from adapters.wire.event_json import decode, encode
from domain.events import (
    PRODUCT_DETAILS_REQUESTED,
    Envelope,
    ProductDetailsProvided,
    ProductDetailsRequested,
)
from entrypoints.apps import (
    build_order_container,
    build_product_container,
    create_order_app,
    create_product_app,
)
from entrypoints.http.order_api import ORDER_SERVICE
from entrypoints.settings import Settings
from tests.integration.nats_support import eventually_async, stored_count
from tests.integration.servers import NatsServer, free_port

pytestmark = pytest.mark.nats

TOKEN = "integration-admin-token"


@attrs.frozen
class Services:
    order: TestServer
    product: TestServer
    http: aiohttp.ClientSession
    nats_url: str

    def order_url(self, path: str) -> str:
        return str(self.order.make_url(path))

    def product_url(self, path: str) -> str:
        return str(self.product.make_url(path))


@pytest.fixture
async def services(nats_clean: NatsServer) -> AsyncIterator[Services]:
    product_port = free_port()
    base = Settings(
        nats_url=nats_clean.url,
        product_service_url=f"http://127.0.0.1:{product_port}",
        admin_token=TOKEN,
    )
    product_settings = attrs.evolve(base, instance_id="product-1")
    order_settings = attrs.evolve(base, instance_id="order-1")
    product = TestServer(
        create_product_app(product_settings, container=build_product_container(product_settings)),
        port=product_port,
    )
    order = TestServer(create_order_app(order_settings, container=build_order_container(order_settings)))
    await product.start_server()
    try:
        await order.start_server()
        try:
            async with aiohttp.ClientSession() as http:
                yield Services(order, product, http, nats_clean.url)
        finally:
            await order.close()
    finally:
        await product.close()


def details_request(envelope_id: str, product_id: str, request_id: str, callback: str) -> Envelope:
    return Envelope(
        id=envelope_id,
        type=PRODUCT_DETAILS_REQUESTED,
        source="order-service",
        data_version="1.0",
        timestamp=datetime.now(UTC),
        correlation_id=request_id,
        data=ProductDetailsRequested(product_id, request_id, callback),
    )


async def json_of(response: aiohttp.ClientResponse, status: int) -> Any:
    body = await response.json()
    assert response.status == status, body
    return body


async def test_each_app_gets_its_own_jetstream_broker_and_reports_nats_ready(services: Services) -> None:
    order_broker = services.order.app[ORDER_SERVICE].core.broker()
    assert isinstance(order_broker, JetStreamBroker)

    for url in (services.order_url("/ready"), services.product_url("/ready")):
        async with services.http.get(url) as response:
            body = await json_of(response, 200)
        assert body["checks"]["nats"] == {"status": "up"}


async def test_product_events_reach_the_order_service_over_jetstream(services: Services) -> None:
    http = services.http
    new_product = {
        "name": "Footrest",
        "basePrice": 35.00,
        "currentPrice": 35.00,
        "currency": "USD",
        "status": "ACTIVE",
        "quantityAvailable": 3,
    }
    async with http.post(services.product_url("/api/v1/products"), json=new_product) as response:
        product = await json_of(response, 201)
    product_id = product["id"]
    cache = services.order.app[ORDER_SERVICE].cache()

    async def cached_at_version(version: int) -> bool:
        found = await cache.get_many([product_id])
        return product_id in found and found[product_id].version >= version

    await eventually_async(lambda: cached_at_version(product["version"]), what="product.created cached")

    order_body = {"userId": "u-1", "items": [{"productId": product_id, "quantity": 1}]}
    async with http.post(services.order_url("/api/v1/orders"), json=order_body) as response:
        order = await json_of(response, 201)

    patch = {"status": "DISCONTINUED"}
    async with http.patch(services.product_url(f"/api/v1/products/{product_id}"), json=patch) as response:
        await json_of(response, 200)

    async def flagged() -> bool:
        async with http.get(services.order_url(f"/api/v1/orders/{order['id']}")) as response:
            body = await json_of(response, 200)
        return "DISCONTINUED_PRODUCT" in body["flags"]

    await eventually_async(flagged, what="order flagged DISCONTINUED_PRODUCT")

    async with http.post(
        services.order_url(f"/admin/products/{product_id}/refresh"),
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        refreshed = await json_of(response, 200)
    assert refreshed["source"] == "event"
    assert refreshed["product"]["id"] == product_id
    assert refreshed["product"]["status"] == "DISCONTINUED"


async def test_in_memory_mode_claims_no_nats_check() -> None:
    settings = Settings(instance_id="memory-1")
    server = TestServer(create_order_app(settings, container=build_order_container(settings)))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http, http.get(str(server.make_url("/ready"))) as response:
            body = await json_of(response, 200)
        assert "nats" not in body["checks"]
    finally:
        await server.close()


async def test_ready_names_nats_while_it_is_down_and_recovers(
    services: Services, nats_clean: NatsServer
) -> None:
    nats_clean.stop()
    try:

        async def order_not_ready() -> bool:
            async with services.http.get(services.order_url("/ready")) as response:
                body = await response.json()
            # nats first; the consumers cannot pull while it is away either
            return response.status == 503 and body["error"]["details"]["down"] == ["nats", "consumers"]

        await eventually_async(order_not_ready, within=10, what="/ready 503 naming nats and the consumers")
        async with services.http.get(services.order_url("/health")) as response:
            health = await response.json()
        assert health["status"] == "degraded"
        assert health["checks"]["nats"]["status"] == "down"
        # the refresh asks over NATS: refused now, not a 202 for a run that fails at once
        async with services.http.post(
            services.order_url("/admin/refresh"), headers={"Authorization": f"Bearer {TOKEN}"}
        ) as response:
            refused = await json_of(response, 503)
        assert refused["error"]["code"] == "event_bus_unavailable"
        assert "/ready" in refused["error"]["message"]
    finally:
        nats_clean.start()

    async def order_ready() -> bool:
        async with services.http.get(services.order_url("/ready")) as response:
            return response.status == 200

    await eventually_async(order_ready, within=15, what="/ready 200 after NATS returned")


async def test_metrics_move_under_real_traffic(services: Services) -> None:
    http = services.http
    body = {
        "name": "Mat",
        "basePrice": 10.00,
        "currentPrice": 10.00,
        "currency": "USD",
        "status": "ACTIVE",
        "quantityAvailable": 10,
    }
    async with http.post(services.product_url("/api/v1/products"), json=body) as response:
        product = await json_of(response, 201)
    order = {"userId": "u-1", "items": [{"productId": product["id"], "quantity": 1}]}
    async with http.post(services.order_url("/api/v1/orders"), json=order) as response:
        await json_of(response, 201)

    async def order_metrics() -> str:
        async with http.get(services.order_url("/metrics")) as response:
            return await response.text()

    async def moved() -> bool:
        text = await order_metrics()
        return all(
            line in text
            for line in (
                'http_requests_total{route="/api/v1/orders",status="201"} 1.0',
                'product_service_requests_total{operation="get_products",outcome="success"} 1.0',
                'events_published_total{outcome="ok",type="order.created"} 1.0',
                'events_processed_total{outcome="ack",type="product.created"} 1.0',
            )
        )

    await eventually_async(moved, within=10, what="order service metrics moved")
    assert "jetstream_consumer_pending{" in await order_metrics()


async def product_metric(services: Services, line: str) -> bool:
    async with services.http.get(services.product_url("/metrics")) as response:
        return line in await response.text()


async def test_a_refresh_is_answered_once_over_the_fast_path_and_stored_once(services: Services) -> None:
    http = services.http
    body = {
        "name": "Lamp",
        "basePrice": 20.00,
        "currentPrice": 20.00,
        "currency": "USD",
        "status": "ACTIVE",
        "quantityAvailable": 5,
    }
    async with http.post(services.product_url("/api/v1/products"), json=body) as response:
        product = await json_of(response, 201)
    nats_url = services.order.app[ORDER_SERVICE].settings().nats_url
    assert nats_url is not None

    async def created_stored() -> bool:
        return await stored_count(nats_url, PRODUCT_EVENTS) == 1

    # product.created leaves through the outbox relay, which lingers a moment once woken
    await eventually_async(created_stored, what="product.created relayed")

    async with http.post(
        services.order_url(f"/admin/products/{product['id']}/refresh"),
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        refreshed = await json_of(response, 200)
    assert refreshed["source"] == "event"

    applied = 'events_processed_total{outcome="ack",type="product.details_requested"} 1.0'
    duplicate = 'events_processed_total{outcome="duplicate",type="product.details_requested"} 1.0'
    await eventually_async(lambda: product_metric(services, applied), what="the request applied once")
    await eventually_async(
        lambda: product_metric(services, duplicate), what="the durable consumer's copy acked as a duplicate"
    )
    answered = 'events_published_total{outcome="ok",type="product.details_provided"} 1.0'
    assert await product_metric(services, answered)
    # product.created, the request and its one reply, each with its Nats-Msg-Id
    assert await stored_count(nats_url, PRODUCT_EVENTS) == 3


async def test_a_request_sent_while_the_product_service_was_down_is_answered_when_it_starts(
    nats_clean: NatsServer,
) -> None:
    request = details_request(
        "request-envelope-1", "p-unknown", "request-1", "product.details_provided.order-9"
    )
    nc = await nats.connect(nats_clean.url)
    try:
        replies = await nc.subscribe("product.details_provided.order-9")
        broker = JetStreamBroker(nats_clean.url)
        await broker.start()
        try:
            await broker.publish(PRODUCT_DETAILS_REQUESTED, encode(request), request.id)
        finally:
            await broker.close()

        settings = Settings(nats_url=nats_clean.url, instance_id="product-late")
        product = TestServer(create_product_app(settings, container=build_product_container(settings)))
        await product.start_server()  # its listener was not there when the request went out
        try:
            reply = decode((await replies.next_msg(timeout=10)).data)
        finally:
            await product.close()
    finally:
        await nc.close()
    assert isinstance(reply.data, ProductDetailsProvided)
    assert reply.data.request_id == "request-1"
    assert reply.data.product_details is None


async def test_a_request_naming_the_askers_own_inbox_is_answered_there(services: Services) -> None:
    """INTERFACE §5: the Product Service answers on the request's callbackEvent; one no stream
    holds (a requester's inbox, as a plain NATS client makes one) is published plainly."""
    async with services.http.post(
        services.product_url("/api/v1/products"),
        json={
            "name": "Lamp",
            "basePrice": 12.5,
            "currentPrice": 12.5,
            "currency": "USD",
            "status": "ACTIVE",
            "quantityAvailable": 3,
        },
    ) as response:
        product = await json_of(response, 201)
    nc = await nats.connect(services.nats_url)
    try:
        inbox = nc.new_inbox()
        replies = await nc.subscribe(inbox)
        await nc.flush()
        request = details_request("asker-request-1", product["id"], "asker-1", inbox)
        await nc.jetstream().publish(
            PRODUCT_DETAILS_REQUESTED, encode(request), headers={"Nats-Msg-Id": request.id}
        )
        message = await replies.next_msg(timeout=10)
    finally:
        await nc.close()
    reply = decode(message.data)
    assert isinstance(reply.data, ProductDetailsProvided)
    assert reply.data.request_id == "asker-1"
    assert reply.data.product_details is not None
    assert reply.data.product_details.name == "Lamp"


@pytest.mark.parametrize(
    "callback", ["$JS.API.STREAM.PURGE.ORDER_EVENTS", "$JS.API.STREAM.DELETE.ORDER_EVENTS", "order.created"]
)
async def test_a_request_naming_a_stream_or_server_subject_is_dead_lettered_not_answered(
    services: Services, callback: str
) -> None:
    """Answered with a plain publish on `$JS.API.STREAM.PURGE.<stream>`, the Product Service's own
    connection would empty that stream (nats-server acts on it, reply subject or not)."""
    nc = await nats.connect(services.nats_url)
    try:
        js = nc.jetstream()
        await js.publish("order.probe", b"kept", headers={"Nats-Msg-Id": "probe-1"})
        letters = await nc.subscribe(f"deadletter.{PRODUCT_DETAILS_REQUESTED}")
        await nc.flush()
        wire = json.loads(encode(details_request("bad-callback-1", "p-1", "asker-1", "_INBOX.x")))
        wire["data"]["callbackEvent"] = callback
        await js.publish(
            PRODUCT_DETAILS_REQUESTED, json.dumps(wire).encode(), headers={"Nats-Msg-Id": "bad-1"}
        )
        letter = json.loads((await letters.next_msg(timeout=10)).data)
        assert "data.callbackEvent must be" in letter["reason"]
        info = await js.stream_info(ORDER_EVENTS)
        assert info.state.messages == 1, "ORDER_EVENTS lost or gained messages"
    finally:
        await nc.close()
