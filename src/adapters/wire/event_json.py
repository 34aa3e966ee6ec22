"""The event wire: the envelope and the data of each event type, as JSON bytes."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from adapters.wire.converter import dumps as dump_json
from adapters.wire.converter import loads, make_converter, parse_timestamp, structure_or_reject
from application.envelopes import DATA_VERSION
from domain.errors import InvalidRequest, UndecodableEvent
from domain.events import EVENT_TYPES, MAX_CORRELATION_ID_LENGTH, Envelope
from domain.ids import MAX_ID_LENGTH
from domain.products import Product

EVENTS = make_converter(forbid_extra_keys=False)


class RecentProducts:
    """The last product structured per id, with the wire fields it came from.

    Replies, snapshots and refreshes carry the same unchanged product again and again; the
    strict converter and the money validators would build an equal Product, which is
    immutable, so the one built last time is handed out when every field is the same: same
    key, same type, same value, and for a number the same digits and exponent (`10.0` is not
    `10.00` here, though they are equal Decimals). Anything else is structured afresh.
    """

    def __init__(self, structure: Callable[[Any, type], Product], limit: int = 10_000) -> None:
        self._structure = structure
        self.limit = limit
        self._by_id: dict[str, tuple[tuple[Any, ...], Product]] = {}

    def __call__(self, value: Any, cls: type) -> Product:
        product_id = value.get("id") if isinstance(value, dict) else None
        if not isinstance(product_id, str):
            return self._structure(value, cls)
        fields = tuple(
            (key, type(item), item.as_tuple() if type(item) is Decimal else item)
            for key, item in value.items()
        )
        seen = self._by_id.get(product_id)
        if seen is not None and seen[0] == fields:
            return seen[1]
        product = self._structure(value, cls)
        if seen is None and len(self._by_id) >= self.limit:
            del self._by_id[next(iter(self._by_id))]  # the oldest entry
        self._by_id[product_id] = (fields, product)
        return product


EVENTS.register_structure_hook(Product, RecentProducts(EVENTS.get_structure_hook(Product)))

_ENVELOPE_FIELDS = ("id", "type", "source", "dataVersion", "timestamp", "correlationId", "data")
OPTIONAL_WHEN_NULL = frozenset({"refreshMode"})


def envelope_to_wire(envelope: Envelope) -> dict[str, Any]:
    data = {
        key: value
        for key, value in EVENTS.unstructure(envelope.data).items()
        if not (value is None and key in OPTIONAL_WHEN_NULL)
    }
    return {
        "id": envelope.id,
        "type": envelope.type,
        "source": envelope.source,
        "dataVersion": envelope.data_version,
        "timestamp": EVENTS.unstructure(envelope.timestamp),
        "correlationId": envelope.correlation_id,
        "data": data,
    }


def encode(envelope: Envelope) -> bytes:
    return dump_json(envelope_to_wire(envelope))


def decode(raw: bytes) -> Envelope:
    """Parse an envelope; raise UndecodableEvent saying why when it can never be handled."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UndecodableEvent(f"not UTF-8: {error}") from None
    try:
        wire = loads(text)
    except ValueError as error:
        raise UndecodableEvent(f"not JSON: {error}") from None
    return envelope_from_wire(wire)


def envelope_from_wire(wire: object) -> Envelope:
    if not isinstance(wire, dict):
        raise UndecodableEvent("the envelope is not a JSON object")
    missing = [key for key in _ENVELOPE_FIELDS if key not in wire]
    if missing:
        raise UndecodableEvent(f"envelope fields missing: {', '.join(missing)}")
    for key in ("id", "type", "source", "dataVersion", "correlationId"):
        if not isinstance(wire[key], str) or not wire[key]:
            raise UndecodableEvent(f"envelope field {key} must be a non-empty string")
    # each becomes part of a Redis key (processed:<id>), a log line and a reply
    for key, most in (("id", MAX_ID_LENGTH), ("correlationId", MAX_CORRELATION_ID_LENGTH)):
        if len(wire[key]) > most:
            raise UndecodableEvent(
                f"envelope field {key} must be at most {most} characters, got {len(wire[key])}"
            )
    if wire["dataVersion"] != DATA_VERSION:
        raise UndecodableEvent(f"unknown dataVersion {wire['dataVersion']!r}")
    data_type = EVENT_TYPES.get(wire["type"])
    if data_type is None:
        raise UndecodableEvent(f"unknown event type {wire['type']!r}")
    try:
        timestamp = parse_timestamp(wire["timestamp"])
        data = structure_or_reject(EVENTS, wire["data"], data_type, what="data")
    except (InvalidRequest, ValueError) as error:
        reason = error.message if isinstance(error, InvalidRequest) else str(error)
        raise UndecodableEvent(f"invalid {wire['type']}: {reason}") from None
    return Envelope(
        id=wire["id"],
        type=wire["type"],
        source=wire["source"],
        data_version=wire["dataVersion"],
        timestamp=timestamp,
        correlation_id=wire["correlationId"],
        data=data,
    )
