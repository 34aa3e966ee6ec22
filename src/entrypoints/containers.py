"""The composition root: one dependency-injector container per service, adapters chosen by settings.

Only Singletons and Factories: nothing connects when the container is built. The aiohttp
application starts and stops what needs it (the lifecycles in `apps.py`), so in-memory mode opens no
network connection at all.
"""

from __future__ import annotations

from decimal import Decimal

from dependency_injector import containers, providers

from adapters.memory.broker import InMemoryBroker
from adapters.memory.order_store import InMemoryOrderStore
from adapters.memory.outbox import InMemoryOutbox
from adapters.memory.product_cache import InMemoryProductCache
from adapters.memory.product_store import InMemoryProductStore
from adapters.memory.small_ports import InMemoryLock, InMemoryProcessedEvents
from adapters.metrics import ServiceMetrics
from adapters.nats import JetStreamBroker
from adapters.product_client import HttpProductClient, RetryPolicy
from adapters.publisher import BrokerEventPublisher
from adapters.redis.client import RedisClient
from adapters.redis.keys import ORDER_SERVICE, PRODUCT_SERVICE, Keyspace
from adapters.redis.order_store import RedisOrderStore
from adapters.redis.outbox import RedisOutbox
from adapters.redis.product_cache import RedisProductCache
from adapters.redis.product_store import RedisProductStore
from adapters.redis.small_ports import RedisLock, RedisProcessedEvents
from adapters.redis.tracking import TrackedValues
from adapters.system import SystemClock, UuidIds
from application.catalog import AnswerDetailsRequests, Catalog
from application.create_order import CreateOrderHandler
from application.envelopes import EnvelopeFactory
from application.flagging import OrderFlagger
from application.order_queries import GetOrder, ListOrders
from application.outbox_relay import RelayOutbox
from application.ports import Clock
from application.pricing_validation import RevalidateOnPriceChange, ValidateOrderPricing
from application.product_events import ProductEventReactions
from application.product_fetching import ProductFetcher
from application.refresh import RefreshActiveProducts
from application.request_reply import PendingReplies, RefreshProductNow
from application.snapshot_requests import AskForSnapshot
from domain.events import PRODUCT_BATCH_DETAILS_PROVIDED, PRODUCT_DETAILS_PROVIDED
from domain.pricing import PricingThresholds
from entrypoints.event_routing import FAST_PATH_TYPES
from entrypoints.settings import Settings

PROCESSED_TTL_S = 7 * 24 * 3600
"""Beyond JetStream's duplicate window (2 min) and any redelivery horizon."""


def reply_subject(event_type: str, instance_id: str) -> str:
    """Replies to this instance's requests come on a subject of its own."""
    return f"{event_type}.{instance_id}"


def product_service_url(settings: Settings) -> str:
    return settings.product_service_url or (
        f"http://{settings.product_service_host}:{settings.product_service_port}"
    )


def storage_backend(settings: Settings) -> str:
    """What the storage Selectors pick: `redis` when REDIS_URL is set, else `memory`."""
    return "redis" if settings.redis_url else "memory"


def event_bus_backend(settings: Settings) -> str:
    """What the broker Selector picks: `nats` (JetStream) when NATS_URL is set, else `memory`."""
    return "nats" if settings.nats_url else "memory"


def thresholds(settings: Settings) -> PricingThresholds:
    return PricingThresholds(
        discrepancy_pct=Decimal(settings.price_discrepancy_pct),
        review_item_pct=Decimal(settings.review_item_pct),
        review_total_amount=Decimal(settings.review_total_amount),
    )


class Core(containers.DeclarativeContainer):
    """What every service needs: settings, time, ids, metrics, the broker."""

    settings = providers.Dependency(instance_of=Settings)
    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(UuidIds)
    metrics = providers.Singleton(ServiceMetrics)
    # A Singleton per backend, built only when picked and never connected at construction:
    # the app lifecycle starts and closes it.
    broker = providers.Selector(
        providers.Callable(event_bus_backend, settings),
        memory=providers.Singleton(InMemoryBroker),
        nats=providers.Singleton(
            JetStreamBroker,
            servers=providers.Callable(lambda s: s.nats_url, settings),
            stream_replicas=providers.Callable(lambda s: s.nats_stream_replicas, settings),
            client_name=providers.Callable(lambda s: f"instance-{s.instance_id}", settings),
        ),
    )


