"""Private redis-server / nats-server processes for integration tests.

Each server runs on a free loopback port, in its own process group, with its
own temporary directory (log file, JetStream store).  Tests can ``stop()``,
``kill()`` and ``restart()`` a server to exercise fault handling; a restart
reuses the same port (and, for NATS, the same JetStream store directory, so
file-backed streams survive).

Every started server is tracked in a module-level registry and killed by an
``atexit`` hook, as a safety net in addition to the pytest fixtures'
finalizers.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, TypeVar

__all__ = [
    "NatsServer",
    "RedisServer",
    "ServerExitedError",
    "ServerStartError",
    "ServerStartTimeoutError",
    "find_binary",
    "free_port",
    "kill_all",
]

LOOPBACK = "127.0.0.1"
_FALLBACK_DIRS = ("/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/usr/bin", "/sbin")
_POLL_INTERVAL = 0.02
_START_ATTEMPTS = 3  # only for the *first* start, when the port was picked by us


_S = TypeVar("_S", bound="_ManagedServer")


class ServerStartError(RuntimeError):
    """The server did not come up (exited early or did not accept connections)."""


class ServerExitedError(ServerStartError):
    """The server process exited during startup, or its port was already taken."""


class ServerStartTimeoutError(ServerStartError):
    """The server process kept running but was not ready within ``startup_timeout``."""


def find_binary(name: str) -> str | None:
    """Return the path of executable ``name``, or None if it is not installed.

    Looks on ``PATH`` first, then in the usual sbin/local dirs, which are often
    missing from ``PATH`` for non-root users (Debian puts nats-server in
    /usr/sbin).
    """
    found = shutil.which(name)
    if found:
        return found
    for directory in _FALLBACK_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def free_port(host: str = LOOPBACK) -> int:
    """Ask the kernel for a currently free TCP port on ``host``.

    There is an unavoidable race between closing this socket and the server
    binding the port; ``start()`` retries with a new port if the server fails
    to start on a port it picked itself.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


# Never route loopback health checks through an http_proxy from the environment.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_LIVE: set[_ManagedServer] = set()


@atexit.register
def kill_all() -> None:
    """SIGKILL every server still running and remove its temp dir (safety net).

    Registered with ``atexit``; also safe to call from a signal handler.
    """
    servers = list(_LIVE)
    for server in servers:
        with contextlib.suppress(Exception):
            server.kill()
    for server in servers:
        with contextlib.suppress(Exception):
            server.cleanup()


