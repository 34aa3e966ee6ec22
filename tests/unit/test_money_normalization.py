"""Money on the wire always has exactly two places, however the number was written."""

from __future__ import annotations

import pytest

from adapters.wire.converter import dumps, loads, structure_or_reject
from adapters.wire.http_json import RESPONSES, product_to_wire
from domain.errors import InvalidRequest
from domain.products import Product

RAW = (
    b'{"id": "p", "name": "n", "basePrice": %s, "currentPrice": %s, "currency": "USD",'
    b' "status": "ACTIVE", "quantityAvailable": 1, "version": 1, "updatedAt": "2026-11-23T10:00:00Z"}'
)


@pytest.mark.parametrize(
    ("written", "stored"),
    [(b"19.990", "19.99"), (b"1e2", "100.00"), (b"-0.00", "0.00"), (b"5", "5.00"), (b"0.1", "0.10")],
)
def test_exact_cent_amounts_are_normalised_to_two_places(written: bytes, stored: str) -> None:
    product = RESPONSES.structure(loads(RAW % (written, written)), Product)
    assert str(product.current_price) == stored
    assert dumps(product_to_wire(product)).count(stored.encode()) == 2


@pytest.mark.parametrize("written", [b"19.999", b"-1", b"1000000000"])
def test_amounts_that_are_not_money_are_refused(written: bytes) -> None:
    with pytest.raises(InvalidRequest):
        structure_or_reject(RESPONSES, loads(RAW % (written, b"1")), Product)
