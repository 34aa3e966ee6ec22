"""The HTTP JSON wire of both services: products, orders, discrepancy results."""

from __future__ import annotations

from typing import Any

from adapters.wire.converter import make_converter
from domain.orders import Order
from domain.pricing import DiscrepancyResult
from domain.products import Product

REQUESTS = make_converter(forbid_extra_keys=True)
"""Bodies sent to us: an unknown field is a mistake worth a 400."""

RESPONSES = make_converter(forbid_extra_keys=False)
"""Bodies we read from a peer: extra fields are tolerated so the peer can grow."""

PERCENT_PLACES = 4


def product_to_wire(product: Product) -> dict[str, Any]:
    wire: dict[str, Any] = RESPONSES.unstructure(product)
    return wire


def order_to_wire(order: Order) -> dict[str, Any]:
    wire: dict[str, Any] = RESPONSES.unstructure(order)
    return wire


def discrepancy_to_wire(result: DiscrepancyResult) -> dict[str, Any]:
    return {
        "hasDiscrepancies": result.has_discrepancies,
        "discrepancies": [
            {
                "productId": d.product_id,
                "orderPrice": d.order_price,
                "currentPrice": d.current_price,
                "difference": round(d.difference, PERCENT_PLACES),
            }
            for d in result.discrepancies
        ],
        "totalDifference": result.total_difference,
        "requiresReview": result.requires_review,
    }
