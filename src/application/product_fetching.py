"""Fresh product data from the Product Service, with the cache as the fallback when it is down."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import attrs

from application.ports import ProductCache, ProductLookup, Telemetry
from domain.errors import CacheUnavailable, ProductServiceUnavailable
from domain.orders import PriceSource
from domain.products import Product

log = logging.getLogger(__name__)


@attrs.frozen
class FetchedProducts:
    products: dict[str, Product]
    source: PriceSource


@attrs.frozen
class ProductFetcher:
    """Asks the Product Service first; when it is unavailable, answers from the cache or raises."""

    lookup: ProductLookup
    cache: ProductCache
    telemetry: Telemetry

    async def fetch(self, product_ids: Sequence[str]) -> FetchedProducts:
        ids = list(dict.fromkeys(product_ids))
        try:
            found = await self.lookup.get_products(ids)
        except ProductServiceUnavailable as unavailable:
            cached = await self.cached(ids)
            missing = [pid for pid in ids if pid not in cached]
            if missing:
                raise ProductServiceUnavailable(
                    details={"productIds": missing, "reason": unavailable.message}
                ) from unavailable
            return FetchedProducts(cached, PriceSource.CACHE)
        await self.remember(found.values())
        return FetchedProducts(found, PriceSource.PRODUCT_SERVICE)

    async def cached(self, product_ids: Sequence[str]) -> dict[str, Product]:
        """Cached snapshots; a cache failure counts as a miss (the cache never takes an order down)."""
        try:
            found = await self.cache.get_many(product_ids)
        except CacheUnavailable as error:
            log.warning("product cache unavailable, treated as a miss: %s", error.message)
            found = {}
        self.telemetry.cache_lookup(hits=len(found), misses=len(product_ids) - len(found))
        return found

    async def remember(self, products: Iterable[Product]) -> None:
        for product in products:
            try:
                await self.cache.put(product)
            except CacheUnavailable as error:
                log.warning("product cache unavailable, update skipped: %s", error.message)
                return
