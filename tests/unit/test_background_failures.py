"""Background work that meets an outage says so in one line; a bug still logs its traceback."""

from __future__ import annotations

import asyncio
import logging

import pytest

from domain.errors import EventBusUnavailable
from entrypoints.background import BackgroundTasks


async def _fails_with(error: Exception) -> None:
    raise error


async def test_an_outage_in_background_work_is_one_warning_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = BackgroundTasks()
    with caplog.at_level(logging.INFO, logger="entrypoints.background"):
        tasks.start(_fails_with(EventBusUnavailable("The event bus (NATS) is not connected")))
        await asyncio.sleep(0.01)

    [line] = caplog.records
    assert line.levelno == logging.WARNING
    assert "The event bus (NATS) is not connected" in line.getMessage()
    assert line.exc_info is None


async def test_a_bug_in_background_work_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = BackgroundTasks()
    with caplog.at_level(logging.INFO, logger="entrypoints.background"):
        tasks.start(_fails_with(KeyError("boom")))
        await asyncio.sleep(0.01)

    [line] = caplog.records
    assert line.levelno == logging.ERROR
    assert line.exc_info is not None
