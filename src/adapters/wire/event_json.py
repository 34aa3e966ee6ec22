"""The event wire: the envelope and the data of each event type, as JSON bytes."""

from __future__ import annotations

from typing import Any

from adapters.wire.converter import dumps as dump_json
from adapters.wire.converter import loads, make_converter, parse_timestamp, structure_or_reject
from application.envelopes import DATA_VERSION
from domain.errors import InvalidRequest, UndecodableEvent
from domain.events import EVENT_TYPES, Envelope

EVENTS = make_converter(forbid_extra_keys=False)

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
        wire = loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise UndecodableEvent(f"not UTF-8 JSON: {error}") from None
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
