"""The ports: what the use cases need from the world, as typing.Protocol classes."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import attrs

from domain.events import Envelope, PriceChanged
from domain.orders import Order, OrderFlag
from domain.products import Product


class Clock(Protocol):
    """Tells the time (UTC, timezone-aware), measures durations and waits."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class IdGenerator(Protocol):
    """Mints unique ids for orders, events and requests."""

    def new_id(self) -> str: ...


class ProductLookup(Protocol):
    """The Product Service's REST API; raises ProductServiceUnavailable when it cannot answer."""

    async def get_product(self, product_id: str) -> Product | None: ...

    async def get_products(self, product_ids: Sequence[str]) -> dict[str, Product]: ...


@attrs.frozen
class StockChange:
    """A product's new stock at `version`, changed at `updated_at` (a product.availability_changed)."""

    product_id: str
    quantity_available: int
    version: int
    updated_at: datetime
    available: bool
    """As the event says: when it disagrees with the cached status, more than the stock changed."""


class CachePut(enum.Enum):
    """What `ProductCache.put` did with a snapshot."""

    STORED = "stored"
    """No newer version was cached, or a partial one of this version, which this one completes."""
    KEPT = "kept"
    """Not stored: the cache holds this version or a newer whole one."""
    PATCHED_PAST = "patched_past"
    """Not stored: the cache holds a newer partial entry, patched from events that overtook this
    snapshot. It may lack what only this snapshot carried (a new name, say): events patch their
    own fields over whatever version they find just before theirs."""


class ProductCache(Protocol):
    """Last known product snapshots; a newer version always wins. Raises CacheUnavailable."""

    async def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]: ...

    async def put(self, product: Product, *, partial: bool = False) -> CachePut:
        """Store unless a newer version is there, or the same version (unless that one was
        partial and this one is whole). Stored or not, the cached entry's TTL starts again: the
        Product Service has just told about the product (a refresh sweep keeps what it asks
        about cached, as the seed's `SET ... EX` on every update).

        `partial` marks a snapshot patched from an event carrying one aspect of a change: the
        `product.updated` of the same version, which carries all of it, replaces it. A partial
        snapshot changes no price (price changes go through `patch_prices`): it keeps the prices'
        version of the entry it replaces.
        """
        ...

    async def put_many(self, products: Sequence[Product], *, partial: bool = False) -> None:
        """`put` of each snapshot, in one round trip where the store allows."""
        ...

    async def patch_prices(self, changes: Sequence[PriceChanged]) -> dict[str, Decimal | None]:
        """Each change, in order, over the cached snapshot of the version just before it, or a
        partial one of its own version (its prices and version, stored as a partial snapshot);
        one step where the store allows.

        Returns, per product cached at a newer version than its change, that version's current
        price; None when that version is a partial entry whose prices are older than the change,
        or of an unknown version (patched from a snapshot older than the change: its price may
        predate it, and no whole snapshot of an older version replaces it any more). A product
        not cached, cached at the change's version, or further behind is left alone (the
        `product.updated` of the version carries the whole snapshot).
        """
        ...

    async def patch_stock(self, changes: Sequence[StockChange]) -> set[str]:
        """Each change, in order, over the cached snapshot of the version just before it (its
        stock, `updatedAt` and version, stored as a partial snapshot); one step where the store
        allows.

        Returns the ids of the products cached more than one version behind a change: those are
        left alone, for the caller to ask for their whole snapshot. A product not cached, or
        cached at the change's version or a newer one, is left alone too.
        """
        ...

    async def active_ids(self) -> list[str]: ...


@attrs.frozen
class IdempotencyRecord:
    key: str
    fingerprint: str
    order_id: str


