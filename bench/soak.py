"""`make soak`: continuous orders and product changes on the real stack while dependencies fail.

    python -m bench.soak          # 5 minutes of load (SOAK_SECONDS=60 for a short run)

What runs: a private redis-server (AOF, fsync always), a private nats-server with JetStream, one
`product-service serve` and two `order-service serve` (real mode, REDIS_URL / NATS_URL), all on
127.0.0.1 in their own process groups, their logs in a temp dir printed at start and end.

What happens: products are seeded with plenty of stock; SOAK_CLIENTS clients (6) create orders
without pause against both Order Service instances, each with its own Idempotency-Key, retried
with the same key on a 5xx or a connection error (on the other instance); a product changer
PATCHes prices, stock, both at once, names (half of them with stock) and statuses. Meanwhile a
fault schedule runs, one fault at a time: NATS stopped and started, NATS SIGKILLed, Redis
stopped and started, Redis SIGKILLed, the Product Service SIGTERMed / SIGKILLed and restarted,
or SIGSTOPped for seconds (hung) and SIGCONTed. The load stops, everything is brought back, keys
without a definite answer are sent once more, the system is given up to SOAK_SETTLE_SECONDS (90)
to settle, then checked:

- every accepted order (201/200) reads back (GET, either instance) with the total accepted;
- every accepted order's `order.created` is in ORDER_EVENTS exactly once, and none exists for an
  order that was not accepted;
- the catalog holds every PATCH acknowledged with 200; every product's final version is in the
  Order Service's cache (`product:<id>` in Redis, filled by events only: the scheduled refresh is
  off) and equals the catalog in name, prices, currency, status and stock;
- no HTTP 500 (client side, every route; and no 5xx but 503 in the services' /metrics);
- each Order Service's RSS grows, from the first sample after warm-up to the end of the load,
  by at most max(50 MiB, 50 % of the start);
- every key got a definite answer, and the system settled within the bound.

Dead letters are reported with their reasons (a warning, not a failure: the cache and event
checks catch what they cost). Exit status: 0 all checks passed, 1 a check failed, 2 the soak
could not run, 130 interrupted. `SOAK_SEED` makes the schedule and the traffic repeatable;
`SOAK_KEEP_DATA=1` keeps the JetStream store and the AOF (kept anyway when a check fails);
`SOAK_LOG_LEVEL` sets the services' LOG_LEVEL (WARNING; INFO logs every event applied).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp

from adapters.broker import DEAD_LETTERS, ORDER_EVENTS, PRODUCT_EVENTS
from bench.soak_checks import (
    Check,
    Probe,
    check_logs,
    check_no_500,
    check_order_events,
    check_orders_readable,
    check_price_review,
    check_product_cache,
    check_rss,
    dead_letter_report,
    log_levels,
    resolve_unresolved,
    scrape_metrics,
    wait_settled,
)
from bench.soak_load import (
    FAULT_CYCLE,
    ORDER_MAX_SECONDS,
    REQUEST_TIMEOUT_S,
    Fault,
    OrderBook,
    RssSamples,
    Traffic,
    order_client,
    product_changer,
    run_faults,
    sample_rss,
    seed_products,
)
from bench.soak_stack import SoakStack

STABLE_PRODUCTS = 20
FLAPPING_PRODUCTS = 4
ORDER_THINK_S = 0.05
PATCH_INTERVAL_S = 0.3
REVIEW_MARGIN_PCT = Decimal(11)
"""REVIEW_ITEM_PCT is 10 by default: an item more than 11 % off the new price must be flagged."""


def _env_number(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"soak: {name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise SystemExit(f"soak: {name}={raw} is outside {low:g}..{high:g}")
    return value


@dataclass
class Config:
    seconds: float
    settle_s: float
    clients: int
    seed: int
    keep_data: bool

    @classmethod
    def from_env(cls) -> Config:
        return cls(
            seconds=_env_number("SOAK_SECONDS", 300, 20, 24 * 3600),
            settle_s=_env_number("SOAK_SETTLE_SECONDS", 90, 10, 3600),
            clients=int(_env_number("SOAK_CLIENTS", 6, 1, 64)),
            seed=int(_env_number("SOAK_SEED", random.randrange(1, 10**6), 0, 2**31)),
            keep_data=os.environ.get("SOAK_KEEP_DATA", "") not in ("", "0"),
        )

    @property
    def warmup_s(self) -> float:
        return min(15.0, 0.15 * self.seconds)

    @property
    def quiet_tail_s(self) -> float:
        """No fault starts unless it is over this long before the load ends."""
        return max(10.0, 0.1 * self.seconds)

    @property
    def gap_s(self) -> float:
        return min(max(self.seconds / 30, 3.0), 10.0)


@dataclass
class Report:
    config: Config
    log_dir: str
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    phases: dict[str, float] = field(default_factory=dict)
    orders: dict[str, Any] = field(default_factory=dict)
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    patches: dict[str, int] = field(default_factory=dict)
    streams: dict[str, Any] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    consumers: dict[str, dict[str, int]] = field(default_factory=dict)
    events_processed: dict[str, dict[str, int]] = field(default_factory=dict)
    settle: dict[str, Any] = field(default_factory=dict)
    healed: list[str] = field(default_factory=list)
    logs: dict[str, Any] = field(default_factory=dict)
    rss: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)


def _p(text: str = "") -> None:
    print(text, flush=True)


def _errors_near(traffic: Traffic, fault: Fault) -> str:
    """Client-side 5xx / connection errors / timeouts from the fault's start to 10 s after recovery."""
    end = (fault.recovered_s if fault.recovered_s is not None else fault.started_s + fault.down_s) + 10
    seen = Counter(status for t, _, status in traffic.error_times if fault.started_s <= t <= end)
    return ", ".join(f"{s} x{n}" for s, n in seen.most_common()) or "none"


