"""Redis test support: sample products, orders and events, both storage backends, a durable server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import attrs

from adapters.memory.order_store import InMemoryOrderStore
from adapters.memory.outbox import InMemoryOutbox
from adapters.memory.product_cache import InMemoryProductCache
from adapters.memory.product_store import InMemoryProductStore
from adapters.memory.small_ports import InMemoryLock, InMemoryProcessedEvents
from adapters.redis.client import RedisClient
from adapters.redis.keys import ORDER_SERVICE, PRODUCT_SERVICE, Keyspace
from adapters.redis.order_store import RedisOrderStore
from adapters.redis.outbox import RedisOutbox
from adapters.redis.product_cache import RedisProductCache
from adapters.redis.product_store import RedisProductStore
from adapters.redis.small_ports import RedisLock, RedisProcessedEvents
from adapters.system import SystemClock
from application.envelopes import DATA_VERSION
from application.ports import Lock, OrderStore, Outbox, ProcessedEvents, ProductCache, ProductStore
from domain.events import Envelope, EventData, ProductUpdated, event_type_of
from domain.orders import Order, OrderFlag, OrderItem, OrderStatus, PriceSource
from domain.products import Product, ProductStatus
from tests.integration.servers import RedisServer

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
"""Whole milliseconds: the wire keeps timestamps to the millisecond, so stored equals read back."""


def a_product(product_id: str = "p-1", **overrides: Any) -> Product:
    fields: dict[str, Any] = {
        "id": product_id,
        "name": f"Product {product_id}",
        "base_price": Decimal("249.99"),
        "current_price": Decimal("249.99"),
        "currency": "USD",
        "status": ProductStatus.ACTIVE,
        "quantity_available": 12,
        "version": 1,
        "updated_at": START,
    }
    fields.update(overrides)
    return Product(**fields)


def newer(product: Product, **changes: Any) -> Product:
    return attrs.evolve(product, version=product.version + 1, **changes)


def an_order(
    order_id: str = "o-1",
    product_ids: tuple[str, ...] = ("p-1",),
    created_at: datetime = START,
    flags: tuple[OrderFlag, ...] = (),
) -> Order:
    items = tuple(OrderItem(pid, None, f"Product {pid}", 3, Decimal("0.10")) for pid in product_ids)
    return Order(
        id=order_id,
        user_id="u-1",
        status=OrderStatus.CREATED,
        items=items,
        total_amount=sum((item.line_total for item in items), Decimal("0.00")),
        currency="USD",
        flags=flags,
        price_source=PriceSource.PRODUCT_SERVICE,
        created_at=created_at,
    )


def an_event(event_id: str, data: EventData | None = None, seconds: int = 0) -> Envelope:
    data = data or ProductUpdated("p-1", a_product())
    return Envelope(
        id=event_id,
        type=event_type_of(data),
        source="test",
        data_version=DATA_VERSION,
        timestamp=START + timedelta(seconds=seconds),
        correlation_id=f"corr-{event_id}",
        data=data,
    )


def order_created(order: Order) -> Envelope:
    return an_event(f"evt-{order.id}", order.created_event())


@dataclass(frozen=True)
class Backend:
    """Builds one port's adapter on one storage backend; a store comes with the outbox it writes."""

    name: str
    cache: Callable[[float], ProductCache]
    order_store: Callable[[], tuple[OrderStore, Outbox]]
    product_store: Callable[[], tuple[ProductStore, Outbox]]
    processed: Callable[[float], ProcessedEvents]
    lock: Callable[[], Lock]


def memory_backend() -> Backend:
    clock = SystemClock()

    def order_store() -> tuple[OrderStore, Outbox]:
        outbox = InMemoryOutbox()
        return InMemoryOrderStore(outbox=outbox), outbox

    def product_store() -> tuple[ProductStore, Outbox]:
        outbox = InMemoryOutbox()
        return InMemoryProductStore(outbox=outbox), outbox

    return Backend(
        name="memory",
        cache=lambda ttl_s: InMemoryProductCache(clock=clock, ttl_s=ttl_s),
        order_store=order_store,
        product_store=product_store,
        processed=lambda ttl_s: InMemoryProcessedEvents(clock=clock, ttl_s=ttl_s),
        lock=lambda: InMemoryLock(clock=clock),
    )


def redis_backend(client: RedisClient) -> Backend:
    orders, products = Keyspace(ORDER_SERVICE), Keyspace(PRODUCT_SERVICE)

    def order_store() -> tuple[OrderStore, Outbox]:
        outbox = RedisOutbox(client, orders)
        return RedisOrderStore(client, orders, outbox), outbox

    def product_store() -> tuple[ProductStore, Outbox]:
        outbox = RedisOutbox(client, products)
        return RedisProductStore(client, products, outbox), outbox

    return Backend(
        name="redis",
        cache=lambda ttl_s: RedisProductCache(client, orders, ttl_s),
        order_store=order_store,
        product_store=product_store,
        processed=lambda ttl_s: RedisProcessedEvents(client, orders, ttl_s),
        lock=lambda: RedisLock(client, orders),
    )


@dataclass(eq=False)
class DurableRedisServer(RedisServer):
    """A redis-server whose data survives a stop or a crash (AOF, fsync on every write)."""

    name: ClassVar[str] = "redis-server-aof"

    def _command(self) -> list[str]:
        return [*super()._command(), "--appendonly", "yes", "--appendfsync", "always"]


S = TypeVar("S", bound=RedisServer)


def running_for_a_module(server: S) -> Iterator[S]:
    """A module fixture's body: a server of the module's own (its tests stop and restart it)."""
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


async def running_and_empty(server: S) -> S:
    """Started again if a test left it stopped, and every key gone."""
    if not server.is_running:
        server.start()
    admin = RedisClient(server.url)
    try:
        await admin.redis.flushall()
    finally:
        await admin.close()
    return server
