"""Product snapshots as the Order Service knows them, and the catalog rules of the Product Service."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

import attrs

from domain.money import is_money


class ProductStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    DISCONTINUED = "DISCONTINUED"


def _money(_: object, attribute: attrs.Attribute[Decimal], value: Decimal) -> None:
    if not is_money(value):
        raise ValueError(f"{attribute.name} must be a non-negative Decimal with at most 2 decimals")


@attrs.frozen
class Product:
    """A product at one version. `version` grows by one on every change; newer wins."""

    id: str
    name: str
    base_price: Decimal = attrs.field(validator=_money)
    current_price: Decimal = attrs.field(validator=_money)
    currency: str
    status: ProductStatus
    quantity_available: int
    version: int
    updated_at: datetime

    @property
    def is_available(self) -> bool:
        return self.status is ProductStatus.ACTIVE and self.quantity_available > 0

    def supersedes(self, other: Product | None) -> bool:
        """True when this snapshot should replace `other` (absent or strictly older)."""
        return other is None or self.version > other.version


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
