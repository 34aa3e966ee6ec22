"""After the soak: wait for the system to settle, then check what it holds against what was accepted.

Nothing here trusts the services' own view: orders are read back over HTTP from either
instance, events straight from the JetStream streams, the Order Service's product cache and
both outboxes straight from Redis (keys from `adapters.redis.keys`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import nats
import redis.asyncio
from nats.js.api import RawStreamMsg
from nats.js.client import JetStreamContext

from adapters.broker import ORDER_EVENTS, PRODUCT_EVENTS
from adapters.redis.keys import ORDER_SERVICE, PRODUCT_SERVICE, Keyspace
from bench.soak_load import OrderBook, ProductState, Traffic, decoded, place_order
from bench.soak_stack import SoakStack

ORDER_KEYS, PRODUCT_KEYS = Keyspace(ORDER_SERVICE), Keyspace(PRODUCT_SERVICE)
COMPARED_FIELDS = ("name", "basePrice", "currentPrice", "currency", "status", "quantityAvailable")
QUIET_POLLS = 3
"""Consecutive one-second polls with empty outboxes and drained consumers that count as settled."""
CONVERGE_GRACE_S = 10.0
"""Once quiet, how long to go on waiting for the cache and the stream to match before checking."""
EVIDENCE = 10


@dataclass
class Check:
    name: str
    ok: bool
    summary: str
    evidence: list[str] = field(default_factory=list)
    warn_only: bool = False


class Probe:
    """Redis and JetStream read directly, for the settle loop and the checks."""

    def __init__(self, redis_url: str, nats_url: str) -> None:
        self.redis = redis.asyncio.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
        self.nats_url = nats_url
        self.nc: nats.NATS | None = None
        self.js: JetStreamContext | None = None

    async def connect(self) -> None:
        self.nc = await nats.connect(self.nats_url, connect_timeout=5, max_reconnect_attempts=5)
        self.js = self.nc.jetstream(timeout=10)

    async def close(self) -> None:
        await self.redis.aclose()
        if self.nc is not None:
            await self.nc.close()

    async def outbox_pending(self) -> dict[str, int]:
        return {
            "order-service": int(await self.redis.zcard(ORDER_KEYS.outbox_queue)),
            "product-service": int(await self.redis.zcard(PRODUCT_KEYS.outbox_queue)),
        }

    async def consumer_backlog(self) -> dict[str, tuple[int, int]]:
        """Per durable consumer: (not yet delivered, delivered and not acked)."""
        assert self.js is not None
        backlog = {}
        for stream in (PRODUCT_EVENTS, ORDER_EVENTS):
            for info in await self.js.consumers_info(stream):
                if info.config.durable_name:
                    backlog[info.name] = (info.num_pending or 0, info.num_ack_pending or 0)
        return backlog

    async def consumer_report(self) -> dict[str, dict[str, int]]:
        """Per durable consumer: deliveries (redeliveries included), acknowledged, still pending."""
        assert self.js is not None
        report = {}
        for stream in (PRODUCT_EVENTS, ORDER_EVENTS):
            for info in await self.js.consumers_info(stream):
                if not info.config.durable_name:
                    continue
                report[info.name] = {
                    "delivered": info.delivered.consumer_seq if info.delivered else 0,
                    "acked": info.ack_floor.consumer_seq if info.ack_floor else 0,
                    "pending": (info.num_pending or 0) + (info.num_ack_pending or 0),
                }
        return report

    async def stream_messages(self, stream: str) -> int:
        assert self.js is not None
        return int((await self.js.stream_info(stream)).state.messages)

    async def subjects(self, stream: str) -> dict[str, int]:
        assert self.js is not None
        info = await self.js.stream_info(stream, subjects_filter=">")
        return dict(info.state.subjects or {})

    async def read_stream(self, stream: str, chunk: int = 256) -> list[RawStreamMsg]:
        """Every message of `stream`, in sequence order (many get_msg requests in flight at once)."""
        assert self.js is not None
        js = self.js
        state = (await js.stream_info(stream)).state
        if state.messages == 0:
            return []
        seqs = list(range(state.first_seq, state.last_seq + 1))
        found: list[RawStreamMsg] = []
        for start in range(0, len(seqs), chunk):
            batch = await asyncio.gather(
                *(js.get_msg(stream, seq) for seq in seqs[start : start + chunk]), return_exceptions=True
            )
            found += [m for m in batch if isinstance(m, RawStreamMsg)]
        return found

    async def product_events(self, product_id: str, version: int, max_scan: int = 50_000) -> list[str]:
        """The PRODUCT_EVENTS messages of one product at `version`, newest first, scanning back from the
        end of the stream until an older version of the product shows up (evidence for a report)."""
        assert self.js is not None
        state = (await self.js.stream_info(PRODUCT_EVENTS)).state
        found: list[str] = []
        seq = state.last_seq
        while seq >= state.first_seq and state.last_seq - seq < max_scan:
            low = max(seq - 255, state.first_seq)
            batch = await asyncio.gather(
                *(self.js.get_msg(PRODUCT_EVENTS, n) for n in range(seq, low - 1, -1)), return_exceptions=True
            )
            older = False
            for message in batch:
                if not isinstance(message, RawStreamMsg):
                    continue
                data = (decoded((message.data or b"").decode(errors="replace")) or {}).get("data") or {}
                if data.get("productId") != product_id:
                    continue
                product = data.get("product") or {}
                at = data.get("version", product.get("version"))
                if at == version:
                    aspects = {
                        **product,
                        **{k: v for k, v in data.items() if k not in ("product", "productId")},
                    }
                    shown = {
                        k: aspects[k] for k in (*COMPARED_FIELDS, "available", "newPrice") if k in aspects
                    }
                    found.append(f"seq {message.seq} {message.subject} v{at} {shown}")
                elif isinstance(at, int) and at < version:
                    older = True
            if older:
                break
            seq = low - 1
        return found

    async def cached_products(self, ids: Sequence[str]) -> dict[str, Any]:
        values = await self.redis.mget([ORDER_KEYS.cached_product(pid) for pid in ids])
        return {pid: decoded(v) for pid, v in zip(ids, values, strict=True) if v is not None}

    async def catalog_products(self, ids: Sequence[str]) -> dict[str, Any]:
        values = await self.redis.mget([PRODUCT_KEYS.product(pid) for pid in ids])
        return {pid: decoded(v) for pid, v in zip(ids, values, strict=True) if v is not None}


@dataclass
class Settle:
    seconds: float = 0.0
    settled: bool = False
    last: dict[str, Any] = field(default_factory=dict)


async def wait_settled(probe: Probe, book: OrderBook, product_ids: Sequence[str], bound_s: float) -> Settle:
    """Poll once a second until the outboxes are empty, the durable consumers drained, every accepted
    order's event stored and every cached product at the catalog's version; bounded by `bound_s`."""
    began = time.monotonic()
    result = Settle()
    quiet_since: float | None = None
    quiet_polls = 0
    accepted = len(book.accepted())
    while time.monotonic() - began < bound_s:
        try:
            outbox = await probe.outbox_pending()
            backlog = await probe.consumer_backlog()
            stored = await probe.stream_messages(ORDER_EVENTS)
            cache = await probe.cached_products(product_ids)
            catalog = await probe.catalog_products(product_ids)
        except Exception as error:  # a probe failing is not settled yet
            result.last = {"probe error": repr(error)}
            quiet_polls, quiet_since = 0, None
            await asyncio.sleep(1.0)
            continue
        stale = sum(
            1
            for pid in product_ids
            if (cache.get(pid) or {}).get("version") != (catalog.get(pid) or {}).get("version")
        )
        quiet = sum(outbox.values()) == 0 and all(p == 0 and a == 0 for p, a in backlog.values())
        result.last = {
            "outbox pending": outbox,
            "consumer backlog (pending, ack pending)": {k: v for k, v in backlog.items() if any(v)},
            "order.created stored / accepted": f"{stored} / {accepted}",
            "products whose cached version differs from the catalog": stale,
        }
        quiet_polls = quiet_polls + 1 if quiet else 0
        if quiet and quiet_since is None:
            quiet_since = time.monotonic()
        elif not quiet:
            quiet_since = None
        converged = stored >= accepted and stale == 0
        if quiet_polls >= QUIET_POLLS and (
            converged or (quiet_since is not None and time.monotonic() - quiet_since > CONVERGE_GRACE_S)
        ):
            result.settled = True
            break
        await asyncio.sleep(1.0)
    result.seconds = time.monotonic() - began
    return result


async def resolve_unresolved(
    session: aiohttp.ClientSession, traffic: Traffic, stack: SoakStack, book: OrderBook
) -> int:
    """Each key that never got a definite answer is sent again, now that everything is up:
    a 200 shows the order was created after all, a 201 creates it now; either way it is known."""
    pending = book.unresolved()
    for attempt in pending:
        await place_order(session, traffic, stack.orders(), attempt, first=0, max_attempts=6, max_seconds=30)
    return len(pending)


# ------------------------------------------------------------------------------------------ checks
async def check_orders_readable(
    session: aiohttp.ClientSession, traffic: Traffic, stack: SoakStack, book: OrderBook
) -> tuple[Check, dict[str, list[str]]]:
    """GET every accepted order (either instance), comparing its total with the one accepted;
    also returns each order's flags as read."""
    instances = stack.orders()
    accepted = book.accepted()
    missing: list[str] = []
    wrong: list[str] = []
    flags: dict[str, list[str]] = {}
    semaphore = asyncio.Semaphore(16)

    async def read(index: int, attempt: Any) -> None:
        async with semaphore:
            answers = []
            for k in range(len(instances)):
                target = instances[(index + k) % len(instances)]
                status, body = await traffic.call(
                    session,
                    "GET",
                    f"{target.url}/api/v1/orders/{attempt.order_id}",
                    "GET /api/v1/orders/{id}",
                    timeout_s=10,
                )
                answers.append(f"{target.name}: {status}")
                if status == 200 and isinstance(body, dict):
                    flags[attempt.order_id] = list(body.get("flags") or [])
                    if body.get("id") != attempt.order_id or body.get("totalAmount") != attempt.total:
                        wrong.append(
                            f"{attempt.order_id}: accepted total {attempt.total}, read "
                            f"{body.get('id')} total {body.get('totalAmount')}"
                        )
                    return
            missing.append(f"{attempt.order_id} (key {attempt.key}): {', '.join(answers)}")

    await asyncio.gather(*(read(i, a) for i, a in enumerate(accepted)))
    split = [f"key {a.key}: {sorted(a.order_ids_seen)}" for a in book.attempts if len(a.order_ids_seen) > 1]
    ok = not missing and not wrong and not split
    return Check(
        "every accepted order readable",
        ok,
        f"{len(accepted) - len(missing)}/{len(accepted)} read back (200); {len(wrong)} differ; "
        f"{len(split)} keys answered with two order ids",
        [*missing[:EVIDENCE], *wrong[:EVIDENCE], *split[:EVIDENCE]],
    ), flags


