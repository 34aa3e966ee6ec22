"""The service processes freeze their startup heap, so full collections skip it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from entrypoints.heap import freeze_startup_heap


@pytest.fixture
def unfrozen_afterwards() -> Iterator[None]:
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen_afterwards")
def test_what_exists_at_startup_is_frozen_and_garbage_is_not() -> None:
    long_lived = [object() for _ in range(1000)]
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle  # garbage already: the collection before the freeze takes it

    frozen = freeze_startup_heap()

    assert frozen == gc.get_freeze_count() >= len(long_lived)
    assert not any(obj is long_lived for obj in gc.get_objects()), "frozen objects are out of gc's sight"
    assert gc.collect() == 0, "nothing left for a full collection to find"
