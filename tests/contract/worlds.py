"""Both services built by their own composition roots on in-memory adapters, to consume and produce events.

`OrderWorld` and `ProductWorld` run a service's use cases in an event loop of their own (Pact
calls message handlers synchronously); `ServedProductService` serves the reference Product
Service over HTTP on a free loopback port, in a thread of its own.
"""

from __future__ import annotations

import abc
import asyncio
import json
import threading
from collections.abc import Callable, Coroutine, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import attrs
from aiohttp import web
from dependency_injector import providers
from pact import Pact
from pact.types import Message

from adapters.memory.broker import InMemoryBroker, StoredMessage
from adapters.wire.event_json import decode
from application.catalog import NewProduct
from application.create_order import CreateOrder
from domain.events import Envelope
from domain.orders import Order, OrderLine
from domain.products import Product, ProductStatus
from entrypoints.apps import build_order_container, build_product_container, create_product_app
from entrypoints.consumers import EventConsumer, EventHandler
from entrypoints.containers import OrderService, ProductService
from entrypoints.event_routing import order_service_handlers, product_service_handlers
from entrypoints.http import product_api
from entrypoints.settings import Settings

T = TypeVar("T")

JSON = "application/json"
RELAY_PATIENCE_S = 5.0

CHAIR = NewProduct(
    name="Ergonomic Office Chair",
    base_price=Decimal("249.99"),
    current_price=Decimal("249.99"),
    currency="USD",
    status=ProductStatus.ACTIVE,
    quantity_available=12,
)
"""The demo catalog's office chair, as a new product for the reference Product Service."""


@attrs.define
class FakeDelivery:
    """One delivery of a message as the broker hands it to an EventConsumer; records how it settled."""

    subject: str
    data: bytes
    attempt: int = 1
    outcome: str | None = None

    async def ack(self) -> None:
        self.outcome = "ack"

    async def nak(self, delay_s: float) -> None:
        self.outcome = f"nak (retry in {delay_s}s)"

    async def term(self) -> None:
        self.outcome = "term (dead-lettered)"


Producers = dict[str, Callable[..., Message] | Message | bytes]
"""Pact message producers by the description of the interaction that expects the message."""


class StubProductLookup:
    """The Order Service's ProductLookup port answering from a dict: no Product Service needed."""

    def __init__(self) -> None:
        self.products: dict[str, Product] = {}

    async def get_product(self, product_id: str) -> Product | None:
        return self.products.get(product_id)

    async def get_products(self, product_ids: Sequence[str]) -> dict[str, Product]:
        return {pid: self.products[pid] for pid in product_ids if pid in self.products}


def as_pact_message(stored: StoredMessage) -> Message:
    """A message as it went to the broker: the encoded envelope, with its subject as metadata."""
    return Message(contents=stored.data, metadata={"subject": stored.subject}, content_type=JSON)


async def relay_and_take(
    service: OrderService | ProductService, subject: str, since: int = 0
) -> StoredMessage:
    """Run the service's outbox relay until something reaches the broker on `subject`; the latest.

    Polls: a served app's own relay loop may hold the relay lease at that moment.
    """
    broker: InMemoryBroker = service.core.broker()
    deadline = asyncio.get_running_loop().time() + RELAY_PATIENCE_S
    while True:
        await service.relay()()
        published = [m for m in broker.messages[since:] if m.subject == subject]
        if published:
            return published[-1]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"nothing was published on {subject}")
        await asyncio.sleep(0.01)