async def soak(config: Config, stack: SoakStack, report: Report) -> list[Check]:
    traffic = Traffic()
    book = OrderBook()
    faults: list[Fault] = []
    rss = RssSamples()
    began = time.monotonic()
    connector = aiohttp.TCPConnector(limit=128)
    async with aiohttp.ClientSession(connector=connector) as session:
        _p("starting redis-server (AOF), nats-server (JetStream), product-service, order-service x2 ...")
        await stack.start(session)
        assert stack.redis is not None
        assert stack.nats is not None
        assert stack.product is not None
        for name, where in (
            ("redis", stack.redis.url),
            ("nats", stack.nats.url),
            *((s.name, f"{s.url} pid {s.pid}") for s in stack.services()),
        ):
            _p(f"  {name:16} {where}")
        catalogue, states = await seed_products(
            session, traffic, stack.product.url, STABLE_PRODUCTS, FLAPPING_PRODUCTS
        )
        _p(f"seeded {len(states)} products ({FLAPPING_PRODUCTS} of them change status)")
        report.phases["setup_s"] = round(time.monotonic() - began, 1)

        # ----------------------------------------------------------------------------- load
        traffic.t0 = time.monotonic()
        stop_load, stop_rss = asyncio.Event(), asyncio.Event()
        _p(
            f"load for {config.seconds:.0f}s: {config.clients} order clients, 1 product changer; "
            f"faults from {config.warmup_s:.0f}s to {config.seconds - config.quiet_tail_s:.0f}s"
        )
        clients = [
            asyncio.create_task(
                order_client(i, session, traffic, stack, catalogue, book, stop_load, ORDER_THINK_S)
            )
            for i in range(config.clients)
        ]
        changer = asyncio.create_task(
            product_changer(
                session,
                traffic,
                stack,
                catalogue,
                states,
                stop_load,
                PATCH_INTERVAL_S,
                discontinue_at_s=config.seconds / 2,
                seed=config.seed,
            )
        )
        sampler = asyncio.create_task(sample_rss(stack, traffic, rss, stop_rss))
        injector = asyncio.create_task(
            run_faults(
                stack,
                session,
                traffic,
                faults,
                first_at_s=config.warmup_s,
                last_by_s=config.seconds - config.quiet_tail_s,
                gap_s=config.gap_s,
                seed=config.seed,
            )
        )
        progress_every = 30.0 if config.seconds > 90 else 15.0
        while traffic.now() < config.seconds:
            await asyncio.sleep(min(progress_every, config.seconds - traffic.now()))
            accepted = len(book.accepted())
            _p(
                f"  t={traffic.now():5.0f}s orders {len(book.attempts)} accepted {accepted} "
                f"({accepted / max(traffic.now(), 1):.0f}/s) faults {len(faults)} "
                f"errors {len(traffic.error_times)}"
            )
        stop_load.set()
        drain_s = ORDER_MAX_SECONDS + REQUEST_TIMEOUT_S + 15
        done, late = await asyncio.wait([*clients, changer], timeout=drain_s)
        for task in late:
            task.cancel()
        if late:
            _p(f"  {len(late)} client tasks still busy after {drain_s:.0f}s: cancelled")
        for task in done:
            if task.exception() is not None:
                raise RuntimeError("a load task failed") from task.exception()
        if changer in done:
            report.patches = dict(changer.result())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(injector), 60)
        if not injector.done():
            injector.cancel()
            await asyncio.gather(injector, return_exceptions=True)
        for service in stack.orders():
            rss.add(service.name, traffic.now(), service.rss_mb())
        stop_rss.set()
        await sampler
        report.phases["load_s"] = round(traffic.now(), 1)

        # ------------------------------------------------------------------- heal, settle
        heal_began = time.monotonic()
        report.healed = await stack.heal(session)
        unresolved = await resolve_unresolved(session, traffic, stack, book)
        report.phases["heal_s"] = round(time.monotonic() - heal_began, 1)
        _p(
            f"load stopped; healed: {', '.join(report.healed) or 'nothing was down'}; "
            f"{unresolved} keys without a definite answer sent again"
        )
        probe = Probe(stack.redis.url, stack.nats.url)
        try:
            await probe.connect()
            _p(f"settling (up to {config.settle_s:.0f}s) ...")
            settle = await wait_settled(probe, book, list(states), config.settle_s)
            report.phases["settle_s"] = round(settle.seconds, 1)
            report.settle = {"settled": settle.settled, **settle.last}

            # ------------------------------------------------------------------- checks
            checks_began = time.monotonic()
            for service in stack.orders():
                rss.add(f"{service.name} after settle", traffic.now(), service.rss_mb())
            checks = [
                Check(
                    "system settled",
                    settle.settled,
                    f"{'settled' if settle.settled else 'NOT settled'} after {settle.seconds:.0f}s",
                    [f"{k}: {v}" for k, v in settle.last.items()],
                ),
            ]
            readable, flags = await check_orders_readable(session, traffic, stack, book)
            checks.append(readable)
            order_messages = await probe.read_stream(ORDER_EVENTS)
            event_check, order_subjects = check_order_events(order_messages, book)
            checks.append(event_check)
            checks += await check_product_cache(session, traffic, stack, probe, states)
            checks.append(check_price_review(book, states, flags, REVIEW_MARGIN_PCT))
            server_errors, processed = await scrape_metrics(session, stack)
            checks.append(check_no_500(traffic, server_errors))
            checks.append(check_rss(rss.samples, [s.name for s in stack.orders()], config.warmup_s))
            still = book.unresolved()
            checks.append(
                Check(
                    "every order got a definite answer",
                    not still,
                    f"{len(still)} of {len(book.attempts)} keys still without one",
                    [f"{a.key}: {a.statuses}" for a in still[:10]],
                )
            )
            letters = await probe.read_stream(DEAD_LETTERS)
            reasons, examples = dead_letter_report(letters)
            checks.append(
                Check(
                    "dead letters",
                    not letters,
                    f"{len(letters)} in {DEAD_LETTERS}",
                    [f"{n} x {r}" for r, n in reasons.most_common(10)] + examples[:3],
                    warn_only=True,
                )
            )
            report.streams = {
                ORDER_EVENTS: dict(order_subjects),
                PRODUCT_EVENTS: await probe.subjects(PRODUCT_EVENTS),
                DEAD_LETTERS: len(letters),
            }
            report.consumers = await probe.consumer_report()
            report.dead_letters = dict(reasons)
            report.events_processed = {k: dict(v) for k, v in processed.items()}
            report.phases["checks_s"] = round(time.monotonic() - checks_began, 1)
        finally:
            await probe.close()

    # ------------------------------------------------------------------------- report data
    attempts = book.attempts
    report.orders = {
        "attempted": len(attempts),
        "accepted": len(book.accepted()),
        "accepted_by_status": dict(Counter(a.final_status for a in book.accepted())),
        "rejected": dict(Counter(a.rejection for a in attempts if a.outcome == "rejected")),
        "unresolved": len(book.unresolved()),
        "retried": sum(1 for a in attempts if len(a.statuses) > 1),
        "resolved_after_load": unresolved,
        "per_second": round(len(book.accepted()) / max(report.phases["load_s"], 1), 1),
    }
    per_route: dict[str, dict[str, int]] = {}
    for (route, status), n in sorted(traffic.statuses.items()):
        per_route.setdefault(route, {})[status] = n
    report.statuses = per_route
    report.faults = [{**asdict(f), "errors_near": _errors_near(traffic, f)} for f in faults]
    report.rss = rss.samples
    levels_by_service = log_levels(stack)
    checks.append(check_logs(levels_by_service))
    report.logs = {
        name: {"levels": dict(levels), "errors": errors}
        for name, (levels, errors) in levels_by_service.items()
    }
    report.checks = [asdict(c) for c in checks]
    return checks


