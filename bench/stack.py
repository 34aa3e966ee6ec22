"""Private processes for the bench: Redis, NATS, both services, the hello world, the responder.

Redis and NATS come from `tests.integration.servers` (free loopback ports, own temp dirs,
killed at exit). The other processes are children in their own process group, logging to a
temp dir, stopped with SIGTERM (SIGKILL after a grace period) and killed at exit whatever
happens. Every wait here is bounded.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import redis.asyncio
from tests.integration.servers import NatsServer, RedisServer, find_binary, free_port

from adapters.wire.converter import dumps, loads

LOOPBACK = "127.0.0.1"
ADMIN_TOKEN = "bench-admin-token"  # noqa: S105 - a throw-away token for a private service
REPO_ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = Path(tempfile.mkdtemp(prefix="bench-logs-"))

_CHILDREN: set[Child] = set()
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@atexit.register
def kill_children() -> None:
    for child in list(_CHILDREN):
        child.kill()


@dataclass(eq=False)
class Child:
    """A subprocess in its own process group, its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return LOG_DIR / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and scripts
            self.argv,
            env={**os.environ, **self.env},
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _CHILDREN.add(self)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._done()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self._done()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def vm_hwm_mb(self) -> float | None:
        """Peak resident set size so far (VmHWM), in MiB."""
        return _status_kib(self.pid, "VmHWM")

    def vm_rss_mb(self) -> float | None:
        return _status_kib(self.pid, "VmRSS")

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def _done(self) -> None:
        _CHILDREN.discard(self)
        if self._log is not None:
            self._log.close()
            self._log = None


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time a process has used so far."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def cpu_used(pids: Sequence[int | None], before: Sequence[float | None]) -> float | None:
    """CPU seconds the processes used since `before` (from `cpu_seconds` of the same pids)."""
    total = 0.0
    for pid, earlier in zip(pids, before, strict=True):
        now = cpu_seconds(pid)
        if now is None or earlier is None:
            return None
        total += now - earlier
    return total


async def redis_calls(url: str) -> Counter[str]:
    """Calls per Redis command since the server started (commands run by scripts included)."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


def per_request(before: Counter[str], after: Counter[str], requests: int, top: int = 8) -> dict[str, float]:
    """The commands issued per request between two `redis_calls`, the most frequent first."""
    delta = after - before
    shown = {name: round(n / requests, 2) for name, n in delta.most_common(top)}
    return {"total": round(sum(delta.values()) / requests, 2), **shown}


def nats_messages(monitor_url: str | None) -> tuple[int, int] | None:
    """(messages in, messages out) of the NATS server so far, from its monitoring endpoint."""
    if monitor_url is None:
        return None
    try:
        with _NO_PROXY.open(f"{monitor_url}/varz", timeout=2) as response:
            varz = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return int(varz["in_msgs"]), int(varz["out_msgs"])


def _status_kib(pid: int, key: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def python_module(name: str, module: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
    return Child(name, [sys.executable, "-m", module, *args], dict(env or {}))


def console_script(name: str, script: str, args: Sequence[str], env: Mapping[str, str]) -> Child:
    """`order-service serve` / `product-service serve`, the installed console scripts."""
    path = Path(sys.executable).with_name(script)
    if path.is_file():
        argv = [str(path), *args]
    else:  # not installed as a script: the same entry point through the interpreter
        func = script.replace("-", "_") + "_main"
        argv = [sys.executable, "-c", f"from entrypoints.cli import {func}; {func}()", *args]
    return Child(name, argv, dict(env))


@contextlib.contextmanager
def redis_and_nats() -> Iterator[tuple[RedisServer, NatsServer]]:
    redis_bin, nats_bin = find_binary("redis-server"), find_binary("nats-server")
    if redis_bin is None or nats_bin is None:
        raise SystemExit("bench: redis-server and nats-server must be installed (on PATH or in /usr/sbin)")
    redis = RedisServer(redis_bin)
    nats = NatsServer(nats_bin)
    try:
        redis.start()
        nats.start()
        yield redis, nats
    finally:
        nats.cleanup()
        redis.cleanup()


async def wait_http(session: aiohttp.ClientSession, url: str, child: Child, timeout_s: float = 30.0) -> None:
    """Until `url` answers 2xx; fails early when the process died."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited; log {child.log_path}:\n{child.log_tail()}")
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                if 200 <= response.status < 300:
                    return
                last = f"{response.status} {(await response.text())[:200]}"
        except (aiohttp.ClientError, TimeoutError) as error:
            last = repr(error)
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} not ready at {url} after {timeout_s}s ({last}); log {child.log_path}")