class OrderStore(Protocol):
    """Orders, their product index and idempotency keys. Raises StoreUnavailable."""

    async def add(
        self, order: Order, outbox: Sequence[Envelope], idempotency: IdempotencyRecord | None
    ) -> IdempotencyRecord | None:
        """Store the order and its outbox entries at once.

        When `idempotency` names a key already taken, nothing is stored and the earlier record
        is returned instead.
        """
        ...

    async def get(self, order_id: str) -> Order | None: ...

    async def idempotency_record(self, key: str) -> IdempotencyRecord | None: ...

    async def ids_holding(self, product_id: str) -> list[str]: ...

    async def ids_holding_each(self, product_ids: Sequence[str]) -> dict[str, list[str]]:
        """`ids_holding` of each product, in one round trip where the store allows."""
        ...

    async def ids_flagged(self, flag: OrderFlag) -> list[str]: ...

    async def recent_ids(self, limit: int) -> list[str]: ...

    async def newest_of(self, order_ids: Sequence[str], limit: int) -> list[str]:
        """The newest `limit` of `order_ids` (by creation time, then id), oldest of them first
        (all of them for 0, as `recent_ids`); ids of no stored order are left out. Read from the
        time index, so a listing reads only the orders it returns."""
        ...

    async def add_flag(self, order_id: str, flag: OrderFlag) -> bool:
        """Flag an order; True when the flag is new."""
        ...


@attrs.frozen
class ProductChange:
    before: Product
    after: Product


class CommitResult(enum.Enum):
    COMMITTED = "committed"
    CONFLICT = "conflict"
    ALREADY_RESERVED = "already_reserved"


class ProductStore(Protocol):
    """The Product Service's own catalog. Raises StoreUnavailable."""

    async def get(self, product_id: str) -> Product | None: ...

    async def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]: ...

    async def create(self, product: Product, outbox: Sequence[Envelope]) -> bool:
        """Store a new product with its events; False when the id is taken."""
        ...

    async def commit(
        self,
        changes: Sequence[ProductChange],
        outbox: Sequence[Envelope],
        reservation_for: str | None = None,
    ) -> CommitResult:
        """Store every `after` and the events at once, only while each `before` is current.

        With `reservation_for`, also remember that this order's stock is reserved, and store
        nothing when it already was.
        """
        ...

    async def all_ids(self) -> list[str]: ...


class Outbox(Protocol):
    """Events stored with the state that caused them, waiting to be published."""

    async def add(self, envelopes: Sequence[Envelope]) -> None: ...

    async def pending(self, limit: int) -> list[Envelope]: ...

    async def remove(self, envelope_ids: Sequence[str]) -> None: ...

    async def count(self) -> int: ...

    def take_appended(self) -> list[Envelope]:
        """The entries this process appended since the last call, oldest first; the relay
        publishes them at once. (At most `APPENDED_KEPT`: the rest wait in the outbox.)"""
        ...


class EventPublisher(Protocol):
    """Publishes an envelope on a subject (the event type by default) and awaits the broker's ack."""

    async def publish(
        self, envelope: Envelope, subject: str | None = None, *, announced: bool = False
    ) -> None:
        """`announced`: its copy for the fast path went out already (`announce`): no second one."""
        ...

    async def announce(self, envelope: Envelope, subject: str | None = None) -> bool:
        """Only the copy for the fast path's listeners, at once, stored nowhere; False when it
        could not go out (never raises). The stored publish is still owed."""
        ...


class ProcessedEvents(Protocol):
    """Envelope ids whose effect is stored, so a redelivery has no second effect."""

    async def seen(self, event_id: str) -> bool: ...

    async def seen_among(self, event_ids: Sequence[str]) -> set[str]:
        """Those of `event_ids` that are remembered, asked in one look-up."""
        ...

    async def remember(self, event_id: str) -> None: ...

    async def remember_all(self, event_ids: Sequence[str]) -> None:
        """`remember` of each, in one step."""
        ...


class Lock(Protocol):
    """A lease held by one instance at a time (for scheduled work)."""

    async def acquire(self, name: str, ttl_s: float) -> bool: ...

    async def release(self, name: str) -> None: ...


class Telemetry(Protocol):
    """Business counters the use cases report (metrics live in an adapter)."""

    def price_discrepancies_found(self, count: int) -> None: ...

    def order_flagged(self, reason: OrderFlag) -> None: ...

    def cache_lookup(self, hits: int, misses: int) -> None: ...

    def async_request_finished(self, seconds: float, timed_out: bool) -> None: ...