class World(abc.ABC):
    """One service on in-memory adapters with an event loop of its own."""

    service: OrderService | ProductService

    def __init__(self) -> None:
        self._runner = asyncio.Runner()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(work)

    def close(self) -> None:
        self._runner.close()

    @property
    def broker(self) -> InMemoryBroker:
        broker: InMemoryBroker = self.service.core.broker()
        return broker

    @abc.abstractmethod
    def handlers(self) -> dict[str, EventHandler]:
        """The service's event routing: what its consumers do with each event type."""

    def consume(self, pact: Pact) -> None:
        """Hand every message of `pact` to the service's real EventConsumer; fail unless each is acked."""
        consumer = EventConsumer(
            name="contract-test",
            handlers=self.handlers(),
            broker=self.broker,
            processed=self.service.processed(),
            metrics=self.service.core.metrics(),
            clock=self.service.core.clock(),
        )
        delivered: list[FakeDelivery] = []

        def handle(body: str | bytes | None, metadata: dict[str, object]) -> None:
            data = body if isinstance(body, bytes) else str(body).encode()
            delivery = FakeDelivery(subject=str(metadata["subject"]), data=data)
            delivered.append(delivery)
            self.run(consumer(delivery))
            if delivery.outcome != "ack":
                reasons = [
                    json.loads(m.data)["reason"]
                    for m in self.broker.messages
                    if m.subject.startswith("deadletter.")
                ]
                raise AssertionError(f"the consumer did not ack but {delivery.outcome}: {reasons}")

        errors = pact.verify(handle, "Async", raises=False)
        if errors:
            raise AssertionError("the consumer refused the pact's message:\n" + "\n".join(map(str, errors)))
        assert delivered, "the pact holds no message"

    def events(self, subject: str) -> list[Envelope]:
        """The envelopes that reached the broker on `subject`, after the outbox relay has run."""
        self.run(self.service.relay()())
        return [decode(m.data) for m in self.broker.on_subject(subject)]

    def message(self, subject: str) -> Message:
        """The latest message published on `subject`, as a Pact message producer returns it."""
        return as_pact_message(self.run(relay_and_take(self.service, subject)))


class OrderWorld(World):
    """The Order Service on in-memory adapters; the Product Service's REST API is a stub."""

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.lookup = StubProductLookup()
        self.service: OrderService = build_order_container(Settings(instance_id="contract", **settings))
        self.service.product_client.override(providers.Object(self.lookup))

    def handlers(self) -> dict[str, EventHandler]:
        return order_service_handlers(self.service.reactions(), self.service.pending())

    def place_order(self, product: Product, quantity: int) -> Order:
        """Order `product` through CreateOrderHandler (which also leaves it in the cache)."""
        self.lookup.products[product.id] = product
        command = CreateOrder(user_id="u-1", lines=(OrderLine(product.id, quantity),))
        return self.run(self.service.create_order()(command)).order

    def open_request(self, request_id: str) -> asyncio.Future[Sequence[Product | None]]:
        """A request waiting for its reply, as RefreshProductNow leaves one while it waits."""

        async def open_() -> asyncio.Future[Sequence[Product | None]]:
            return self.service.pending().open(request_id)

        return self.run(open_())

    def cached(self, product_id: str) -> Product:
        found: Product | None = self.run(self.service.cache().get_many([product_id])).get(product_id)
        assert found is not None, f"{product_id} is not in the cache"
        return found

    def order(self, order_id: str) -> Order:
        found: Order | None = self.run(self.service.orders().get(order_id))
        assert found is not None
        return found


class ProductWorld(World):
    """The reference Product Service's use cases on in-memory adapters."""

    def __init__(self) -> None:
        super().__init__()
        self.service: ProductService = build_product_container(Settings(instance_id="contract"))

    def handlers(self) -> dict[str, EventHandler]:
        return product_service_handlers(self.service.catalog(), self.service.answer())

    def add_product(self, product_id: str, **changes: Any) -> Product:
        added: Product = self.run(
            self.service.catalog().create(attrs.evolve(CHAIR, id=product_id, **changes))
        )
        return added

    def product(self, product_id: str) -> Product:
        found: Product = self.run(self.service.catalog().get(product_id))
        return found


class ServedProductService:
    """`create_product_app` (in-memory adapters) on a free loopback port, in a thread of its own."""

    def __init__(self) -> None:
        self.app = create_product_app(Settings(instance_id="contract-provider"))
        self.service: ProductService = self.app[product_api.PRODUCT_SERVICE]
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(self.app)
        self._thread = threading.Thread(target=self._loop.run_forever, name="product-service", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.call(self._runner.setup())
        self.call(web.TCPSite(self._runner, "127.0.0.1", 0).start())
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        self.call(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the service's loop (state handlers and producers run in Pact's threads)."""
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    def produce(self, subject: str, work: Coroutine[Any, Any, object]) -> Message:
        """Do `work` on the service and take what it published on `subject` because of it."""
        return self.call(self._produce(subject, work))

    async def _produce(self, subject: str, work: Coroutine[Any, Any, object]) -> Message:
        broker: InMemoryBroker = self.service.core.broker()
        since = len(broker.messages)
        await work
        return as_pact_message(await relay_and_take(self.service, subject, since))