@dataclass
class Services:
    """The real-mode stack: Product Service and Order Service over one Redis and one NATS."""

    redis_url: str
    nats_url: str
    product_port: int = field(default_factory=free_port)
    order_port: int = field(default_factory=free_port)
    hello_port: int = field(default_factory=free_port)
    floor_front_port: int = field(default_factory=free_port)
    floor_upstream_port: int = field(default_factory=free_port)
    product: Child | None = None
    order: Child | None = None
    hello: Child | None = None
    floor_front: Child | None = None
    floor_upstream: Child | None = None
    """The raw floor of an order (bench/floor.py), over the same Redis and NATS."""
    extra_env: dict[str, str] = field(default_factory=dict)
    """Settings given on the command line (`--env`), over the bench's own."""

    @property
    def product_url(self) -> str:
        return f"http://{LOOPBACK}:{self.product_port}"

    @property
    def order_url(self) -> str:
        return f"http://{LOOPBACK}:{self.order_port}"

    @property
    def hello_url(self) -> str:
        return f"http://{LOOPBACK}:{self.hello_port}"

    @property
    def floor_url(self) -> str:
        return f"http://{LOOPBACK}:{self.floor_front_port}"

    def env(self) -> dict[str, str]:
        return {
            "REDIS_URL": self.redis_url,
            "NATS_URL": self.nats_url,
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
            "REFRESH_CRON": "0 0 1 1 *",  # no scheduled refresh during the run
            "PRODUCT_SERVICE_HOST": LOOPBACK,
            "ORDER_SERVICE_HOST": LOOPBACK,
            "PRODUCT_SERVICE_PORT": str(self.product_port),
            "ORDER_SERVICE_PORT": str(self.order_port),
            "PRODUCT_SERVICE_URL": self.product_url,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            **self.extra_env,
        }

    async def start(self, session: aiohttp.ClientSession) -> None:
        env = self.env()
        self.product = console_script(
            "product-service", "product-service", ["serve"], {**env, "INSTANCE_ID": "bench-product"}
        )
        self.order = console_script(
            "order-service", "order-service", ["serve"], {**env, "INSTANCE_ID": "bench-order"}
        )
        self.hello = python_module("hello", "bench.hello", ["--port", str(self.hello_port)])
        self.product.start()
        await wait_http(session, f"{self.product_url}/ready", self.product)
        self.order.start()
        self.hello.start()
        await wait_http(session, f"{self.order_url}/ready", self.order)
        await wait_http(session, f"{self.hello_url}/", self.hello)
        upstream_url = f"http://{LOOPBACK}:{self.floor_upstream_port}"
        infra = ["--redis", self.redis_url, "--nats", self.nats_url]
        self.floor_upstream = python_module(
            "floor-upstream", "bench.floor", ["upstream", "--port", str(self.floor_upstream_port), *infra]
        )
        self.floor_front = python_module(
            "floor-front",
            "bench.floor",
            ["front", "--port", str(self.floor_front_port), "--upstream", upstream_url, *infra],
        )
        self.floor_upstream.start()
        self.floor_front.start()
        await wait_http(session, f"{upstream_url}/ready", self.floor_upstream)
        await wait_http(session, f"{self.floor_url}/ready", self.floor_front)

    def children(self) -> list[Child]:
        every = (self.product, self.order, self.hello, self.floor_upstream, self.floor_front)
        return [child for child in every if child is not None]

    def stop(self) -> None:
        for child in reversed(self.children()):
            child.stop()

    def logs(self) -> dict[str, str]:
        return {c.name: str(c.log_path) for c in self.children()}


async def seed_products(session: aiohttp.ClientSession, product_url: str, count: int) -> list[str]:
    """`count` active products with stock that never runs out, created through the API."""
    ids = []
    for i in range(count):
        price = f"{10 + i}.99"
        body: dict[str, Any] = {
            "name": f"Bench product {i}",
            "basePrice": float(price),
            "currentPrice": float(price),
            "currency": "USD",
            "status": "ACTIVE",
            "quantityAvailable": 1_000_000_000,
        }
        async with session.post(f"{product_url}/api/v1/products", json=body) as response:
            if response.status != 201:
                raise RuntimeError(f"seeding product {i}: {response.status} {await response.text()}")
            ids.append((await response.json())["id"])
    return ids


async def seed_floor(session: aiohttp.ClientSession, services: Services, ids: Sequence[str]) -> None:
    """The floor's copies of the seeded products (as the Product Service answers them), with
    stock that never runs out."""
    async with session.post(
        f"{services.product_url}/api/v1/products/batch", json={"ids": list(ids)}
    ) as response:
        products = loads(await response.read())  # prices as exact Decimals, written back as they came
    client = redis.asyncio.Redis.from_url(services.redis_url)
    try:
        for product in products:
            await client.set(f"floor:product:{product['id']}", dumps(product))
            await client.set(f"floor:stock:{product['id']}", 1_000_000_000)
    finally:
        await client.aclose()


async def outbox_pending(session: aiohttp.ClientSession, base_url: str) -> int | None:
    try:
        async with session.get(f"{base_url}/health", timeout=aiohttp.ClientTimeout(total=5)) as response:
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    pending = body.get("checks", {}).get("outbox", {}).get("pending")
    return pending if isinstance(pending, int) else None