def check_price_review(
    book: OrderBook, states: dict[str, ProductState], flags: dict[str, list[str]], review_pct: Decimal
) -> Check:
    """An order accepted before a product's last price change, whose price for that product is more
    than `review_pct` off the new price, must carry PRICE_REVIEW (INTERFACE §5: price_changed re-validates
    every CREATED order holding the product). Flags are never removed, so this holds at the end."""
    expected = 0
    unflagged: list[str] = []
    skipped = 0
    per_product: Counter[str] = Counter()
    for pid, state in states.items():
        if not state.price_changes:
            continue
        if state.price_uncertain:
            skipped += 1
            continue
        changed_at, new_price = state.price_changes[-1]
        for attempt in book.accepted():
            unit = attempt.unit_prices.get(pid)
            if unit is None or attempt.accepted_at is None or attempt.accepted_at >= changed_at:
                continue
            off = abs(Decimal(unit) - Decimal(new_price)) / Decimal(new_price) * 100
            if off <= review_pct:
                continue
            expected += 1
            if "PRICE_REVIEW" not in flags.get(attempt.order_id or "", ["?"]):
                per_product[pid] += 1
                unflagged.append(
                    f"order {attempt.order_id} accepted at {attempt.accepted_at:.1f}s with product {pid} "
                    f"at {unit}; its last price change, sent at {changed_at:.1f}s, to {new_price} "
                    f"({off:.0f}% off); flags {flags.get(attempt.order_id or '', '?')}"
                )
    return Check(
        "orders re-validated on the last price change",
        not unflagged,
        f"{expected - len(unflagged)}/{expected} orders more than {review_pct}% off a later price flagged "
        f"PRICE_REVIEW ({skipped} products skipped: an unanswered price PATCH)",
        unflagged[:EVIDENCE] + [f"{pid}: {n} orders not flagged" for pid, n in per_product.most_common()],
    )


