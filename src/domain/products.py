"""Product snapshots as the Order Service knows them, and the catalog rules of the Product Service."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

import attrs

from domain.money import is_money, normalize_money


class ProductStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    DISCONTINUED = "DISCONTINUED"


def check_money(_: object, attribute: attrs.Attribute[Decimal], value: Decimal) -> None:
    """An attrs validator: a money amount as `is_money` defines it."""
    if not is_money(value):
        raise ValueError(f"{attribute.name} must be a non-negative Decimal with at most 2 decimals")


def check_version(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    """An attrs validator: versions count changes from 1, so 0 or less is corrupt data."""
    if value < 1:
        raise ValueError(f"{attribute.name} must be 1 or more, got {value}")


MAX_PRODUCT_ID_LENGTH = 128
"""A product id is a non-empty string of at most this many characters (INTERFACE §4)."""
_PRODUCT_ID_RULE = f"a non-empty string of at most {MAX_PRODUCT_ID_LENGTH} characters"


def is_product_id(value: str) -> bool:
    return 0 < len(value) <= MAX_PRODUCT_ID_LENGTH


def check_product_id(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    """An attrs validator of a product id, or (in `deep_iterable`) of each of several."""
    if not is_product_id(value):
        raise ValueError(f"{attribute.name} must be {_PRODUCT_ID_RULE}, got {len(value)} characters")


def check_carried_product(_: object, attribute: attrs.Attribute[Product], value: Product) -> None:
    """An attrs validator of a product carried in event data, or of each of several: its id."""
    if not is_product_id(value.id):
        raise ValueError(
            f"{attribute.name} must hold a product whose id is {_PRODUCT_ID_RULE},"
            f" got {len(value.id)} characters"
        )


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
