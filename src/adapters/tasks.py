"""Stopping asyncio tasks for sure."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

RECHECK_S = 1.0


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]], recheck_s: float = RECHECK_S) -> None:
    """Cancel `tasks` and wait for them, cancelling again any that swallowed it.

    On Python 3.11 a cancel that arrives as an `asyncio.timeout` or `wait_for` inside the task
    expires can be absorbed (fixed in 3.12); a loop around such a call then runs on, and a
    plain `await task` would wait forever.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=recheck_s)
