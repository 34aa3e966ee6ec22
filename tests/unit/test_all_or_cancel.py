"""all_or_cancel: side-by-side steps, none left running after a failure."""

from __future__ import annotations

import asyncio

import pytest

from application.concurrency import all_or_cancel
from domain.errors import CacheUnavailable


async def test_results_come_in_the_order_of_the_steps() -> None:
    async def after(turns: int, value: str) -> str:
        for _ in range(turns):
            await asyncio.sleep(0)
        return value

    assert await all_or_cancel(after(3, "a"), after(0, "b"), after(1, "c")) == ["a", "b", "c"]


async def test_the_first_failure_cancels_the_other_steps_before_it_is_raised() -> None:
    cancelled = asyncio.Event()

    async def long_step() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def failing_step() -> None:
        await asyncio.sleep(0)
        raise CacheUnavailable("simulated cache outage")

    with pytest.raises(CacheUnavailable):
        await all_or_cancel(long_step(), failing_step())
    assert cancelled.is_set(), "the other step was cancelled, not left running"
