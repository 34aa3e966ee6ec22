"""Structured logs through structlog: JSON lines by default, `LOG_FORMAT=console` for humans."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any, TypeVar

import structlog

from adapters.correlation import CORRELATION_ID

App = TypeVar("App")

SERVICE: ContextVar[str | None] = ContextVar("service", default=None)
"""The service a line comes from where one process runs both (embedded mode): each app's
middleware sets it for a request, and `tagged_lifecycle` for the tasks its lifecycle starts.
Unset, the process's own service names every line."""

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _record_extras(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Lift `extra={...}` fields of stdlib records into the structured event."""
    record = event.get("_record")
    if record is not None:
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_") and key not in event:
                event[key] = value
    return event


def _correlation_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The request's correlation id on every line logged while serving it."""
    if "correlationId" not in event and (correlation_id := CORRELATION_ID.get()) is not None:
        event["correlationId"] = correlation_id
    return event


def _escape(text: str) -> str:
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _one_line_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The console format prints the message as it is, where the values beside it are quoted: a
    newline or another control character in an id it names (a request path, a product id in an
    event) would start a line of the sender's making. Escaped, as in a JSON line."""
    message = event.get("event")
    if isinstance(message, str) and not message.isprintable():
        event["event"] = _escape(message)
    return event


def configure_logging(level: str, fmt: str, service: str, instance: str) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    escaping: list[Any] = [] if fmt == "json" else [_one_line_event]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _record_extras,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            lambda _, __, event: {
                **event,
                "service": event.get("service") or SERVICE.get() or service,
                "instance": instance,
            },
            _correlation_id,
            structlog.processors.format_exc_info,
            *escaping,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def tagged_lifecycle(
    service: str, lifecycle: Callable[[App], AsyncIterator[None]]
) -> Callable[[App], AsyncIterator[None]]:
    """`lifecycle` (a `cleanup_ctx` generator) run with `SERVICE` set: the lines it logs, and
    those of the tasks it starts (they copy the context they are created in), name `service`."""

    async def run(app: App) -> AsyncIterator[None]:
        steps = lifecycle(app)
        token = SERVICE.set(service)
        try:
            await anext(steps)
        finally:
            SERVICE.reset(token)
        yield
        token = SERVICE.set(service)
        try:
            await anext(steps, None)
        finally:
            SERVICE.reset(token)

    return run
