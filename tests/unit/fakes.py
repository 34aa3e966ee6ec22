"""Hand-written fakes implementing the application's ports (the in-memory adapters are the others)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from domain.errors import EventBusUnavailable, ProductServiceUnavailable
from domain.events import Envelope
from domain.products import Product

START = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


class ManualClock:
    """The Clock port on a time that moves only when told to (or when something sleeps)."""

    def __init__(self, start: datetime = START) -> None:
        self._now = start
        self._monotonic = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds


class SequentialIds:
    """The IdGenerator port: `prefix-1`, `prefix-2`, ... so tests can name what comes next."""

    def __init__(self, prefix: str = "id") -> None:
        self.prefix = prefix
        self.count = 0

    def new_id(self) -> str:
        self.count += 1
        return f"{self.prefix}-{self.count}"


class FakeProductService:
    """The ProductLookup port: a catalog in a dict, and an `available` switch for outages."""

    def __init__(self, *products: Product) -> None:
        self.products: dict[str, Product] = {p.id: p for p in products}
        self.available = True
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def add(self, *products: Product) -> None:
        for product in products:
            self.products[product.id] = product

    async def _answer(self) -> None:
        await asyncio.sleep(0)  # a real call yields to the loop; concurrent callers interleave here
        if not self.available:
            raise ProductServiceUnavailable("Product Service is currently unavailable (fake outage)")

    async def get_product(self, product_id: str) -> Product | None:
        self.calls.append(("get_product", (product_id,)))
        await self._answer()
        return self.products.get(product_id)

    async def get_products(self, product_ids: Sequence[str]) -> dict[str, Product]:
        self.calls.append(("get_products", tuple(product_ids)))
        await self._answer()
        return {pid: self.products[pid] for pid in product_ids if pid in self.products}


class RecordingPublisher:
    """The EventPublisher port: keeps (subject, envelope) pairs; `down` makes it refuse like a dead bus."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Envelope]] = []
        self.down = False
        self.fail_after: int | None = None
        self.ack_turns = 0
        """Loop turns a publish waits for its ack, as over a network; 0 answers at once."""
        self.in_flight = 0
        self.most_in_flight = 0

    async def announce(self, envelope: Envelope, subject: str | None = None) -> bool:
        """Nobody listens here: the request is stored at once, as when the copy could not go out."""
        return False

    async def publish(
        self, envelope: Envelope, subject: str | None = None, *, announced: bool = False
    ) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for _ in range(self.ack_turns):
                await asyncio.sleep(0)
            if self.down or (self.fail_after is not None and len(self.published) >= self.fail_after):
                raise EventBusUnavailable("simulated event bus outage")
            self.published.append((subject or envelope.type, envelope))
        finally:
            self.in_flight -= 1

    @property
    def envelopes(self) -> list[Envelope]:
        return [envelope for _, envelope in self.published]

    def of_type(self, event_type: str) -> list[Envelope]:
        return [e for e in self.envelopes if e.type == event_type]
