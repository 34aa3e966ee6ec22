"""A switch that lets a test take an in-memory twin down, as the real server can go down."""

from __future__ import annotations

import attrs

from domain.errors import DependencyUnavailable


@attrs.define
class Outage:
    error: type[DependencyUnavailable]
    down: bool = False

    def check(self) -> None:
        if self.down:
            raise self.error("simulated outage")
