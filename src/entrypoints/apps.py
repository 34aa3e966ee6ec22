"""Application factories: a complete aiohttp application per service (INTERFACE §7).

A factory opens nothing: adapters start and stop with the application through `cleanup_ctx`,
and each application gets its own container, so two built in one process share no state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from adapters.broker import Broker, ConsumerLag
from adapters.metrics import ServiceMetrics
from adapters.product_client import BREAKER_NAME
from adapters.redis.client import RedisClient
from entrypoints.background import BackgroundTasks, OutboxWakeup, relay_outbox_forever, run_on_schedule
from entrypoints.consumers import subscribe_consumers
from entrypoints.containers import OrderService, ProductService
from entrypoints.event_routing import (
    order_service_batch_handlers,
    order_service_consumers,
    order_service_fast_path,
    order_service_handlers,
    product_service_batch_handlers,
    product_service_consumers,
    product_service_fast_path,
    product_service_handlers,
)
from entrypoints.fast_path import ProcessedHere, listen_fast
from entrypoints.http import order_api, product_api
from entrypoints.http.errors import error_middleware
from entrypoints.http.lanes import prompt_lane_middleware
from entrypoints.http.observability import metrics_middleware
from entrypoints.http.ops import (
    BEFORE_SCRAPE,
    HEALTH,
    METRICS,
    OPENAPI,
    OUTBOX_WAKEUP,
    READINESS,
    Readiness,
    add_ops_routes,
    run_checks,
)
from entrypoints.http.parsing import MAX_BODY_BYTES
from entrypoints.logs import tagged_lifecycle
from entrypoints.openapi import order_openapi, product_openapi
from entrypoints.settings import Settings


def build_order_container(settings: Settings, broker: Broker | None = None) -> OrderService:
    container = OrderService()
    container.core.settings.override(settings)
    if broker is not None:
        container.core.broker.override(broker)
    return container


def build_product_container(settings: Settings, broker: Broker | None = None) -> ProductService:
    container = ProductService()
    container.core.settings.override(settings)
    if broker is not None:
        container.core.broker.override(broker)
    return container


def create_order_app(
    settings: Settings | None = None, *, container: OrderService | None = None
) -> web.Application:
    settings = settings or Settings.from_env()
    service = container or build_order_container(settings)
    metrics = service.core.metrics()
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[metrics_middleware(metrics, "order-service"), prompt_lane_middleware, error_middleware],
    )
    app[order_api.ORDER_SERVICE] = service
    app[order_api.BACKGROUND] = BackgroundTasks()
    app[OUTBOX_WAKEUP] = OutboxWakeup()
    app[METRICS] = metrics
    app[READINESS] = Readiness()
    app[OPENAPI] = order_openapi()
    app[HEALTH] = lambda: order_health(app)
    app[BEFORE_SCRAPE] = lambda: order_before_scrape(service, metrics)
    app.router.add_routes(order_api.routes)
    add_ops_routes(app)
    app.cleanup_ctx.append(tagged_lifecycle("order-service", order_lifecycle))
    return app


_BREAKER_WORDS = {"opened": "open", "half-opened": "half-open"}
"""purgatory's state names as the README and the metric's help say them: closed, half-open, open."""


async def order_health(app: web.Application) -> dict[str, Any]:
    service = app[order_api.ORDER_SERVICE]
    client = service.product_client()
    breaker = await client.breaker_state()
    reachable = await client.ping()
    checks: dict[str, Any] = {
        "productService": {
            "status": "up" if breaker == "closed" and reachable else "degraded",
            "reachable": reachable,
            "circuitBreaker": _BREAKER_WORDS.get(breaker, breaker),
        },
        "outbox": {"pending": await _safe_count(service.outbox())},
        "consumerLag": _lag_report(await _safe_lag(service.core.broker())),
        "pendingAsyncRequests": len(service.pending()),
    }
    checks.update(await _ready_checks(app))
    degraded = any(c.get("status") in ("down", "degraded") for c in checks.values() if isinstance(c, dict))
    return {
        "status": "degraded" if degraded else "ok",
        "service": "order-service",
        "instance": service.settings().instance_id,
        "checks": checks,
    }


async def _ready_checks(app: web.Application) -> dict[str, dict[str, Any]]:
    return await run_checks(app[READINESS])


async def order_before_scrape(service: OrderService, metrics: ServiceMetrics) -> None:
    """The backlog gauges, and the breaker's state as /health tells it: the breaker turns
    half-open when its reset timeout has passed, with no call to say so (purgatory notes the
    change at the next call), so the gauge is read when scraped, not only on its events."""
    await read_backlog_gauges(service.core.broker(), service.outbox(), metrics)
    metrics.breaker_changed(BREAKER_NAME, await service.product_client().breaker_state())


async def read_backlog_gauges(broker: Broker, outbox: Any, metrics: ServiceMetrics) -> None:
    """Consumer lag from the broker and the outbox backlog, read when Prometheus scrapes."""
    for name, lag in (await _safe_lag(broker)).items():
        metrics.consumer_pending.labels(consumer=name).set(lag.pending)
        metrics.consumer_ack_pending.labels(consumer=name).set(lag.ack_pending)
    pending = await _safe_count(outbox)
    if pending is not None:
        metrics.outbox_pending.set(pending)


async def _safe_lag(broker: Broker) -> dict[str, ConsumerLag]:
    try:
        return await broker.consumer_lag()
    except Exception:
        return {}


def _lag_report(lag: dict[str, ConsumerLag]) -> dict[str, dict[str, int]]:
    return {name: {"pending": v.pending, "ackPending": v.ack_pending} for name, v in sorted(lag.items())}


async def _safe_count(outbox: Any) -> int | None:
    try:
        count: int = await outbox.count()
    except Exception:
        return None
    return count


async def order_lifecycle(app: web.Application) -> AsyncIterator[None]:
    service = app[order_api.ORDER_SERVICE]
    settings = service.settings()
    broker = service.core.broker()
    client = service.product_client()
    await broker.start()
    await client.start()
    _watch_dependencies(app, settings, broker, service.redis_client)
    handlers = order_service_handlers(service.reactions(), service.pending())
    processed = ProcessedHere(service.processed())
    metrics = service.core.metrics()
    subscriptions = await listen_fast(
        broker, order_service_fast_path(settings.instance_id), handlers, processed, metrics
    )
    subscriptions += await subscribe_consumers(
        broker,
        order_service_consumers(settings.instance_id),
        handlers,
        processed,
        metrics,
        service.core.clock(),
        order_service_batch_handlers(service.reactions()),
    )
    app[READINESS].consumers_subscribed = True
    stop = asyncio.Event()
    loops = [
        asyncio.create_task(
            relay_outbox_forever(service.relay(), service.core.metrics(), stop, app[OUTBOX_WAKEUP])
        ),
        asyncio.create_task(
            run_on_schedule(settings.refresh_cron, service.refresh_all(), service.core.clock(), stop)
        ),
    ]
    try:
        yield
    finally:
        app[READINESS].consumers_subscribed = False
        stop.set()
        service.pending().fail_all()
        await app[order_api.BACKGROUND].cancel_all()
        await asyncio.gather(*loops, return_exceptions=True)
        for subscription in subscriptions:
            await subscription.stop()
        await processed.close()
        await client.close()
        await broker.close()
        if settings.redis_url:
            await service.redis_client().close()


def _watch_dependencies(
    app: web.Application, settings: Settings, broker: Broker, redis_client: Callable[[], RedisClient]
) -> None:
    """/ready checks Redis, NATS and the consumers bound on it where they are configured
    (in-memory mode has none of them: its subscriptions are bound once made)."""
    if settings.nats_url:
        app[READINESS].checks["nats"] = _broker_check(broker)
        app[READINESS].checks["consumers"] = _consumers_check(broker)
    if settings.redis_url:
        app[READINESS].checks["redis"] = _redis_check(redis_client())


def _redis_check(client: RedisClient) -> Any:
    async def check() -> dict[str, Any]:
        return {"status": "up" if await client.ping() else "down"}

    return check


def _broker_check(broker: Broker) -> Any:
    async def check() -> dict[str, Any]:
        return {"status": "up" if await broker.ping() else "down"}

    return check


def _consumers_check(broker: Broker) -> Any:
    async def check() -> dict[str, Any]:
        waiting = broker.waiting()
        return {"status": "down", "waiting": waiting} if waiting else {"status": "up"}

    return check


def create_product_app(
    settings: Settings | None = None, *, container: ProductService | None = None
) -> web.Application:
    settings = settings or Settings.from_env()
    service = container or build_product_container(settings)
    metrics = service.core.metrics()
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[
            metrics_middleware(metrics, "product-service"),
            prompt_lane_middleware,
            error_middleware,
        ],
    )
    app[product_api.PRODUCT_SERVICE] = service
    app[OUTBOX_WAKEUP] = OutboxWakeup()
    app[METRICS] = metrics
    app[READINESS] = Readiness()
    app[OPENAPI] = product_openapi()
    app[HEALTH] = lambda: product_health(app)
    app[BEFORE_SCRAPE] = lambda: read_backlog_gauges(service.core.broker(), service.outbox(), metrics)
    app.router.add_routes(product_api.routes)
    add_ops_routes(app)
    app.cleanup_ctx.append(tagged_lifecycle("product-service", product_lifecycle))
    return app


async def product_health(app: web.Application) -> dict[str, Any]:
    service = app[product_api.PRODUCT_SERVICE]
    checks: dict[str, Any] = {
        "outbox": {"pending": await _safe_count(service.outbox())},
        "consumerLag": _lag_report(await _safe_lag(service.core.broker())),
    }
    if service.settings().redis_url:
        tracked = service.tracked_products()
        checks["productTracking"] = {
            "live": tracked.live,
            "kept": len(tracked),
            "hits": tracked.hits,
            "reports": tracked.reports,
        }
    checks.update(await _ready_checks(app))
    degraded = any(c.get("status") == "down" for c in checks.values() if isinstance(c, dict))
    return {
        "status": "degraded" if degraded else "ok",
        "service": "product-service",
        "instance": service.settings().instance_id,
        "checks": checks,
    }


async def product_lifecycle(app: web.Application) -> AsyncIterator[None]:
    service = app[product_api.PRODUCT_SERVICE]
    redis_url = service.settings().redis_url
    broker = service.core.broker()
    await broker.start()
    if redis_url:
        await service.tracked_products().start()
    _watch_dependencies(app, service.settings(), broker, service.redis_client)
    handlers = product_service_handlers(service.catalog(), service.answer(), app[OUTBOX_WAKEUP].set)
    processed = ProcessedHere(service.processed())
    metrics = service.core.metrics()
    subscriptions = await listen_fast(broker, product_service_fast_path(), handlers, processed, metrics)
    subscriptions += await subscribe_consumers(
        broker,
        product_service_consumers(),
        handlers,
        processed,
        metrics,
        service.core.clock(),
        product_service_batch_handlers(service.catalog(), app[OUTBOX_WAKEUP].set),
    )
    app[READINESS].consumers_subscribed = True
    stop = asyncio.Event()
    relay = asyncio.create_task(
        relay_outbox_forever(service.relay(), service.core.metrics(), stop, app[OUTBOX_WAKEUP])
    )
    try:
        yield
    finally:
        app[READINESS].consumers_subscribed = False
        stop.set()
        await relay
        for subscription in subscriptions:
            await subscription.stop()
        await processed.close()
        await broker.close()
        if redis_url:
            await service.tracked_products().stop()
            await service.redis_client().close()
