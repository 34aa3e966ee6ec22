"""The Product Service client: timeouts, backoff retries, Retry-After, the circuit breaker, strict bodies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.metrics import ServiceMetrics
from adapters.product_client import (
    MAX_BATCH_CALLS_IN_FLIGHT,
    HttpProductClient,
    RetryPolicy,
    parse_retry_after,
)
from adapters.wire.converter import dumps
from adapters.wire.http_json import product_to_wire
from domain.errors import ProductServiceUnavailable

from .builders import CHAIR, DESK, a_product
from .polling import eventually

Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]] | float
"""(status, body[, headers]), or seconds to stall before the default reply."""


@attrs.define
class StubProductService:
    """Answers each call with the next scripted reply, then with `default`."""

    script: list[Reply] = attrs.field(factory=list)
    default: Reply = (200, None)
    arrivals: list[float] = attrs.field(factory=list)
    bodies: list[Any] = attrs.field(factory=list)
    paths: list[str] = attrs.field(factory=list)
    """Each call's path as the server's router decoded it."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.arrivals.append(time.perf_counter())
        self.paths.append(request.match_info["tail"])
        if request.can_read_body:
            self.bodies.append(await request.json())
        reply = self.script.pop(0) if self.script else self.default
        if isinstance(reply, float):
            await asyncio.sleep(reply)
            reply = self.default
        assert not isinstance(reply, float)
        status, body, *rest = reply
        headers = rest[0] if rest else {}
        raw = body if isinstance(body, bytes) else dumps(body)
        return web.Response(status=status, body=raw, content_type="application/json", headers=headers)

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]


@attrs.define
class Rig:
    stub: StubProductService
    server: TestServer
    metrics: ServiceMetrics

    def client(
        self, *, attempts: int = 4, interval_s: float = 0.02, threshold: int = 50, timeout_s: float = 1.0
    ) -> HttpProductClient:
        return HttpProductClient(
            base_url=str(self.server.make_url("")),
            timeout_s=timeout_s,
            retry=RetryPolicy(max_attempts=attempts, initial_interval_s=interval_s, max_interval_s=1.0),
            failure_threshold=threshold,
            reset_timeout_s=30.0,
            metrics=self.metrics,
        )


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    stub = StubProductService()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stub.handle)
    server = TestServer(app)
    await server.start_server()
    yield Rig(stub, server, ServiceMetrics())
    await server.close()


@pytest.fixture
async def started(rig: Rig) -> AsyncIterator[HttpProductClient]:
    client = rig.client()
    await client.start()
    yield client
    await client.close()


def wire(*products: Any) -> Any:
    return [product_to_wire(p) for p in products]


async def test_a_product_is_read(rig: Rig, started: HttpProductClient) -> None:
    rig.stub.default = (200, product_to_wire(a_product()))
    assert await started.get_product(CHAIR) == a_product()


@pytest.mark.parametrize("product_id", [".", "..", "a/b", "a b", "%2E", "?x=1", "#frag", "caf\u00e9"])
async def test_any_product_id_reaches_the_product_service_as_one_path_segment(
    rig: Rig, started: HttpProductClient, product_id: str
) -> None:
    rig.stub.default = (404, {"error": {"code": "product_not_found", "message": "m", "details": None}})
    assert await started.get_product(product_id) is None
    assert rig.stub.paths == [f"api/v1/products/{product_id}"]


async def test_404_is_no_product_and_not_retried(rig: Rig, started: HttpProductClient) -> None:
    rig.stub.default = (404, {"error": {"code": "product_not_found", "message": "m", "details": None}})
    assert await started.get_product("nope") is None
    assert len(rig.stub.arrivals) == 1


async def test_5xx_is_retried_with_backoff_on_the_configured_scale(
    rig: Rig, started: HttpProductClient
) -> None:
    rig.stub.script = [(503, None), (502, None), (500, None)]
    rig.stub.default = (200, product_to_wire(a_product()))
    assert await started.get_product(CHAIR) == a_product()
    assert len(rig.stub.arrivals) == 4
    # 20 ms, 40 ms, 80 ms plus jitter of the same order; never a second of jitter on top
    assert all(0.015 <= gap < 0.4 for gap in rig.stub.gaps), rig.stub.gaps


