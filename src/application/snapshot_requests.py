"""Use case: ask the Product Service for a product's whole snapshot, without waiting for it."""

from __future__ import annotations

import attrs

from application.envelopes import EnvelopeFactory
from application.ports import EventPublisher, IdGenerator
from domain.events import ProductDetailsRequested


@attrs.frozen
class AskForSnapshot:
    """Publishes `product.details_requested`; the reply lands on `reply_subject` like any other.

    Nobody waits for it: the reply's consumer puts the snapshot in the cache (newest version
    wins). Used when the cache holds a product too far behind an event to patch it.
    """

    publisher: EventPublisher
    envelopes: EnvelopeFactory
    ids: IdGenerator
    reply_subject: str

    async def __call__(self, product_id: str) -> None:
        request_id = self.ids.new_id()
        await self.publisher.publish(
            self.envelopes.wrap(
                ProductDetailsRequested(product_id, request_id, self.reply_subject),
                correlation_id=request_id,
            )
        )
