"""The private cattrs converters: every wire type round-trips exactly; bad input is refused, never coerced."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import simplejson
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from adapters.broker import STREAMS
from adapters.wire.converter import dumps, format_timestamp, loads, parse_timestamp, structure_or_reject
from adapters.wire.event_json import decode, encode, envelope_to_wire
from adapters.wire.http_json import REQUESTS, RESPONSES, discrepancy_to_wire, order_to_wire, product_to_wire
from domain.errors import InvalidRequest, UndecodableEvent
from domain.events import (
    EVENT_TYPES,
    STREAM_ROOTS,
    Envelope,
    PriceChanged,
    ProductBatchDetailsRequested,
    ProductDetailsProvided,
    ProductDetailsRequested,
)
from domain.orders import Order
from domain.pricing import DiscrepancyResult, PriceDiscrepancy
from domain.products import Product, ProductStatus
from entrypoints.http.schemas import (
    BatchRequest,
    CreateOrderRequest,
    CreateProductRequest,
    OrderItemRequest,
    PatchProductRequest,
)

from .builders import CHAIR, a_product, an_order
from .fakes import START
from .strategies import envelopes, ids, money, orders, products


@given(envelopes())
def test_every_envelope_round_trips_through_the_event_wire(envelope: Envelope) -> None:
    assert decode(encode(envelope)) == envelope


def keys_of(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_of(v)}
    if isinstance(value, list | tuple):
        return {k for v in value for k in keys_of(v)}
    return set()


@given(envelopes())
def test_every_key_on_the_event_wire_is_camel_case(envelope: Envelope) -> None:
    assert not [key for key in keys_of(loads(encode(envelope))) if "_" in key]


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_the_strategies_cover_every_event_type(event_type: str) -> None:
    """Deterministic: Hypothesis searches until it finds one, instead of hoping a sample has it."""
    found = find(
        envelopes(),
        lambda envelope: envelope.type == event_type,
        settings=settings(phases=[Phase.generate], max_examples=2000, database=None),
    )
    assert found.type == event_type


@given(products())
def test_every_product_round_trips_through_the_http_wire(product: Product) -> None:
    raw = dumps(product_to_wire(product))
    assert structure_or_reject(RESPONSES, loads(raw), Product) == product


@given(orders())
def test_every_order_round_trips_through_the_http_wire(order: Order) -> None:
    raw = dumps(order_to_wire(order))
    assert structure_or_reject(RESPONSES, loads(raw), Order) == order


def test_product_wire_matches_the_interface_example() -> None:
    wire = json.loads(dumps(product_to_wire(a_product(CHAIR, version=3))))
    assert wire == {
        "id": CHAIR,
        "name": "Product e8acc97f",
        "basePrice": 249.99,
        "currentPrice": 249.99,
        "currency": "USD",
        "status": "ACTIVE",
        "quantityAvailable": 12,
        "version": 3,
        "updatedAt": "2026-11-23T10:00:00Z",
    }


def test_money_is_an_exact_json_number() -> None:
    raw = dumps(order_to_wire(an_order(total_amount=Decimal("59.97"))))
    assert b'"totalAmount":59.97' in raw
    assert b'"unitPrice":249.99' in raw
    assert loads(raw)["totalAmount"] == Decimal("59.97")


def test_discrepancy_result_wire_shape() -> None:
    result = DiscrepancyResult(
        (PriceDiscrepancy("p1", Decimal("10.00"), Decimal("3.00"), Decimal(700) / 3),),
        Decimal("-7.00"),
        True,
    )
    wire = json.loads(dumps(discrepancy_to_wire(result)), parse_float=Decimal)
    assert wire == {
        "hasDiscrepancies": True,
        "discrepancies": [
            {
                "productId": "p1",
                "orderPrice": Decimal("10.00"),
                "currentPrice": Decimal("3.00"),
                "difference": Decimal("233.3333"),
            }
        ],
        "totalDifference": Decimal("-7.00"),
        "requiresReview": True,
    }


def test_optional_refresh_mode_is_left_out_when_unset() -> None:
    envelope = Envelope(
        "e-1",
        "product.batch_details_requested",
        "order-service",
        "1.0",
        START,
        "c",
        ProductBatchDetailsRequested(("a",), "r", "product.batch_details_provided"),
    )
    assert "refreshMode" not in envelope_to_wire(envelope)["data"]
    assert decode(encode(envelope)) == envelope


def batch_request_with(**fields: Any) -> bytes:
    data = {"productIds": [CHAIR], "requestId": "r-1", "callbackEvent": "product.batch_details_provided"}
    return wire_event(type="product.batch_details_requested", data={**data, **fields})


@pytest.mark.parametrize("refresh_mode", [True, False, None])
def test_refresh_mode_is_true_false_or_null(refresh_mode: bool | None) -> None:
    """The seed's scheduled refresh sends `refreshMode: true` (a JSON boolean)."""
    data = decode(batch_request_with(refreshMode=refresh_mode)).data
    assert isinstance(data, ProductBatchDetailsRequested)
    assert data.refresh_mode is refresh_mode


