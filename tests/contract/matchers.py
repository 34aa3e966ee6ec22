"""Pact matchers for the wire of INTERFACE §3 and §5: pin what is fixed, match what varies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pact import match

JSON = "application/json"

TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"
"""ISO-8601 with a zone, as our wire writes it (`...Z`, with milliseconds when there are any).

A regex rather than match.datetime: Python leaves out zero microseconds, which no single
date-format pattern accepts together with the non-zero case.
"""

EVENT_ID = "3f0c8a52-9d1e-4b7a-8c61-2e5f4d3a1b09"


def timestamp(example: str = "2026-11-23T10:00:00.125Z") -> Any:
    return match.regex(example, regex=TIMESTAMP)


def envelope(event_type: str, source: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Every event, both directions: type, source and dataVersion pinned, the rest matched."""
    return {
        "id": match.uuid(EVENT_ID),
        "type": event_type,
        "source": source,
        "dataVersion": "1.0",
        "timestamp": timestamp(),
        "correlationId": match.regex(EVENT_ID, regex=r"^\S+$"),
        "data": dict(data),
    }


def product_json(
    product_id: Any, *, version: int = 3, name: str = "Ergonomic Office Chair"
) -> dict[str, Any]:
    """A product on the wire: money as JSON numbers (integral or not), status one of three."""
    return {
        "id": product_id,
        "name": match.str(name),
        "basePrice": match.number(249.99),
        "currentPrice": match.number(249.99),
        "currency": match.regex("USD", regex=r"^[A-Z]{3}$"),
        "status": match.regex("ACTIVE", regex=r"^(ACTIVE|INACTIVE|DISCONTINUED)$"),
        "quantityAvailable": match.int(12),
        "version": match.int(version),
        "updatedAt": timestamp("2026-11-23T10:00:00Z"),
    }
