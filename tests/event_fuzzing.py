"""Event fuzzing shared by the tiers: what gets fed to the Order Service's consumer, and the oracle.

tests/unit/test_fuzz_events.py feeds these to the real consumer on the in-memory broker,
tests/integration/test_fuzz_events_on_jetstream.py to the real consumers on real JetStream.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import attrs
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from adapters.wire.converter import dumps, loads
from adapters.wire.event_json import encode, envelope_to_wire
from domain.events import (
    EVENT_TYPES,
    AvailabilityChanged,
    Envelope,
    EventData,
    PriceChanged,
    ProductBatchDetailsProvided,
    ProductCreated,
    ProductDetailsProvided,
    ProductDiscontinued,
    ProductUpdated,
    event_type_of,
)
from domain.products import Product
from entrypoints import Settings
from entrypoints.apps import build_order_container
from entrypoints.consumers import MAX_LETTER_PAYLOAD_BYTES
from entrypoints.event_routing import order_service_handlers
from tests.unit.strategies import details_provided, ids, money, products, quantities, timestamps, versions


def fuzz_settings(max_examples: int, *, randomise: bool) -> settings:
    """Hypothesis settings of the event fuzzers: reproducible unless `randomise`, no example database."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=not randomise,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


def _handled_types() -> frozenset[str]:
    container = build_order_container(Settings())
    return frozenset(order_service_handlers(container.reactions(), container.pending()))


HANDLED = _handled_types()
"""The event types the Order Service applies."""


@attrs.frozen
class Valid:
    envelope: Envelope

    @property
    def subject(self) -> str:
        return self.envelope.type

    @property
    def data(self) -> bytes:
        return encode(self.envelope)


@attrs.frozen
class Poison:
    subject: str
    data: bytes
    mutation: str


# Few product ids and low versions half of the time, so events meet the same product in turn.
product_ids = st.sampled_from(["p-1", "p-2", "p-3"]) | ids
low_versions = st.integers(min_value=1, max_value=4) | versions


@st.composite
def product_snapshots(draw: st.DrawFn) -> Product:
    return attrs.evolve(draw(products()), id=draw(product_ids), version=draw(low_versions))


handled_data: st.SearchStrategy[EventData] = st.one_of(
    product_snapshots().map(lambda p: ProductCreated(p.id, p)),
    product_snapshots().map(lambda p: ProductUpdated(p.id, p)),
    st.builds(PriceChanged, product_ids, money(), money(), money(), low_versions),
    st.builds(ProductDiscontinued, product_ids, low_versions),
    st.builds(AvailabilityChanged, product_ids, st.booleans(), quantities, low_versions),
    details_provided(product_ids, product_snapshots()),
    st.builds(
        ProductBatchDetailsProvided,
        st.lists(product_ids, max_size=3).map(tuple),
        ids,
        st.lists(product_snapshots(), max_size=3).map(tuple),
    ),
)


@st.composite
def handled_envelopes(draw: st.DrawFn) -> Envelope:
    """Envelopes of the types the Order Service applies, as the Product Service would send them."""
    data = draw(handled_data)
    return Envelope(
        id=draw(ids),
        type=event_type_of(data),
        source="product-service",
        data_version="1.0",
        timestamp=draw(timestamps()),
        correlation_id=draw(ids),
        data=data,
    )


valid_envelopes = handled_envelopes()


def json_of(envelope: Envelope) -> Any:
    """The envelope as plain JSON values (Decimal for non-integral numbers), ready to mangle."""
    return loads(dumps(envelope_to_wire(envelope)))


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key or index below the root, depth first."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def get_at(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


def set_at(node: Any, path: tuple[Any, ...], value: Any) -> None:
    get_at(node, path[:-1])[path[-1]] = value


SENTINEL = "\u0000fuzz-raw-token\u0000"


def with_raw(wire: Any, path: tuple[Any, ...], raw: bytes) -> bytes:
    """The wire as JSON with the value at `path` replaced by raw JSON text (deep nesting, 1e400...)."""
    mangled = copy.deepcopy(wire)
    set_at(mangled, path, SENTINEL)
    encoded = dumps(mangled)
    marker = json.dumps(SENTINEL).encode()
    assert encoded.count(marker) == 1
    return encoded.replace(marker, raw)


def wrong_type_for(value: Any) -> st.SearchStrategy[Any]:
    """A JSON value no field holding `value` accepts (no field the Order Service reads is nullable)."""
    if isinstance(value, str):
        return st.sampled_from([0, 7, True, [], {}, [value], {"value": value}])
    if isinstance(value, bool):
        return st.sampled_from([0, 1, "true", [], {}])
    if isinstance(value, int | Decimal):
        return st.sampled_from(["1", "12.50", True, False, [], {}, [1]])
    if isinstance(value, dict):
        return st.sampled_from(["x", 1, True, [], [value]])
    if isinstance(value, list):
        return st.sampled_from(["x", 1, True, {}, {"0": value}])
    return st.sampled_from(["x", 1, True, [], {}])


def _huge(size: int) -> str:
    return "x" * size


MUTATIONS = (
    "wrong type",
    "missing field",
    "huge string",
    "wrong dataVersion",
    "unknown type",
    "another subject's type",
    "not UTF-8",
    "deep nesting",
    "unreadable number",
    "not a version",
    "three decimals",
    "not an object",
    "garbage",
)
HUGE_STRING_MAX = 1_000_000
"""The longest string "huge string" draws (one byte a character: an envelope stays under 1 MiB)."""
DEEP_NESTING_MAX = 200_000
"""The deepest "deep nesting" draws: 400 KB of brackets."""


