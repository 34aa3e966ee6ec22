"""The soak's private stack: a durable Redis, NATS with JetStream, one Product Service, two Order Services.

Redis and NATS are `tests.integration.servers` processes (free loopback ports, own process
groups, killed at exit); here their working directories live in the soak's log directory so
their logs survive the run. Redis runs with an append-only file fsynced on every write, so a
stop or a crash loses no acknowledged write. The services are the installed console scripts
(`order-service serve`, `product-service serve`), each in its own process group and logging
to a file of the log directory. Every wait is bounded; every child is killed at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar

import aiohttp
from tests.integration.servers import NatsServer, RedisServer, find_binary, free_port

LOOPBACK = "127.0.0.1"
ADMIN_TOKEN = "soak-admin-token"  # noqa: S105 - a throw-away token for private processes
REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 15.0

_LIVE: set[ServiceProcess] = set()


@atexit.register
def _kill_live_services() -> None:
    """Safety net: SIGKILL every service process group still running."""
    for service in list(_LIVE):
        with contextlib.suppress(Exception):
            service.kill()


@dataclass(eq=False)
class DurableRedisServer(RedisServer):
    """A redis-server whose data survives a stop or a crash: AOF, fsync on every write.

    The same settings as `tests/integration/redis_support.py`'s DurableRedisServer, which is not
    imported because that module pulls in the test fixtures' sample data.
    """

    name: ClassVar[str] = "redis-server-aof"

    def _command(self) -> list[str]:
        return [*super()._command(), "--appendonly", "yes", "--appendfsync", "always"]


def rss_mb(pid: int | None) -> float | None:
    """VmRSS of a process in MiB, None when it cannot be read (gone, not yet started)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def process_state(pid: int, cpu_before: float | None) -> str:
    """What a process that does not exit is doing: its threads' states and kernel wait channels,
    and the CPU it used since `cpu_before` (evidence for a hung shutdown)."""
    threads = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            wchan = (task / "wchan").read_text().strip() or "-"
            comm = (task / "comm").read_text().strip()
        except OSError:
            continue
        threads.append(f"{comm}:{state}/{wchan}")
    now = cpu_seconds(pid)
    used = f"{now - cpu_before:.2f}s CPU meanwhile" if now is not None and cpu_before is not None else "CPU ?"
    return f"{used}; threads {', '.join(threads)}"


