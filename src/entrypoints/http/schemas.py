"""Request bodies of both HTTP APIs, and the limits of INTERFACE §4 checked with the field's path."""

from __future__ import annotations

from decimal import Decimal

import attrs

from domain.errors import InvalidRequest
from domain.money import is_money
from domain.products import ProductStatus

MAX_ID_LENGTH = 128
MAX_ITEMS = 100
MAX_QUANTITY = 10_000
MAX_NAME_LENGTH = 200
MAX_STOCK = 1_000_000_000


@attrs.frozen
class OrderItemRequest:
    product_id: str
    quantity: int
    variant_id: str | None = None


@attrs.frozen
class CreateOrderRequest:
    user_id: str
    items: tuple[OrderItemRequest, ...]


@attrs.frozen
class BatchRequest:
    ids: tuple[str, ...]


@attrs.frozen
class CreateProductRequest:
    name: str
    base_price: Decimal
    current_price: Decimal
    currency: str
    status: ProductStatus
    quantity_available: int
    id: str | None = None


@attrs.frozen
class PatchProductRequest:
    name: str | None = None
    base_price: Decimal | None = None
    current_price: Decimal | None = None
    status: ProductStatus | None = None
    quantity_available: int | None = None


def _reject(field: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid field {field}: {problem}", {"field": field})


def check_id(field: str, value: str) -> None:
    if not value or len(value) > MAX_ID_LENGTH:
        raise _reject(field, f"must be a non-empty string of at most {MAX_ID_LENGTH} characters")


def check_order(body: CreateOrderRequest) -> None:
    check_id("userId", body.user_id)
    if not 1 <= len(body.items) <= MAX_ITEMS:
        raise _reject("items", f"must hold 1 to {MAX_ITEMS} entries")
    for index, item in enumerate(body.items):
        check_id(f"items[{index}].productId", item.product_id)
        if not 1 <= item.quantity <= MAX_QUANTITY:
            raise _reject(f"items[{index}].quantity", f"must be an integer 1..{MAX_QUANTITY}")
        if item.variant_id is not None:
            check_id(f"items[{index}].variantId", item.variant_id)


def check_batch(body: BatchRequest) -> None:
    if not 1 <= len(body.ids) <= MAX_ITEMS:
        raise _reject("ids", f"must hold 1 to {MAX_ITEMS} ids")
    for index, product_id in enumerate(body.ids):
        check_id(f"ids[{index}]", product_id)


def _check_price(field: str, value: Decimal | None) -> None:
    if value is not None and not is_money(value):
        raise _reject(field, "must be a number from 0 below 1e9 with at most 2 decimals")


def _check_name(value: str | None) -> None:
    if value is not None and not (value.strip() and len(value) <= MAX_NAME_LENGTH):
        raise _reject("name", f"must be a non-blank string of at most {MAX_NAME_LENGTH} characters")


def _check_stock(value: int | None) -> None:
    if value is not None and not 0 <= value <= MAX_STOCK:
        raise _reject("quantityAvailable", f"must be an integer 0..{MAX_STOCK}")


def check_new_product(body: CreateProductRequest) -> None:
    if body.id is not None:
        check_id("id", body.id)
    _check_name(body.name)
    _check_price("basePrice", body.base_price)
    _check_price("currentPrice", body.current_price)
    _check_stock(body.quantity_available)
    if not (len(body.currency) == 3 and body.currency.isascii() and body.currency.isupper()):
        raise _reject("currency", "must be a 3-letter ISO 4217 code such as USD")


def check_patch(body: PatchProductRequest) -> None:
    if all(getattr(body, f.name) is None for f in attrs.fields(PatchProductRequest)):
        raise InvalidRequest(
            "Nothing to change: give any of name, basePrice, currentPrice, status, quantityAvailable"
        )
    _check_name(body.name)
    _check_price("basePrice", body.base_price)
    _check_price("currentPrice", body.current_price)
    _check_stock(body.quantity_available)
