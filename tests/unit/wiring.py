"""Both services' use cases wired to the in-memory adapters and hand-written fakes, as the container does."""

from __future__ import annotations

import attrs

from adapters.memory.order_store import InMemoryOrderStore
from adapters.memory.outbox import InMemoryOutbox
from adapters.memory.product_cache import InMemoryProductCache
from adapters.memory.product_store import InMemoryProductStore
from adapters.memory.small_ports import InMemoryLock
from adapters.metrics import ServiceMetrics
from application.catalog import AnswerDetailsRequests, Catalog
from application.create_order import CreateOrderHandler
from application.envelopes import EnvelopeFactory
from application.flagging import OrderFlagger
from application.order_queries import GetOrder, ListOrders
from application.outbox_relay import RelayOutbox
from application.pricing_validation import RevalidateOnPriceChange, ValidateOrderPricing
from application.product_events import ProductEventReactions
from application.product_fetching import ProductFetcher
from application.refresh import RefreshActiveProducts
from application.request_reply import PendingReplies, RefreshProductNow
from application.snapshot_requests import AskForSnapshot
from domain.events import PRODUCT_DETAILS_PROVIDED
from domain.pricing import PricingThresholds

from .fakes import FakeProductService, ManualClock, RecordingPublisher, SequentialIds

CACHE_TTL_S = 3600.0
REPLY_SUBJECT = f"{PRODUCT_DETAILS_PROVIDED}.test-instance"


@attrs.define
class OrderSide:
    """The Order Service's use cases on in-memory adapters; `lookup` stands in for the Product Service."""

    clock: ManualClock
    ids: SequentialIds
    lookup: FakeProductService
    cache: InMemoryProductCache
    outbox: InMemoryOutbox
    orders: InMemoryOrderStore
    metrics: ServiceMetrics
    publisher: RecordingPublisher
    lock: InMemoryLock
    thresholds: PricingThresholds
    fetcher: ProductFetcher
    flagger: OrderFlagger
    envelopes: EnvelopeFactory
    create_order: CreateOrderHandler
    get_order: GetOrder
    list_orders: ListOrders
    validate_pricing: ValidateOrderPricing
    revalidate: RevalidateOnPriceChange
    reactions: ProductEventReactions
    pending: PendingReplies
    refresh_product: RefreshProductNow
    refresh_all: RefreshActiveProducts
    relay: RelayOutbox

    def sample(self, name: str, **labels: str) -> float:
        """A metric's current value (0 when never touched)."""
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def build_order_side(
    *,
    thresholds: PricingThresholds | None = None,
    timeout_s: float = 0.05,
    batch_size: int = 50,
    batch_delay_s: float = 1.0,
) -> OrderSide:
    clock = ManualClock()
    ids = SequentialIds("o")
    lookup = FakeProductService()
    cache = InMemoryProductCache(clock=clock, ttl_s=CACHE_TTL_S)
    outbox = InMemoryOutbox()
    orders = InMemoryOrderStore(outbox=outbox)
    metrics = ServiceMetrics()
    publisher = RecordingPublisher()
    lock = InMemoryLock(clock=clock)
    thresholds = thresholds or PricingThresholds()
    fetcher = ProductFetcher(lookup=lookup, cache=cache, telemetry=metrics, clock=clock)
    flagger = OrderFlagger(orders=orders, telemetry=metrics)
    envelopes = EnvelopeFactory(source="order-service", clock=clock, ids=ids)
    revalidate = RevalidateOnPriceChange(
        orders=orders, fetcher=fetcher, flagger=flagger, thresholds=thresholds
    )
    pending = PendingReplies()
    ask = AskForSnapshot(publisher=publisher, envelopes=envelopes, ids=ids, reply_subject=REPLY_SUBJECT)
    return OrderSide(
        clock=clock,
        ids=ids,
        lookup=lookup,
        cache=cache,
        outbox=outbox,
        orders=orders,
        metrics=metrics,
        publisher=publisher,
        lock=lock,
        thresholds=thresholds,
        fetcher=fetcher,
        flagger=flagger,
        envelopes=envelopes,
        create_order=CreateOrderHandler(
            fetcher=fetcher, orders=orders, envelopes=envelopes, clock=clock, ids=ids
        ),
        get_order=GetOrder(orders=orders),
        list_orders=ListOrders(orders=orders),
        validate_pricing=ValidateOrderPricing(
            orders=orders, fetcher=fetcher, flagger=flagger, thresholds=thresholds
        ),
        revalidate=revalidate,
        reactions=ProductEventReactions(
            cache=cache,
            flagger=flagger,
            revalidate=revalidate,
            ask_for_snapshot=ask,
        ),
        pending=pending,
        refresh_product=RefreshProductNow(
            pending=pending,
            ask=ask,
            fetcher=fetcher,
            clock=clock,
            ids=ids,
            telemetry=metrics,
            timeout_s=timeout_s,
        ),
        refresh_all=RefreshActiveProducts(
            cache=cache,
            publisher=publisher,
            envelopes=envelopes,
            clock=clock,
            lock=lock,
            batch_size=batch_size,
            batch_delay_s=batch_delay_s,
        ),
        # sweeping at every pass, with no grace: what a test leaves in the outbox is due at once
        relay=RelayOutbox(
            outbox=outbox, publisher=publisher, lock=lock, clock=clock, sweep_interval_s=0, grace_s=0
        ),
    )


@attrs.define
class ProductSide:
    """The reference Product Service's use cases on the in-memory catalog."""

    clock: ManualClock
    ids: SequentialIds
    outbox: InMemoryOutbox
    store: InMemoryProductStore
    publisher: RecordingPublisher
    envelopes: EnvelopeFactory
    catalog: Catalog
    answer: AnswerDetailsRequests


def build_product_side() -> ProductSide:
    clock = ManualClock()
    ids = SequentialIds("p")
    outbox = InMemoryOutbox()
    store = InMemoryProductStore(outbox=outbox)
    publisher = RecordingPublisher()
    envelopes = EnvelopeFactory(source="product-service", clock=clock, ids=ids)
    catalog = Catalog(store=store, envelopes=envelopes, clock=clock, ids=ids)
    return ProductSide(
        clock=clock,
        ids=ids,
        outbox=outbox,
        store=store,
        publisher=publisher,
        envelopes=envelopes,
        catalog=catalog,
        answer=AnswerDetailsRequests(catalog=catalog, publisher=publisher, envelopes=envelopes),
    )
