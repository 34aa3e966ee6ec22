"""What happened, as data: the payloads of the integration's ten event types (INTERFACE §5)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import attrs
from attrs.validators import deep_iterable, optional

from domain.ids import check_id
from domain.money import normalize_money
from domain.products import (
    Product,
    check_carried_product,
    check_money,
    check_product_id,
    check_stock,
    check_version,
)

PRODUCT_CREATED = "product.created"
PRODUCT_UPDATED = "product.updated"
PRODUCT_PRICE_CHANGED = "product.price_changed"
PRODUCT_DISCONTINUED = "product.discontinued"
PRODUCT_AVAILABILITY_CHANGED = "product.availability_changed"
ORDER_CREATED = "order.created"
PRODUCT_DETAILS_REQUESTED = "product.details_requested"
PRODUCT_DETAILS_PROVIDED = "product.details_provided"
PRODUCT_BATCH_DETAILS_REQUESTED = "product.batch_details_requested"
PRODUCT_BATCH_DETAILS_PROVIDED = "product.batch_details_provided"

MAX_CALLBACK_LENGTH = 256
"""Ample for `product.<reply type>.<instance>`; a subject past the server's control-line limit
(nats-server: 4 KiB) is not refused but drops the publisher's connection."""

MAX_CORRELATION_ID_LENGTH = 256
"""An envelope's `correlationId` (its `id`, and a request's `requestId`, are ids: domain.ids)."""


STREAM_ROOTS = frozenset({"product", "order", "deadletter"})
"""The first tokens of the subjects the streams keep (PRODUCT_EVENTS, ORDER_EVENTS, DEAD_LETTERS:
`<root>.>`, adapters.broker.STREAMS): whatever is published under them is stored as an event."""


def is_callback_subject(value: str) -> bool:
    """A subject a reply can be published on: a literal one (dot-separated non-empty tokens, no
    whitespace or control character, no `*` or `>`). Under `product.` the reply is kept by the
    PRODUCT_EVENTS stream; elsewhere (an asker's inbox) it is published plainly."""
    return 0 < len(value) <= MAX_CALLBACK_LENGTH and all(
        token and _is_literal(token) for token in value.split(".")
    )


def _is_literal(token: str) -> bool:
    return (
        "*" not in token and ">" not in token and token.isprintable() and not any(c.isspace() for c in token)
    )


def is_reply_subject(value: str, reply_type: str) -> bool:
    """A subject a reply of `reply_type` cannot be taken for another event on: the reply type
    itself or a subject under it (`product.details_provided.<instance>`), or one no stream keeps.
    Under `order.`, `deadletter.` or another `product.` subject a stream would store the reply as
    an order.created, a dead letter or a price change, for its consumers to dead-letter. A subject
    starting with `$` is the server's (`$JS.API.STREAM.PURGE.<stream>`, `$SYS.`, `$KV.`): it acts
    on a plain publish there, with the publisher's rights."""
    if value.startswith("$"):
        return False
    if value == reply_type or value.startswith(reply_type + "."):
        return True
    root, dot, _ = value.partition(".")
    return not (dot and root in STREAM_ROOTS)


def replies_of(reply_type: str) -> Callable[[object, attrs.Attribute[str], str], None]:
    """An attrs validator of a request's callback subject: a request with no subject its reply
    can be published on, and told apart from other events on, can never be answered."""

    def check_callback_subject(_: object, attribute: attrs.Attribute[str], value: str) -> None:
        if not is_callback_subject(value):
            raise ValueError(
                f"{attribute.name} must be a literal subject (non-empty tokens joined by dots, no"
                f" whitespace, * or >, at most {MAX_CALLBACK_LENGTH} characters), got {value[:80]!r}"
            )
        if not is_reply_subject(value, reply_type):
            raise ValueError(
                f"{attribute.name} must be {reply_type}, a subject under it, or a subject outside"
                f" the event streams (none under product., order. or deadletter.) and not starting"
                f" with $, got {value[:80]!r}"
            )

    return check_callback_subject