@pytest.mark.parametrize("refresh_mode", ["true", 1, 0, "yes", [], {}])
def test_refresh_mode_of_another_type_is_undecodable(refresh_mode: object) -> None:
    with pytest.raises(UndecodableEvent, match=r"data\.refreshMode must be true or false or null"):
        decode(batch_request_with(refreshMode=refresh_mode))


def test_timestamps_are_utc_with_z_to_the_millisecond() -> None:
    assert format_timestamp(START) == "2026-11-23T10:00:00Z"
    assert format_timestamp(START.replace(microsecond=123456)) == "2026-11-23T10:00:00.123Z"
    assert parse_timestamp("2026-11-23T12:00:00+02:00") == START


@pytest.mark.parametrize(
    "value", ["2026-11-23T10:00:00", "yesterday", 1700000000, "0001-01-01T00:00:00+01:00"]
)
def test_bad_timestamps_are_value_errors(value: object) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_timestamp(value)


# --- strictness: no silent coercion -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"userId": "u", "items": [{"productId": "p", "quantity": "2"}]}, "items[0].quantity"),
        ({"userId": "u", "items": [{"productId": "p", "quantity": 2.0}]}, "items[0].quantity"),
        ({"userId": "u", "items": [{"productId": "p", "quantity": True}]}, "items[0].quantity"),
        ({"userId": 7, "items": [{"productId": "p", "quantity": 2}]}, "userId"),
        ({"userId": "u", "items": "pp"}, "items"),
        ({"userId": "u", "items": [{"productId": "p", "quantity": 1, "variantId": 3}]}, "items[0].variantId"),
        ({"userId": "u", "items": [{"product_id": "p", "quantity": 1}]}, "items[0]"),
        ({"items": [{"productId": "p", "quantity": 1}]}, "userId"),
    ],
)
def test_request_wire_refuses_coercion_and_names_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        structure_or_reject(REQUESTS, loads(json.dumps(body)), CreateOrderRequest)
    assert field in caught.value.message
    assert caught.value.details["field"].startswith(field)


def test_a_validator_nested_in_event_data_still_says_which_rule_was_broken() -> None:
    product = json.loads(dumps(product_to_wire(a_product(CHAIR))))
    data = {"productId": CHAIR, "requestId": "r-1", "productDetails": {**product, "quantityAvailable": -1}}
    with pytest.raises(UndecodableEvent, match=r"data\.productDetails\.quantityAvailable must be >= 0"):
        decode(wire_event(type="product.details_provided", data=data))


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff\xfe{}",
        b"[]",
        b'{"id": "e"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"x": 1e99999999999999999999}',
    ],
)
def test_undecodable_events_say_why(raw: bytes) -> None:
    with pytest.raises(UndecodableEvent):
        decode(raw)


