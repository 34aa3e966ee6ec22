"""Prometheus metrics (INTERFACE §6), one registry per application so two apps share nothing."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from domain.orders import OrderFlag

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

BREAKER_STATES = {"closed": 0, "half-opened": 1, "opened": 2}


class ServiceMetrics:
    """Every metric of one service; also the application's Telemetry port."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.product_requests = Counter(
            "product_service_requests",
            "Calls to the Product Service by operation and outcome",
            ["operation", "outcome"],
            registry=r,
        )
        self.product_request_seconds = Histogram(
            "product_service_request_seconds",
            "Latency of one call to the Product Service",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.breaker_state = Gauge(
            "circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            ["name"],
            registry=r,
        )
        self.cache_requests = Counter(
            "product_cache_requests", "Product cache reads by result", ["result"], registry=r
        )
        self.discrepancies = Counter(
            "price_discrepancies", "Order items found priced off the latest price", registry=r
        )
        self.flagged = Counter("orders_flagged", "Orders newly flagged, by reason", ["reason"], registry=r)
        self.events_published = Counter(
            "events_published",
            "Events published by type and outcome",
            ["type", "outcome"],
            registry=r,
        )
        self.events_processed = Counter(
            "events_processed",
            "Events consumed by type and outcome (ack, retry, dead_letter, duplicate)",
            ["type", "outcome"],
            registry=r,
        )
        self.async_request_seconds = Histogram(
            "async_request_seconds",
            "Async request-reply round trips (including those that timed out)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.async_request_timeouts = Counter(
            "async_request_timeouts", "Async requests that got no reply in time", registry=r
        )
        self.outbox_pending = Gauge("outbox_pending", "Events stored but not yet published", registry=r)
        self.http_requests = Counter(
            "http_requests",
            "HTTP requests served, by route template and status",
            ["route", "status"],
            registry=r,
        )
        self.http_request_seconds = Histogram(
            "http_request_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_pending = Gauge(
            "jetstream_consumer_pending",
            "Messages a consumer has not been delivered yet (read at scrape time)",
            ["consumer"],
            registry=r,
        )
        self.consumer_ack_pending = Gauge(
            "jetstream_consumer_ack_pending",
            "Messages delivered to a consumer and not yet acknowledged (read at scrape time)",
            ["consumer"],
            registry=r,
        )
        self.breaker_state.labels(name="product-service").set(0)
        for result in ("hit", "miss"):
            self.cache_requests.labels(result=result)
        for flag in OrderFlag:
            self.flagged.labels(reason=flag.value)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # Telemetry port
    def price_discrepancies_found(self, count: int) -> None:
        self.discrepancies.inc(count)

    def order_flagged(self, reason: OrderFlag) -> None:
        self.flagged.labels(reason=reason.value).inc()

    def cache_lookup(self, hits: int, misses: int) -> None:
        self.cache_requests.labels(result="hit").inc(hits)
        self.cache_requests.labels(result="miss").inc(misses)

    def async_request_finished(self, seconds: float, timed_out: bool) -> None:
        self.async_request_seconds.observe(seconds)
        if timed_out:
            self.async_request_timeouts.inc()

    def breaker_changed(self, name: str, state: str) -> None:
        self.breaker_state.labels(name=name).set(BREAKER_STATES.get(state, 0))