@dataclass(eq=False)
class ServiceProcess:
    """`order-service serve` or `product-service serve` on a fixed port; restartable on it."""

    name: str
    script: str
    port: int
    env: dict[str, str]
    log_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    paused: bool = False
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def argv(self) -> list[str]:
        path = Path(sys.executable).with_name(self.script)
        if path.is_file():
            return [str(path), "serve"]
        func = self.script.replace("-", "_") + "_main"  # not installed as a script: same entry point
        return [sys.executable, "-c", f"from entrypoints.cli import {func}; {func}()", "serve"]

    def start(self) -> None:
        if self.alive():
            raise RuntimeError(f"{self.name} already running (pid {self.pid})")
        self._close_log()
        self._log = self.log_path.open("ab")
        self.starts += 1
        self._log.write(
            f"\n===== soak: start #{self.starts} of {self.name} on port {self.port} =====\n".encode()
        )
        self._log.flush()
        self.proc = subprocess.Popen(  # noqa: S603 - our own console script, no shell
            self.argv(),
            env=self.env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group
        )
        self.paused = False
        _LIVE.add(self)

    async def wait_ready(self, session: aiohttp.ClientSession, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Until GET /ready answers 200; returns the seconds it took. Fails early if the process died."""
        began = time.monotonic()
        last = "no answer"
        while time.monotonic() - began < timeout_s:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited; log {self.log_path}:\n{self.log_tail()}")
            try:
                async with session.get(f"{self.url}/ready", timeout=aiohttp.ClientTimeout(total=3)) as resp:
                    if resp.status == 200:
                        return time.monotonic() - began
                    last = f"{resp.status} {(await resp.text())[:300]}"
            except (aiohttp.ClientError, TimeoutError) as error:
                last = repr(error)
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f}s ({last}); log {self.log_path}")

    def terminate(self, grace_s: float = STOP_GRACE_S) -> str:
        """SIGTERM the group (after SIGCONT, should it be paused); SIGKILL after `grace_s`.

        Returns how it ended: `exit 0 after 1.2s`, or `SIGKILLed: still running 15s after SIGTERM`.
        """
        if self.proc is None:
            return "not started"
        outcome = f"had exited ({self.proc.returncode})"
        if self.proc.poll() is None:
            began = time.monotonic()
            self._signal(signal.SIGCONT)
            self._signal(signal.SIGTERM)
            cpu_before = cpu_seconds(self.proc.pid)
            try:
                code = self.proc.wait(timeout=grace_s)
                outcome = f"exit {code} {time.monotonic() - began:.1f}s after SIGTERM"
            except subprocess.TimeoutExpired:
                stuck = process_state(self.proc.pid, cpu_before)
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
                outcome = f"SIGKILLed: still running {grace_s:.0f}s after SIGTERM [{stuck}]"
        self._done()
        return outcome

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self._done()

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self.paused = False

    def rss_mb(self) -> float | None:
        return rss_mb(self.pid) if self.alive() else None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _signal(self, sig: signal.Signals) -> None:
        # only while the leader is un-reaped, so its pid (== pgid) cannot belong to someone else
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def _done(self) -> None:
        self.paused = False
        _LIVE.discard(self)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _service_env(base: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment without settings that would point a service elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_URL", "_PORT", "_HOST")) and not k.startswith("SOAK_")
    }
    env.update(base)
    return env


@dataclass(eq=False)
class SoakStack:
    """Everything the soak runs, and where its logs go."""

    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="soak-")))
    redis: DurableRedisServer | None = None
    nats: NatsServer | None = None
    product: ServiceProcess | None = None
    order_a: ServiceProcess | None = None
    order_b: ServiceProcess | None = None

    def services(self) -> list[ServiceProcess]:
        return [s for s in (self.product, self.order_a, self.order_b) if s is not None]

    def orders(self) -> list[ServiceProcess]:
        return [s for s in (self.order_a, self.order_b) if s is not None]

    def base_env(self) -> dict[str, str]:
        assert self.redis is not None
        assert self.nats is not None
        assert self.product is not None
        return {
            "REDIS_URL": self.redis.url,
            "NATS_URL": self.nats.url,
            "PRODUCT_SERVICE_URL": self.product.url,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "LOG_LEVEL": os.environ.get("SOAK_LOG_LEVEL", "WARNING"),
            "LOG_FORMAT": "json",
            # no scheduled refresh: the cache must be kept right by the events alone
            "REFRESH_CRON": "0 0 1 1 *",
        }

    async def start(self, session: aiohttp.ClientSession) -> None:
        redis_bin, nats_bin = find_binary("redis-server"), find_binary("nats-server")
        if redis_bin is None or nats_bin is None:
            raise SystemExit("soak: redis-server and nats-server must be installed (on PATH or in /usr/sbin)")
        self.redis = DurableRedisServer(redis_bin, workdir=self.log_dir / "redis")
        self.nats = NatsServer(nats_bin, workdir=self.log_dir / "nats", stop_timeout=10.0)
        await asyncio.to_thread(self.redis.start)
        await asyncio.to_thread(self.nats.start)
        self.product = ServiceProcess("product-service", "product-service", free_port(), {}, self.log_dir)
        base = self.base_env()
        self.product.env = _service_env(
            {**base, "PRODUCT_SERVICE_HOST": LOOPBACK, "PRODUCT_SERVICE_PORT": str(self.product.port)}
        )
        self.order_a, self.order_b = (
            ServiceProcess(name, "order-service", port, {}, self.log_dir)
            for name, port in (("order-a", free_port()), ("order-b", free_port()))
        )
        for order in self.orders():
            order.env = _service_env(
                {
                    **base,
                    "ORDER_SERVICE_HOST": LOOPBACK,
                    "ORDER_SERVICE_PORT": str(order.port),
                    "INSTANCE_ID": order.name,
                }
            )
        self.product.env["INSTANCE_ID"] = "products"
        self.product.start()
        await self.product.wait_ready(session)
        for order in self.orders():
            order.start()
        for order in self.orders():
            await order.wait_ready(session)

    async def heal(self, session: aiohttp.ClientSession) -> list[str]:
        """Whatever a fault left down comes back; then every service must be ready. Returns what was done."""
        done = []
        assert self.redis is not None
        assert self.nats is not None
        if not self.redis.is_running:
            await asyncio.to_thread(self.redis.start)
            done.append("redis started")
        if not self.nats.is_running:
            await asyncio.to_thread(self.nats.start)
            done.append("nats started")
        for service in self.services():
            if service.paused:
                service.resume()
                done.append(f"{service.name} resumed")
            if not service.alive():
                service.start()
                done.append(f"{service.name} started")
        for service in self.services():
            await service.wait_ready(session, timeout_s=60.0)
        return done

    def close(self) -> list[str]:
        """Stop everything, services first; never raises. Returns how each service ended."""
        ended = []
        for service in self.services():
            try:
                ended.append(f"{service.name}: {service.terminate()}")
            except Exception as error:
                ended.append(f"{service.name}: {error!r}")
        for server in (self.nats, self.redis):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()
        return ended

    def drop_data(self) -> None:
        """Remove the JetStream store and the AOF (the bulk of the log dir); the logs stay."""
        if self.nats is not None:
            shutil.rmtree(self.nats.store_dir, ignore_errors=True)
        if self.redis is not None:
            for name in ("appendonlydir", "appendonly.aof", "dump.rdb"):
                path = self.redis.directory / name
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        path.unlink()
