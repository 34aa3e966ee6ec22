"""Price discrepancy between an order and the latest prices (the seed's §6.2), exact in Decimal."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

import attrs

from domain.orders import OrderItem

HUNDRED = Decimal(100)


@attrs.frozen
class PricingThresholds:
    """An item counts above `discrepancy_pct`; review above `review_item_pct` or `review_total_amount`."""

    discrepancy_pct: Decimal = Decimal("1.0")
    review_item_pct: Decimal = Decimal("10")
    review_total_amount: Decimal = Decimal("10")


@attrs.frozen
class PriceDiscrepancy:
    product_id: str
    order_price: Decimal
    current_price: Decimal
    difference: Decimal
    """|orderPrice - currentPrice| / currentPrice x 100, exact."""


@attrs.frozen
class DiscrepancyResult:
    discrepancies: tuple[PriceDiscrepancy, ...]
    total_difference: Decimal
    requires_review: bool

    @property
    def has_discrepancies(self) -> bool:
        return bool(self.discrepancies)


def difference_pct(order_price: Decimal, current_price: Decimal) -> Decimal:
    """Relative difference in percent. A current price of zero makes any non-zero price 100 % off."""
    if current_price == 0:
        return Decimal(0) if order_price == 0 else HUNDRED
    return abs(order_price - current_price) / current_price * HUNDRED


def find_discrepancies(
    items: Iterable[OrderItem],
    current_prices: Mapping[str, Decimal],
    thresholds: PricingThresholds,
) -> DiscrepancyResult:
    """Compare each item with its product's current price; items with no known price are skipped."""
    discrepancies: list[PriceDiscrepancy] = []
    total = Decimal("0.00")
    for item in items:
        current = current_prices.get(item.product_id)
        if current is None:
            continue
        difference = difference_pct(item.unit_price, current)
        if difference > thresholds.discrepancy_pct:
            discrepancies.append(PriceDiscrepancy(item.product_id, item.unit_price, current, difference))
            total += (current - item.unit_price) * item.quantity
    requires_review = abs(total) > thresholds.review_total_amount or any(
        d.difference > thresholds.review_item_pct for d in discrepancies
    )
    return DiscrepancyResult(tuple(discrepancies), total, requires_review)
