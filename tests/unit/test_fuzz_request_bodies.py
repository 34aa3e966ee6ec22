"""Hypothesis breaks valid request bodies field by field: every result is accepted or a 400 in words."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from adapters.wire.http_json import REQUESTS
from domain.errors import InvalidRequest
from entrypoints.http.parsing import parse_body
from entrypoints.http.schemas import (
    BatchRequest,
    CreateOrderRequest,
    CreateProductRequest,
    PatchProductRequest,
    check_batch,
    check_new_product,
    check_order,
    check_patch,
)

from .error_bodies import check_invalid_request
from .test_wire import batch_requests, order_requests, patch_requests, product_requests

HUGE = "\x00huge\x00"
"""Stands for an integer of 5000 digits, written into the JSON text after encoding."""

CHECKS: dict[type, Callable[[Any], None]] = {
    CreateOrderRequest: check_order,
    BatchRequest: check_batch,
    CreateProductRequest: check_new_product,
    PatchProductRequest: check_patch,
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
    | st.sampled_from(["", "   ", "ACTIVE", "USD", HUGE, "1.5"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value: keys of objects, indexes of arrays."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += places(item, (*path, index))
    return found


def broken(body: Any, path: tuple[Any, ...], how: str, value: Any, key: str) -> Any:
    if not path:
        return value
    *parents, last = path
    holder = body
    for step in parents:
        holder = holder[step]
    if how == "replace":
        holder[last] = value
    elif how == "delete" and isinstance(holder, dict):
        del holder[last]
    elif how == "add" and isinstance(holder[last], dict):
        holder[last][key] = value
    return body


@st.composite
def malformed_bodies(draw: st.DrawFn) -> tuple[type, bytes]:
    request = draw(st.one_of(order_requests, product_requests, patch_requests, batch_requests))
    body = json.loads(json.dumps(REQUESTS.unstructure(request), default=str))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(places(body)))
        how = draw(st.sampled_from(["replace", "delete", "add"]))
        body = broken(body, path, how, draw(json_values), draw(st.text(max_size=8)))
    raw = json.dumps(body).replace(json.dumps(HUGE), "9" * 5000)
    return type(request), raw.encode()


@given(malformed_bodies())
def test_a_malformed_body_is_accepted_or_refused_in_words_naming_the_field(case: tuple[type, bytes]) -> None:
    cls, raw = case
    try:
        CHECKS[cls](parse_body(raw, cls))
    except InvalidRequest as error:
        check_invalid_request({"code": error.code, "message": error.message, "details": error.details})
