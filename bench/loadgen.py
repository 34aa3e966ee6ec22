"""HTTP/1.1 load generator, run as a process of its own: `python -m bench.loadgen ...` prints JSON.

It speaks just enough HTTP/1.1 over asyncio streams (keep-alive, Content-Length or chunked
bodies), much cheaper per request than a full client, so the generator is less often the
bottleneck when it measures a hello world on the same machine.

- closed loop (`--mode closed`): `--connections` workers each send a request, wait for the
  answer, send the next, for `--duration` seconds after `--warmup` seconds. Reports
  completions per second and latencies.
- open loop (`--mode open`): requests are scheduled at a fixed `--rate`; a pool of up to
  `--connections` connections sends them. A request's latency runs from its *scheduled* time,
  not from when a connection got free, so a stall shows in the latencies (no coordinated
  omission).

A non-2xx status, a connection error or a per-request timeout counts as an error; the JSON
reports the statuses and the error kinds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.stats import percentile

MAX_HEADER_BYTES = 64 * 1024


class HttpError(Exception):
    """The server answered something this client does not understand."""


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects on the next request after a failure."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> int:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, limit=MAX_HEADER_BYTES
            )
        assert self._reader is not None
        try:
            self._writer.write(raw)
            head = await self._reader.readuntil(b"\r\n\r\n")
            status, length, chunked, close = _parse_head(head)
            if chunked:
                await _read_chunked(self._reader)
            elif length:
                await self._reader.readexactly(length)
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def _parse_head(head: bytes) -> tuple[int, int, bool, bool]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise HttpError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    length, chunked, close = 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    return status, length, chunked, close


async def _read_chunked(reader: asyncio.StreamReader) -> None:
    for _ in range(1_000_000):  # bounded: a body of a million chunks is not an answer
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers sent by aiohttp
            return
        await reader.readexactly(size + 2)
    raise HttpError("chunked body too long")


def build_requests(
    method: str, host: str, port: int, path: str, bodies: list[bytes], headers: list[str]
) -> list[bytes]:
    extra = "".join(f"{h}\r\n" for h in headers)
    raws = []
    for body in bodies or [b""]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        raws.append(head.encode() + b"\r\n" + body)
    return raws


class Tally:
    """Latencies (seconds), statuses and error kinds of the measured requests."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        # every answer, the warm-up's and those after the window included (for CPU per request)
        self.all_completed = 0

    def ok(self, status: int, latency: float) -> None:
        self.statuses[str(status)] += 1
        if 200 <= status < 300:
            self.latencies.append(latency)
        else:
            self.errors[f"http_{status}"] += 1

    def failed(self, kind: str) -> None:
        self.errors[kind] += 1

    def report(self, duration_s: float, **extra: Any) -> dict[str, Any]:
        completed = sum(self.statuses.values())
        lat = sorted(self.latencies)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            **extra,
            "duration_s": round(duration_s, 3),
            "all_completed": self.all_completed,
            "loadgen_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "completed": completed,
            "ok": len(lat),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "statuses": dict(self.statuses),
            "rps": round(len(lat) / duration_s, 1) if duration_s > 0 else 0.0,
            "p50_ms": _ms(percentile(lat, 50)),
            "p90_ms": _ms(percentile(lat, 90)),
            "p99_ms": _ms(percentile(lat, 99)),
            "max_ms": _ms(lat[-1] if lat else None),
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


async def _one(conn: Connection, raw: bytes, timeout_s: float) -> int:
    async with asyncio.timeout(timeout_s):
        return await conn.request(raw)


async def closed_loop(
    host: str,
    port: int,
    raws: list[bytes],
    connections: int,
    duration_s: float,
    warmup_s: float,
    timeout_s: float,
) -> dict[str, Any]:
    tally = Tally()
    cycle: Iterator[bytes] = itertools.cycle(raws)
    start = time.perf_counter()
    measure_from = start + warmup_s
    end = measure_from + duration_s

    async def worker() -> None:
        conn = Connection(host, port)
        try:
            while (sent := time.perf_counter()) < end:
                try:
                    status = await _one(conn, next(cycle), timeout_s)
                except (OSError, TimeoutError, asyncio.IncompleteReadError, HttpError, ValueError) as err:
                    if sent >= measure_from:
                        tally.failed(type(err).__name__)
                    await asyncio.sleep(0.01)  # a refused connection must not spin
                    continue
                done = time.perf_counter()
                tally.all_completed += 1
                if measure_from <= done <= end:
                    tally.ok(status, done - sent)
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return tally.report(duration_s, mode="closed", connections=connections)


async def open_loop(
    host: str,
    port: int,
    raws: list[bytes],
    connections: int,
    rate: float,
    duration_s: float,
    warmup_s: float,
    timeout_s: float,
) -> dict[str, Any]:
    tally = Tally()
    cycle: Iterator[bytes] = itertools.cycle(raws)
    total = int(rate * (warmup_s + duration_s))
    queue: asyncio.Queue[float | None] = asyncio.Queue()
    start = time.perf_counter() + 0.05
    measure_from = start + warmup_s
    late_sends = 0

    async def dispatch() -> None:
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait(scheduled)
        for _ in range(connections):
            queue.put_nowait(None)

    async def worker() -> None:
        nonlocal late_sends
        conn = Connection(host, port)
        try:
            while (scheduled := await queue.get()) is not None:
                measured = scheduled >= measure_from
                if time.perf_counter() - scheduled > 0.001:
                    late_sends += measured
                try:
                    status = await _one(conn, next(cycle), timeout_s)
                except (OSError, TimeoutError, asyncio.IncompleteReadError, HttpError, ValueError) as err:
                    if measured:
                        tally.failed(type(err).__name__)
                    continue
                tally.all_completed += 1
                if measured:
                    tally.ok(status, time.perf_counter() - scheduled)
        finally:
            conn.close()

    await asyncio.gather(dispatch(), *(worker() for _ in range(connections)))
    return tally.report(
        duration_s,
        mode="open",
        connections=connections,
        offered_rps=rate,
        sent_late=late_sends,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT/path")
    parser.add_argument("--method", default="POST")
    parser.add_argument("--bodies", type=Path, help="JSON file: a list of request bodies, sent in turn")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--mode", choices=["closed", "open"], default="closed")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, default=200.0, help="open loop: requests per second")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds run but not measured")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    scheme, _, rest = args.url.partition("://")
    hostport, _, path = rest.partition("/")
    host, _, port_text = hostport.partition(":")
    if scheme != "http" or not port_text:
        sys.exit("loadgen: --url must be http://HOST:PORT/path")
    bodies: list[bytes] = []
    if args.bodies:
        bodies = [json.dumps(body).encode() for body in json.loads(args.bodies.read_text())]
    raws = build_requests(args.method, host, int(port_text), "/" + path, bodies, args.header)
    if args.mode == "closed":
        run = closed_loop(
            host, int(port_text), raws, args.connections, args.duration, args.warmup, args.timeout
        )
    else:
        run = open_loop(
            host,
            int(port_text),
            raws,
            args.connections,
            args.rate,
            args.duration,
            args.warmup,
            args.timeout,
        )
    with contextlib.suppress(KeyboardInterrupt):
        result = asyncio.run(run)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
