"""The Redis cache's decode memo: the same stored text gives the same snapshot, other text is decoded."""

from __future__ import annotations

import attrs

from adapters.redis.decoded import DecodedSnapshots
from adapters.wire.converter import dumps
from adapters.wire.http_json import product_to_wire
from domain.products import Product
from tests.unit.builders import CHAIR, DESK, a_product, newer


def stored_text(product: Product) -> str:
    return dumps(product_to_wire(product)).decode()


def test_the_same_text_is_decoded_once() -> None:
    decoded = DecodedSnapshots()
    text = stored_text(a_product(CHAIR))
    first = decoded.decode(CHAIR, text)
    assert first == a_product(CHAIR)
    assert decoded.decode(CHAIR, "" + text[:]) is first


def test_changed_text_is_decoded_again() -> None:
    decoded = DecodedSnapshots()
    decoded.decode(CHAIR, stored_text(a_product(CHAIR)))
    v2 = newer(a_product(CHAIR), name="renamed")
    assert decoded.decode(CHAIR, stored_text(v2)) == v2
    assert decoded.decode(CHAIR, stored_text(a_product(CHAIR))) == a_product(CHAIR)


def test_the_memo_keeps_at_most_its_limit_dropping_the_oldest() -> None:
    decoded = DecodedSnapshots(limit=2)
    for product_id in ("a", "b", "c"):
        decoded.decode(product_id, stored_text(attrs.evolve(a_product(DESK), id=product_id)))
    assert len(decoded._by_id) == 2
    assert set(decoded._by_id) == {"b", "c"}
