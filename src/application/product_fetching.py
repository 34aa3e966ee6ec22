"""Fresh product data from the Product Service, with the cache as the fallback when it is down."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import attrs

from application.ports import Clock, ProductCache, ProductLookup, Telemetry
from domain.errors import CacheFallbackUnavailable, CacheUnavailable, ProductServiceUnavailable
from domain.orders import PriceSource
from domain.products import Product

log = logging.getLogger(__name__)

REMEMBER_WINDOW_S = 5.0
REMEMBERED_MAX = 100_000


@attrs.frozen
class FetchedProducts:
    products: dict[str, Product]
    source: PriceSource


@attrs.frozen
class ProductFetcher:
    """Asks the Product Service first; when it is unavailable, answers from the cache or raises
    ProductServiceUnavailable (CacheFallbackUnavailable when the cache could not be read)."""

    lookup: ProductLookup
    cache: ProductCache
    telemetry: Telemetry
    clock: Clock
    _remembered: dict[str, tuple[int, float]] = attrs.field(factory=dict, init=False)
    """Versions this fetcher wrote to the cache lately, by product id, with when."""

    async def fetch(self, product_ids: Sequence[str], *, remember: bool = True) -> FetchedProducts:
        """`remember=False`: the caller writes the fresh snapshots to the cache itself (`remember`),
        alongside its own work rather than before it."""
        ids = list(dict.fromkeys(product_ids))
        try:
            found = await self.lookup.get_products(ids)
        except ProductServiceUnavailable as unavailable:
            cached, cache_down = await self._cached(ids)
            missing = [pid for pid in ids if pid not in cached]
            if missing and cache_down is not None:
                # not a miss: no fallback could be read (Redis is down), which a caller may tell apart
                raise CacheFallbackUnavailable(
                    {"productIds": missing, "reason": unavailable.message, "cache": cache_down.message}
                ) from unavailable
            if missing:
                raise ProductServiceUnavailable(
                    details={"productIds": missing, "reason": unavailable.message}
                ) from unavailable
            return FetchedProducts(cached, PriceSource.CACHE)
        if remember:
            await self.remember(found.values())
        return FetchedProducts(found, PriceSource.PRODUCT_SERVICE)

    async def cached(self, product_ids: Sequence[str]) -> dict[str, Product]:
        """Cached snapshots; a cache failure counts as a miss (the cache never takes an order down)."""
        found, _ = await self._cached(product_ids)
        return found

    async def _cached(self, product_ids: Sequence[str]) -> tuple[dict[str, Product], CacheUnavailable | None]:
        """Cached snapshots, and the cache's failure when it could not be read (then none are found)."""
        try:
            found, down = await self.cache.get_many(product_ids), None
        except CacheUnavailable as error:
            log.warning("product cache unavailable, treated as a miss: %s", error.message)
            found, down = {}, error
        self.telemetry.cache_lookup(hits=len(found), misses=len(product_ids) - len(found))
        return found, down

    async def remember(self, products: Iterable[Product]) -> None:
        """Write fresh snapshots to the cache, skipping a version this fetcher wrote moments ago.

        Every order re-reads its products, mostly at versions already cached: writing them again
        would cost a round trip each for nothing (the cache keeps the newest version anyway).
        """
        now = self.clock.monotonic()
        if len(self._remembered) > REMEMBERED_MAX:
            self._remembered.clear()
        fresh = []
        for product in products:
            seen = self._remembered.get(product.id)
            if seen is not None and seen[0] >= product.version and now - seen[1] < REMEMBER_WINDOW_S:
                continue
            fresh.append(product)
        if not fresh:
            return
        try:
            await self.cache.put_many(fresh)
        except CacheUnavailable as error:
            log.warning("product cache unavailable, update skipped: %s", error.message)
            return
        for product in fresh:
            self._remembered[product.id] = (product.version, now)
