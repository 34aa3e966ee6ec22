"""Unit tier: the Hypothesis profile and the wired use cases of both services."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from .wiring import OrderSide, ProductSide, build_order_side, build_product_side

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def order_side() -> OrderSide:
    return build_order_side()


@pytest.fixture
def product_side() -> ProductSide:
    return build_product_side()