def names_product_in(carried: str) -> Callable[[object, attrs.Attribute[str], str], None]:
    """An attrs validator of a snapshot event's `product_id`: the id of the product in field
    `carried`, if any. The snapshot is cached under its own id: naming another, it would be
    stored as a product the event does not name (or answer a request for another product)."""

    def check_names_its_product(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
        product = getattr(instance, carried)
        if product is not None and product.id != value:
            raise ValueError(
                f"{attribute.name} must be the id of the product carried ({carried}.id),"
                f" got {value[:80]!r} for {product.id[:80]!r}"
            )

    return check_names_its_product


@attrs.frozen
class ProductCreated:
    product_id: str = attrs.field(validator=[check_product_id, names_product_in("product")])
    product: Product = attrs.field(validator=check_carried_product)


@attrs.frozen
class ProductUpdated:
    product_id: str = attrs.field(validator=[check_product_id, names_product_in("product")])
    product: Product = attrs.field(validator=check_carried_product)


@attrs.frozen
class PriceChanged:
    product_id: str = attrs.field(validator=check_product_id)
    old_price: Decimal = attrs.field(converter=normalize_money, validator=check_money)
    new_price: Decimal = attrs.field(converter=normalize_money, validator=check_money)
    base_price: Decimal = attrs.field(converter=normalize_money, validator=check_money)
    version: int = attrs.field(validator=check_version)


@attrs.frozen
class ProductDiscontinued:
    product_id: str = attrs.field(validator=check_product_id)
    version: int = attrs.field(validator=check_version)


@attrs.frozen
class AvailabilityChanged:
    product_id: str = attrs.field(validator=check_product_id)
    available: bool
    quantity_available: int = attrs.field(validator=check_stock)
    version: int = attrs.field(validator=check_version)


MAX_ORDER_ITEMS = 100
MAX_ORDER_QUANTITY = 10_000
"""An order's limits (INTERFACE §4: `items` 1..100 entries, `quantity` 1..10000), which an
`order.created` keeps too: the Order Service never publishes a larger one, and 12,000 items of
unknown products in one 889 KB event gave the Product Service 12,000 warning lines."""


def check_order_quantity(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= MAX_ORDER_QUANTITY:
        raise ValueError(f"{attribute.name} must be an integer from 1 to {MAX_ORDER_QUANTITY}, got {value}")


def check_order_items(
    _: object, attribute: attrs.Attribute[tuple[object, ...]], value: tuple[object, ...]
) -> None:
    if not 1 <= len(value) <= MAX_ORDER_ITEMS:
        raise ValueError(f"{attribute.name} must hold 1 to {MAX_ORDER_ITEMS} items, got {len(value)}")


@attrs.frozen
class OrderCreatedItem:
    product_id: str = attrs.field(validator=check_product_id)
    variant_id: str | None = attrs.field(validator=optional(check_id))
    quantity: int = attrs.field(validator=check_order_quantity)
    unit_price: Decimal = attrs.field(converter=normalize_money, validator=check_money)


@attrs.frozen
class OrderCreated:
    order_id: str = attrs.field(validator=check_id)
    user_id: str = attrs.field(validator=check_id)
    items: tuple[OrderCreatedItem, ...] = attrs.field(validator=check_order_items)
    total_amount: Decimal
    timestamp: datetime


@attrs.frozen
class ProductDetailsRequested:
    product_id: str = attrs.field(validator=check_product_id)
    request_id: str = attrs.field(validator=check_id)
    callback_event: str = attrs.field(validator=replies_of(PRODUCT_DETAILS_PROVIDED))


@attrs.frozen
class ProductDetailsProvided:
    product_id: str = attrs.field(validator=[check_product_id, names_product_in("product_details")])
    request_id: str = attrs.field(validator=check_id)
    product_details: Product | None = attrs.field(validator=optional(check_carried_product))


MAX_BATCH_IDS = 1000
"""The most product ids a batch details request (and its reply) names: the largest
REFRESH_BATCH_SIZE. Unbounded, a request of 100,000 ids was read and answered in full."""


def check_batch_ids(_: object, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]) -> None:
    if len(value) > MAX_BATCH_IDS:
        raise ValueError(f"{attribute.name} must hold at most {MAX_BATCH_IDS} ids, got {len(value)}")


@attrs.frozen
class ProductBatchDetailsRequested:
    product_ids: tuple[str, ...] = attrs.field(
        validator=[check_batch_ids, deep_iterable(member_validator=check_product_id)]
    )
    request_id: str = attrs.field(validator=check_id)
    callback_event: str = attrs.field(validator=replies_of(PRODUCT_BATCH_DETAILS_PROVIDED))
    refresh_mode: bool | None = None


@attrs.frozen
class ProductBatchDetailsProvided:
    product_ids: tuple[str, ...] = attrs.field(
        validator=[check_batch_ids, deep_iterable(member_validator=check_product_id)]
    )
    request_id: str = attrs.field(validator=check_id)
    products: tuple[Product, ...] = attrs.field(
        validator=deep_iterable(member_validator=check_carried_product)
    )


EventData = (
    ProductCreated
    | ProductUpdated
    | PriceChanged
    | ProductDiscontinued
    | AvailabilityChanged
    | OrderCreated
    | ProductDetailsRequested
    | ProductDetailsProvided
    | ProductBatchDetailsRequested
    | ProductBatchDetailsProvided
)

EVENT_TYPES: dict[str, type[EventData]] = {
    PRODUCT_CREATED: ProductCreated,
    PRODUCT_UPDATED: ProductUpdated,
    PRODUCT_PRICE_CHANGED: PriceChanged,
    PRODUCT_DISCONTINUED: ProductDiscontinued,
    PRODUCT_AVAILABILITY_CHANGED: AvailabilityChanged,
    ORDER_CREATED: OrderCreated,
    PRODUCT_DETAILS_REQUESTED: ProductDetailsRequested,
    PRODUCT_DETAILS_PROVIDED: ProductDetailsProvided,
    PRODUCT_BATCH_DETAILS_REQUESTED: ProductBatchDetailsRequested,
    PRODUCT_BATCH_DETAILS_PROVIDED: ProductBatchDetailsProvided,
}
TYPE_OF: dict[type[EventData], str] = {cls: name for name, cls in EVENT_TYPES.items()}


def event_type_of(data: EventData) -> str:
    return TYPE_OF[type(data)]


@attrs.frozen
class Envelope:
    """Every event on the wire, both directions (INTERFACE §5)."""

    id: str
    type: str
    source: str
    data_version: str
    timestamp: datetime
    correlation_id: str
    data: EventData
