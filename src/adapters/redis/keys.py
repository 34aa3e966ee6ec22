"""Every Redis key the services write, in one place; each is namespaced by the service that owns it.

Both services can share one Redis: the Order Service writes under `order-service:`, the
Product Service under `product-service:`, and the Order Service's product cache under
`product:` (the name the integration has always used for it).
"""

from __future__ import annotations

import attrs

ORDER_SERVICE = "order-service"
PRODUCT_SERVICE = "product-service"
PRODUCT_CACHE_PREFIX = "product:"


@attrs.frozen
class Keyspace:
    """The keys of one service."""

    service: str

    def key(self, *parts: str) -> str:
        return ":".join((self.service, *parts))

    # the Order Service's product cache
    def cached_product(self, product_id: str) -> str:
        """STRING product JSON with the cache TTL."""
        return PRODUCT_CACHE_PREFIX + product_id

    @property
    def active_products(self) -> str:
        """ZSET of cached product ids whose cached status is ACTIVE, scored by when the entry
        expires (epoch ms, the server's clock); pruned when listed. (Not the SET `active` of
        earlier releases: a new name, so an old deployment's key is never read with ZSET calls.)"""
        return self.key("product-cache", "active-by-expiry")

    # orders
    def order(self, order_id: str) -> str:
        """STRING order JSON as created."""
        return self.key("order", order_id)

    def order_flags(self, order_id: str) -> str:
        """SET of the flags added to an order (merged into the order when read)."""
        return self.key("order-flags", order_id)

    def orders_holding(self, product_id: str) -> str:
        """SET of the ids of the orders holding a product."""
        return self.key("orders-by-product", product_id)

    def orders_flagged(self, flag: str) -> str:
        """SET of the ids of the orders carrying a flag."""
        return self.key("orders-by-flag", flag)

    @property
    def orders_by_time(self) -> str:
        """ZSET of order ids scored by creation time in microseconds."""
        return self.key("orders-by-time")

    def idempotency(self, key: str) -> str:
        """STRING JSON record of the order an Idempotency-Key created; expires with
        IDEMPOTENCY_TTL_S."""
        return self.key("idempotency", key)

    # the Product Service's catalog
    def product(self, product_id: str) -> str:
        """STRING product JSON, the catalog's current version."""
        return self.key("product", product_id)

    @property
    def product_prefix(self) -> str:
        """What every `product` key starts with (and no other key)."""
        return self.product("")

    @property
    def products(self) -> str:
        """SET of every product id in the catalog."""
        return self.key("products")

    def reservation(self, order_id: str) -> str:
        """STRING marking that the order's stock is reserved; expires with RESERVATION_TTL_S."""
        return self.key("reservation", order_id)

    # the outbox of either service
    @property
    def outbox_entries(self) -> str:
        """HASH envelope id -> envelope JSON."""
        return self.key("outbox", "entries")

    @property
    def outbox_queue(self) -> str:
        """ZSET of envelope ids scored by `outbox_sequence`: oldest first."""
        return self.key("outbox", "queue")

    @property
    def outbox_sequence(self) -> str:
        """STRING counter giving each stored envelope its place in the queue."""
        return self.key("outbox", "seq")

    @property
    def outbox(self) -> list[str]:
        """The outbox keys in the order the Lua scripts expect them."""
        return [self.outbox_entries, self.outbox_queue, self.outbox_sequence]

    # small ports
    def processed_event(self, event_id: str) -> str:
        """STRING marker with a TTL: the event's effect is stored."""
        return self.key("processed", event_id)

    def lock(self, name: str) -> str:
        """STRING holder token with a TTL (SET NX PX)."""
        return self.key("lock", name)