def wire_event(**changes: Any) -> bytes:
    envelope: dict[str, Any] = {
        "id": "e-1",
        "type": "product.price_changed",
        "source": "product-service",
        "dataVersion": "1.0",
        "timestamp": "2026-11-23T10:00:00Z",
        "correlationId": "c-1",
        "data": {"productId": CHAIR, "oldPrice": 10, "newPrice": 12.5, "basePrice": 12.5, "version": 2},
    }
    envelope.update(changes)
    return json.dumps(envelope).encode()


def test_a_well_formed_event_decodes() -> None:
    data = decode(wire_event()).data
    assert data == PriceChanged(CHAIR, Decimal(10), Decimal("12.5"), Decimal("12.5"), 2)


@pytest.mark.parametrize(
    "changes",
    [
        {"dataVersion": "2.0"},
        {"type": "product.exploded"},
        {"timestamp": "0001-01-01T00:00:00+05:00"},
        {"timestamp": "2026-11-23T10:00:00"},
        {"id": ""},
        {"data": None},
        {"data": {"productId": CHAIR, "version": 2}},
        {"data": {"productId": CHAIR, "oldPrice": 10, "newPrice": "12.5", "basePrice": 12.5, "version": 2}},
        {"data": {"productId": CHAIR, "oldPrice": 10, "newPrice": -1, "basePrice": 12.5, "version": 2}},
        {"data": {"productId": CHAIR, "oldPrice": 10, "newPrice": 1.234, "basePrice": 12.5, "version": 2}},
    ],
)
def test_events_that_can_never_be_handled_are_undecodable(changes: dict[str, Any]) -> None:
    with pytest.raises(UndecodableEvent):
        decode(wire_event(**changes))


def test_an_undecodable_event_says_which_rule_its_data_broke() -> None:
    bad_version = {"productId": CHAIR, "oldPrice": 10, "newPrice": 12, "basePrice": 12, "version": 0}
    with pytest.raises(
        UndecodableEvent, match=r"data\.version must be an integer from 1 to 9007199254740991, got 0"
    ):
        decode(wire_event(data=bad_version))


order_requests = st.builds(
    CreateOrderRequest,
    user_id=ids,
    items=st.lists(
        st.builds(OrderItemRequest, ids, st.integers(min_value=1, max_value=10_000), st.none() | ids),
        min_size=1,
        max_size=5,
    ).map(tuple),
)
product_requests = st.builds(
    CreateProductRequest,
    name=ids,
    base_price=money(),
    current_price=money(),
    currency=st.sampled_from(["USD", "EUR"]),
    status=st.sampled_from(ProductStatus),
    quantity_available=st.integers(min_value=0, max_value=10**9),
    id=st.none() | ids,
)
patch_requests = st.builds(
    PatchProductRequest,
    name=st.none() | ids,
    base_price=st.none() | money(),
    current_price=st.none() | money(),
    status=st.none() | st.sampled_from(ProductStatus),
    quantity_available=st.none() | st.integers(min_value=0, max_value=10**9),
)
batch_requests = st.builds(BatchRequest, st.lists(ids, max_size=5).map(tuple))


@given(st.one_of(order_requests, product_requests, patch_requests, batch_requests))
def test_every_request_body_round_trips_through_the_strict_request_wire(body: Any) -> None:
    raw = dumps(REQUESTS.unstructure(body))
    assert structure_or_reject(REQUESTS, loads(raw), type(body)) == body


def details_reply(**product_changes: Any) -> bytes:
    product = json.loads(dumps(product_to_wire(a_product(CHAIR))))
    product.update(product_changes)
    return wire_event(
        type="product.details_provided",
        data={"productId": CHAIR, "requestId": "r-1", "productDetails": product},
    )


def test_a_product_carried_again_unchanged_is_the_one_decoded_before() -> None:
    first, again, changed = (
        decode(raw).data for raw in (details_reply(), details_reply(), details_reply(name="Another chair"))
    )
    assert isinstance(first, ProductDetailsProvided)
    assert isinstance(again, ProductDetailsProvided)
    assert isinstance(changed, ProductDetailsProvided)
    assert again.product_details is first.product_details
    assert changed.product_details == a_product(CHAIR, name="Another chair")