async def test_a_lookup_gives_up_after_max_attempts(rig: Rig, started: HttpProductClient) -> None:
    rig.stub.default = (500, None)
    with pytest.raises(ProductServiceUnavailable):
        await started.get_product(CHAIR)
    assert len(rig.stub.arrivals) == 4
    assert (
        rig.metrics.registry.get_sample_value(
            "product_service_requests_total", {"operation": "get_product", "outcome": "server_error"}
        )
        == 4
    )


async def test_other_4xx_are_never_retried(rig: Rig, started: HttpProductClient) -> None:
    rig.stub.default = (400, {"error": {}})
    with pytest.raises(ProductServiceUnavailable):
        await started.get_products([CHAIR])
    assert len(rig.stub.arrivals) == 1


async def test_429_waits_as_long_as_retry_after_says(rig: Rig, started: HttpProductClient) -> None:
    rig.stub.script = [(429, None, {"Retry-After": "0.3"})]
    rig.stub.default = (200, wire(a_product()))
    assert await started.get_products([CHAIR]) == {CHAIR: a_product()}
    assert rig.stub.gaps[0] >= 0.29


@pytest.mark.parametrize(
    ("retry_after", "calls"),
    [
        # the fifth audit: `Retry-After: 3600` held each order 90 s (4 calls, 30 s apart)
        ("3600", 1),
        # the re-check: `Retry-After: 7` four times held an order 21 s; 0.4 + 0.4 s are waited,
        # a third wait would take the lookup's waits past the longest backoff
        ("0.4", 3),
    ],
)
async def test_a_lookup_waits_for_429s_no_longer_than_the_longest_backoff_in_all(
    rig: Rig, retry_after: str, calls: int
) -> None:
    client = rig.client(attempts=4, interval_s=0.02)  # the longest backoff: 1 s
    await client.start()
    rig.stub.default = (429, None, {"Retry-After": retry_after})
    started = time.perf_counter()
    try:
        with pytest.raises(ProductServiceUnavailable):
            await client.get_products([CHAIR])
    finally:
        await client.close()
    assert time.perf_counter() - started < 1.0
    assert len(rig.stub.arrivals) == calls, "the lookup then calls no more"


