"""The Product Service over HTTP: pooled, timed out, retried with backoff, behind a circuit breaker.

One `aiohttp.ClientSession` (one connection pool) lives as long as the application. Every call
is bounded by `timeout_s`; 5xx, 429 (honouring Retry-After), timeouts and connection errors are
retried with exponential backoff and jitter up to `max_attempts` calls; other 4xx never are.
The breaker (purgatory) opens after `failure_threshold` failures; while open no call is made;
once the reset timeout passes, a single probe call decides whether it closes. When it opens, the
calls waiting out a backoff stop waiting: their next attempt finds it open, and their callers
fall back at once instead of after the rest of the backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import math
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC
from typing import Any, TypeVar, cast
from urllib.parse import quote

import aiohttp
import attrs
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential,
    wait_random,
)
from yarl import URL

from adapters.correlation import CORRELATION_ID
from adapters.correlation import HEADER as CORRELATION_HEADER
from adapters.metrics import ServiceMetrics
from adapters.wire.converter import dumps, loads, structure_or_reject
from adapters.wire.http_json import RESPONSES
from domain.errors import InvalidRequest, ProductServiceUnavailable
from domain.products import Product

BREAKER_NAME = "product-service"
BATCH_LIMIT = 100
T = TypeVar("T")


class UpstreamFailure(Exception):
    """A call that failed in a way worth retrying and counting against the breaker."""


class RateLimited(UpstreamFailure):
    def __init__(self, retry_after_s: float | None) -> None:
        super().__init__(f"429 Too Many Requests (Retry-After {retry_after_s})")
        self.retry_after_s = retry_after_s


class Unreadable(UpstreamFailure):
    """A 200 whose body is not what the API says (a proxy's HTML page, a product missing
    fields): retried and held against the breaker like a 5xx, counted `invalid_response`."""


class Refused(Exception):
    """A 4xx other than 404: our request was wrong; neither retried nor held against the breaker."""


class ProbeInFlight(Exception):
    """Half-open: another call is already probing the Product Service."""


def outcome_of(status: int) -> str:
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    return "success" if status < 400 else "client_error"


MAX_BATCH_CALLS_IN_FLIGHT = 2
"""Batch calls out at once; lookups arriving while that many are out gather into the next one.
A call waiting out a backoff is not out: lookups neither join it nor wait for it."""


def _product_path(product_id: str) -> URL:
    """`api/v1/products/<id>` with the id one encoded path segment, whatever it holds: `.` and
    `..` as `%2E` (left plain, a URL resolves them away: `..` would ask for `api/v1/`)."""
    segment = quote(product_id, safe="")
    if segment in (".", ".."):
        segment = segment.replace(".", "%2E")
    return URL(f"api/v1/products/{segment}", encoded=True)


@attrs.define(eq=False)
class _GatheringBatch:
    """Ids asked for before the next batch call leaves, and the answer they will all share."""

    result: asyncio.Future[dict[str, Product]]
    ids: set[str] = attrs.field(factory=set)


@attrs.frozen
class RetryPolicy:
    max_attempts: int = 4
    initial_interval_s: float = 1.0
    max_interval_s: float = 10.0


_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110: delay-seconds or an HTTP-date; a
    fraction of a second is read too); None when absent or unreadable, negative or not finite
    (then the usual backoff applies). `now_s` is the Unix time the date is counted from."""
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP-date is GMT; an obsolete form may leave the zone out
            when = when.replace(tzinfo=UTC)
        seconds = max(when.timestamp() - now_s, 0.0)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