def test_a_field_equal_in_value_but_not_in_type_is_checked_afresh() -> None:
    decode(details_reply(version=1))
    with pytest.raises(UndecodableEvent):
        decode(details_reply(version=True))  # True == 1, yet never an integer on this wire


def product_wire(product_id: str = CHAIR) -> dict[str, Any]:
    wire: dict[str, Any] = json.loads(dumps(product_to_wire(a_product(CHAIR))))
    return {**wire, "id": product_id}


def order_created_data(product_id: str) -> dict[str, Any]:
    item = {"productId": product_id, "variantId": None, "quantity": 1, "unitPrice": 10}
    return {
        "orderId": "o-1",
        "userId": "u-1",
        "items": [{**item, "productId": CHAIR}, item],
        "totalAmount": 20,
        "timestamp": "2026-11-23T10:00:00Z",
    }


PRODUCT_ID_PLACES: dict[str, tuple[str, Any]] = {
    "price_changed": (
        "product.price_changed",
        lambda p: {"productId": p, "oldPrice": 10, "newPrice": 12, "basePrice": 12, "version": 2},
    ),
    "discontinued": ("product.discontinued", lambda p: {"productId": p, "version": 2}),
    "availability_changed": (
        "product.availability_changed",
        lambda p: {"productId": p, "available": True, "quantityAvailable": 1, "version": 2},
    ),
    "created.productId": ("product.created", lambda p: {"productId": p, "product": product_wire(p)}),
    "updated.product.id": ("product.updated", lambda p: {"productId": p, "product": product_wire(p)}),
    "order_created.items": ("order.created", order_created_data),
    "details_requested": (
        "product.details_requested",
        lambda p: {"productId": p, "requestId": "r-1", "callbackEvent": "product.details_provided"},
    ),
    "details_provided.productId": (
        "product.details_provided",
        lambda p: {"productId": p, "requestId": "r-1", "productDetails": None},
    ),
    "details_provided.productDetails.id": (
        "product.details_provided",
        lambda p: {"productId": p, "requestId": "r-1", "productDetails": product_wire(p)},
    ),
    "batch_requested.productIds": (
        "product.batch_details_requested",
        lambda p: {
            "productIds": [CHAIR, p],
            "requestId": "r-1",
            "callbackEvent": "product.batch_details_provided",
        },
    ),
    "batch_provided.productIds": (
        "product.batch_details_provided",
        lambda p: {"productIds": [p], "requestId": "r-1", "products": []},
    ),
    "batch_provided.products.id": (
        "product.batch_details_provided",
        lambda p: {"productIds": [CHAIR], "requestId": "r-1", "products": [product_wire(), product_wire(p)]},
    ),
}
MAX_PRODUCT_ID = "p" * 128


@pytest.mark.parametrize("place", PRODUCT_ID_PLACES)
def test_a_product_id_of_up_to_128_characters_decodes(place: str) -> None:
    event_type, data = PRODUCT_ID_PLACES[place]
    decode(wire_event(type=event_type, data=data(MAX_PRODUCT_ID)))


@pytest.mark.parametrize("product_id", ["", MAX_PRODUCT_ID + "p"], ids=["empty", "129-characters"])
@pytest.mark.parametrize("place", PRODUCT_ID_PLACES)
def test_an_empty_or_overlong_product_id_in_event_data_is_undecodable(place: str, product_id: str) -> None:
    event_type, data = PRODUCT_ID_PLACES[place]
    with pytest.raises(UndecodableEvent, match="128 characters"):
        decode(wire_event(type=event_type, data=data(product_id)))


SNAPSHOT_PLACES: dict[str, Any] = {
    "product.created": lambda named, carried: {"productId": named, "product": carried},
    "product.updated": lambda named, carried: {"productId": named, "product": carried},
    "product.details_provided": lambda named, carried: {
        "productId": named,
        "requestId": "r-1",
        "productDetails": carried,
    },
}


