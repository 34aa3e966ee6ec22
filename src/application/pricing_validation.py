"""Use cases: compare an order with the latest prices, and re-validate orders on a price change."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from decimal import Decimal

import attrs

from application.concurrency import all_or_cancel
from application.flagging import OrderFlagger
from application.ports import OrderStore
from application.product_fetching import ProductFetcher
from domain.errors import OrderNotFound
from domain.orders import Order, OrderFlag, OrderStatus, PriceSource
from domain.pricing import DiscrepancyResult, PricingThresholds, find_discrepancies

log = logging.getLogger(__name__)

READ_CHUNK = 100


@attrs.frozen
class ValidateOrderPricing:
    """The seed's §6.2: the Product Service's latest prices (the cache only when it is down)."""

    orders: OrderStore
    fetcher: ProductFetcher
    flagger: OrderFlagger
    thresholds: PricingThresholds

    async def __call__(self, order_id: str) -> DiscrepancyResult:
        return (await self.with_source(order_id))[0]

    async def with_source(self, order_id: str) -> tuple[DiscrepancyResult, PriceSource]:
        """The result and where its prices came from (`cache` while the Product Service is down)."""
        order = await self.orders.get(order_id)
        if order is None:
            raise OrderNotFound(order_id)
        fetched = await self.fetcher.fetch(list(order.product_ids))
        prices = {pid: p.current_price for pid, p in fetched.products.items()}
        return await review_if_needed(order, prices, self.thresholds, self.flagger), fetched.source


@attrs.frozen
class RevalidateOnPriceChange:
    """After `product.price_changed`, flag every CREATED order holding the product for review."""

    orders: OrderStore
    fetcher: ProductFetcher
    flagger: OrderFlagger
    thresholds: PricingThresholds

    async def __call__(self, product_id: str, new_price: Decimal) -> int:
        return await self._review_all(await self.orders.ids_holding(product_id), product_id, new_price)

    async def each(self, new_prices: Mapping[str, Decimal]) -> int:
        """As a call per product, the orders holding them looked up in one round trip; the
        products reviewed concurrently, as their events would be one by one (a batch must not
        take the sum of their times: it has one event's time budget)."""
        holding = await self.orders.ids_holding_each(list(new_prices))
        counts = await all_or_cancel(
            *(self._review_all(ids, pid, new_prices[pid]) for pid, ids in holding.items() if ids)
        )
        return sum(counts)

    async def _review_all(self, ids: list[str], product_id: str, new_price: Decimal) -> int:
        reviewed = 0
        for start in range(0, len(ids), READ_CHUNK):
            chunk = ids[start : start + READ_CHUNK]
            # Concurrent reads: a popular product's orders would take one round trip each.
            for order in await asyncio.gather(*(self.orders.get(order_id) for order_id in chunk)):
                reviewed += await self._review(order, product_id, new_price)
        return reviewed

    async def _review(self, order: Order | None, product_id: str, new_price: Decimal) -> bool:
        if order is None or order.status is not OrderStatus.CREATED:
            return False
        others = [pid for pid in order.product_ids if pid != product_id]
        cached = await self.fetcher.cached(others) if others else {}
        prices = {pid: p.current_price for pid, p in cached.items()}
        prices[product_id] = new_price
        result = await review_if_needed(order, prices, self.thresholds, self.flagger)
        return result.requires_review


async def review_if_needed(
    order: Order,
    prices: dict[str, Decimal],
    thresholds: PricingThresholds,
    flagger: OrderFlagger,
) -> DiscrepancyResult:
    result = find_discrepancies(order.items, prices, thresholds)
    flagger.telemetry.price_discrepancies_found(len(result.discrepancies))
    if result.has_discrepancies:
        log.info(
            "price discrepancy on order %s: %s items, total difference %s",
            order.id,
            len(result.discrepancies),
            result.total_difference,
        )
    if result.requires_review:
        await flagger.flag(order.id, OrderFlag.PRICE_REVIEW)
    return result
