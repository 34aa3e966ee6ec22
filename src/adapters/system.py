"""The real clock and id generator."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class UuidIds:
    def new_id(self) -> str:
        return str(uuid.uuid4())