@pytest.mark.parametrize("event_type", SNAPSHOT_PLACES)
def test_a_snapshot_of_another_product_than_the_one_named_is_undecodable(event_type: str) -> None:
    """Cached under the product's own id, it would be stored silently as a product the event
    does not name; answering a details request, it would be another product's details."""
    data = SNAPSHOT_PLACES[event_type]("desk-01", product_wire(CHAIR))
    with pytest.raises(UndecodableEvent, match=r"data\.productId must be the id of the product carried"):
        decode(wire_event(type=event_type, data=data))


@pytest.mark.parametrize("event_type", SNAPSHOT_PLACES)
def test_a_snapshot_of_the_product_named_decodes(event_type: str) -> None:
    decode(wire_event(type=event_type, data=SNAPSHOT_PLACES[event_type](CHAIR, product_wire(CHAIR))))


CARRIED_PLACES: dict[str, tuple[str, Any]] = {
    "created": ("product.created", lambda w: {"productId": w["id"], "product": w}),
    "updated": ("product.updated", lambda w: {"productId": w["id"], "product": w}),
    "details_provided": (
        "product.details_provided",
        lambda w: {"productId": w["id"], "requestId": "r-1", "productDetails": w},
    ),
    "batch_provided": (
        "product.batch_details_provided",
        lambda w: {"productIds": [w["id"]], "requestId": "r-1", "products": [product_wire(), w]},
    ),
}
LARGEST_VERSION = 2**53 - 1


@pytest.mark.parametrize("place", CARRIED_PLACES)
@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"name": "n" * 200}, id="name-of-200"),
        pytest.param({"quantityAvailable": 1_000_000_000}, id="stock-of-a-billion"),
        pytest.param({"version": LARGEST_VERSION}, id="version-2**53-1"),
        pytest.param({"currency": "EUR"}, id="another-currency"),
    ],
)
def test_a_carried_product_at_the_product_services_limits_decodes(place: str, fields: dict[str, Any]) -> None:
    event_type, data = CARRIED_PLACES[place]
    decode(wire_event(type=event_type, data=data({**product_wire(), **fields})))


@pytest.mark.parametrize("place", CARRIED_PLACES)
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"name": "n" * 201}, "name", id="name-of-201"),
        pytest.param({"name": "n" * 100_000}, "name", id="name-of-100000"),
        pytest.param({"name": "   "}, "name", id="blank-name"),
        pytest.param({"name": ""}, "name", id="empty-name"),
        pytest.param({"currency": "dollars"}, "currency", id="currency-dollars"),
        pytest.param({"currency": "usd"}, "currency", id="currency-lower-case"),
        pytest.param({"currency": "US"}, "currency", id="currency-of-2"),
        pytest.param({"currency": "U5D"}, "currency", id="currency-with-a-digit"),
        pytest.param({"quantityAvailable": 1_000_000_001}, "quantityAvailable", id="stock-past-a-billion"),
        pytest.param({"version": LARGEST_VERSION + 1}, "version", id="version-2**53"),
        pytest.param({"version": 2**70}, "version", id="version-2**70"),
    ],
)
def test_a_carried_product_the_product_service_would_refuse_is_undecodable(
    place: str, fields: dict[str, Any], field: str
) -> None:
    """The Product Service's own create/PATCH rules: cached, such a snapshot would be served to
    orders (a 100,000-character name), or, at a version past 2**53-1, never be replaced again."""
    event_type, data = CARRIED_PLACES[place]
    with pytest.raises(UndecodableEvent, match=field):
        decode(wire_event(type=event_type, data=data({**product_wire(), **fields})))


VERSIONED_EVENTS: dict[str, dict[str, Any]] = {
    "product.price_changed": {"productId": CHAIR, "oldPrice": 10, "newPrice": 12, "basePrice": 12},
    "product.discontinued": {"productId": CHAIR},
    "product.availability_changed": {"productId": CHAIR, "available": True, "quantityAvailable": 1},
}


@pytest.mark.parametrize("event_type", VERSIONED_EVENTS)
def test_a_partial_event_at_version_2_53_minus_1_decodes(event_type: str) -> None:
    decode(wire_event(type=event_type, data={**VERSIONED_EVENTS[event_type], "version": LARGEST_VERSION}))


