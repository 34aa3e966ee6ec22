"""`python -m bench` (`make bench`): every scenario, project vs baseline, a table and results.json.

Phase 1 runs the in-process scenarios (event apply, cache hits, the 10k refresh) over a
private Redis and NATS; phase 2 starts fresh ones with both services, the hello world and
the load generator as processes of their own (order creation, p99, RSS, request-reply).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench.http_scenarios import HttpBench, HttpConfig, connect_nats
from bench.inproc import InprocBench, InprocConfig
from bench.stack import LOG_DIR, Services, redis_and_nats, seed_floor, seed_products
from bench.stats import Result, machine, table, write_results
from entrypoints import event_loop

ORDER = [
    "order_create_rps",
    "order_create_p99_ms",
    "event_apply_rps",
    "cache_hit_get",
    "request_reply_p50",
    "refresh_10k",
    "rss_mb",
]
INPROC = {"event_apply_rps", "cache_hit_get", "refresh_10k"}
TOTAL_TIMEOUT_S = 14 * 60
SEEDED_PRODUCTS = 50


def log(message: str) -> None:
    print(message, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per scenario")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of each closed-loop run")
    parser.add_argument("--p99-duration", type=float, default=8.0, help="seconds of each open-loop run")
    parser.add_argument("--events", type=int, default=3000, help="events per event_apply round")
    parser.add_argument("--quick", action="store_true", help="2 short rounds: a smoke run, not a measurement")
    parser.add_argument("--only", help=f"comma-separated scenario names ({', '.join(ORDER)})")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for both services (e.g. LOG_LEVEL=INFO), repeatable",
    )
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("results.json"))
    return parser


async def run(args: argparse.Namespace, wanted: set[str], results: list[Result]) -> None:
    if wanted & INPROC:
        await run_inproc(args, wanted, results)
    if wanted - INPROC:
        await run_http(args, wanted, results)


async def run_inproc(args: argparse.Namespace, wanted: set[str], results: list[Result]) -> None:
    log("phase 1: in-process scenarios (private Redis and NATS)")
    config = InprocConfig(rounds=args.rounds, events=args.events)
    if args.quick:
        config = InprocConfig(rounds=2, events=500, cache_seconds=0.3, cache_rounds=2, refresh_rounds=2)
    with redis_and_nats() as (redis, nats_server):
        async with InprocBench(redis.url, nats_server.url, config, log) as bench:
            if "event_apply_rps" in wanted:
                results.append(await bench.event_apply())
            if "cache_hit_get" in wanted:
                results.append(await bench.cache_hit_get())
            if "refresh_10k" in wanted:
                results.append(await bench.refresh_10k())


async def run_http(args: argparse.Namespace, wanted: set[str], results: list[Result]) -> None:
    log("phase 2: services as processes (fresh Redis and NATS, Product Service, Order Service, hello)")
    config = HttpConfig(rounds=args.rounds, duration_s=args.duration, p99_duration_s=args.p99_duration)
    if args.quick:
        config = HttpConfig(2, duration_s=2, p99_duration_s=2, warmup_s=0.5, request_reply_count=30)
    with redis_and_nats() as (redis, nats_server):
        extra_env = dict(setting.split("=", 1) for setting in args.env)
        services = Services(redis.url, nats_server.url, extra_env=extra_env)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            nc = await connect_nats(nats_server.url)
            try:
                await services.start(session)
                ids = await seed_products(session, services.product_url, SEEDED_PRODUCTS)
                await seed_floor(session, services, ids)
                bench = HttpBench(
                    services,
                    session,
                    nc,
                    ids,
                    config,
                    log=log,
                    infra_pids={"redis": redis.pid, "nats": nats_server.pid},
                    nats_monitor_url=nats_server.monitor_url,
                )
                bench.write_bodies()
                await bench.wait_quiet()  # the seeding's product.created events
                if wanted & {"order_create_rps", "rss_mb"}:
                    rps, rss = await bench.order_create()
                    results.extend(r for r in (rps, rss) if r.name in wanted)
                if "order_create_p99_ms" in wanted:
                    results.append(await bench.order_p99())
                if "request_reply_p50" in wanted:
                    results.append(await bench.request_reply())
            finally:
                await nc.close()
                services.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    wanted = set(ORDER) if not args.only else {name.strip() for name in args.only.split(",")}
    unknown = wanted - set(ORDER)
    if unknown:
        print(f"bench: unknown scenario(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    info = machine()
    log(
        f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, "
        f"load average {info['loadavg_1m']} (other work on the machine skews every number); logs in {LOG_DIR}"
    )
    results: list[Result] = []
    started = time.monotonic()
    failure: BaseException | None = None

    async def bounded() -> None:
        async with asyncio.timeout(TOTAL_TIMEOUT_S):
            await run(args, wanted, results)

    try:
        # the loop the services run on (uvloop where installed), for the in-process scenarios'
        # project side and their baselines alike, as the hello world runs on it too
        event_loop.run(bounded())
    except (Exception, KeyboardInterrupt) as error:
        failure = error
    results.sort(key=lambda r: ORDER.index(r.name))
    elapsed = time.monotonic() - started
    print()
    print(table(results))
    print()
    for r in results:
        print(f"{'!' if r.errors else '-'} {r.name}: {r.note}")
    if results:
        write_results(
            args.output,
            results,
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "seconds": round(elapsed, 1),
                "quick": args.quick,
                "failure": None if failure is None else repr(failure),
                "loadavg_1m_at_start": info["loadavg_1m"],
            },
        )
        print(f"wrote {args.output} ({elapsed:.0f}s)")
    if failure is not None:
        print(f"bench: stopped early: {failure!r} (service logs in {LOG_DIR})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