@dataclass(eq=False)
class _ManagedServer:
    """Common process management; subclasses define the command and readiness."""

    binary: str
    host: str = LOOPBACK
    port: int = 0
    workdir: Path | None = None
    startup_timeout: float = 10.0
    stop_timeout: float = 5.0

    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log_handle: IO[bytes] | None = field(default=None, init=False, repr=False)
    _owns_workdir: bool = field(default=False, init=False, repr=False)
    _auto_port: bool = field(default=False, init=False, repr=False)
    _starts: int = field(default=0, init=False, repr=False)

    name: ClassVar[str] = "server"
    log_filename: ClassVar[str] = "server.log"

    def __post_init__(self) -> None:
        if self.port == 0:
            self.port = free_port(self.host)
            self._auto_port = True
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-test-"))
            self._owns_workdir = True
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ hooks
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _is_ready(self) -> bool:
        """Return True once the server serves requests (called repeatedly)."""
        return _port_accepts(self.host, self.port)

    # ------------------------------------------------------------- properties
    @property
    def directory(self) -> Path:
        assert self.workdir is not None  # set in __post_init__
        return self.workdir

    @property
    def log_path(self) -> Path:
        return self.directory / self.log_filename

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the server and block until it accepts connections."""
        if self.is_running:
            raise RuntimeError(f"{self.name} already running (pid {self.pid})")
        attempts = _START_ATTEMPTS if (self._auto_port and self._starts == 0) else 1
        for attempt in range(1, attempts + 1):
            try:
                self._spawn_and_wait()
            except ServerExitedError:
                if attempt == attempts:
                    raise
                # Most likely lost the free-port race; try other ports.
                self._repick_ports()
            else:
                self._starts += 1
                return

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM the process group; SIGKILL it if still alive after ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                proc.wait()
        self._reap()

    def kill(self) -> None:
        """SIGKILL the process group (simulates a crash; no graceful shutdown)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(signal.SIGKILL)
            proc.wait()
        self._reap()

    def restart(self, *, kill: bool = False) -> None:
        """Stop (or kill) and start again on the same port with the same workdir."""
        if kill:
            self.kill()
        else:
            self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server and remove the temporary directory if we created it."""
        try:
            self.stop()
        finally:
            if self._owns_workdir and self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self: _S) -> _S:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # -------------------------------------------------------------- internals
    def _ports(self) -> list[int]:
        return [self.port]

    def _repick_ports(self) -> None:
        self.port = free_port(self.host)

    def _spawn_and_wait(self) -> None:
        # Someone else listening on our port would pass the readiness probe
        # (e.g. the system redis on 6379), so refuse up front.
        busy = [port for port in self._ports() if _port_accepts(self.host, port)]
        if busy:
            raise ServerExitedError(
                f"{self.name}: port(s) {busy} on {self.host} already in use by another process"
            )
        log = self.log_path.open("ab")
        log.write(f"\n===== start #{self._starts + 1} of {self.name} on port {self.port} =====\n".encode())
        log.flush()
        self._log_handle = log
        self._proc = subprocess.Popen(  # noqa: S603 - our own binary path and arguments, no shell
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
            start_new_session=True,  # own session => own process group
        )
        _LIVE.add(self)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            returncode = self._proc.poll()
            if returncode is not None:
                self._reap()
                raise ServerExitedError(
                    f"{self.name} exited with code {returncode} during startup on port "
                    f"{self.port}; log {self.log_path}:\n{self.log_tail()}"
                )
            if self._is_ready():
                return
            if time.monotonic() >= deadline:
                self.kill()
                raise ServerStartTimeoutError(
                    f"{self.name} did not accept connections on {self.host}:{self.port} "
                    f"within {self.startup_timeout:.1f}s; log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _signal_group(self, sig: signal.Signals) -> None:
        # Only called while the leader is un-reaped, so its pid (== pgid) cannot
        # have been reused by an unrelated process.
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def _reap(self) -> None:
        _LIVE.discard(self)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None


@dataclass(eq=False)
class RedisServer(_ManagedServer):
    """A throw-away redis-server: no RDB snapshots, no AOF, loopback only."""

    name: ClassVar[str] = "redis-server"
    log_filename: ClassVar[str] = "redis.log"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--logfile", "",  # stdout, which goes to redis.log
        ]  # fmt: skip

    def _is_ready(self) -> bool:
        # A bare TCP accept is not enough (-LOADING, or a foreign server that
        # grabbed the port): require an INFO reply naming *our* process id.
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"INFO server\r\n")
                data = b""
                while b"\r\n" not in data and (chunk := sock.recv(4096)):
                    data += chunk
                header, _, body = data.partition(b"\r\n")
                if not header.startswith(b"$"):  # e.g. -LOADING
                    return False
                size = int(header[1:])
                while len(body) < size and (chunk := sock.recv(4096)):
                    body += chunk
        except (OSError, ValueError):
            return False
        return f"\r\nprocess_id:{self.pid}\r\n".encode() in b"\r\n" + body


@dataclass(eq=False)
class NatsServer(_ManagedServer):
    """A throw-away nats-server with JetStream (file store in the workdir).

    With ``monitor=True`` (default) the HTTP monitoring endpoint is enabled
    (``-m monitor_port``) and readiness also requires
    ``/healthz?js-enabled-only=true`` to return 200.
    """

    monitor: bool = True
    monitor_port: int = 0
    server_name: str = field(default_factory=lambda: f"test-nats-{uuid.uuid4().hex[:12]}")

    _auto_monitor_port: bool = field(default=False, init=False, repr=False)

    name: ClassVar[str] = "nats-server"
    log_filename: ClassVar[str] = "nats.log"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.monitor and self.monitor_port == 0:
            self.monitor_port = free_port(self.host)
            self._auto_monitor_port = True

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str | None:
        return f"http://{self.host}:{self.monitor_port}" if self.monitor else None

    @property
    def store_dir(self) -> Path:
        """JetStream store (``-sd``); kept across restarts, removed by cleanup()."""
        return self.directory / "jetstream-store"

    def _command(self) -> list[str]:
        cmd = [
            self.binary,
            "-js",
            "-sd", str(self.store_dir),
            "-a", self.host,
            "-p", str(self.port),
            "--server_name", self.server_name,
        ]  # fmt: skip
        if self.monitor:
            cmd += ["-m", str(self.monitor_port)]
        return cmd

    def _ports(self) -> list[int]:
        return [self.port, self.monitor_port] if self.monitor else [self.port]

    def _repick_ports(self) -> None:
        super()._repick_ports()
        if self._auto_monitor_port:
            self.monitor_port = free_port(self.host)

    def _is_ready(self) -> bool:
        # The server greets every client with an INFO line; make sure it is ours.
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                data = b""
                while b"\r\n" not in data and (chunk := sock.recv(4096)):
                    data += chunk
            line = data.partition(b"\r\n")[0]
            if not line.startswith(b"INFO "):
                return False
            info = json.loads(line[5:])
        except (OSError, ValueError):
            return False
        if not isinstance(info, dict) or info.get("server_name") != self.server_name:
            return False
        if not self.monitor:
            return True
        url = f"{self.monitor_url}/healthz?js-enabled-only=true"
        try:
            with _NO_PROXY_OPENER.open(url, timeout=0.5) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False