class Storage(containers.DeclarativeContainer):
    """The storage every service shares the shape of: Redis when REDIS_URL is set, else the
    in-memory twins; one Redis client and one keyspace per service."""

    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()  # the system clock, or a test's
    keys = providers.Dependency(instance_of=Keyspace)

    backend = providers.Callable(storage_backend, settings)
    # A Singleton (not a Resource) so the client is built only when picked; the app lifecycle closes it.
    redis_client = providers.Singleton(RedisClient, url=providers.Callable(lambda s: s.redis_url, settings))
    outbox = providers.Selector(
        backend,
        memory=providers.Singleton(InMemoryOutbox),
        redis=providers.Singleton(RedisOutbox, client=redis_client, keys=keys),
    )
    processed = providers.Selector(
        backend,
        memory=providers.Singleton(InMemoryProcessedEvents, clock=clock, ttl_s=PROCESSED_TTL_S),
        redis=providers.Singleton(
            RedisProcessedEvents, client=redis_client, keys=keys, ttl_s=PROCESSED_TTL_S
        ),
    )
    lock = providers.Selector(
        backend,
        memory=providers.Singleton(InMemoryLock, clock=clock),
        redis=providers.Singleton(RedisLock, client=redis_client, keys=keys),
    )


class OrderService(containers.DeclarativeContainer):
    core = providers.Container(Core)
    settings = core.settings

    envelopes = providers.Singleton(EnvelopeFactory, source="order-service", clock=core.clock, ids=core.ids)
    publisher = providers.Singleton(
        BrokerEventPublisher, broker=core.broker, metrics=core.metrics, fast_types=FAST_PATH_TYPES
    )

    storage = providers.Container(Storage, settings=settings, clock=core.clock, keys=Keyspace(ORDER_SERVICE))
    redis_client = storage.redis_client
    redis_keys = storage.keys
    outbox = storage.outbox
    processed = storage.processed
    lock = storage.lock
    cache_ttl_s = providers.Callable(lambda s: float(s.cache_ttl_s), settings)
    orders = providers.Selector(
        storage.backend,
        memory=providers.Singleton(InMemoryOrderStore, outbox=outbox),
        redis=providers.Singleton(RedisOrderStore, client=redis_client, keys=redis_keys, outbox=outbox),
    )
    cache = providers.Selector(
        storage.backend,
        memory=providers.Singleton(InMemoryProductCache, clock=core.clock, ttl_s=cache_ttl_s),
        redis=providers.Singleton(RedisProductCache, client=redis_client, keys=redis_keys, ttl_s=cache_ttl_s),
    )

    product_client = providers.Singleton(
        HttpProductClient,
        base_url=providers.Callable(product_service_url, settings),
        timeout_s=providers.Callable(lambda s: s.product_request_timeout_ms / 1000, settings),
        retry=providers.Callable(
            lambda s: RetryPolicy(
                max_attempts=s.retry_max_attempts,
                initial_interval_s=s.retry_initial_interval_ms / 1000,
            ),
            settings,
        ),
        failure_threshold=providers.Callable(lambda s: s.breaker_failure_threshold, settings),
        reset_timeout_s=providers.Callable(lambda s: float(s.breaker_reset_timeout_s), settings),
        metrics=core.metrics,
    )

    fetcher = providers.Singleton(
        ProductFetcher,
        lookup=product_client,
        cache=cache,
        telemetry=core.metrics,
        clock=core.clock,
    )
    flagger = providers.Singleton(OrderFlagger, orders=orders, telemetry=core.metrics)
    pricing_thresholds = providers.Callable(thresholds, settings)

    create_order = providers.Singleton(
        CreateOrderHandler,
        fetcher=fetcher,
        orders=orders,
        envelopes=envelopes,
        clock=core.clock,
        ids=core.ids,
    )
    get_order = providers.Singleton(GetOrder, orders=orders)
    list_orders = providers.Singleton(ListOrders, orders=orders)
    validate_pricing = providers.Singleton(
        ValidateOrderPricing,
        orders=orders,
        fetcher=fetcher,
        flagger=flagger,
        thresholds=pricing_thresholds,
    )
    revalidate = providers.Singleton(
        RevalidateOnPriceChange,
        orders=orders,
        fetcher=fetcher,
        flagger=flagger,
        thresholds=pricing_thresholds,
    )
    ask_for_snapshot = providers.Singleton(
        AskForSnapshot,
        publisher=publisher,
        envelopes=envelopes,
        ids=core.ids,
        reply_subject=providers.Callable(
            lambda s: reply_subject(PRODUCT_DETAILS_PROVIDED, s.instance_id), settings
        ),
    )
    reactions = providers.Singleton(
        ProductEventReactions,
        cache=cache,
        flagger=flagger,
        revalidate=revalidate,
        ask_for_snapshot=ask_for_snapshot,
    )
    pending = providers.Singleton(PendingReplies)
    refresh_product = providers.Singleton(
        RefreshProductNow,
        pending=pending,
        ask=ask_for_snapshot,
        fetcher=fetcher,
        clock=core.clock,
        ids=core.ids,
        telemetry=core.metrics,
        timeout_s=providers.Callable(lambda s: s.async_request_timeout_ms / 1000, settings),
    )
    refresh_all = providers.Singleton(
        RefreshActiveProducts,
        cache=cache,
        publisher=publisher,
        envelopes=envelopes,
        clock=core.clock,
        lock=lock,
        batch_size=providers.Callable(lambda s: s.refresh_batch_size, settings),
        batch_delay_s=providers.Callable(lambda s: s.refresh_batch_delay_ms / 1000, settings),
    )
    relay = providers.Singleton(RelayOutbox, outbox=outbox, publisher=publisher, lock=lock, clock=core.clock)
    batch_reply_subject = providers.Callable(
        lambda s: reply_subject(PRODUCT_BATCH_DETAILS_PROVIDED, s.instance_id), settings
    )


