"""Use cases: the Order Service's reactions to product events (INTERFACE §5)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

import attrs

from application.flagging import OrderFlagger
from application.ports import CachePut, ProductCache, StockChange
from application.pricing_validation import RevalidateOnPriceChange
from application.snapshot_requests import AskForSnapshot
from domain.events import AvailabilityChanged, PriceChanged, ProductDiscontinued
from domain.orders import OrderFlag
from domain.products import Product, ProductStatus

log = logging.getLogger(__name__)


@attrs.frozen
class ProductEventReactions:
    cache: ProductCache
    flagger: OrderFlagger
    revalidate: RevalidateOnPriceChange
    ask_for_snapshot: AskForSnapshot

    async def snapshot_arrived(self, product: Product, *, one_of_a_sweep: bool = False) -> None:
        """product.created / product.updated / *_details_provided: newest version wins.

        A snapshot overtaken by events patched over an older version (a PATCH of name and stock
        publishes both at one version; its stock event may be applied first, and a reservation
        on top of it) finds a newer partial entry, which may lack what only the snapshot carried,
        such as a new name: the current whole snapshot is asked for. Its answer, at the Product
        Service's current version, completes or replaces that entry; should it be overtaken in
        turn, it asks again. The snapshots of a refresh sweep (`one_of_a_sweep`) do not ask: the
        events newer than a sweep's answer are told one by one, each asking for itself.

        Only a discontinued snapshot asks, when it was not stored, whether a newer one is there:
        for any other the answer changes nothing (a refresh of an unchanged product is one round
        trip, not two)."""
        outcome = await self.cache.put(product)
        if outcome is CachePut.PATCHED_PAST and not one_of_a_sweep:
            log.info(
                "product %s: version %s arrived after events patched a newer one, asking for it",
                product.id,
                product.version,
            )
            await self.ask_for_snapshot(product.id)
        if product.status is not ProductStatus.DISCONTINUED:
            return
        if outcome is not CachePut.STORED and await self._superseded(product.id, product.version):
            return
        await self.flagger.flag_orders_holding(product.id, OrderFlag.DISCONTINUED_PRODUCT)

    async def price_changed(self, event: PriceChanged) -> None:
        """Patch the cache, then re-validate open orders at the newest price known.

        Each subject has its own consumer, so later events of the product may be applied
        before this one; the price change must still re-validate the orders (flags are only
        ever added), at the price of the newest version cached when that is newer.
        """
        await self.prices_changed([event])

    async def prices_changed(self, events: Sequence[PriceChanged]) -> None:
        """`price_changed` of several products at once: the patches in one cache step (which
        tells the newer prices cached), then the orders looked up in one step. Events of one
        product are applied one after the other, as they would be alone."""
        if len({event.product_id for event in events}) < len(events):
            for event in events:
                await self._apply_prices([event])
            return
        await self._apply_prices(events)

    async def _apply_prices(self, events: Sequence[PriceChanged]) -> None:
        """A newer partial entry's price may predate the change (the cache cannot tell it is
        newer): the orders are re-validated at the change's price, and the whole snapshot is
        asked for (the entry may miss the change, and no older whole snapshot replaces it any
        more). A late change under newer prices re-validates at those."""
        newer = await self.cache.patch_prices(events)
        await self.revalidate.each(
            {
                event.product_id: event.new_price if (price := newer.get(event.product_id)) is None else price
                for event in events
            }
        )
        for product_id in sorted(pid for pid, price in newer.items() if price is None):
            log.info(
                "product %s: a price change older than its partial cache entry, asking for it", product_id
            )
            await self.ask_for_snapshot(product_id)

    async def discontinued(self, event: ProductDiscontinued) -> None:
        cached = await self._patch_cached(
            event.product_id,
            event.version,
            lambda p: attrs.evolve(p, status=ProductStatus.DISCONTINUED, version=event.version),
        )
        if cached is not None and cached.version > event.version:
            return  # a newer version is known: it says whether the product is still discontinued
        await self.flagger.flag_orders_holding(event.product_id, OrderFlag.DISCONTINUED_PRODUCT)

    async def availability_changed(self, event: AvailabilityChanged, changed_at: datetime) -> None:
        """Patch the stock; `changed_at` (the event's timestamp) is the product's new `updatedAt`.

        A stock reservation is told by this event alone (no `product.updated` follows), so when
        the cache is more than one version behind it, the whole snapshot is asked for: without
        it the cache would keep the old stock until the product next changes.
        """
        await self.stocks_changed([(event, changed_at)])

    async def stocks_changed(self, events: Sequence[tuple[AvailabilityChanged, datetime]]) -> None:
        """`availability_changed` of several events at once: the patches in one cache step, no
        snapshot read, decoded or encoded here. Events of one product apply in version order."""
        changes = sorted(
            (
                StockChange(
                    event.product_id, event.quantity_available, event.version, changed_at, event.available
                )
                for event, changed_at in events
            ),
            key=lambda change: change.version,
        )
        for product_id in sorted(await self.cache.patch_stock(changes)):
            log.info("product %s: its stock change needs the whole snapshot, asking for it", product_id)
            await self.ask_for_snapshot(product_id)

    async def _patch_cached(
        self, product_id: str, version: int, change: Callable[[Product], Product]
    ) -> Product | None:
        """Apply a partial event only on top of the version just before it; the snapshot read.

        A partial event carries one aspect of a change; the full snapshot travels in the
        `product.updated` of the same version. Applying it over an older snapshot would stamp
        stale fields with the new version, so then we leave the cache to that snapshot.
        """
        cached = await self._cached(product_id)
        await self._patch(cached, version, change)
        return cached

    async def _cached(self, product_id: str) -> Product | None:
        return (await self.cache.get_many([product_id])).get(product_id)

    async def _patch(
        self, cached: Product | None, version: int, change: Callable[[Product], Product]
    ) -> None:
        if cached is not None and cached.version == version - 1:
            await self.cache.put(change(cached), partial=True)

    async def _superseded(self, product_id: str, version: int) -> bool:
        """True when the cache holds a strictly newer version (an equal one is a redelivery)."""
        cached = (await self.cache.get_many([product_id])).get(product_id)
        return cached is not None and cached.version > version
