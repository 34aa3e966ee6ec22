"""Use case: ask the Product Service for a product's whole snapshot, without waiting for it."""

from __future__ import annotations

import attrs

from application.envelopes import EnvelopeFactory
from application.ports import EventPublisher, IdGenerator
from domain.events import Envelope, ProductDetailsRequested


@attrs.frozen
class AskForSnapshot:
    """Publishes `product.details_requested`; the reply lands on `reply_subject` like any other.

    The reply's consumer puts the snapshot in the cache (newest version wins) and hands it to
    whoever waits for its request id: the admin refresh does, a cache too far behind an event
    to patch it does not.
    """

    publisher: EventPublisher
    envelopes: EnvelopeFactory
    ids: IdGenerator
    reply_subject: str

    async def __call__(self, product_id: str, request_id: str | None = None) -> None:
        """`request_id`: one the caller waits for (request-reply); a fresh one otherwise."""
        await self.publisher.publish(self.request(product_id, request_id or self.ids.new_id()))

    def request(self, product_id: str, request_id: str) -> Envelope:
        return self.envelopes.wrap(
            ProductDetailsRequested(product_id, request_id, self.reply_subject),
            correlation_id=request_id,
        )

    async def announce(self, request: Envelope) -> bool:
        """The request to the fast path only, at once; `store` owes the stored publish."""
        return await self.publisher.announce(request)

    async def store(self, request: Envelope, *, announced: bool) -> None:
        await self.publisher.publish(request, announced=announced)
