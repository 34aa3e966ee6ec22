"""Profiles of the two hot paths with py-spy (`pip install py-spy`; not a project dependency).

    python -m bench.profile order   # order-service and product-service under 64-connection load
    python -m bench.profile events  # the event-apply path, in this process

Each writes py-spy's collapsed stacks (`*.txt`, open with speedscope or flamegraph.pl) to
`--out` and prints the functions with the most samples, on their own (self) and with what they
call (inclusive), plus the CPU seconds each process used during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path

import aiohttp

from bench.http_scenarios import CONNECTIONS, HttpBench, HttpConfig, connect_nats
from bench.inproc import InprocBench, InprocConfig
from bench.stack import Services, cpu_seconds, redis_and_nats, seed_products
from entrypoints import event_loop

_LINE = re.compile(r" \((?P<file>[^()]*?):\d+\)$")


def py_spy() -> str:
    found = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if not found:
        raise SystemExit("bench.profile: py-spy not found: `pip install py-spy`, or set PY_SPY to its path")
    return found


def start_recording(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - py-spy on a process of ours
        [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish_recording(recorder: subprocess.Popen[bytes], seconds: float) -> None:
    try:
        _, err = recorder.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        recorder.kill()
        recorder.wait()
        raise RuntimeError("py-spy did not finish") from None
    if recorder.returncode != 0:
        raise RuntimeError(f"py-spy failed: {err.decode()[-1000:]}")


def _frame(raw: str) -> str:
    """`get_many (/work/main/src/adapters/redis/product_cache.py:63)` -> without the line number,
    and with the path shortened to what follows site-packages or src."""
    match = _LINE.search(raw)
    if not match:
        return raw
    path = match["file"]
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{raw[: match.start()]} ({path})"


def summarize(collapsed: Path, top: int = 25) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{collapsed.name}: {total} samples"]
    if not total:
        return lines[0]
    lines.append("  self %   function")
    lines += [f"  {100 * n / total:5.1f}   {name}" for name, n in own.most_common(top)]
    lines.append("  incl %   function")
    lines += [f"  {100 * n / total:5.1f}   {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


async def profile_order(seconds: float, out: Path, rate: float | None = None) -> None:
    config = HttpConfig(rounds=1, duration_s=seconds, warmup_s=1.0)
    with redis_and_nats() as (redis, nats_server):
        services = Services(redis.url, nats_server.url)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            nc = await connect_nats(nats_server.url)
            try:
                await services.start(session)
                ids = await seed_products(session, services.product_url, 50)
                bench = HttpBench(services, session, nc, ids, config)
                bench.write_bodies()
                await bench.wait_quiet()
                assert services.order is not None
                assert services.product is not None
                pids = {
                    "order-service": services.order.pid,
                    "product-service": services.product.pid,
                    "redis-server": redis.pid or 0,
                    "nats-server": nats_server.pid or 0,
                    "bench (this process)": os.getpid(),
                }
                before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                recorders = {
                    name: start_recording(pids[name], seconds, out / f"{name}.txt")
                    for name in ("order-service", "product-service")
                }
                mode = ["--mode", "closed"] if rate is None else ["--mode", "open", "--rate", str(rate)]
                report = await bench.loadgen(
                    services.order_url, *mode, "--connections", str(CONNECTIONS), duration_s=seconds - 1
                )
                after = {name: cpu_seconds(pid) for name, pid in pids.items()}
                for recorder in recorders.values():
                    await asyncio.to_thread(finish_recording, recorder, seconds)
                print(
                    f"load: {report['rps']} req/s, p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms, "
                    f"errors {report['errors']}"
                )
                print(f"CPU seconds during the {seconds:.0f}s run (the loadgen is a process of its own):")
                for name in pids:
                    b, a = before[name], after[name]
                    if a is not None and b is not None:
                        print(f"  {name:22s} {a - b:6.2f}")
                for name in recorders:
                    print(summarize(out / f"{name}.txt"))
            finally:
                await nc.close()
                services.stop()


async def profile_events(events: int, out: Path) -> None:
    config = InprocConfig(rounds=1, events=events)
    with redis_and_nats() as (redis, nats_server):
        async with InprocBench(redis.url, nats_server.url, config, print) as bench:
            await bench.reset()
            ids = [str(uuid.uuid4()) for _ in range(events)]
            await bench.seed_cache(ids)
            await bench.publish_price_changes(ids)
            seconds = 60.0
            target = out / "event-apply.txt"
            recorder = start_recording(os.getpid(), seconds, target)
            await asyncio.sleep(1.0)  # py-spy attaches
            result = await bench.apply_project(ids)
            recorder.send_signal(signal.SIGINT)  # py-spy writes what it has recorded, then exits
            await asyncio.to_thread(finish_recording, recorder, 0)
            print(f"applied {events} events at {result['rate']:.0f}/s, errors {result['errors']}")
            if target.exists():
                print(summarize(target))
            else:
                print("py-spy wrote no profile")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("path", choices=["order", "events"])
    parser.add_argument("--seconds", type=float, default=15.0, help="order: seconds under load")
    parser.add_argument("--rate", type=float, default=None, help="order: an open loop at this many req/s")
    parser.add_argument("--events", type=int, default=5000, help="events: how many to apply")
    parser.add_argument("--out", type=Path, default=None, help="directory for the collapsed stacks")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"profiles in {out}")
    if args.path == "order":
        asyncio.run(profile_order(args.seconds, out, args.rate))
    else:
        event_loop.run(profile_events(args.events, out))  # as the services and `python -m bench` run
    sys.stdout.flush()


if __name__ == "__main__":
    main()