def check_order_events(messages: Sequence[RawStreamMsg], book: OrderBook) -> tuple[Check, Counter[str]]:
    """Each accepted order's order.created stored exactly once, none for an order not accepted."""
    per_order: Counter[str] = Counter()
    totals: dict[str, Any] = {}
    subjects: Counter[str] = Counter()
    unreadable = 0
    for message in messages:
        subjects[message.subject or "?"] += 1
        if message.subject != "order.created":
            continue
        envelope = decoded((message.data or b"").decode(errors="replace"))
        try:
            order_id = envelope["data"]["orderId"]
        except (TypeError, KeyError):
            unreadable += 1
            continue
        per_order[order_id] += 1
        totals[order_id] = envelope["data"].get("totalAmount")
    accepted = {a.order_id: a for a in book.accepted() if a.order_id is not None}
    lost = sorted(set(accepted) - set(per_order))
    duplicated = sorted(oid for oid, n in per_order.items() if n > 1)
    unexpected = sorted(set(per_order) - set(accepted))
    off_total = sorted(
        oid for oid in set(accepted) & set(per_order) if Decimal(str(totals[oid])) != accepted[oid].total
    )
    evidence = (
        [f"lost: order {oid} (key {accepted[oid].key}, answered {accepted[oid].statuses})" for oid in lost][
            :EVIDENCE
        ]
        + [f"duplicated: order {oid} stored {per_order[oid]} times" for oid in duplicated][:EVIDENCE]
        + [f"not accepted: order.created for {oid}" for oid in unexpected][:EVIDENCE]
        + [f"total differs: {oid} accepted {accepted[oid].total}, event {totals[oid]}" for oid in off_total][
            :EVIDENCE
        ]
    )
    ok = not (lost or duplicated or unexpected or off_total or unreadable)
    return (
        Check(
            "order.created exactly once per accepted order",
            ok,
            f"{sum(per_order.values())} order.created for {len(accepted)} accepted: {len(lost)} lost, "
            f"{len(duplicated)} duplicated, {len(unexpected)} not accepted, {len(off_total)} wrong total, "
            f"{unreadable} unreadable",
            evidence,
        ),
        subjects,
    )


