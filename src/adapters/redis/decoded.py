"""Stored product JSON decoded once per distinct text (the product cache and the catalog both read it)."""

from __future__ import annotations

from adapters.wire.converter import loads
from adapters.wire.http_json import RESPONSES
from domain.products import Product


class DecodedSnapshots:
    """The last snapshot decoded per product id, with the exact text it came from.

    Reading a hot product again mostly returns the same stored text; decoding it (JSON, then
    the strict converter) again would build an equal Product, which is immutable, so the one
    built last time is handed out. Any other text is decoded afresh.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._by_id: dict[str, tuple[str, Product]] = {}

    def decode(self, product_id: str, text: str) -> Product:
        seen = self._by_id.get(product_id)
        if seen is not None and seen[0] == text:
            return seen[1]
        product = RESPONSES.structure(loads(text), Product)
        if seen is None and len(self._by_id) >= self.limit:
            del self._by_id[next(iter(self._by_id))]  # the oldest entry
        self._by_id[product_id] = (text, product)
        return product
