"""The soak's traffic and faults: order clients, a product changer, the fault schedule, RSS samples.

Every HTTP answer is counted by route and status (`conn_error` / `timeout` when there was
none). An order is one Idempotency-Key: its request is retried with the same key and the same
body on a 5xx, a connection error or a timeout (bounded in attempts and time), on either
Order Service instance; a 201 or 200 means accepted, any other 4xx rejected, and a key that
never got a definite answer is left `unresolved` for the resolution pass after the faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp

from bench.soak_stack import ServiceProcess, SoakStack

ORDER_ROUTE = "POST /api/v1/orders"
PATCH_ROUTE = "PATCH /api/v1/products/{id}"
REQUEST_TIMEOUT_S = 15.0
"""Above the Order Service's own worst case while the Product Service hangs (4 calls x 500 ms + backoff)."""
ORDER_MAX_ATTEMPTS = 12
ORDER_MAX_SECONDS = 60.0
PATCH_MAX_ATTEMPTS = 8
PATCH_MAX_SECONDS = 40.0
ERROR_TIMELINE_CAP = 200_000


def backoff(attempt: int) -> float:
    """0.2, 0.4, 0.8, 1.6, 2, 2, ... seconds, with a little jitter."""
    return min(0.2 * 2 ** (attempt - 1), 2.0) * random.uniform(0.8, 1.2)


def decoded(text: str) -> Any:
    """JSON with exact decimals; None when the body is not JSON."""
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError:
        return None


