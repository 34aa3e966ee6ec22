"""Product snapshots as the Order Service knows them, and the catalog rules of the Product Service."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

import attrs

from domain.ids import AN_ID, check_id, is_id
from domain.money import is_money, normalize_money


class ProductStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    DISCONTINUED = "DISCONTINUED"


def check_money(_: object, attribute: attrs.Attribute[Decimal], value: Decimal) -> None:
    """An attrs validator: a money amount as `is_money` defines it."""
    if not is_money(value):
        raise ValueError(f"{attribute.name} must be a non-negative Decimal with at most 2 decimals")


MAX_VERSION = 2**53 - 1
"""Versions count changes from 1; past 2**53-1 a JSON reader that keeps numbers as doubles
(the Redis scripts' cjson: the caches' and the catalog's newest-wins and commit checks) no longer
tells one version from the next, and a version out of reach would never be replaced again."""


def check_version(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    """An attrs validator: a version from 1 to MAX_VERSION; anything else is corrupt data."""
    if not 1 <= value <= MAX_VERSION:
        raise ValueError(f"{attribute.name} must be an integer from 1 to {MAX_VERSION}, got {value}")


MAX_NAME_LENGTH = 200
MAX_STOCK = 1_000_000_000
A_NAME = f"a non-blank string of at most {MAX_NAME_LENGTH} characters"
A_STOCK = f"an integer from 0 to {MAX_STOCK}"
A_CURRENCY = "a 3-letter ISO 4217 code such as USD"
"""The Product Service's rules for a product's fields (INTERFACE §4), in the words of a refusal."""


def is_product_name(value: str) -> bool:
    return bool(value.strip()) and len(value) <= MAX_NAME_LENGTH


def is_stock(value: int) -> bool:
    return 0 <= value <= MAX_STOCK


def is_currency_code(value: str) -> bool:
    """Three capital letters A-Z (OpenAPI: `^[A-Z]{3}$`); `isupper` alone let `U5D` through."""
    return len(value) == 3 and value.isascii() and value.isalpha() and value.isupper()


def check_stock(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    """An attrs validator: a stock the Product Service can hold (is_stock)."""
    if not is_stock(value):
        raise ValueError(f"{attribute.name} must be {A_STOCK}, got {value}")


check_product_id = check_id
"""A product id follows the one id rule (domain.ids)."""


def check_carried_product(_: object, attribute: attrs.Attribute[Product], value: Product) -> None:
    """An attrs validator of a product carried in event data, or of each of several: what the
    Product Service's create and PATCH accept (its id, name, currency and stock; the prices and
    the version are the Product's own validators)."""
    problems = [
        f"whose {field} is {words}, got {got}"
        for field, ok, words, got in (
            ("id", is_id(value.id), AN_ID, f"{len(value.id)} characters"),
            ("name", is_product_name(value.name), A_NAME, _shown(value.name)),
            ("currency", is_currency_code(value.currency), A_CURRENCY, _shown(value.currency)),
            ("quantityAvailable", is_stock(value.quantity_available), A_STOCK, value.quantity_available),
        )
        if not ok
    ]
    if problems:
        raise ValueError(f"{attribute.name} must hold a product {'; and '.join(problems)}")


def _shown(text: str) -> str:
    """A refused text in a reason: its start, and its length when cut."""
    return repr(text) if len(text) <= 40 else f"{text[:40]!r}... ({len(text)} characters)"


@attrs.frozen
class Product:
    """A product at one version. `version` grows by one on every change; newer wins."""

    id: str
    name: str
    base_price: Decimal = attrs.field(converter=normalize_money, validator=check_money)
    current_price: Decimal = attrs.field(converter=normalize_money, validator=check_money)
    currency: str
    status: ProductStatus
    quantity_available: int = attrs.field(validator=attrs.validators.ge(0))
    version: int = attrs.field(validator=check_version)
    updated_at: datetime

    @property
    def is_available(self) -> bool:
        return self.status is ProductStatus.ACTIVE and self.quantity_available > 0


@attrs.frozen
class ProductPatch:
    """The fields a PATCH may change; None means unchanged."""

    name: str | None = None
    base_price: Decimal | None = None
    current_price: Decimal | None = None
    status: ProductStatus | None = None
    quantity_available: int | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in attrs.fields(ProductPatch))