@attrs.define(eq=False)
class HttpProductClient:
    base_url: str
    timeout_s: float
    retry: RetryPolicy
    failure_threshold: int
    reset_timeout_s: float
    metrics: ServiceMetrics
    _session: aiohttp.ClientSession | None = attrs.field(default=None, init=False)
    _breakers: AsyncCircuitBreakerFactory = attrs.field(init=False)
    _probe: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)
    _in_flight: set[asyncio.Future[dict[str, Product]]] = attrs.field(factory=set, init=False)
    _gathering: _GatheringBatch | None = attrs.field(default=None, init=False)
    _sent: list[_GatheringBatch] = attrs.field(factory=list, init=False)
    """The batches whose call is out now (on its first attempt): a lookup may join them."""
    _opened: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    """Set while the breaker is open: it ends every backoff wait."""

    def __attrs_post_init__(self) -> None:
        # purgatory reads a threshold of 0 as "use the default": never pass it 0.
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=max(self.failure_threshold, 1),
            default_ttl=self.reset_timeout_s,
            exclude=[RateLimited, ProbeInFlight, Refused],
        )
        self._breakers.add_listener(self._on_breaker_event)

    def _on_breaker_event(self, name: str, event_name: str, event: Any) -> None:
        if event_name == "state_changed":
            self.metrics.breaker_changed(name, event.state)
            if event.state == "opened":
                self._opened.set()
            else:
                self._opened.clear()

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                base_url=self.base_url.rstrip("/") + "/",
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"Accept": "application/json"},
            )

    async def close(self) -> None:
        for call in list(self._in_flight):
            call.cancel()
        if self._gathering is not None:
            self._gathering.result.cancel()
            self._gathering = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def ping(self) -> bool:
        """One quick GET /health, outside the breaker and the retries (for our own /health)."""
        if self._session is None:
            return False
        try:
            async with self._session.get("health") as response:
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def breaker_state(self) -> str:
        breaker = await self._breakers.get_breaker(BREAKER_NAME)
        state: str = breaker.context.state
        opened_at = breaker.context.opened_at
        if state == "opened" and opened_at is not None and time.time() > opened_at + self.reset_timeout_s:
            return "half-opened"
        return state

    async def get_product(self, product_id: str) -> Product | None:
        def read(status: int, body: bytes) -> Product | None:
            return None if status == 404 else cast(Product, self._parse(body, Product))

        return await self._call("get_product", "GET", _product_path(product_id), None, read)

    async def get_products(self, product_ids: Sequence[str]) -> dict[str, Product]:
        """Batch lookup; concurrent lookups share one upstream call, with no fixed wait.

        Concurrent orders mostly ask for a few products each: one POST /batch for all of them
        (up to BATCH_LIMIT ids) costs both services far less than one call per order. A batch
        leaves at the end of the event-loop turn that opened it, taking every lookup made in
        that turn; while MAX_BATCH_CALLS_IN_FLIGHT calls are out, lookups gather until one
        returns. So an idle client adds no delay and a busy one sends bigger batches (the
        batch size follows the load, like a group commit). The call runs in a task of its own,
        so a caller that gives up does not take it from the others.
        """
        wanted = set(product_ids)
        sent = next((b for b in self._sent if wanted <= b.ids), None)
        if sent is not None:  # single flight: a call already on its way asks for all of these
            found = await asyncio.shield(sent.result)
            return {pid: found[pid] for pid in wanted if pid in found}
        batch = self._gathering
        if batch is not None and batch.ids and len(batch.ids | wanted) > BATCH_LIMIT:
            self._flush(batch)  # full: it leaves now, whatever is in flight
            batch = None
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._gathering = _GatheringBatch(loop.create_future())
            if len(self._sent) < MAX_BATCH_CALLS_IN_FLIGHT:
                loop.call_soon(self._flush_if_gathering, batch)
        batch.ids |= wanted
        found = await asyncio.shield(batch.result)
        return {pid: found[pid] for pid in wanted if pid in found}

    def _flush_if_gathering(self, batch: _GatheringBatch) -> None:
        if self._gathering is batch:
            self._flush(batch)

    def _flush(self, batch: _GatheringBatch) -> None:
        if self._gathering is batch:
            self._gathering = None
        call = asyncio.ensure_future(
            self._get_batches(sorted(batch.ids), functools.partial(self._backing_off, batch))
        )
        self._in_flight.add(call)
        self._sent.append(batch)
        call.add_done_callback(functools.partial(self._batch_done, batch))

    def _backing_off(self, batch: _GatheringBatch) -> None:
        """The batch's call failed and waits to try again: later lookups make calls of their own
        (each a failure towards opening the breaker, or an answer) instead of sharing its wait."""
        if batch in self._sent:
            self._sent.remove(batch)
            self._send_what_gathered()

    def _batch_done(self, batch: _GatheringBatch, call: asyncio.Future[dict[str, Product]]) -> None:
        self._in_flight.discard(call)
        if batch in self._sent:
            self._sent.remove(batch)
        self._send_what_gathered()
        if batch.result.done():
            return
        if call.cancelled():
            batch.result.cancel()
        elif (error := call.exception()) is not None:
            batch.result.set_exception(error)
            batch.result.exception()  # retrieved: waiters re-raise it, nobody else has to
        else:
            batch.result.set_result(call.result())

    def _send_what_gathered(self) -> None:
        if self._gathering is not None and len(self._sent) < MAX_BATCH_CALLS_IN_FLIGHT:
            asyncio.get_running_loop().call_soon(self._flush_if_gathering, self._gathering)

    async def _get_batches(self, ids: Sequence[str], backing_off: Callable[[], None]) -> dict[str, Product]:
        found: dict[str, Product] = {}
        for start in range(0, len(ids), BATCH_LIMIT):
            chunk = list(ids[start : start + BATCH_LIMIT])
            answered: list[Product] = await self._call(
                "get_products",
                "POST",
                "api/v1/products/batch",
                {"ids": chunk},
                lambda _, body: self._parse(body, list[Product]),
                backing_off,
            )
            for product in answered:
                if product.id in chunk:
                    found[product.id] = product
        return found

    def _parse(self, body: bytes, cls: Any) -> Any:
        try:
            return structure_or_reject(RESPONSES, loads(body), cls, what="response")
        except (InvalidRequest, ValueError) as error:
            raise Unreadable(str(error)) from None

    async def _call(
        self,
        operation: str,
        method: str,
        path: str | URL,
        payload: Any,
        read: Callable[[int, bytes], T],
        backing_off: Callable[[], None] = lambda: None,
    ) -> T:
        """`read` turns an answer (200 or 404) into the result, inside the breaker: an answer it
        cannot read fails the call. `backing_off` is told when a failed attempt waits to be tried
        again."""
        try:
            async for attempt in AsyncRetrying(
                stop=self._stop,
                wait=self._wait,
                sleep=self._back_off,
                retry=retry_if_exception_type(UpstreamFailure),
                before_sleep=lambda _: backing_off(),
                reraise=True,
            ):
                with attempt:
                    return await self._through_breaker(operation, method, path, payload, read)
        except OpenedState as error:
            self.metrics.product_requests.labels(operation=operation, outcome="circuit_open").inc()
            raise ProductServiceUnavailable(
                "Product Service is currently unavailable (circuit open)", {"reason": str(error)}
            ) from None
        except Unreadable as error:
            raise ProductServiceUnavailable(
                "Product Service answered with a body we cannot read", {"reason": str(error)}
            ) from None
        except (UpstreamFailure, ProbeInFlight, Refused) as error:
            raise ProductServiceUnavailable(
                "Product Service is currently unavailable", {"reason": str(error)}
            ) from None
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    async def _back_off(self, seconds: float) -> None:
        """The wait between attempts, cut short when the breaker opens (the next attempt finds it
        open: no call, the caller falls back at once)."""
        if self._opened.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._opened.wait(), seconds)

    def _stop(self, state: RetryCallState) -> bool:
        """After the last attempt; or at once when a 429's wait would take the lookup's waits
        past the longest backoff (`max_interval_s`, together): the caller falls back (the cache,
        or 503) instead of holding an order that long, and this lookup calls no more (the next
        one calls as usual)."""
        if state.attempt_number >= max(self.retry.max_attempts, 1):
            return True
        error = state.outcome.exception() if state.outcome else None
        return (
            isinstance(error, RateLimited)
            and error.retry_after_s is not None
            and state.idle_for + error.retry_after_s > self.retry.max_interval_s
        )

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RateLimited) and error.retry_after_s is not None:
            return error.retry_after_s
        # jitter on the interval's own scale (wait_exponential_jitter adds up to a whole second)
        backoff = wait_exponential(
            multiplier=self.retry.initial_interval_s, max=self.retry.max_interval_s
        ) + wait_random(0, self.retry.initial_interval_s)
        return float(backoff(state))

    async def _through_breaker(
        self, operation: str, method: str, path: str | URL, payload: Any, read: Callable[[int, bytes], T]
    ) -> T:
        breaker = await self._breakers.get_breaker(BREAKER_NAME)
        probing = await self.breaker_state() == "half-opened"
        if probing and self._probe.locked():
            raise ProbeInFlight("circuit half-open, a probe is already in flight")
        if probing:
            async with self._probe, breaker:
                return await self._send(operation, method, path, payload, read)
        async with breaker:
            return await self._send(operation, method, path, payload, read)

    async def _send(
        self, operation: str, method: str, path: str | URL, payload: Any, read: Callable[[int, bytes], T]
    ) -> T:
        if self._session is None:
            raise UpstreamFailure("the HTTP client is not started")
        started = time.perf_counter()
        outcome = "error"
        try:
            correlation_id = CORRELATION_ID.get()
            headers = {CORRELATION_HEADER: correlation_id} if correlation_id else {}
            sent = None
            if payload is not None:  # our encoder, not aiohttp's `json=` (the standard library's)
                sent = dumps(payload)
                headers["Content-Type"] = "application/json"
            async with self._session.request(method, path, data=sent, headers=headers) as response:
                body = await response.read()
                outcome = outcome_of(response.status)
                if response.status == 429:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
                    raise RateLimited(retry_after)
                if response.status >= 500:
                    raise UpstreamFailure(f"{response.status} from the Product Service")
                if response.status not in (200, 404):
                    raise Refused(f"Product Service refused {operation} with {response.status}")
            try:
                return read(response.status, body)
            except Unreadable:
                outcome = "invalid_response"
                raise
        except TimeoutError:
            outcome = "timeout"
            raise UpstreamFailure(f"no answer within {self.timeout_s}s") from None
        except aiohttp.ClientError as error:
            outcome = "connection_error"
            raise UpstreamFailure(f"{type(error).__name__}: {error}") from None
        finally:
            self.metrics.product_requests.labels(operation=operation, outcome=outcome).inc()
            self.metrics.product_request_seconds.labels(operation=operation).observe(
                time.perf_counter() - started
            )
