"""Running steps side by side without leaving any behind."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def all_or_cancel(*steps: Awaitable[T]) -> list[T]:
    """`asyncio.gather`, except that the first failure cancels the other steps, and waits for
    them, before it is raised: nothing runs on untracked after its caller gave up (a consumer
    that nak'd the event, a request answered 503)."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
