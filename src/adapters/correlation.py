"""The correlation id of the work at hand: an HTTP request's `X-Correlation-Id` (or one minted
for it), sent on with the calls the request makes and named in the lines it logs."""

from __future__ import annotations

from contextvars import ContextVar

HEADER = "X-Correlation-Id"

CORRELATION_ID: ContextVar[str | None] = ContextVar("correlation_id", default=None)
"""Set by the entrypoints for the request's task; the tasks it starts copy it. Concurrent
orders share one batch call to the Product Service: that call carries the id of the order
whose task sent it."""
