"""Money is Decimal with at most two places, never float."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

CENT = Decimal("0.01")
MAX_PRICE = Decimal("1000000000")


def is_money(value: object) -> bool:
    """A non-negative amount below a billion with at most two decimal places."""
    return (
        isinstance(value, Decimal)
        and value.is_finite()
        and Decimal(0) <= value < MAX_PRICE
        and value == value.quantize(CENT, rounding=ROUND_HALF_EVEN)
    )


def to_cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


def normalize_money(value: object) -> object:
    """An attrs converter: an exact cent amount gets exactly two places (19.990 -> 19.99,
    1E+2 -> 100.00, -0.00 -> 0.00); anything else is left for the validator to refuse."""
    if is_money(value):
        assert isinstance(value, Decimal)
        return to_cents(value) + Decimal("0.00")
    return value