@pytest.mark.parametrize("event_type", VERSIONED_EVENTS)
@pytest.mark.parametrize("version", [LARGEST_VERSION + 1, 2**70])
def test_a_partial_event_past_version_2_53_minus_1_is_undecodable(event_type: str, version: int) -> None:
    with pytest.raises(UndecodableEvent, match=r"data\.version must be"):
        decode(wire_event(type=event_type, data={**VERSIONED_EVENTS[event_type], "version": version}))


def test_a_stock_change_past_the_product_services_stock_limit_is_undecodable() -> None:
    stock = {**VERSIONED_EVENTS["product.availability_changed"], "version": 2}
    decode(
        wire_event(type="product.availability_changed", data={**stock, "quantityAvailable": 1_000_000_000})
    )
    with pytest.raises(UndecodableEvent, match=r"data\.quantityAvailable must be"):
        decode(
            wire_event(
                type="product.availability_changed", data={**stock, "quantityAvailable": 1_000_000_001}
            )
        )


def details_request(event_type: str, callback: object) -> bytes:
    if event_type == "product.details_requested":
        data = {"productId": CHAIR, "requestId": "r-1", "callbackEvent": callback}
    else:
        data = {"productIds": [CHAIR], "requestId": "r-1", "callbackEvent": callback}
    return wire_event(type=event_type, data=data)


REQUEST_TYPES = ["product.details_requested", "product.batch_details_requested"]


REPLY_TYPE_OF = {
    "product.details_requested": "product.details_provided",
    "product.batch_details_requested": "product.batch_details_provided",
}


@pytest.mark.parametrize("event_type", REQUEST_TYPES)
@pytest.mark.parametrize("under", ["", ".order-1", ".0f3a9c2b7d1e.x", ".réponses"])
def test_a_request_answered_on_its_reply_type_or_under_it_decodes(event_type: str, under: str) -> None:
    callback = REPLY_TYPE_OF[event_type] + under
    data = decode(details_request(event_type, callback)).data
    assert isinstance(data, ProductDetailsRequested | ProductBatchDetailsRequested)
    assert data.callback_event == callback


@pytest.mark.parametrize("event_type", REQUEST_TYPES)
@pytest.mark.parametrize(
    "callback",
    [
        pytest.param("order.created", id="order-created"),
        pytest.param("order.anything", id="under-order"),
        pytest.param("deadletter.product.updated", id="under-deadletter"),
        pytest.param("product.price_changed", id="another-product-event"),
        pytest.param("product.created.x", id="under-another-product-event"),
        pytest.param("product.details_requested", id="a-request-type"),
        pytest.param("product.details_provided_x", id="a-longer-token"),
        pytest.param("product.réponses.ünïcode", id="product-elsewhere"),
    ],
)
def test_a_request_whose_callback_could_be_mistaken_for_another_event_is_undecodable(
    event_type: str, callback: str
) -> None:
    """ORDER_EVENTS, DEAD_LETTERS and PRODUCT_EVENTS keep what lands there: a reply on
    `order.created` or `product.price_changed` would be stored as such and dead-lettered by
    its consumer, one on `deadletter.x` would be a dead letter with no reason."""
    with pytest.raises(UndecodableEvent, match=r"data\.callbackEvent must be"):
        decode(details_request(event_type, callback))


@pytest.mark.parametrize("event_type", REQUEST_TYPES)
@pytest.mark.parametrize(
    "callback",
    [
        "$JS.API.STREAM.DELETE.ORDER_EVENTS",
        "$JS.API.STREAM.PURGE.PRODUCT_EVENTS",
        "$SYS.REQ.SERVER.PING",
        "$KV.a.b",
    ],
)
def test_a_request_whose_callback_is_a_server_api_subject_is_undecodable(
    event_type: str, callback: str
) -> None:
    """nats-server acts on a plain publish to its API subjects, reply or not: answered there, the
    Product Service's own connection would delete or purge a stream (tried on nats-server 2.9)."""
    with pytest.raises(UndecodableEvent, match=r"data\.callbackEvent must be"):
        decode(details_request(event_type, callback))


