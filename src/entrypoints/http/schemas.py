"""Request bodies of both HTTP APIs, and the limits of INTERFACE §4 checked with the field's path."""

from __future__ import annotations

from decimal import Decimal

import attrs

from adapters.wire.converter import EXPECTED
from domain.errors import InvalidRequest
from domain.events import MAX_ORDER_ITEMS, MAX_ORDER_QUANTITY
from domain.ids import AN_ID, MAX_ID_LENGTH, is_id
from domain.money import is_money
from domain.products import (
    A_CURRENCY,
    A_NAME,
    A_STOCK,
    ProductStatus,
    is_currency_code,
    is_product_name,
    is_stock,
)

MAX_ITEMS = MAX_ORDER_ITEMS
MAX_QUANTITY = MAX_ORDER_QUANTITY

A_USER_ID = f"a non-blank string of at most {MAX_ID_LENGTH} characters"
A_QUANTITY = f"an integer from 1 to {MAX_QUANTITY}"
SOME_ITEMS = f"an array of 1 to {MAX_ITEMS} objects"
SOME_IDS = f"an array of 1 to {MAX_ITEMS} ids"
A_PRICE = "a number from 0 below 1000000000 with at most 2 decimals"
"""What each field must be, in the words of the 400 that refuses it (type and limits alike; a
product's name, stock and currency as domain.products words them, for events too)."""


def expects(words: str) -> dict[str, str]:
    """attrs field metadata: a value of the wrong type is refused with `words`."""
    return {EXPECTED: words}


@attrs.frozen
class OrderItemRequest:
    product_id: str = attrs.field(metadata=expects(AN_ID))
    quantity: int = attrs.field(metadata=expects(A_QUANTITY))
    variant_id: str | None = attrs.field(default=None, metadata=expects(AN_ID))


@attrs.frozen
class CreateOrderRequest:
    user_id: str = attrs.field(metadata=expects(A_USER_ID))
    items: tuple[OrderItemRequest, ...] = attrs.field(metadata=expects(SOME_ITEMS))


@attrs.frozen
class BatchRequest:
    ids: tuple[str, ...] = attrs.field(metadata=expects(SOME_IDS))


@attrs.frozen
class CreateProductRequest:
    name: str = attrs.field(metadata=expects(A_NAME))
    base_price: Decimal = attrs.field(metadata=expects(A_PRICE))
    current_price: Decimal = attrs.field(metadata=expects(A_PRICE))
    currency: str = attrs.field(metadata=expects(A_CURRENCY))
    status: ProductStatus
    quantity_available: int = attrs.field(metadata=expects(A_STOCK))
    id: str | None = attrs.field(default=None, metadata=expects(AN_ID))


@attrs.frozen
class PatchProductRequest:
    name: str | None = attrs.field(default=None, metadata=expects(A_NAME))
    base_price: Decimal | None = attrs.field(default=None, metadata=expects(A_PRICE))
    current_price: Decimal | None = attrs.field(default=None, metadata=expects(A_PRICE))
    status: ProductStatus | None = None
    quantity_available: int | None = attrs.field(default=None, metadata=expects(A_STOCK))


def reject(field: str, words: str) -> InvalidRequest:
    """`field` must be `words`."""
    return InvalidRequest.of_field(field, f"{field} must be {words}")


def check_id(field: str, value: str) -> None:
    if not is_id(value):
        raise reject(field, AN_ID)


def check_order(body: CreateOrderRequest) -> None:
    if not body.user_id.strip() or len(body.user_id) > MAX_ID_LENGTH:
        raise reject("userId", A_USER_ID)
    if not 1 <= len(body.items) <= MAX_ITEMS:
        raise reject("items", SOME_ITEMS)
    for index, item in enumerate(body.items):
        check_id(f"items[{index}].productId", item.product_id)
        if not 1 <= item.quantity <= MAX_QUANTITY:
            raise reject(f"items[{index}].quantity", A_QUANTITY)
        if item.variant_id is not None:
            check_id(f"items[{index}].variantId", item.variant_id)


def check_batch(body: BatchRequest) -> None:
    if not 1 <= len(body.ids) <= MAX_ITEMS:
        raise reject("ids", SOME_IDS)
    for index, product_id in enumerate(body.ids):
        check_id(f"ids[{index}]", product_id)


def _check_price(field: str, value: Decimal | None) -> None:
    if value is not None and not is_money(value):
        raise reject(field, A_PRICE)


def _check_name(value: str | None) -> None:
    if value is not None and not is_product_name(value):
        raise reject("name", A_NAME)


def _check_stock(value: int | None) -> None:
    if value is not None and not is_stock(value):
        raise reject("quantityAvailable", A_STOCK)


def check_new_product(body: CreateProductRequest) -> None:
    if body.id is not None:
        check_id("id", body.id)
    _check_name(body.name)
    _check_price("basePrice", body.base_price)
    _check_price("currentPrice", body.current_price)
    _check_stock(body.quantity_available)
    if not is_currency_code(body.currency):
        raise reject("currency", A_CURRENCY)


def check_patch(body: PatchProductRequest) -> None:
    if all(getattr(body, f.name) is None for f in attrs.fields(PatchProductRequest)):
        raise InvalidRequest.of_field(
            "body", "Nothing to change: give any of name, basePrice, currentPrice, status, quantityAvailable"
        )
    _check_name(body.name)
    _check_price("basePrice", body.base_price)
    _check_price("currentPrice", body.current_price)
    _check_stock(body.quantity_available)
