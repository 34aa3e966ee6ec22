"""In-memory product cache with TTL and newest-version-wins writes."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import attrs

from adapters.memory.faults import Outage
from application.ports import Clock, StockChange
from domain.errors import CacheUnavailable
from domain.events import PriceChanged
from domain.products import Product, ProductStatus


@attrs.define
class InMemoryProductCache:
    clock: Clock
    ttl_s: float
    outage: Outage = attrs.field(factory=lambda: Outage(CacheUnavailable))
    _entries: dict[str, tuple[Product, float, bool]] = attrs.field(factory=dict, init=False)

    def _live(self, product_id: str) -> Product | None:
        entry = self._live_entry(product_id)
        return None if entry is None else entry[0]

    def _live_entry(self, product_id: str) -> tuple[Product, float, bool] | None:
        entry = self._entries.get(product_id)
        if entry is None:
            return None
        if entry[1] <= self.clock.monotonic():
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

    async def patch_prices(self, changes: Sequence[PriceChanged]) -> dict[str, Decimal]:
        self.outage.check()
        newer: dict[str, Decimal] = {}
        for change in changes:
            cached = await self._patch_over_previous(
                change.product_id,
                change.version,
                current_price=change.new_price,
                base_price=change.base_price,
            )
            if cached is not None and cached.version > change.version:
                newer[change.product_id] = cached.current_price
        return newer

    async def patch_stock(self, changes: Sequence[StockChange]) -> set[str]:
        self.outage.check()
        behind: set[str] = set()
        for change in changes:
            cached = await self._patch_over_previous(
                change.product_id,
                change.version,
                quantity_available=change.quantity_available,
                updated_at=change.updated_at,
            )
            if cached is not None and cached.version < change.version - 1:
                behind.add(change.product_id)
        return behind

    async def _patch_over_previous(self, product_id: str, version: int, **fields: Any) -> Product | None:
        """`fields` and `version` stored as a partial snapshot when the cache holds the version
        just before it; the cached snapshot as it was, either way."""
        cached = self._live(product_id)
        if cached is not None and cached.version == version - 1:
            await self.put(attrs.evolve(cached, version=version, **fields), partial=True)
        return cached

    async def put(self, product: Product, *, partial: bool = False) -> bool:
        self.outage.check()
        entry = self._live_entry(product.id)
        if entry is not None:
            stored, _, stored_partial = entry
            same_but_completes = stored.version == product.version and stored_partial and not partial
            if stored.version >= product.version and not same_but_completes:
                return False
        self._entries[product.id] = (product, self.clock.monotonic() + self.ttl_s, partial)
        return True

    async def active_ids(self) -> list[str]:
        self.outage.check()
        live = (self._live(pid) for pid in list(self._entries))
        return [p.id for p in live if p is not None and p.status is ProductStatus.ACTIVE]
