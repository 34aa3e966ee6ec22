"""ProductFetcher writes fresh snapshots to the cache, but not the same version over and over."""

from __future__ import annotations

import attrs

from adapters.memory.product_cache import InMemoryProductCache
from adapters.metrics import ServiceMetrics
from application.product_fetching import REMEMBER_WINDOW_S, ProductFetcher
from domain.products import Product
from tests.unit.builders import CHAIR, a_product, newer
from tests.unit.fakes import FakeProductService, ManualClock


@attrs.define
class CountingCache(InMemoryProductCache):
    """The in-memory cache, counting the writes that reach it."""

    puts: list[tuple[str, int]] = attrs.field(factory=list)

    async def put(self, product: Product, *, partial: bool = False) -> bool:
        self.puts.append((product.id, product.version))
        return await super().put(product, partial=partial)


def rig() -> tuple[ProductFetcher, FakeProductService, CountingCache, ManualClock]:
    clock = ManualClock()
    cache = CountingCache(clock=clock, ttl_s=3600)
    service = FakeProductService()
    fetcher = ProductFetcher(lookup=service, cache=cache, telemetry=ServiceMetrics(), clock=clock)
    return fetcher, service, cache, clock


async def test_a_version_written_moments_ago_is_not_written_again() -> None:
    fetcher, service, cache, _ = rig()
    service.add(a_product(CHAIR))
    for _ in range(5):
        await fetcher.fetch([CHAIR])
    assert cache.puts == [(CHAIR, 1)]


async def test_a_newer_version_is_written_at_once() -> None:
    fetcher, service, cache, _ = rig()
    service.add(a_product(CHAIR))
    await fetcher.fetch([CHAIR])
    service.add(newer(a_product(CHAIR)))
    await fetcher.fetch([CHAIR])
    assert cache.puts == [(CHAIR, 1), (CHAIR, 2)]


async def test_the_same_version_is_written_again_after_the_window() -> None:
    fetcher, service, cache, clock = rig()
    service.add(a_product(CHAIR))
    await fetcher.fetch([CHAIR])
    clock.advance(REMEMBER_WINDOW_S + 0.1)
    await fetcher.fetch([CHAIR])
    assert cache.puts == [(CHAIR, 1), (CHAIR, 1)]