def print_report(report: Report, checks: list[Check]) -> None:
    line = "=" * 100
    _p()
    _p(line)
    c = report.config
    _p(
        f"SOAK SUMMARY  load {report.phases.get('load_s', 0):.0f}s, seed {c.seed}, {c.clients} clients; "
        f"setup {report.phases.get('setup_s', 0):.0f}s, heal {report.phases.get('heal_s', 0):.0f}s, "
        f"settle {report.phases.get('settle_s', 0):.0f}s, checks {report.phases.get('checks_s', 0):.0f}s"
    )
    _p(f"logs: {report.log_dir}")
    _p(line)
    o = report.orders
    _p(
        f"orders     attempted {o['attempted']}, accepted {o['accepted']} ({o['per_second']}/s) "
        f"{o['accepted_by_status']}, retried {o['retried']}, "
        f"sent again after the load {o['resolved_after_load']}, still unresolved {o['unresolved']}"
    )
    _p(f"           rejected {sum(o['rejected'].values())}: {o['rejected'] or '-'}")
    _p(f"patches    {report.patches}")
    _p()
    _p("HTTP answers by route (client side)")
    for route, statuses in report.statuses.items():
        _p(f"  {route:36} " + "  ".join(f"{s}: {n}" for s, n in statuses.items()))
    _p()
    _p(f"faults ({len(report.faults)}; cycle {', '.join(FAULT_CYCLE)})")
    _p(f"  {'#':>2} {'start':>6} {'wall':>8} {'kind':16} {'down':>5} {'back':>6}  errors seen near it / note")
    for i, f in enumerate(report.faults, 1):
        back = f"{f['recovered_s']:.0f}s" if f["recovered_s"] is not None else "?"
        note = f" ({f['note']})" if f["note"] else ""
        _p(
            f"  {i:>2} {f['started_s']:>5.0f}s {f['wall']:>8} {f['kind']:16} {f['down_s']:>4}s {back:>6}  "
            f"{f['errors_near']}{note}"
        )
    _p()
    _p("streams")
    for stream, content in report.streams.items():
        _p(f"  {stream:15} {content}")
    if report.dead_letters:
        _p("  dead letters by reason:")
        for reason, n in report.dead_letters.items():
            _p(f"    {n} x {reason}")
    _p("durable consumers (JetStream)")
    for name, info in report.consumers.items():
        _p(f"  {name:60} {info}")
    _p(f"events_processed_total (the services' last incarnations): {report.events_processed}")
    _p()
    _p("logs (lines by level; distinct error messages)")
    for name, info in report.logs.items():
        _p(f"  {name:16} {info['levels']}")
        for message in info["errors"][:4]:
            _p(f"  {'':16}   ! {message}")
    _p()
    _p("checks")
    for check in checks:
        mark = "PASS" if check.ok else ("WARN" if check.warn_only else "FAIL")
        _p(f"  [{mark}] {check.name}: {check.summary}")
        if not check.ok:
            for evidence in check.evidence:
                _p(f"           - {evidence}")
    failed = [c for c in checks if not c.ok and not c.warn_only]
    _p(line)
    _p(f"RESULT: {'PASS' if not failed else 'FAIL (' + ', '.join(c.name for c in failed) + ')'}")
    _p(line)