@st.composite
def poison(draw: st.DrawFn, mutations: Sequence[str] = MUTATIONS) -> Poison:
    """A handled envelope mangled one way (one of `mutations`), so that it can never be applied."""
    envelope = draw(valid_envelopes)
    subject = envelope.type
    wire = json_of(envelope)
    mutation = draw(st.sampled_from(list(mutations)))
    mangled = copy.deepcopy(wire)
    all_paths = list(paths(wire))
    if mutation == "wrong type":
        path = draw(st.sampled_from(all_paths).filter(lambda p: get_at(wire, p) is not None))
        set_at(mangled, path, draw(wrong_type_for(get_at(wire, path))))
    elif mutation == "missing field":
        path = draw(st.sampled_from([p for p in all_paths if isinstance(p[-1], str)]))
        del get_at(mangled, path[:-1])[path[-1]]
    elif mutation == "huge string":
        size = draw(st.integers(min_value=10_000, max_value=HUGE_STRING_MAX))
        mangled[draw(st.sampled_from(["type", "dataVersion", "timestamp"]))] = _huge(size)
    elif mutation == "wrong dataVersion":
        mangled["dataVersion"] = draw(
            st.sampled_from(["2.0", "1", "", "1.0.0", " 1.0", "1.0\n", 1, Decimal("1.0"), None, [], {}])
            | st.text(max_size=10).filter(lambda v: v != "1.0")
        )
    elif mutation == "unknown type":
        mangled["type"] = draw(
            st.sampled_from([*sorted(set(EVENT_TYPES) - HANDLED), "product.renamed", "PRODUCT.CREATED", ""])
            | st.text(max_size=40).filter(lambda v: v not in HANDLED)
        )
    elif mutation == "another subject's type":
        mangled["type"] = draw(st.sampled_from(sorted(HANDLED - {envelope.type})))
    elif mutation == "not UTF-8":
        raw = dumps(wire)
        at = draw(st.integers(min_value=0, max_value=len(raw)))
        bad = draw(st.sampled_from([b"\x80", b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
        return Poison(subject, raw[:at] + bad + raw[at:], mutation)
    elif mutation == "deep nesting":
        depth = draw(st.integers(min_value=5_000, max_value=DEEP_NESTING_MAX))
        return Poison(
            subject, with_raw(wire, draw(st.sampled_from(all_paths)), b"[" * depth + b"]" * depth), mutation
        )
    elif mutation == "unreadable number":
        token = draw(
            st.sampled_from(
                [b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity", b"1e99999999999999999999"]
            )
        )
        return Poison(subject, with_raw(wire, draw(st.sampled_from(all_paths)), token), mutation)
    elif mutation == "not a version":
        version_paths = [p for p in all_paths if p[-1] == "version"]
        if not version_paths:
            return Poison(subject, dumps({**wire, "dataVersion": "0.9"}), "wrong dataVersion")
        set_at(mangled, draw(st.sampled_from(version_paths)), draw(st.integers(max_value=0)))
    elif mutation == "three decimals":
        prices = [p for p in all_paths if p[-1] in ("oldPrice", "newPrice", "basePrice", "currentPrice")]
        if not prices:
            return Poison(subject, dumps({**wire, "dataVersion": "0.9"}), "wrong dataVersion")
        cents = draw(st.integers(min_value=-(10**11), max_value=10**11))
        thousandths = cents * 10 + draw(st.integers(min_value=1, max_value=9))
        set_at(mangled, draw(st.sampled_from(prices)), Decimal(thousandths).scaleb(-3))
    elif mutation == "not an object":
        return Poison(
            subject, draw(st.sampled_from([b"[]", b"null", b'"event"', b"1", b"true", b"[{}]"])), mutation
        )
    else:
        return Poison(subject, draw(st.binary(max_size=200)), mutation)
    return Poison(subject, dumps(mangled), mutation)


messages: st.SearchStrategy[Valid | Poison] = st.one_of(valid_envelopes.map(Valid), poison())


# --- the expected effect of a valid event, by the rule "newest version wins" ----------------------


def snapshots_in(envelope: Envelope) -> list[Product]:
    data = envelope.data
    if isinstance(data, ProductCreated | ProductUpdated):
        return [data.product]
    if isinstance(data, ProductDetailsProvided):
        return [data.product_details] if data.product_details is not None else []
    if isinstance(data, ProductBatchDetailsProvided):
        return list(data.products)
    return []


def product_ids_of(envelope: Envelope) -> set[str]:
    found = {p.id for p in snapshots_in(envelope)}
    product_id = getattr(envelope.data, "product_id", None)
    return found | ({product_id} if isinstance(product_id, str) else set())


async def expected_cache(batch: Sequence[Valid | Poison]) -> dict[str, Product]:
    """The same valid events, handed straight to the handlers of a second container (no consumer)."""
    reference = build_order_container(Settings())
    handlers = order_service_handlers(reference.reactions(), reference.pending())
    seen: set[str] = set()
    touched: set[str] = set()
    for message in batch:
        if isinstance(message, Valid) and message.envelope.id not in seen:
            seen.add(message.envelope.id)
            touched |= product_ids_of(message.envelope)
            await handlers[message.envelope.type](message.envelope)
    return await reference.cache().get_many(sorted(touched))


def letter_holds(letter: dict[str, Any], data: bytes) -> bool:
    """Whether a dead letter is the one of `data`: its copy (the first 64 KiB at most), size and hash."""
    kept = data[:MAX_LETTER_PAYLOAD_BYTES]
    return (
        base64.b64decode(letter["payloadBase64"]) == kept
        and letter["payloadBytes"] == len(data)
        and letter["payloadSha256"] == hashlib.sha256(data).hexdigest()
        and letter["payloadTruncated"] is (len(kept) < len(data))
    )
