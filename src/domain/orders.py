"""Orders: priced from product snapshots, with exact totals, a status and review flags."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

import attrs

from domain.errors import (
    CurrencyMismatch,
    ProductDiscontinued,
    ProductInactive,
    ProductNotFound,
    ProductUnavailable,
)
from domain.events import OrderCreated, OrderCreatedItem
from domain.products import Product, ProductStatus


class OrderStatus(enum.StrEnum):
    CREATED = "CREATED"


class OrderFlag(enum.StrEnum):
    DISCONTINUED_PRODUCT = "DISCONTINUED_PRODUCT"
    PRICE_REVIEW = "PRICE_REVIEW"


class PriceSource(enum.StrEnum):
    PRODUCT_SERVICE = "product-service"
    CACHE = "cache"


@attrs.frozen
class OrderLine:
    """One requested line of a new order, before pricing."""

    product_id: str
    quantity: int
    variant_id: str | None = None


@attrs.frozen
class OrderItem:
    product_id: str
    variant_id: str | None
    name: str
    quantity: int
    unit_price: Decimal

    @property
    def line_total(self) -> Decimal:
        return self.unit_price * self.quantity


@attrs.frozen
class Order:
    id: str
    user_id: str
    status: OrderStatus
    items: tuple[OrderItem, ...]
    total_amount: Decimal
    currency: str
    flags: tuple[OrderFlag, ...]
    price_source: PriceSource
    created_at: datetime

    @property
    def product_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(item.product_id for item in self.items))

    def holds(self, product_id: str) -> bool:
        return any(item.product_id == product_id for item in self.items)

    def with_flag(self, flag: OrderFlag) -> Order:
        if flag in self.flags:
            return self
        return attrs.evolve(self, flags=tuple(sorted({*self.flags, flag})))

    def created_event(self) -> OrderCreated:
        return OrderCreated(
            order_id=self.id,
            user_id=self.user_id,
            items=tuple(
                OrderCreatedItem(i.product_id, i.variant_id, i.quantity, i.unit_price) for i in self.items
            ),
            total_amount=self.total_amount,
            timestamp=self.created_at,
        )


def check_orderable(product_id: str, product: Product | None, quantity: int) -> Product:
    """The seed's rules: known, not discontinued, active, and enough stock for `quantity`."""
    if product is None:
        raise ProductNotFound(product_id)
    if product.status is ProductStatus.DISCONTINUED:
        raise ProductDiscontinued(product_id)
    if product.status is ProductStatus.INACTIVE:
        raise ProductInactive(product_id)
    if quantity > product.quantity_available:
        raise ProductUnavailable(product_id, quantity, product.quantity_available)
    return product


def place_order(
    *,
    order_id: str,
    user_id: str,
    lines: Sequence[OrderLine],
    products: Mapping[str, Product],
    price_source: PriceSource,
    now: datetime,
) -> Order:
    """Price `lines` at each product's current price; raise the first rule a line breaks."""
    wanted: dict[str, int] = {}
    for line in lines:
        wanted[line.product_id] = wanted.get(line.product_id, 0) + line.quantity
    checked = {pid: check_orderable(pid, products.get(pid), qty) for pid, qty in wanted.items()}
    currencies = sorted({p.currency for p in checked.values()})
    if len(currencies) > 1:
        raise CurrencyMismatch(currencies)
    items = tuple(
        OrderItem(
            product_id=line.product_id,
            variant_id=line.variant_id,
            name=checked[line.product_id].name,
            quantity=line.quantity,
            unit_price=checked[line.product_id].current_price,
        )
        for line in lines
    )
    return Order(
        id=order_id,
        user_id=user_id,
        status=OrderStatus.CREATED,
        items=items,
        total_amount=sum((item.line_total for item in items), Decimal("0.00")),
        currency=currencies[0],
        flags=(),
        price_source=price_source,
        created_at=now,
    )