def test_the_roots_a_callback_may_not_use_are_those_of_the_streams() -> None:
    assert {
        pattern.removesuffix(".>") for patterns in STREAMS.values() for pattern in patterns
    } == STREAM_ROOTS


def test_a_reply_type_is_a_callback_only_for_its_own_request() -> None:
    with pytest.raises(UndecodableEvent, match=r"data\.callbackEvent must be"):
        decode(details_request("product.details_requested", "product.batch_details_provided.order-1"))
    with pytest.raises(UndecodableEvent, match=r"data\.callbackEvent must be"):
        decode(details_request("product.batch_details_requested", "product.details_provided"))


@pytest.mark.parametrize("event_type", REQUEST_TYPES)
@pytest.mark.parametrize(
    "callback",
    [
        pytest.param("", id="empty"),
        pytest.param("has space", id="space"),
        pytest.param("product.details_provided x", id="space-in-a-token"),
        pytest.param("product.details_provided\r\nPUB x 1", id="crlf"),
        pytest.param("product.a\tb", id="tab"),
        pytest.param("product.a\x00b", id="control-character"),
        pytest.param("product.", id="empty-last-token"),
        pytest.param("product..x", id="empty-middle-token"),
        pytest.param(".product.x", id="empty-first-token"),
        pytest.param("product.>", id="full-wildcard"),
        pytest.param("product.*", id="token-wildcard"),
        pytest.param("product.*.x", id="token-wildcard-inside"),
        pytest.param("product.a>", id="wildcard-character-in-a-token"),
        pytest.param("product." + "x" * 300, id="overlong"),
    ],
)
def test_a_request_whose_callback_can_never_be_published_is_undecodable(
    event_type: str, callback: str
) -> None:
    with pytest.raises(UndecodableEvent, match=r"data\.callbackEvent must be a literal subject"):
        decode(details_request(event_type, callback))


@pytest.mark.parametrize(
    "callback",
    ["product.details_provided", "_INBOX.k3j4h5", "nowhere.reply", "orders.x", "product", "deadletter"],
)
def test_a_literal_subject_outside_the_streams_is_a_callback(callback: str) -> None:
    """Under product. the reply is stored; elsewhere (an asker's inbox) it is published plainly."""
    request = decode(details_request("product.details_requested", callback))
    assert isinstance(request.data, ProductDetailsRequested)
    assert request.data.callback_event == callback


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.decimals(allow_nan=False, allow_infinity=False, places=2)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_dumps_writes_what_simplejson_would_have_written(value: Any) -> None:
    """The fast encoder (orjson) and its fallback (simplejson) agree on every value, big ints and
    lone surrogates included (those take the fallback): the same JSON, Decimals as exact numbers."""
    written = dumps(value)
    before = simplejson.dumps(value, use_decimal=True, separators=(",", ":"))
    assert loads(written) == loads(before)
    assert json.loads(written) == json.loads(before)


def test_a_decimal_is_written_digit_for_digit() -> None:
    assert dumps({"price": Decimal("249.90"), "big": 2**80, "text": "caf\u00e9 \ud800"}) == (
        b'{"price":249.90,"big":1208925819614629174706176,"text":"caf\\u00e9 \\ud800"}'
    )
    assert dumps([Decimal("0.01"), "café"]) == '[0.01,"café"]'.encode()