async def check_product_cache(
    session: aiohttp.ClientSession,
    traffic: Traffic,
    stack: SoakStack,
    probe: Probe,
    states: dict[str, ProductState],
) -> list[Check]:
    """The catalog (over HTTP) against the last PATCH we saw, and the Order Service's cache against it."""
    assert stack.product is not None
    ids = list(states)
    catalog: dict[str, Any] = {}
    for pid in ids:
        status, body = await traffic.call(
            session, "GET", f"{stack.product.url}/api/v1/products/{pid}", "GET /api/v1/products/{id}"
        )
        if status == 200 and isinstance(body, dict):
            catalog[pid] = body
    cache = await probe.cached_products(ids)
    lost_writes, stale, differs = [], [], []
    differing = 0
    for pid in ids:
        final, last, state = catalog.get(pid), states[pid].last, states[pid]
        if final is None:
            lost_writes.append(f"{pid}: not readable from the Product Service")
            continue
        if last is not None and not state.uncertain:
            changed = [
                f"{f} {last.get(f)} -> {final.get(f)}"
                for f in ("name", "basePrice", "currentPrice", "status")
                if final.get(f) != last.get(f)
            ]
            if changed or final["version"] < last["version"]:
                lost_writes.append(
                    f"{pid}: last PATCH answered v{last['version']}, catalog v{final['version']}: {changed}"
                )
        cached = cache.get(pid)
        if cached is None or cached.get("version") != final["version"]:
            stale.append(
                f"{pid}: catalog v{final['version']}, cache "
                f"{'missing' if cached is None else 'v' + str(cached.get('version'))}"
            )
            continue
        fields = [
            f"{f}: cache {cached.get(f)} != catalog {final.get(f)}"
            for f in COMPARED_FIELDS
            if cached.get(f) != final.get(f)
        ]
        if fields:
            differing += 1
            differs.append(f"{pid} v{final['version']}: {'; '.join(fields)}")
            differs += [f"  event {e}" for e in await probe.product_events(pid, final["version"])]
    patched = sum(s.patches_ok for s in states.values())
    return [
        Check(
            "catalog holds every acknowledged PATCH",
            not lost_writes,
            f"{len(ids) - len(lost_writes)}/{len(ids)} products as last acknowledged "
            f"({patched} PATCHes answered 200; {sum(s.uncertain for s in states.values())} products with an "
            "unanswered last PATCH compared by version only)",
            lost_writes[:EVIDENCE],
        ),
        Check(
            "every product's final version in the Order Service cache",
            not stale,
            f"{len(ids) - len(stale)}/{len(ids)} cached at the catalog's final version",
            stale[:EVIDENCE],
        ),
        Check(
            "cached product equals the catalog at that version",
            not differs,
            f"{len(ids) - len(stale) - differing}/{len(ids) - len(stale)} equal in "
            f"{', '.join(COMPARED_FIELDS)}",
            differs[: 4 * EVIDENCE],
        ),
    ]