@dataclass
class Traffic:
    """Every answer by route and status, the 500s with their bodies, and when errors happened."""

    t0: float = field(default_factory=time.monotonic)
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    error_times: list[tuple[float, str, str]] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def count(self, route: str, status: int | str, url: str, body: Any) -> None:
        self.statuses[(route, str(status))] += 1
        if status == 500 or (isinstance(status, int) and status > 503):
            self.server_errors.append(
                {"t": round(self.now(), 2), "route": route, "url": url, "status": status, "body": body}
            )
        if (isinstance(status, str) or status >= 500) and len(self.error_times) < ERROR_TIMELINE_CAP:
            self.error_times.append((self.now(), route, str(status)))

    async def call(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        route: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> tuple[int | str, Any]:
        status: int | str
        try:
            async with session.request(
                method, url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                status, answer = response.status, decoded(await response.text())
        except TimeoutError:
            status, answer = "timeout", None
        except aiohttp.ClientError as error:
            status, answer = "conn_error", repr(error)
        self.count(route, status, url, answer)
        return status, answer


@dataclass
class OrderAttempt:
    key: str
    body: dict[str, Any]
    statuses: list[str] = field(default_factory=list)
    outcome: str = "unresolved"  # accepted | rejected | unresolved
    order_id: str | None = None
    total: Decimal | None = None
    final_status: str | None = None
    order_ids_seen: set[str] = field(default_factory=set)
    rejection: str | None = None
    accepted_at: float | None = None
    """Seconds into the load when the accepting answer arrived."""
    unit_prices: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class OrderBook:
    """Every order attempt of the soak, by Idempotency-Key."""

    attempts: list[OrderAttempt] = field(default_factory=list)

    def accepted(self) -> list[OrderAttempt]:
        return [a for a in self.attempts if a.outcome == "accepted"]

    def unresolved(self) -> list[OrderAttempt]:
        return [a for a in self.attempts if a.outcome == "unresolved"]


async def place_order(
    session: aiohttp.ClientSession,
    traffic: Traffic,
    instances: Sequence[ServiceProcess],
    attempt: OrderAttempt,
    first: int,
    max_attempts: int = ORDER_MAX_ATTEMPTS,
    max_seconds: float = ORDER_MAX_SECONDS,
) -> None:
    """POST until a definite answer; each retry goes to the other instance, same key, same body."""
    began = time.monotonic()
    headers = {"Idempotency-Key": attempt.key}
    for n in range(1, max_attempts + 1):
        target = instances[(first + n - 1) % len(instances)]
        status, answer = await traffic.call(
            session, "POST", f"{target.url}/api/v1/orders", ORDER_ROUTE, attempt.body, headers
        )
        attempt.statuses.append(str(status))
        if status in (200, 201) and isinstance(answer, dict) and "id" in answer:
            attempt.order_ids_seen.add(answer["id"])
            attempt.outcome, attempt.order_id = "accepted", answer["id"]
            attempt.total, attempt.final_status = answer.get("totalAmount"), str(status)
            if attempt.accepted_at is None:
                attempt.accepted_at = traffic.now()
                attempt.unit_prices = {
                    item["productId"]: item["unitPrice"]
                    for item in answer.get("items", [])
                    if "unitPrice" in item
                }
            return
        if isinstance(status, int) and 400 <= status < 500:
            attempt.outcome, attempt.final_status = "rejected", str(status)
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            attempt.rejection = f"{status} {error.get('code', '?')}"
            return
        if time.monotonic() - began > max_seconds:
            break
        await asyncio.sleep(backoff(n))
    attempt.final_status = attempt.statuses[-1] if attempt.statuses else None


@dataclass
class Catalogue:
    """The seeded products: `stable` ones stay ACTIVE; `flapping` ones change status."""

    stable: list[str]
    flapping: list[str]
    discontinued: set[str] = field(default_factory=set)

    def all(self) -> list[str]:
        return [*self.stable, *self.flapping]


async def order_client(
    index: int,
    session: aiohttp.ClientSession,
    traffic: Traffic,
    stack: SoakStack,
    catalogue: Catalogue,
    book: OrderBook,
    stop: asyncio.Event,
    think_s: float,
) -> None:
    rng = random.Random(index)
    instances = stack.orders()
    while not stop.is_set():
        count = rng.choice((1, 1, 2, 3))
        products = rng.sample(catalogue.stable, min(count, len(catalogue.stable)))
        if rng.random() < 0.15:
            products[0] = rng.choice(catalogue.flapping)  # may be INACTIVE or DISCONTINUED: a 422
        items = [{"productId": pid, "quantity": rng.randint(1, 3)} for pid in dict.fromkeys(products)]
        attempt = OrderAttempt(key=str(uuid.uuid4()), body={"userId": f"soak-user-{index}", "items": items})
        book.attempts.append(attempt)
        await place_order(session, traffic, instances, attempt, first=index + len(book.attempts))
        await asyncio.sleep(think_s * rng.uniform(0.5, 1.5))


@dataclass
class ProductState:
    """What the last PATCH answered with 200; `uncertain` when a later one ended without an answer."""

    last: dict[str, Any] | None = None
    patches_ok: int = 0
    patches_failed: int = 0
    uncertain: bool = False
    price_changes: list[tuple[float, Decimal]] = field(default_factory=list)
    """(seconds into the load when the PATCH was first sent, the new currentPrice) per price change."""
    price_uncertain: bool = False
    """A PATCH touching prices ended without an answer: when the last price change happened is unknown."""


async def patch_product(
    session: aiohttp.ClientSession, traffic: Traffic, url: str, body: dict[str, Any]
) -> tuple[int | str, Any]:
    """PATCH sets absolute values, so repeating it after a lost answer is safe."""
    began = time.monotonic()
    status: int | str = "not sent"
    answer: Any = None
    for n in range(1, PATCH_MAX_ATTEMPTS + 1):
        status, answer = await traffic.call(session, "PATCH", url, PATCH_ROUTE, body)
        if isinstance(status, int) and status < 500:
            return status, answer
        if time.monotonic() - began > PATCH_MAX_SECONDS:
            break
        await asyncio.sleep(backoff(n))
    return status, answer


def money(rng: random.Random) -> float:
    return float(Decimal(rng.randint(500, 9999)) / 100)


async def product_changer(
    session: aiohttp.ClientSession,
    traffic: Traffic,
    stack: SoakStack,
    catalogue: Catalogue,
    states: dict[str, ProductState],
    stop: asyncio.Event,
    interval_s: float,
    discontinue_at_s: float,
    seed: int,
) -> Counter[str]:
    """PATCHes of price, stock, both at once, name and status, one product at a time."""
    rng = random.Random(seed)
    kinds: Counter[str] = Counter()
    assert stack.product is not None
    while not stop.is_set():
        body: dict[str, Any]
        if traffic.now() >= discontinue_at_s and not catalogue.discontinued:
            pid = catalogue.flapping[-1]
            catalogue.discontinued.add(pid)
            kind, body = "discontinue", {"status": "DISCONTINUED", "currentPrice": money(rng)}
        else:
            kind = rng.choices(("price", "stock", "price+stock", "name", "status"), weights=(3, 2, 2, 1, 2))[
                0
            ]
            pid = rng.choice(catalogue.all())
            if kind == "price":
                body = {"currentPrice": money(rng)}
                if rng.random() < 0.3:
                    body["basePrice"] = money(rng)
            elif kind == "stock":
                body = {"quantityAvailable": rng.randint(500_000, 1_000_000)}
            elif kind == "price+stock":
                body = {"currentPrice": money(rng), "quantityAvailable": rng.randint(500_000, 1_000_000)}
            elif kind == "name":
                body = {"name": f"Soak product renamed {rng.randint(0, 10**6)}"}
                if rng.random() < 0.5:  # two events at one version: the renamed snapshot may come last
                    body["quantityAvailable"] = rng.randint(500_000, 1_000_000)
            else:
                live = [p for p in catalogue.flapping if p not in catalogue.discontinued]
                pid = rng.choice(live)
                current = (states[pid].last or {}).get("status", "ACTIVE")
                body = {"status": "INACTIVE" if current == "ACTIVE" else "ACTIVE"}
        kinds[kind] += 1
        url = f"{stack.product.url}/api/v1/products/{pid}"
        sent_at = traffic.now()
        status, answer = await patch_product(session, traffic, url, body)
        state = states[pid]
        if status == 200 and isinstance(answer, dict):
            before = state.last or {}
            prices = ("currentPrice", "basePrice")
            if any(answer.get(f) != before.get(f) for f in prices):
                state.price_changes.append((sent_at, answer["currentPrice"]))
            state.last, state.patches_ok, state.uncertain = answer, state.patches_ok + 1, False
        else:
            state.patches_failed += 1
            if not (isinstance(status, int) and 400 <= status < 500):
                state.uncertain = True  # it may have been applied without us hearing of it
                state.price_uncertain |= "currentPrice" in body or "basePrice" in body
        await asyncio.sleep(interval_s * rng.uniform(0.5, 1.5))
    return kinds


async def seed_products(
    session: aiohttp.ClientSession, traffic: Traffic, product_url: str, stable: int, flapping: int
) -> tuple[Catalogue, dict[str, ProductState]]:
    ids: list[str] = []
    states: dict[str, ProductState] = {}
    for i in range(stable + flapping):
        price = money(random.Random(i))
        body = {
            "name": f"Soak product {i}",
            "basePrice": price,
            "currentPrice": price,
            "currency": "USD",
            "status": "ACTIVE",
            "quantityAvailable": 1_000_000,
        }
        status, answer = await traffic.call(
            session, "POST", f"{product_url}/api/v1/products", "POST /api/v1/products", body
        )
        if status != 201 or not isinstance(answer, dict):
            raise RuntimeError(f"seeding product {i}: {status} {answer}")
        ids.append(answer["id"])
        states[answer["id"]] = ProductState(last=answer)
    return Catalogue(stable=ids[:stable], flapping=ids[stable:]), states


# ------------------------------------------------------------------------------------------ faults
@dataclass
class Fault:
    kind: str
    what: str
    started_s: float
    wall: str
    down_s: float
    recovered_s: float | None = None
    note: str = ""


FAULT_CYCLE = (
    "nats-restart",
    "redis-restart",
    "product-sigterm",
    "nats-sigkill",
    "product-sigstop",
    "redis-sigkill",
    "product-sigkill",
)
"""The order faults come in, cycled: a 60 s run sees the first five (each kind the issue names)."""


async def _fault(
    kind: str, stack: SoakStack, session: aiohttp.ClientSession, down_s: float
) -> tuple[str, Callable[[], str]]:
    """Inject `kind`, stay down `down_s`, recover; returns what was done and a note maker."""
    assert stack.redis is not None
    assert stack.nats is not None
    assert stack.product is not None
    redis, nats, product = stack.redis, stack.nats, stack.product
    note = ""
    if kind == "nats-restart":
        await asyncio.to_thread(nats.stop)
        await asyncio.sleep(down_s)
        await asyncio.to_thread(nats.start)
        what = "NATS SIGTERM, then started on the same port and store"
    elif kind == "nats-sigkill":
        await asyncio.to_thread(nats.kill)
        await asyncio.sleep(down_s)
        await asyncio.to_thread(nats.start)
        what = "NATS SIGKILL, then started on the same port and store"
    elif kind == "redis-restart":
        await asyncio.to_thread(redis.stop)
        await asyncio.sleep(down_s)
        await asyncio.to_thread(redis.start)
        what = "Redis SIGTERM, then started (AOF, fsync always)"
    elif kind == "redis-sigkill":
        await asyncio.to_thread(redis.kill)
        await asyncio.sleep(down_s)
        await asyncio.to_thread(redis.start)
        what = "Redis SIGKILL, then started (AOF, fsync always)"
    elif kind == "product-sigterm":
        stopped = await asyncio.to_thread(product.terminate)
        await asyncio.sleep(down_s)
        product.start()
        ready = await product.wait_ready(session)
        what, note = "Product Service SIGTERM, then started", f"{stopped}; ready {ready:.1f}s after start"
    elif kind == "product-sigkill":
        await asyncio.to_thread(product.kill)
        await asyncio.sleep(down_s)
        product.start()
        ready = await product.wait_ready(session)
        what, note = "Product Service SIGKILL, then started", f"ready {ready:.1f}s after start"
    elif kind == "product-sigstop":
        product.pause()
        await asyncio.sleep(down_s)
        product.resume()
        what = "Product Service SIGSTOP (hung), then SIGCONT"
    else:
        raise ValueError(kind)
    return what, lambda: note


async def run_faults(
    stack: SoakStack,
    session: aiohttp.ClientSession,
    traffic: Traffic,
    faults: list[Fault],
    first_at_s: float,
    last_by_s: float,
    gap_s: float,
    seed: int,
) -> None:
    """Faults one after the other from `first_at_s`; none starts unless it can end by `last_by_s`."""
    rng = random.Random(seed)
    await asyncio.sleep(max(first_at_s - traffic.now(), 0))
    index = 0
    while True:
        kind = FAULT_CYCLE[index % len(FAULT_CYCLE)]
        down_s = round(rng.uniform(3.0, 6.0), 1)
        if traffic.now() + down_s + 5 > last_by_s:
            return
        fault = Fault(kind, "", round(traffic.now(), 1), datetime.now(UTC).strftime("%H:%M:%S"), down_s)
        faults.append(fault)
        try:
            fault.what, note = await _fault(kind, stack, session, down_s)
            fault.note = note()
        except Exception as error:  # recorded and reported; heal() brings everything back at the end
            fault.note = f"recovery failed: {error!r}"[:500]
            return
        fault.recovered_s = round(traffic.now(), 1)
        index += 1
        await asyncio.sleep(gap_s * rng.uniform(0.8, 1.2))


# --------------------------------------------------------------------------------------------- RSS
@dataclass
class RssSamples:
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def add(self, name: str, t: float, mb: float | None) -> None:
        if mb is not None:
            self.samples.setdefault(name, []).append((round(t, 1), round(mb, 1)))


async def sample_rss(
    stack: SoakStack, traffic: Traffic, rss: RssSamples, stop: asyncio.Event, every_s: float = 5.0
) -> None:
    while not stop.is_set():
        for service in stack.services():
            rss.add(service.name, traffic.now(), service.rss_mb())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