def test_dumps_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        dumps({"at": START})


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.timezones()))
def test_timestamps_are_written_as_isoformat_would_in_utc(value: datetime) -> None:
    utc = value.astimezone(UTC)
    expected = utc.isoformat(timespec="milliseconds" if utc.microsecond else "seconds").replace("+00:00", "Z")
    assert format_timestamp(value) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{'id': 1}", "not JSON: Expecting property name"),
        ('{"name": «chaise»}'.encode(), "not JSON: "),
        (b"", "not JSON: "),
        (b"\xc3\x28{}", "not UTF-8: 'utf-8' codec can't decode byte 0xc3 in position 0"),
        ('{"name": "caf\u00e9"}'.encode("latin-1"), "not UTF-8: "),
    ],
)
def test_an_undecodable_event_says_whether_its_bytes_are_not_utf8_or_not_json(
    raw: bytes, reason: str
) -> None:
    """Valid UTF-8 that is not JSON was reported as "not UTF-8 JSON", sending a reader to the encoding."""
    with pytest.raises(UndecodableEvent) as caught:
        decode(raw)
    assert caught.value.message.startswith(reason), caught.value.message


def test_an_order_created_at_an_orders_limits_decodes() -> None:
    item = {"productId": CHAIR, "variantId": "v" * 128, "quantity": 10_000, "unitPrice": 10}
    data = {**order_created_data(CHAIR), "orderId": "o" * 128, "userId": "u" * 128, "items": [item] * 100}
    decode(wire_event(type="order.created", data=data))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"items": []}, r"data\.items", id="no-items"),
        pytest.param(
            {"items": [{"productId": "x", "variantId": None, "quantity": 1, "unitPrice": 1}] * 101},
            r"data\.items",
            id="101-items",
        ),
        pytest.param({"orderId": ""}, r"data\.orderId", id="empty-order-id"),
        pytest.param({"orderId": "o" * 100_000}, r"data\.orderId", id="order-id-of-100000"),
        pytest.param({"userId": "u" * 129}, r"data\.userId", id="user-id-of-129"),
        pytest.param(
            {"items": [{"productId": "x", "variantId": None, "quantity": 10_001, "unitPrice": 1}]},
            "quantity",
            id="quantity-10001",
        ),
        pytest.param(
            {"items": [{"productId": "x", "variantId": "", "quantity": 1, "unitPrice": 1}]},
            "variantId",
            id="empty-variant",
        ),
    ],
)
def test_an_order_created_past_an_orders_limits_is_undecodable(change: dict[str, Any], field: str) -> None:
    """Before: any number of items, any quantity, ids of any length: one 889 KB order.created of
    12,000 unknown products gave the Product Service 12,000 warning lines."""
    with pytest.raises(UndecodableEvent, match=field):
        decode(wire_event(type="order.created", data={**order_created_data(CHAIR), **change}))


@pytest.mark.parametrize("event_type", ["product.batch_details_requested", "product.batch_details_provided"])
def test_a_batch_of_more_than_1000_ids_is_undecodable(event_type: str) -> None:
    """Before: a request of 100,000 ids (989 KB) was read and answered in full (889 KB)."""
    base: dict[str, Any] = {"requestId": "r-1"}
    base |= (
        {"callbackEvent": event_type.replace("requested", "provided")}
        if "requested" in event_type
        else {"products": []}
    )
    decode(wire_event(type=event_type, data={**base, "productIds": [f"p{i}" for i in range(1000)]}))
    with pytest.raises(UndecodableEvent, match=r"data\.productIds must hold at most 1000 ids"):
        decode(wire_event(type=event_type, data={**base, "productIds": [f"p{i}" for i in range(1001)]}))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"id": "e" * 129}, "id"),
        ({"correlationId": "c" * 257}, "correlationId"),
        (
            {
                "type": "product.details_requested",
                "data": {
                    "productId": CHAIR,
                    "requestId": "r" * 129,
                    "callbackEvent": "product.details_provided",
                },
            },
            "data.requestId",
        ),
    ],
)
def test_an_event_id_request_id_or_correlation_id_of_any_size_is_undecodable(
    changes: dict[str, Any], field: str
) -> None:
    """Each becomes part of a Redis key, a log line or a reply: an event of 1 MiB ids must not."""
    with pytest.raises(UndecodableEvent, match=field.replace(".", r"\.")):
        decode(wire_event(**changes))


def test_ids_at_their_limits_decode() -> None:
    decode(wire_event(id="e" * 128, correlationId="c" * 256))
