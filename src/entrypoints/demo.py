"""The demo catalog `make run` starts with."""

from __future__ import annotations

from decimal import Decimal

from application.catalog import Catalog, NewProduct
from domain.errors import ProductAlreadyExists
from domain.products import ProductStatus

DEMO_PRODUCTS = (
    NewProduct(
        id="e8acc97f-c204-4c53-9c33-5d91a1061618",
        name="Ergonomic Office Chair",
        base_price=Decimal("249.99"),
        current_price=Decimal("249.99"),
        currency="USD",
        status=ProductStatus.ACTIVE,
        quantity_available=12,
    ),
    NewProduct(
        id="5f1c2a9e-7d3b-4f60-9a8e-2b6c1d0e9f47",
        name="Standing Desk",
        base_price=Decimal("499.00"),
        current_price=Decimal("449.00"),
        currency="USD",
        status=ProductStatus.ACTIVE,
        quantity_available=5,
    ),
    NewProduct(
        id="0b9d7c34-51aa-4e2f-8c6d-93e1f2a4b5c6",
        name="Monitor Arm",
        base_price=Decimal("89.90"),
        current_price=Decimal("89.90"),
        currency="USD",
        status=ProductStatus.ACTIVE,
        quantity_available=0,
    ),
    NewProduct(
        id="7a3e5b1d-2c4f-4d8a-b6e0-1f9c8d7e6a5b",
        name="Desk Lamp (old model)",
        base_price=Decimal("39.50"),
        current_price=Decimal("29.50"),
        currency="USD",
        status=ProductStatus.DISCONTINUED,
        quantity_available=40,
    ),
)


async def seed_demo_catalog(catalog: Catalog) -> None:
    for product in DEMO_PRODUCTS:
        try:
            await catalog.create(product)
        except ProductAlreadyExists:
            continue