NOW = 1_900_000_000.0  # 2030-03-17T17:46:40Z


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 0.5 ", 0.5),
        ("0", 0.0),
        (time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(NOW + 120)), 120.0),
        (time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(NOW - 120)), 0.0),  # already past
        ("-5", None),  # the usual backoff, not a call at once
        ("nan", None),
        ("inf", None),
        ("1e3", None),
        ("9" * 400, None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_rfc_9110_writes_it(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


async def test_a_slow_answer_times_out_and_is_retried(rig: Rig) -> None:
    client = rig.client(timeout_s=0.1, attempts=2)
    await client.start()
    rig.stub.script = [0.5]
    rig.stub.default = (200, product_to_wire(a_product()))
    try:
        assert await client.get_product(CHAIR) == a_product()
    finally:
        await client.close()
    assert len(rig.stub.arrivals) == 2


async def test_an_unreadable_body_is_unavailable_not_a_crash(rig: Rig, started: HttpProductClient) -> None:
    rig.stub.default = (200, b"<html>oops</html>")
    with pytest.raises(ProductServiceUnavailable, match="cannot read"):
        await started.get_product(CHAIR)
    rig.stub.default = (200, [{"id": CHAIR, "basePrice": "12"}])
    with pytest.raises(ProductServiceUnavailable, match="cannot read"):
        await started.get_products([CHAIR])


async def test_an_unreadable_answer_is_a_failed_call_retried_and_held_against_the_breaker(rig: Rig) -> None:
    """The fifth audit: a 200 HTML page counted as `success` and never opened the breaker."""
    client = rig.client(attempts=2, threshold=4)
    await client.start()
    rig.stub.default = (200, b"<html>oops</html>")
    try:
        with pytest.raises(ProductServiceUnavailable, match="cannot read"):
            await client.get_products([CHAIR])
        assert len(rig.stub.arrivals) == 2, "retried like a 5xx"
        with pytest.raises(ProductServiceUnavailable, match="cannot read"):
            await client.get_product(CHAIR)
        with pytest.raises(ProductServiceUnavailable, match="circuit open"):
            await client.get_product(CHAIR)
    finally:
        await client.close()

    def calls(operation: str, outcome: str) -> float | None:
        labels = {"operation": operation, "outcome": outcome}
        return rig.metrics.registry.get_sample_value("product_service_requests_total", labels)

    assert calls("get_products", "invalid_response") == 2
    assert calls("get_product", "invalid_response") == 2
    assert calls("get_products", "success") is None
    assert rig.metrics.registry.get_sample_value("circuit_breaker_state", {"name": "product-service"}) == 2


async def test_the_breaker_opens_after_the_threshold_and_stops_calling(rig: Rig) -> None:
    client = rig.client(attempts=1, threshold=2)
    await client.start()
    rig.stub.default = (500, None)
    try:
        for _ in range(2):
            with pytest.raises(ProductServiceUnavailable):
                await client.get_product(CHAIR)
        rig.stub.default = (200, product_to_wire(a_product()))
        with pytest.raises(ProductServiceUnavailable, match="circuit open"):
            await client.get_product(CHAIR)
        assert len(rig.stub.arrivals) == 2
        assert await client.breaker_state() == "opened"
        assert (
            rig.metrics.registry.get_sample_value("circuit_breaker_state", {"name": "product-service"}) == 2
        )
    finally:
        await client.close()


async def test_an_unreachable_service_is_unavailable(rig: Rig) -> None:
    client = rig.client(attempts=2)
    await client.start()
    await rig.server.close()
    try:
        with pytest.raises(ProductServiceUnavailable):
            await client.get_products([CHAIR])
    finally:
        await client.close()


async def test_batches_hold_at_most_100_ids_and_keep_only_what_was_asked(
    rig: Rig, started: HttpProductClient
) -> None:
    ids = [f"p-{n:03d}" for n in range(150)]
    rig.stub.script = [
        (200, wire(a_product("p-000"), a_product("stranger"))),
        (200, wire(a_product("p-149"))),
    ]
    found = await started.get_products(ids)
    assert sorted(found) == ["p-000", "p-149"]
    assert [len(body["ids"]) for body in rig.stub.bodies] == [100, 50]


async def test_concurrent_lookups_of_the_same_ids_share_one_call(
    rig: Rig, started: HttpProductClient
) -> None:
    rig.stub.script = [0.05]
    rig.stub.default = (200, wire(a_product(CHAIR), a_product(DESK)))
    first, second = await asyncio.gather(
        started.get_products([CHAIR, DESK]), started.get_products([DESK, CHAIR])
    )
    assert first == second == {CHAIR: a_product(CHAIR), DESK: a_product(DESK)}
    assert len(rig.stub.arrivals) == 1


async def test_a_cancelled_caller_does_not_cancel_the_others_sharing_its_call(
    rig: Rig, started: HttpProductClient
) -> None:
    rig.stub.script = [0.1]
    rig.stub.default = (200, wire(a_product(CHAIR)))
    first = asyncio.create_task(started.get_products([CHAIR]))
    await asyncio.sleep(0.02)
    second = asyncio.create_task(started.get_products([CHAIR]))
    await asyncio.sleep(0.02)
    first.cancel()
    assert await asyncio.wait_for(second, 2) == {CHAIR: a_product(CHAIR)}


async def test_concurrent_lookups_of_different_products_coalesce_into_one_batch_call(
    rig: Rig, started: HttpProductClient
) -> None:
    rig.stub.default = (200, wire(a_product(CHAIR), a_product(DESK)))
    chair, desk, both = await asyncio.gather(
        started.get_products([CHAIR]), started.get_products([DESK]), started.get_products([DESK, CHAIR])
    )
    assert chair == {CHAIR: a_product(CHAIR)}
    assert desk == {DESK: a_product(DESK)}
    assert both == {CHAIR: a_product(CHAIR), DESK: a_product(DESK)}
    assert len(rig.stub.arrivals) == 1


async def test_a_lookup_covered_by_a_call_in_flight_joins_it(rig: Rig, started: HttpProductClient) -> None:
    rig.stub.script = [0.1]
    rig.stub.default = (200, wire(a_product(CHAIR), a_product(DESK)))
    first = asyncio.create_task(started.get_products([CHAIR, DESK]))
    await asyncio.sleep(0.03)
    assert await started.get_products([DESK]) == {DESK: a_product(DESK)}
    assert await first == {CHAIR: a_product(CHAIR), DESK: a_product(DESK)}
    assert len(rig.stub.arrivals) == 1


async def test_an_idle_client_sends_a_lookup_at_once(rig: Rig, started: HttpProductClient) -> None:
    rig.stub.default = (200, wire(a_product(CHAIR)))
    await started.get_products([CHAIR])  # connection opened
    began = time.perf_counter()
    await started.get_products([CHAIR])
    assert rig.stub.arrivals[-1] - began < 0.05
    assert len(rig.stub.arrivals) == 2


async def test_lookups_made_while_the_calls_in_flight_are_at_their_limit_leave_together(
    rig: Rig, started: HttpProductClient
) -> None:
    rig.stub.script = [0.2] * MAX_BATCH_CALLS_IN_FLIGHT
    rig.stub.default = (200, wire(*(a_product(f"p-{n}") for n in range(10))))
    out = []
    for n in range(MAX_BATCH_CALLS_IN_FLIGHT):
        out.append(asyncio.create_task(started.get_products([f"p-{n}"])))
        for _ in range(3):
            await asyncio.sleep(0)  # each of those leaves in a batch of its own
    waiting = [started.get_products([f"p-{n}"]) for n in range(5, 9)]

    found = await asyncio.gather(*waiting, *out)

    assert [sorted(f) for f in found[:4]] == [["p-5"], ["p-6"], ["p-7"], ["p-8"]]
    assert sorted(rig.stub.bodies[-1]["ids"]) == ["p-5", "p-6", "p-7", "p-8"]
    assert len(rig.stub.arrivals) == MAX_BATCH_CALLS_IN_FLIGHT + 1
    assert min(rig.stub.arrivals[-1] - a for a in rig.stub.arrivals[:-1]) > 0.15, "sent once one returned"


async def test_lookups_stop_waiting_out_backoffs_once_the_breaker_opens(rig: Rig) -> None:
    """The second audit's outage: orders waited up to the whole retry schedule (~7.5 s), also
    those arriving after the breaker had opened, behind a batch call waiting to retry."""
    client = rig.client(attempts=4, interval_s=5.0, threshold=3)
    await client.start()
    rig.stub.default = (503, None)
    try:
        began = time.perf_counter()
        lookups = []
        for arrived in range(1, 4):
            lookups.append(asyncio.create_task(client.get_products([CHAIR])))
            # the last call failed: it waits 5 s to retry
            await eventually(lambda n=arrived: len(rig.stub.arrivals) >= n, within=2.0)
        outcomes = await asyncio.wait_for(asyncio.gather(*lookups, return_exceptions=True), 3.0)
        took = time.perf_counter() - began
    finally:
        await client.close()

    assert all(isinstance(o, ProductServiceUnavailable) for o in outcomes), outcomes
    assert len(rig.stub.arrivals) == 3, "a lookup does not share a call that waits to retry: it makes its own"
    assert took < 2.5, "the third failure opened the breaker: nobody waited out a 5 s backoff"
    assert await client.breaker_state() == "opened"


async def test_a_lookup_during_a_backoff_gets_its_own_answer(rig: Rig) -> None:
    """The Product Service is back while an earlier call waits to retry: a new lookup is answered now."""
    client = rig.client(attempts=2, interval_s=5.0)
    await client.start()
    rig.stub.script = [(503, None)]
    rig.stub.default = (200, wire(a_product(CHAIR)))
    try:
        first = asyncio.create_task(client.get_products([CHAIR]))
        await eventually(lambda: len(rig.stub.arrivals) == 1, within=2.0)
        assert await asyncio.wait_for(client.get_products([CHAIR]), 2.0) == {CHAIR: a_product(CHAIR)}
        assert not first.done(), "the first still waits out its backoff"
        first.cancel()
    finally:
        await client.close()
