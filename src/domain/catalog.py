"""The reference Product Service's rules: a change to a product yields the events that describe it."""

from __future__ import annotations

from datetime import datetime

import attrs

from domain.events import (
    AvailabilityChanged,
    EventData,
    PriceChanged,
    ProductDiscontinued,
    ProductUpdated,
)
from domain.products import Product, ProductPatch, ProductStatus


def change_product(product: Product, patch: ProductPatch, now: datetime) -> tuple[Product, list[EventData]]:
    """Apply `patch`; the version grows by one. An empty or no-op patch changes nothing."""
    changes = {
        f.name: getattr(patch, f.name)
        for f in attrs.fields(ProductPatch)
        if getattr(patch, f.name) is not None and getattr(patch, f.name) != getattr(product, f.name)
    }
    if not changes:
        return product, []
    changed = attrs.evolve(product, **changes, version=product.version + 1, updated_at=now)
    return changed, describe_change(product, changed)


def describe_change(before: Product, after: Product) -> list[EventData]:
    events: list[EventData] = [ProductUpdated(after.id, after)]
    if (before.current_price, before.base_price) != (after.current_price, after.base_price):
        events.append(
            PriceChanged(
                product_id=after.id,
                old_price=before.current_price,
                new_price=after.current_price,
                base_price=after.base_price,
                version=after.version,
            )
        )
    if after.status is ProductStatus.DISCONTINUED and before.status is not after.status:
        events.append(ProductDiscontinued(after.id, after.version))
    if before.quantity_available != after.quantity_available or before.is_available != after.is_available:
        events.append(
            AvailabilityChanged(
                product_id=after.id,
                available=after.is_available,
                quantity_available=after.quantity_available,
                version=after.version,
            )
        )
    return events


def reserve_stock(product: Product, quantity: int, now: datetime) -> tuple[Product, list[EventData]]:
    """Take `quantity` out of stock (never below zero); the change is told by availability_changed.

    A reservation changes the stock and nothing else, so its one event (INTERFACE §5) says all
    of it: consumers patch the snapshot they hold, stamped with the event's timestamp, instead
    of being sent the whole product again for every order.
    """
    remaining = max(product.quantity_available - quantity, 0)
    after, events = change_product(product, ProductPatch(quantity_available=remaining), now)
    return after, [event for event in events if isinstance(event, AvailabilityChanged)]
