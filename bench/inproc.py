"""In-process scenarios over a private Redis and NATS: event apply, cache hits, the 10k refresh.

The project side is the Order Service's own object graph, built by the composition root
(`apps.build_order_container`) and driven here: the real JetStreamBroker, EventConsumer and
handlers over RedisProductCache and friends. The baselines use the same connections' raw
clients (nats-py, `RedisClient.redis`) to do the bare minimum of the same job.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import nats.errors
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext

from adapters.broker import Delivery
from adapters.wire.event_json import encode
from bench.stack import per_request, redis_calls
from bench.stats import Result, median
from domain.events import PRODUCT_BATCH_DETAILS_REQUESTED, PRODUCT_PRICE_CHANGED, PriceChanged
from domain.products import Product, ProductStatus
from entrypoints.apps import build_order_container
from entrypoints.consumers import EventConsumer
from entrypoints.containers import OrderService
from entrypoints.event_routing import (
    order_service_batch_handlers,
    order_service_consumers,
    order_service_handlers,
)
from entrypoints.logs import configure_logging
from entrypoints.settings import Settings

PRODUCT_STREAM = "PRODUCT_EVENTS"
RAW_DURABLE = "bench-raw"
APPLY_TIMEOUT_S = 180.0
INTERLEAVE_BLOCK = 50
"""cache_hit_get: operations a side runs before the other side's turn."""
MSG_ID = "Nats-Msg-Id"


@dataclass
class InprocConfig:
    rounds: int = 3
    events: int = 3000
    cache_seconds: float = 0.5
    cache_rounds: int = 10
    """Many short rounds: on a shared machine, fine alternation evens out the neighbours' load."""
    refresh_products: int = 10_000
    refresh_rounds: int = 7


class CountingDelivery:
    """Forwards to the real delivery and counts how each one was settled."""

    def __init__(self, inner: Delivery, counts: SettleCounts) -> None:
        self.inner = inner
        self.counts = counts

    @property
    def subject(self) -> str:
        return self.inner.subject

    @property
    def data(self) -> bytes:
        return self.inner.data

    @property
    def attempt(self) -> int:
        return self.inner.attempt

    async def ack(self) -> None:
        await self.inner.ack()
        self.counts.settled("ack")

    async def nak(self, delay_s: float) -> None:
        await self.inner.nak(delay_s)
        self.counts.settled("nak")

    async def term(self) -> None:
        await self.inner.term()
        self.counts.settled("term")


class SettleCounts:
    def __init__(self, wanted_acks: int) -> None:
        self.wanted = wanted_acks
        self.counts = {"ack": 0, "nak": 0, "term": 0}
        self.done = asyncio.Event()

    def settled(self, how: str) -> None:
        self.counts[how] += 1
        if self.counts["ack"] >= self.wanted:
            self.done.set()


def bench_product(product_id: str, version: int = 1, price: str = "10.00") -> Product:
    return Product(
        id=product_id,
        name=f"Bench {product_id[:8]}",
        base_price=Decimal(price),
        current_price=Decimal(price),
        currency="USD",
        status=ProductStatus.ACTIVE,
        quantity_available=1000,
        version=version,
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def bounded_gather(jobs: Sequence[Callable[[], Awaitable[Any]]], limit: int = 64) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))


