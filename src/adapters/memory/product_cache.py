"""In-memory product cache with TTL and newest-version-wins writes."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import attrs

from adapters.memory.faults import Outage
from application.ports import CachePut, Clock, StockChange
from domain.errors import CacheUnavailable
from domain.events import PriceChanged
from domain.products import Product, ProductStatus


@attrs.frozen
class _Entry:
    product: Product
    expires_at: float
    partial: bool
    """Patched from events carrying one aspect of a change: the whole snapshot of its version
    replaces it (the Redis entry's `"partial": true`)."""
    price_version: int
    """The version whose price change the prices are from: the entry's own for a whole snapshot,
    kept through the patches that change no price (the Redis entry's `priceVersion`)."""


@attrs.define
class InMemoryProductCache:
    clock: Clock
    ttl_s: float
    outage: Outage = attrs.field(factory=lambda: Outage(CacheUnavailable))
    _entries: dict[str, _Entry] = attrs.field(factory=dict, init=False)

    def _live(self, product_id: str) -> Product | None:
        entry = self._live_entry(product_id)
        return None if entry is None else entry.product

    def _live_entry(self, product_id: str) -> _Entry | None:
        entry = self._entries.get(product_id)
        if entry is None:
            return None
        if entry.expires_at <= self.clock.monotonic():
            del self._entries[product_id]
            return None
        return entry

    async def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]:
        self.outage.check()
        found = {pid: self._live(pid) for pid in product_ids}
        return {pid: p for pid, p in found.items() if p is not None}

    async def put_many(self, products: Sequence[Product], *, partial: bool = False) -> None:
        self.outage.check()
        for product in products:
            await self.put(product, partial=partial)

    async def patch_prices(self, changes: Sequence[PriceChanged]) -> dict[str, Decimal | None]:
        self.outage.check()
        newer: dict[str, Decimal | None] = {}
        for change in changes:
            entry = self._live_entry(change.product_id)
            self._patch_over_previous(
                change.product_id,
                entry,
                change.version,
                change.version,
                current_price=change.new_price,
                base_price=change.base_price,
            )
            if entry is not None and entry.product.version > change.version:
                price_is_newer = entry.price_version >= change.version
                newer[change.product_id] = entry.product.current_price if price_is_newer else None
        return newer

    async def patch_stock(self, changes: Sequence[StockChange]) -> set[str]:
        self.outage.check()
        behind: set[str] = set()
        for change in changes:
            entry = self._live_entry(change.product_id)
            if entry is None:
                continue
            cached = entry.product
            status_agrees = (cached.status is ProductStatus.ACTIVE and change.quantity_available > 0) == (
                change.available
            )
            if cached.version < change.version - 1 or (
                _patchable(entry, change.version) and not status_agrees
            ):
                behind.add(change.product_id)  # the whole snapshot is needed
                continue
            self._patch_over_previous(
                change.product_id,
                entry,
                change.version,
                entry.price_version,
                quantity_available=change.quantity_available,
                updated_at=change.updated_at,
            )
        return behind

    def _patch_over_previous(
        self, product_id: str, entry: _Entry | None, version: int, price_version: int, **fields: Any
    ) -> None:
        """`fields` and `version` stored as a partial snapshot when `entry` (the live one) holds
        the version just before it, or a partial one of that version (the scripts' `patchable`)."""
        if entry is not None and _patchable(entry, version):
            self._entries[product_id] = _Entry(
                attrs.evolve(entry.product, version=version, **fields),
                self.clock.monotonic() + self.ttl_s,
                partial=True,
                price_version=price_version,
            )

    async def put(self, product: Product, *, partial: bool = False) -> CachePut:
        self.outage.check()
        entry = self._live_entry(product.id)
        price_version = product.version
        if entry is not None:
            stored = entry.product
            same_but_completes = stored.version == product.version and entry.partial and not partial
            if stored.version >= product.version and not same_but_completes:
                if stored.version == product.version:
                    # told about the product all the same: the entry lives on (a newer one does
                    # not: a version no answer reaches, forged or not, leaves with its TTL)
                    self._entries[product.id] = attrs.evolve(
                        entry, expires_at=self.clock.monotonic() + self.ttl_s
                    )
                newer_partial = stored.version > product.version and entry.partial and not partial
                return CachePut.PATCHED_PAST if newer_partial else CachePut.KEPT
            if partial:
                price_version = entry.price_version  # a partial snapshot changes no price
        self._entries[product.id] = _Entry(
            product, self.clock.monotonic() + self.ttl_s, partial=partial, price_version=price_version
        )
        return CachePut.STORED

    async def active_ids(self) -> list[str]:
        self.outage.check()
        live = (self._live(pid) for pid in list(self._entries))
        return [p.id for p in live if p is not None and p.status is ProductStatus.ACTIVE]


def _patchable(entry: _Entry, version: int) -> bool:
    return entry.product.version == version - 1 or (entry.product.version == version and entry.partial)
