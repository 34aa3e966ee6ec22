"""Contract tier: pacts/ regenerated each run, and consumer tests always before provider verification.

The consumer tests (`test_consumer_*.py`) write the pact files; the provider tests
(`test_provider_*.py`) verify those same files later in the same run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pact import Pact

from .verification import ORDER_SERVICE, PACT_DIR, PRODUCT_SERVICE
from .worlds import OrderWorld, ProductWorld, ServedProductService

# libpact_ffi reports anonymous usage unless told not to; it reads this when first used.
os.environ.setdefault("PACT_DO_NOT_TRACK", "true")

HERE = Path(__file__).parent


def _tier(item: pytest.Item) -> int:
    name = item.path.name
    return 0 if name.startswith("test_consumer_") else 1 if name.startswith("test_provider_") else 2


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Consumer tests first, whatever ordered or shuffled the items before: they write the pacts."""
    slots = [index for index, item in enumerate(items) if item.path.is_relative_to(HERE)]
    ordered = sorted((items[index] for index in slots), key=_tier)
    for slot, item in zip(slots, ordered, strict=True):
        items[slot] = item


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so a pact fixture writes only for a passing test."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session", autouse=True)
def fresh_pact_dir() -> Path:
    """write_file(overwrite=False) merges into what is on disk: every run starts from nothing."""
    shutil.rmtree(PACT_DIR, ignore_errors=True)
    PACT_DIR.mkdir(parents=True)
    return PACT_DIR


def _consumer_pact(request: pytest.FixtureRequest, consumer: str, provider: str) -> Iterator[Pact]:
    # One Pact per test (a served Pact takes no new interactions), merged into one file per pair.
    pact = Pact(consumer, provider).with_specification("V4")
    yield pact
    report = getattr(request.node, "report_call", None)
    if report is not None and report.passed:
        pact.write_file(PACT_DIR, overwrite=False)


@pytest.fixture
def order_service_pact(request: pytest.FixtureRequest) -> Iterator[Pact]:
    """What the Order Service expects of the Product Service: HTTP, and the events it consumes."""
    yield from _consumer_pact(request, ORDER_SERVICE, PRODUCT_SERVICE)


@pytest.fixture
def product_service_pact(request: pytest.FixtureRequest) -> Iterator[Pact]:
    """What the Product Service expects of the Order Service: the events it consumes."""
    yield from _consumer_pact(request, PRODUCT_SERVICE, ORDER_SERVICE)


@pytest.fixture
def order_world() -> Iterator[OrderWorld]:
    world = OrderWorld()
    yield world
    world.close()


@pytest.fixture
def product_world() -> Iterator[ProductWorld]:
    world = ProductWorld()
    yield world
    world.close()


@pytest.fixture
def order_worlds() -> Iterator[Callable[..., OrderWorld]]:
    """Builds fresh Order Service worlds (one per produced message, say); closes them all."""
    built: list[OrderWorld] = []

    def build(**settings: Any) -> OrderWorld:
        built.append(OrderWorld(**settings))
        return built[-1]

    yield build
    for world in built:
        world.close()


@pytest.fixture
def served_product_service() -> Iterator[ServedProductService]:
    served = ServedProductService()
    served.start()
    yield served
    served.stop()