def check_no_500(traffic: Traffic, metrics_500: dict[str, float]) -> Check:
    evidence = [json.dumps(e, default=str)[:400] for e in traffic.server_errors[:EVIDENCE]]
    evidence += [f"{name}: {line}" for name, line in list(metrics_500.items())[:EVIDENCE]]
    return Check(
        "no HTTP 500",
        not traffic.server_errors and not metrics_500,
        f"{len(traffic.server_errors)} answers >= 500 other than 503 seen by the clients; "
        f"{len(metrics_500)} 5xx series (not 503) in the services' /metrics",
        evidence,
    )


def check_rss(samples: dict[str, list[tuple[float, float]]], names: Sequence[str], warmup_s: float) -> Check:
    """Growth from the first sample after warm-up to the last; the bound is max(50 MiB, 50 % of the start)."""
    lines, bad = [], []
    for name in names:
        series = [s for s in samples.get(name, []) if s[0] >= warmup_s]
        if len(series) < 2:
            bad.append(f"{name}: too few samples ({len(series)})")
            continue
        (t0, start), (t1, end) = series[0], series[-1]
        peak = max(mb for _, mb in series)
        bound = max(50.0, 0.5 * start)
        growth = end - start
        line = (
            f"{name}: {start:.1f} MiB at {t0:.0f}s -> {end:.1f} MiB at {t1:.0f}s "
            f"(growth {growth:+.1f} MiB, peak {peak:.1f}, bound {bound:.1f})"
        )
        lines.append(line)
        if growth > bound:
            bad.append(line)
    return Check("order-service RSS growth bounded", not bad, "; ".join(lines) or "no samples", bad)


def dead_letter_report(messages: Sequence[RawStreamMsg]) -> tuple[Counter[str], list[str]]:
    reasons: Counter[str] = Counter()
    examples = []
    for message in messages:
        letter = decoded((message.data or b"").decode(errors="replace")) or {}
        reason = str(letter.get("reason", "?"))
        reasons[f"{message.subject} [{letter.get('consumer', '?')}]: {reason[:120]}"] += 1
        if len(examples) < EVIDENCE:
            examples.append(
                json.dumps({k: letter.get(k) for k in ("subject", "reason", "attempts", "failedAt")})
            )
    return reasons, examples


async def scrape_metrics(
    session: aiohttp.ClientSession, stack: SoakStack
) -> tuple[dict[str, float], dict[str, Counter[str]]]:
    """5xx series other than 503 from each service's /metrics, and the events_processed_total outcomes."""
    server_errors: dict[str, float] = {}
    processed: dict[str, Counter[str]] = {}
    for service in stack.services():
        try:
            async with session.get(f"{service.url}/metrics", timeout=aiohttp.ClientTimeout(total=10)) as resp:
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            continue
        outcomes: Counter[str] = Counter()
        for line in text.splitlines():
            if line.startswith("http_requests_total{") and 'status="5' in line and 'status="503"' not in line:
                value = float(line.rsplit(" ", 1)[1])
                if value > 0:
                    server_errors[f"{service.name} {line.split(' ')[0]}"] = value
            if line.startswith("events_processed_total{"):
                outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
                outcomes[outcome] += int(float(line.rsplit(" ", 1)[1]))
        processed[service.name] = outcomes
    return server_errors, processed


def check_logs(report: dict[str, tuple[Counter[str], list[str]]]) -> Check:
    """ERROR lines in a service log are reported (a warning: a fault may explain them)."""
    counts = {
        name: levels.get("error", 0) + levels.get("critical", 0) for name, (levels, _) in report.items()
    }
    evidence = [f"{name}: {message}" for name, (_, messages) in report.items() for message in messages]
    return Check(
        "service logs without ERROR lines",
        not any(counts.values()),
        ", ".join(f"{name} {n}" for name, n in counts.items()),
        evidence[:EVIDENCE],
        warn_only=True,
    )


def log_levels(stack: SoakStack) -> dict[str, tuple[Counter[str], list[str]]]:
    """Per service log: lines by level, and a few distinct error messages."""
    report: dict[str, tuple[Counter[str], list[str]]] = {}
    for service in stack.services():
        levels: Counter[str] = Counter()
        errors: dict[str, None] = {}
        try:
            text = service.log_path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if not line.strip() or line.startswith("===== soak"):
                continue
            try:
                entry = json.loads(line)
                level = str(entry.get("level", "?")).lower()
                message = str(entry.get("event") or entry.get("message") or line)[:160]
            except (ValueError, AttributeError):
                level, message = "raw", line[:160]
            levels[level] += 1
            if level in ("error", "critical", "exception") and len(errors) < 8:
                errors[message] = None
        report[service.name] = (levels, list(errors))
    return report