class ProductService(containers.DeclarativeContainer):
    core = providers.Container(Core)
    settings = core.settings

    envelopes = providers.Singleton(EnvelopeFactory, source="product-service", clock=core.clock, ids=core.ids)
    publisher = providers.Singleton(
        BrokerEventPublisher, broker=core.broker, metrics=core.metrics, fast_types=FAST_PATH_TYPES
    )
    storage = providers.Container(
        Storage, settings=settings, clock=core.clock, keys=Keyspace(PRODUCT_SERVICE)
    )
    redis_client = storage.redis_client
    redis_keys = storage.keys
    outbox = storage.outbox
    processed = storage.processed
    lock = storage.lock
    # started and stopped by the app lifecycle, with Redis only
    tracked_products = providers.Singleton(
        TrackedValues,
        url=providers.Callable(lambda s: s.redis_url, settings),
        prefix=providers.Callable(lambda keys: keys.product_prefix, redis_keys),
    )
    store = providers.Selector(
        storage.backend,
        memory=providers.Singleton(InMemoryProductStore, outbox=outbox),
        redis=providers.Singleton(
            RedisProductStore, client=redis_client, keys=redis_keys, outbox=outbox, tracked=tracked_products
        ),
    )
    catalog = providers.Singleton(Catalog, store=store, envelopes=envelopes, clock=core.clock, ids=core.ids)
    answer = providers.Singleton(
        AnswerDetailsRequests, catalog=catalog, publisher=publisher, envelopes=envelopes
    )
    relay = providers.Singleton(RelayOutbox, outbox=outbox, publisher=publisher, lock=lock, clock=core.clock)
