"""The discrepancy maths (the seed's §6.2), exact in Decimal, at its 1 % / 10 % / 10.00 boundaries."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from domain.orders import OrderItem
from domain.pricing import PricingThresholds, difference_pct, find_discrepancies

from .strategies import money, prices

DEFAULT = PricingThresholds()


def item(order_price: str | Decimal, quantity: int = 1, product_id: str = "p1") -> OrderItem:
    return OrderItem(product_id, None, "Thing", quantity, Decimal(order_price))


def check(order_price: str, current: str, quantity: int = 1) -> tuple[bool, Decimal, bool]:
    result = find_discrepancies([item(order_price, quantity)], {"p1": Decimal(current)}, DEFAULT)
    return result.has_discrepancies, result.total_difference, result.requires_review


# --- the 1 % boundary: strictly above counts --------------------------------------------------


def test_exactly_one_percent_off_is_not_a_discrepancy() -> None:
    assert check("101.00", "100.00") == (False, Decimal("0.00"), False)
    assert check("99.00", "100.00") == (False, Decimal("0.00"), False)


def test_a_cent_above_one_percent_is_a_discrepancy() -> None:
    counted, total, review = check("101.01", "100.00")
    assert counted
    assert total == Decimal("-1.01")
    assert not review


def test_difference_is_relative_to_the_current_price() -> None:
    # 1.00 off a current 100.00 is 1 % (not counted); off a current 99.00 it is 1.0101... % (counted)
    assert not check("101.00", "100.00")[0]
    assert check("100.00", "99.00")[0]


# --- the 10 % item boundary -------------------------------------------------------------------


def test_exactly_ten_percent_off_does_not_require_review() -> None:
    counted, total, review = check("90.00", "100.00")
    assert counted
    assert total == Decimal("10.00")
    assert not review


def test_just_above_ten_percent_off_requires_review() -> None:
    # 10.01 % off a current 100.00, total 10.01: both rules fire; isolate the item rule below
    result = find_discrepancies([item("0.89")], {"p1": Decimal("1.00")}, DEFAULT)
    assert result.total_difference == Decimal("0.11")
    assert result.discrepancies[0].difference == Decimal("11")
    assert result.requires_review


def test_item_rule_alone_triggers_review_on_a_small_total() -> None:
    result = find_discrepancies([item("1.11")], {"p1": Decimal("1.00")}, DEFAULT)
    assert abs(result.total_difference) <= DEFAULT.review_total_amount
    assert result.requires_review


def test_exactly_ten_percent_item_on_a_cheap_product_does_not_require_review() -> None:
    result = find_discrepancies([item("1.10")], {"p1": Decimal("1.00")}, DEFAULT)
    assert result.discrepancies[0].difference == Decimal("10")
    assert not result.requires_review


# --- the 10.00 total boundary -----------------------------------------------------------------


def test_a_total_difference_of_exactly_ten_does_not_require_review() -> None:
    # 2 % up, five of them: 10.00 exactly
    assert check("98.00", "100.00", quantity=5) == (True, Decimal("10.00"), False)
    assert check("102.00", "100.00", quantity=5) == (True, Decimal("-10.00"), False)


def test_a_total_difference_a_cent_over_ten_requires_review() -> None:
    # 2 % on both items, so only the total can ask for review: 10.00 + 0.01
    current = {"p1": Decimal("100.00"), "p2": Decimal("0.50")}
    rose = find_discrepancies([item("98.00", 5, "p1"), item("0.49", 1, "p2")], current, DEFAULT)
    assert rose.total_difference == Decimal("10.01")
    assert rose.requires_review
    fell = find_discrepancies([item("102.00", 5, "p1"), item("0.51", 1, "p2")], current, DEFAULT)
    assert fell.total_difference == Decimal("-10.01")
    assert fell.requires_review


def test_total_counts_only_items_above_the_discrepancy_threshold() -> None:
    result = find_discrepancies(
        [item("101.00", 100, "p1"), item("95.00", 1, "p2")],
        {"p1": Decimal("100.00"), "p2": Decimal("100.00")},
        DEFAULT,
    )
    assert [d.product_id for d in result.discrepancies] == ["p2"]
    assert result.total_difference == Decimal("5.00")
    assert not result.requires_review


def test_items_without_a_current_price_are_skipped() -> None:
    result = find_discrepancies([item("50.00")], {}, DEFAULT)
    assert not result.has_discrepancies
    assert result.total_difference == Decimal("0.00")


@pytest.mark.parametrize(
    ("order_price", "current", "expected"),
    [("0.00", "0.00", Decimal(0)), ("5.00", "0.00", Decimal(100)), ("0.00", "5.00", Decimal(100))],
)
def test_zero_prices_have_a_defined_difference(order_price: str, current: str, expected: Decimal) -> None:
    assert difference_pct(Decimal(order_price), Decimal(current)) == expected


def test_thresholds_are_configurable() -> None:
    strict = PricingThresholds(Decimal("0"), Decimal("0.5"), Decimal("0.00"))
    result = find_discrepancies([item("100.01")], {"p1": Decimal("100.00")}, strict)
    assert result.has_discrepancies
    assert result.requires_review


# --- properties against an independent oracle in exact fractions -------------------------------


def oracle(
    lines: list[tuple[Decimal, Decimal, int]], thresholds: PricingThresholds
) -> tuple[list[int], Fraction, bool, list[Fraction]]:
    counted, diffs, total = [], [], Fraction(0)
    for index, (order_price, current, quantity) in enumerate(lines):
        o, c = Fraction(order_price), Fraction(current)
        diff = (Fraction(0) if o == 0 else Fraction(100)) if c == 0 else abs(o - c) / c * 100
        if diff > Fraction(thresholds.discrepancy_pct):
            counted.append(index)
            diffs.append(diff)
            total += (c - o) * quantity
    review = abs(total) > Fraction(thresholds.review_total_amount) or any(
        d > Fraction(thresholds.review_item_pct) for d in diffs
    )
    return counted, total, review, diffs


line = st.tuples(money("0.00", "9999.99"), money("0.00", "9999.99"), st.integers(min_value=1, max_value=1000))


@given(st.lists(line, min_size=1, max_size=8))
@example([(Decimal("101.00"), Decimal("100.00"), 1)])
@example([(Decimal("90.00"), Decimal("100.00"), 1)])
@example([(Decimal("98.00"), Decimal("100.00"), 5)])
def test_discrepancies_match_exact_arithmetic(lines: list[tuple[Decimal, Decimal, int]]) -> None:
    items = [item(o, q, f"p{n}") for n, (o, _, q) in enumerate(lines)]
    current = {f"p{n}": c for n, (_, c, _) in enumerate(lines)}
    result = find_discrepancies(items, current, DEFAULT)
    counted, total, review, diffs = oracle(lines, DEFAULT)
    assert [d.product_id for d in result.discrepancies] == [f"p{n}" for n in counted]
    assert Fraction(result.total_difference) == total
    assert result.total_difference.as_tuple().exponent == -2
    assert result.requires_review is review
    for found, exact in zip(result.discrepancies, diffs, strict=True):
        assert abs(Fraction(found.difference) - exact) <= exact * Fraction(1, 10**20)


@given(prices(), st.integers(min_value=1, max_value=100))
def test_the_one_percent_boundary_is_exclusive(current: Decimal, quantity: int) -> None:
    # a current price in whole dollars makes 1 % an exact number of cents
    current = current.to_integral_value() or Decimal(1)
    edge = current + current / 100
    assert not find_discrepancies([item(edge, quantity)], {"p1": current}, DEFAULT).has_discrepancies
    assert find_discrepancies(
        [item(edge + Decimal("0.01"), quantity)], {"p1": current}, DEFAULT
    ).has_discrepancies


@given(st.integers(min_value=1, max_value=1000))
def test_the_ten_percent_boundary_is_exclusive(dimes: int) -> None:
    current = Decimal(dimes) / 10  # a multiple of 0.10, so 10 % of it is whole cents
    assume(current * Decimal("0.1") <= DEFAULT.review_total_amount)
    at_edge = find_discrepancies([item(current * Decimal("0.9"))], {"p1": current}, DEFAULT)
    assert at_edge.has_discrepancies
    assert not at_edge.requires_review
    beyond = find_discrepancies([item(current * Decimal("0.9") - Decimal("0.01"))], {"p1": current}, DEFAULT)
    assert beyond.requires_review


@given(st.lists(st.tuples(prices(), st.integers(1, 50)), min_size=1, max_size=5), st.booleans())
def test_review_on_total_is_strictly_above_the_amount(lines: list[tuple[Decimal, int]], rise: bool) -> None:
    # every item 2 % off: counted, never beyond the item rule; the total decides alone
    priced = [(c.to_integral_value() or Decimal(1), q) for c, q in lines]
    sign = 1 if rise else -1
    items = [item(c - sign * c * Decimal("0.02"), q, f"p{n}") for n, (c, q) in enumerate(priced)]
    result = find_discrepancies(items, {f"p{n}": c for n, (c, _) in enumerate(priced)}, DEFAULT)
    expected_total = sum((sign * c * Decimal("0.02") * q for c, q in priced), Decimal(0))
    assert result.total_difference == expected_total
    assert result.requires_review is (abs(expected_total) > Decimal("10.00"))