class InprocBench:
    def __init__(self, redis_url: str, nats_url: str, config: InprocConfig, log: Callable[[str], None]):
        self.config = config
        self.log = log
        self.settings = Settings(
            redis_url=redis_url,
            nats_url=nats_url,
            instance_id="bench",
            refresh_batch_delay_ms=0,
            log_level="WARNING",
        )
        self.container: OrderService = build_order_container(self.settings)
        self.nc = Nats()
        self.nats_url = nats_url

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream()

    async def __aenter__(self) -> InprocBench:
        configure_logging("WARNING", "json", "order-service", "bench")
        await self.container.core.broker().start()
        await self.nc.connect(self.nats_url, name="bench-raw", connect_timeout=5, max_reconnect_attempts=3)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.container.core.broker().close()
        await self.container.redis_client().close()
        await self.nc.close()

    async def reset(self) -> None:
        """Empty Redis; no consumer and no message left on PRODUCT_EVENTS."""
        jsm = self.nc.jsm()
        for info in await jsm.consumers_info(PRODUCT_STREAM):
            await jsm.delete_consumer(PRODUCT_STREAM, info.name)
        await jsm.purge_stream(PRODUCT_STREAM)
        await self.container.redis_client().redis.flushdb()

    async def seed_cache(self, ids: Sequence[str]) -> None:
        cache = self.container.cache()
        jobs = [functools.partial(cache.put, bench_product(pid)) for pid in ids]
        stored = await bounded_gather(jobs)
        if not all(stored):
            raise RuntimeError("seeding the product cache failed")

    # ------------------------------------------------------------------ event apply
    async def event_apply(self) -> Result:
        n = self.config.events
        rounds = []
        for number in range(self.config.rounds):
            await self.reset()
            ids = [str(uuid.uuid4()) for _ in range(n)]
            await self.seed_cache(ids)
            await self.publish_price_changes(ids)
            pair: dict[str, Any] = {}
            order: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = [
                ("project", functools.partial(self.apply_project, ids)),
                ("baseline", functools.partial(self.apply_raw, n)),
            ]
            if number % 2:
                order.reverse()
            for side, run in order:
                pair[side] = await run()
            self.log(
                f"  event_apply_rps round {number + 1}: project {pair['project']['rate']:.0f}/s "
                f"(errors {pair['project']['errors']}) | baseline {pair['baseline']['rate']:.0f}/s"
            )
            rounds.append(pair)
        commands = dict(rounds[-1]["project"]["redis_cmds_per_event"])
        total = commands.pop("total")
        shown = ", ".join(f"{name} {n}" for name, n in commands.items())
        return _result(
            "event_apply_rps",
            "events/s",
            rounds,
            "ratio >= 0.5",
            f"{n} product.price_changed a round; project: subscribe until {n} acked (EventConsumer, "
            "order-service handlers, Redis cache and processed ids); baseline: own durable, "
            "fetch batches of the project's batch size, json.loads, ack; "
            f"Redis commands per event {total} (scripts' own included: {shown})",
        )

    async def publish_price_changes(self, ids: Sequence[str]) -> None:
        envelopes = self.container.envelopes()
        js = self.js

        async def publish(pid: str) -> None:
            envelope = envelopes.wrap(
                PriceChanged(
                    product_id=pid,
                    old_price=Decimal("10.00"),
                    new_price=Decimal("11.00"),
                    base_price=Decimal("10.00"),
                    version=2,
                )
            )
            await js.publish(PRODUCT_PRICE_CHANGED, encode(envelope), headers={MSG_ID: envelope.id})

        await bounded_gather([functools.partial(publish, pid) for pid in ids])

    async def apply_project(self, ids: Sequence[str]) -> dict[str, Any]:
        c = self.container
        spec = order_service_consumers(self.settings.instance_id)[0]
        consumer = EventConsumer(
            name=spec.name,
            handlers=order_service_handlers(c.reactions(), c.pending()),
            batch_handlers=order_service_batch_handlers(c.reactions()),
            broker=c.core.broker(),
            processed=c.processed(),
            metrics=c.core.metrics(),
            clock=c.core.clock(),
            max_deliver=spec.max_deliver,
        )
        counts = SettleCounts(len(ids))

        async def handler(deliveries: Sequence[Delivery]) -> None:  # as subscribe_consumers does
            await consumer.handle_batch([CountingDelivery(delivery, counts) for delivery in deliveries])

        assert self.settings.redis_url is not None
        calls_before = await redis_calls(self.settings.redis_url)
        started = time.perf_counter()
        subscription = await c.core.broker().subscribe_batches(spec, handler)
        try:
            await asyncio.wait_for(counts.done.wait(), APPLY_TIMEOUT_S)
        except TimeoutError:
            self.log(f"    project: only {counts.counts['ack']} of {len(ids)} acked in {APPLY_TIMEOUT_S}s")
        elapsed = time.perf_counter() - started
        await subscription.stop()
        calls = per_request(calls_before, await redis_calls(self.settings.redis_url), len(ids))
        cached = await c.cache().get_many(ids)
        wrong = sum(1 for pid in ids if pid not in cached or cached[pid].current_price != Decimal("11.00"))
        return {
            "rate": counts.counts["ack"] / elapsed,
            "seconds": round(elapsed, 3),
            "settled": counts.counts,
            "not_applied": wrong,
            "redis_cmds_per_event": calls,
            "errors": counts.counts["nak"] + counts.counts["term"] + wrong,
        }

    async def apply_raw(self, n: int) -> dict[str, Any]:
        spec = order_service_consumers(self.settings.instance_id)[0]
        batch = spec.max_batch or spec.concurrency
        started = time.perf_counter()
        psub = await self.js.pull_subscribe(PRODUCT_PRICE_CHANGED, durable=RAW_DURABLE, stream=PRODUCT_STREAM)
        acked = 0
        deadline = time.monotonic() + APPLY_TIMEOUT_S
        while acked < n and time.monotonic() < deadline:
            try:
                messages = await psub.fetch(min(batch, n - acked), timeout=2)
            except nats.errors.TimeoutError:
                continue
            for msg in messages:
                json.loads(msg.data)
                await msg.ack()
                acked += 1
        await self.nc.flush()
        elapsed = time.perf_counter() - started
        await psub.unsubscribe()
        await self.nc.jsm().delete_consumer(PRODUCT_STREAM, RAW_DURABLE)
        return {"rate": acked / elapsed, "seconds": round(elapsed, 3), "errors": n - acked}

    # ------------------------------------------------------------------ cache hits
    async def cache_hit_get(self) -> Result:
        await self.reset()
        ids = [str(uuid.uuid4()) for _ in range(50)]
        await self.seed_cache(ids)
        cache = self.container.cache()
        redis = self.container.redis_client().redis
        keys = [self.container.redis_keys().cached_product(pid) for pid in ids]
        seconds = self.config.cache_seconds

        rounds = []
        for number in range(self.config.cache_rounds):
            pair = await _interleaved_ops_for(
                seconds,
                project=lambda i: _hit(cache.get_many([ids[i % 50]])),
                baseline=lambda i: _present(redis.get(keys[i % 50])),
            )
            self.log(
                f"  cache_hit_get round {number + 1}: project {pair['project']['ops_s']:.1f} | "
                f"baseline {pair['baseline']['ops_s']:.1f} ops_s"
            )
            rounds.append(pair)
        return _result(
            "cache_hit_get",
            "ops/s",
            rounds,
            "ratio >= 0.8",
            f"one caller, {self.config.cache_rounds} rounds of {seconds}s, project and baseline taking "
            f"turns every {INTERLEAVE_BLOCK} operations; "
            "project: RedisProductCache.get_many([id]) on hits (MGET, JSON, cattrs); "
            "baseline: GET of the same key through RedisClient.redis",
            key="ops_s",
        )

    # ------------------------------------------------------------------ refresh 10k
    async def refresh_10k(self) -> Result:
        await self.reset()
        n = self.config.refresh_products
        ids = sorted(str(uuid.uuid4()) for _ in range(n))
        await self.seed_cache(ids)
        refresh = self.container.refresh_all()
        batch_size = self.settings.refresh_batch_size

        cache = self.container.cache()

        async def project() -> dict[str, Any]:
            started = time.perf_counter()
            report = await refresh()
            elapsed_ms = (time.perf_counter() - started) * 1000
            wrong = int(report.products != n) + int(report.batches != -(-n // batch_size))
            # apart, untimed above: how much of it is reading the 10k ids back from Redis
            started = time.perf_counter()
            await cache.active_ids()
            active_ids_ms = (time.perf_counter() - started) * 1000
            return {
                "ms": elapsed_ms,
                "active_ids_ms": active_ids_ms,
                "batches": report.batches,
                "errors": wrong,
            }

        async def baseline() -> dict[str, Any]:
            payloads = _raw_batches(ids, batch_size)
            js = self.js
            started = time.perf_counter()
            for msg_id, payload in payloads:
                await js.publish(PRODUCT_BATCH_DETAILS_REQUESTED, payload, headers={MSG_ID: msg_id})
            elapsed_ms = (time.perf_counter() - started) * 1000
            return {"ms": elapsed_ms, "batches": len(payloads), "errors": 0}

        rounds = await self._alternate(
            project, baseline, "refresh_10k", "ms", rounds=self.config.refresh_rounds
        )
        active_ids_ms = median([r["project"]["active_ids_ms"] for r in rounds]) or 0.0
        return _result(
            "refresh_10k",
            "ms",
            rounds,
            "ratio <= 1.5",
            f"{n} active products, batches of {batch_size}, REFRESH_BATCH_DELAY_MS 0; "
            f"cache.active_ids() alone takes {active_ids_ms:.0f} ms of it; project: "
            "RefreshActiveProducts (lease, active ids from Redis, envelopes, JetStream publisher); "
            "baseline: js.publish of the same number of prebuilt batch messages",
            key="ms",
        )

    async def _alternate(
        self,
        project: Callable[[], Awaitable[dict[str, Any]]],
        baseline: Callable[[], Awaitable[dict[str, Any]]],
        label: str,
        key: str,
        rounds: int | None = None,
    ) -> list[dict[str, Any]]:
        results = []
        for number in range(rounds or self.config.rounds):
            pair: dict[str, Any] = {}
            order = [("project", project), ("baseline", baseline)]
            if number % 2:
                order.reverse()
            for side, run in order:
                pair[side] = await run()
            self.log(
                f"  {label} round {number + 1}: project {pair['project'][key]:.1f} | "
                f"baseline {pair['baseline'][key]:.1f} {key}"
            )
            results.append(pair)
        return results


async def _hit(lookup: Awaitable[dict[str, Product]]) -> bool:
    return len(await lookup) == 1


async def _present(get: Awaitable[Any]) -> bool:
    return await get is not None


async def _interleaved_ops_for(
    seconds: float, project: Callable[[int], Awaitable[bool]], baseline: Callable[[int], Awaitable[bool]]
) -> dict[str, dict[str, Any]]:
    """One caller, the two sides taking turns every INTERLEAVE_BLOCK operations for `seconds`.

    A lone caller's round trip is a few dozen microseconds, and this machine's speed drifts by
    more than the difference measured within half a second; turns this short put both sides
    under the same drift, so their ratio holds from round to round.
    """
    sides = {"project": project, "baseline": baseline}
    for op in sides.values():
        for i in range(200):  # warm-up
            await op(i)
    spent = dict.fromkeys(sides, 0.0)
    done = dict.fromkeys(sides, 0)
    misses = dict.fromkeys(sides, 0)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for side, op in sides.items():
            started = time.perf_counter()
            for _ in range(INTERLEAVE_BLOCK):
                if not await op(done[side]):
                    misses[side] += 1
                done[side] += 1
            spent[side] += time.perf_counter() - started
    return {
        side: {"ops_s": done[side] / spent[side], "ops": done[side], "errors": misses[side]} for side in sides
    }


def _raw_batches(ids: Sequence[str], size: int) -> list[tuple[str, bytes]]:
    """Batch request messages like the project's, as plain JSON, each with a fresh id."""
    batches = []
    for start in range(0, len(ids), size):
        event_id, request_id = str(uuid.uuid4()), str(uuid.uuid4())
        body = {
            "id": event_id,
            "type": PRODUCT_BATCH_DETAILS_REQUESTED,
            "source": "order-service",
            "dataVersion": "1.0",
            "timestamp": "2026-01-01T00:00:00Z",
            "correlationId": request_id,
            "data": {
                "productIds": list(ids[start : start + size]),
                "requestId": request_id,
                "callbackEvent": "product.batch_details_provided",
                "refreshMode": True,
            },
        }
        batches.append((event_id, json.dumps(body).encode()))
    return batches


def _result(
    name: str, unit: str, rounds: list[dict[str, Any]], target: str, note: str, key: str = "rate"
) -> Result:
    project_errors = sum(r["project"].get("errors", 0) for r in rounds)
    baseline_errors = sum(r["baseline"].get("errors", 0) for r in rounds)
    if project_errors or baseline_errors:
        note += f"; errors: project {project_errors}, baseline {baseline_errors}"
    return Result(
        name,
        unit,
        median([r["project"][key] for r in rounds]),
        median([r["baseline"][key] for r in rounds]),
        target,
        errors=project_errors + baseline_errors,
        rounds=rounds,
        note=note,
    )
