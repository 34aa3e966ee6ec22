"""One rooted error hierarchy; each error has a stable snake_case code. HTTP statuses live in entrypoints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from domain.ids import MAX_ID_LENGTH

MAX_SHOWN_ID = MAX_ID_LENGTH
"""The most of an id a message or its details echo (the HTTP routes refuse longer ids)."""


def shown_id(value: str) -> str:
    """`value`, or its first MAX_SHOWN_ID characters and "..." when longer."""
    return value if len(value) <= MAX_SHOWN_ID else f"{value[:MAX_SHOWN_ID]}..."


class OrderingError(Exception):
    """Root of every error the domain and application raise on purpose."""

    code: ClassVar[str] = "ordering_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequest(OrderingError):
    """A request the wire refuses. Built by `of_fields`, its details name the fields:
    `{"field": the first one, "problems": [{"field", "message"}, ...]}`, plus any extra keys."""

    code = "invalid_request"

    @classmethod
    def of_fields(cls, problems: Sequence[tuple[str, str]], **extra: Any) -> InvalidRequest:
        """`problems`: (field, human sentence) pairs, at least one; the first one is the message."""
        field, message = problems[0]
        listed = [{"field": name, "message": sentence} for name, sentence in problems]
        return cls(message, {"field": field, "problems": listed, **extra})

    @classmethod
    def of_field(cls, field: str, message: str, **extra: Any) -> InvalidRequest:
        return cls.of_fields([(field, message)], **extra)


class ProductNotFound(OrderingError):
    code = "product_not_found"

    def __init__(self, product_id: str) -> None:
        shown = shown_id(product_id)
        super().__init__(f"Product {shown} was not found", {"productId": shown})
        self.product_id = product_id


class ProductUnavailable(OrderingError):
    """The product cannot be had in the requested quantity (the seed's message, kept verbatim)."""

    code = "product_unavailable"

    def __init__(self, product_id: str, requested: int, available: int) -> None:
        shown = shown_id(product_id)
        super().__init__(
            f"Product {shown} is not available in the requested quantity",
            {"productId": shown, "requested": requested, "available": available},
        )
        self.product_id = product_id


class ProductDiscontinued(OrderingError):
    code = "product_discontinued"

    def __init__(self, product_id: str) -> None:
        shown = shown_id(product_id)
        super().__init__(f"Product {shown} is discontinued and cannot be ordered", {"productId": shown})
        self.product_id = product_id


class ProductInactive(OrderingError):
    code = "product_inactive"

    def __init__(self, product_id: str) -> None:
        shown = shown_id(product_id)
        super().__init__(f"Product {shown} is inactive and cannot be ordered", {"productId": shown})
        self.product_id = product_id


class CurrencyMismatch(OrderingError):
    code = "currency_mismatch"

    def __init__(self, currencies: list[str]) -> None:
        super().__init__("All products of one order must share a currency", {"currencies": currencies})


class OrderNotFound(OrderingError):
    code = "order_not_found"

    def __init__(self, order_id: str) -> None:
        shown = shown_id(order_id)
        super().__init__(f"Order {shown} was not found", {"orderId": shown})


class ProductAlreadyExists(OrderingError):
    code = "product_already_exists"

    def __init__(self, product_id: str) -> None:
        shown = shown_id(product_id)
        super().__init__(f"Product {shown} already exists", {"productId": shown})


class IdempotencyConflict(OrderingError):
    """The Idempotency-Key was used before for a different request body."""

    code = "idempotency_key_reused"

    def __init__(self, key: str) -> None:
        super().__init__("This Idempotency-Key was already used for a different order", {"key": key})


class DependencyUnavailable(OrderingError):
    """A collaborator outside the process did not answer; the request may succeed later."""

    code = "dependency_unavailable"


class ProductServiceUnavailable(DependencyUnavailable):
    code = "product_service_unavailable"

    def __init__(self, message: str = "", details: Any = None) -> None:
        super().__init__(
            message or "Product Service is currently unavailable and product not in cache",
            details,
        )


class CacheFallbackUnavailable(ProductServiceUnavailable):
    """The Product Service is unavailable and its fallback, the product cache, could not be read."""

    def __init__(self, details: Any = None) -> None:
        super().__init__(
            "Product Service is currently unavailable and the product cache cannot be read", details
        )


class StoreUnavailable(DependencyUnavailable):
    code = "store_unavailable"

    def __init__(self, message: str = "", details: Any = None) -> None:
        super().__init__(message or "The order store is unavailable; try again shortly", details)


class CacheUnavailable(DependencyUnavailable):
    code = "cache_unavailable"


class EventBusUnavailable(DependencyUnavailable):
    code = "event_bus_unavailable"


class UndecodableEvent(OrderingError):
    """A message that can never be handled (bad JSON, missing fields, unknown type or version)."""

    code = "undecodable_event"