async def main_async(config: Config) -> int:
    stack = SoakStack()
    report = Report(config, str(stack.log_dir))
    _p(f"soak: {config.seconds:.0f}s of load, seed {config.seed}; logs in {stack.log_dir}")
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    failed = True
    try:
        async with asyncio.timeout(config.seconds + config.settle_s + 900):  # the whole run is bounded
            checks = await soak(config, stack, report)
        print_report(report, checks)
        failed = any(not c.ok and not c.warn_only for c in checks)
        (stack.log_dir / "summary.json").write_text(json.dumps(asdict(report), indent=1, default=str))
        return 1 if failed else 0
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        _p("stopped: " + "; ".join(stack.close()))
        if not failed and not config.keep_data:
            stack.drop_data()
        _p(f"logs kept in {stack.log_dir}" + ("" if failed or config.keep_data else " (data files removed)"))


def main() -> int:
    # settings come from SOAK_* variables; an argument (--help, say) must not start a 5-minute load
    argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args()
    config = Config.from_env()
    try:
        return asyncio.run(main_async(config))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("soak: interrupted", file=sys.stderr)
        return 130
    except TimeoutError:
        print("soak: the run exceeded its time bound", file=sys.stderr)
        return 2
    except Exception as error:
        traceback.print_exc()
        print(f"soak: could not run: {error!r}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
