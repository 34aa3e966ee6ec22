"""Test data: products, orders and envelopes with sensible defaults, overridable by keyword."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from domain.events import Envelope, EventData, event_type_of
from domain.orders import Order, OrderItem, OrderStatus, PriceSource
from domain.products import Product, ProductStatus

from .fakes import START

CHAIR = "e8acc97f-c204-4c53-9c33-5d91a1061618"
DESK = "5f1c2a9e-7d3b-4f60-9a8e-2b6c1d0e9f47"
LAMP = "7a3e5b1d-2c4f-4d8a-b6e0-1f9c8d7e6a5b"


def a_product(product_id: str = CHAIR, **overrides: Any) -> Product:
    fields: dict[str, Any] = {
        "id": product_id,
        "name": f"Product {product_id[:8]}",
        "base_price": Decimal("249.99"),
        "current_price": Decimal("249.99"),
        "currency": "USD",
        "status": ProductStatus.ACTIVE,
        "quantity_available": 12,
        "version": 1,
        "updated_at": START,
    }
    fields.update(overrides)
    return Product(**fields)


def newer(product: Product, **changes: Any) -> Product:
    """The next version of `product` with `changes`."""
    return attrs.evolve(product, version=product.version + 1, **changes)


def an_order(
    order_id: str = "order-1",
    items: tuple[OrderItem, ...] | None = None,
    created_at: datetime = START,
    **overrides: Any,
) -> Order:
    items = items or (OrderItem(CHAIR, None, "Chair", 2, Decimal("249.99")),)
    fields: dict[str, Any] = {
        "id": order_id,
        "user_id": "u-1",
        "status": OrderStatus.CREATED,
        "items": items,
        "total_amount": sum((i.line_total for i in items), Decimal("0.00")),
        "currency": "USD",
        "flags": (),
        "price_source": PriceSource.PRODUCT_SERVICE,
        "created_at": created_at,
    }
    fields.update(overrides)
    return Order(**fields)


def an_envelope(event_id: str, data: EventData, source: str = "product-service") -> Envelope:
    """An envelope of `data`'s type, as its source would send it."""
    return Envelope(event_id, event_type_of(data), source, "1.0", START, "c", data)
