"""Fixtures that run PRIVATE redis-server / nats-server processes for tests.

Session-scoped ``redis_server`` / ``nats_server`` start one server each on a
free loopback port (never the system 6379/4222) and always clean it up.  The
function-scoped ``redis_clean`` / ``nats_clean`` make sure the server is up
(a previous test may have stopped it) and wipe its state (FLUSHALL / delete
every JetStream stream) before the test.

A missing binary skips the tests with a loud reason, or fails them when the
``CI`` environment variable is set, so CI can never silently run nothing.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from types import FrameType

import nats
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from tests.integration.servers import NatsServer, RedisServer, find_binary, kill_all

_TIMINGS_KEY = pytest.StashKey[dict[str, float]]()
_MISSING_KEY = pytest.StashKey[set[str]]()


def _ci_enabled() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _require_binary(name: str, config: pytest.Config) -> str:
    path = find_binary(name)
    if path is not None:
        return path
    reason = f"{name} not found on PATH (nor /usr/sbin, /usr/local/bin): integration tests NOT run"
    config.stash.setdefault(_MISSING_KEY, set()).add(name)
    if _ci_enabled():
        pytest.fail(f"{reason} -- CI is set, so a missing {name} is an error; install it", pytrace=False)
    pytest.skip(f"!!! {reason} !!!")


def _kill_servers_then_die(signum: int, frame: FrameType | None) -> None:
    kill_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_signal_handlers() -> None:
    # A CI timeout usually SIGTERMs pytest: neither fixture finalizers nor atexit
    # run then, so kill our servers first.  (SIGKILL of pytest cannot be handled.)
    # Done lazily from the fixtures: this conftest may be loaded after sessionstart.
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is signal.SIG_DFL:
                signal.signal(sig, _kill_servers_then_die)


# --------------------------------------------------------------------- servers
@pytest.fixture(scope="session")
def redis_server(pytestconfig: pytest.Config) -> Iterator[RedisServer]:
    server = RedisServer(binary=_require_binary("redis-server", pytestconfig))
    _install_signal_handlers()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def nats_server(pytestconfig: pytest.Config) -> Iterator[NatsServer]:
    server = NatsServer(binary=_require_binary("nats-server", pytestconfig))
    _install_signal_handlers()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


# ------------------------------------------------------------ per-test resets
@pytest_asyncio.fixture(loop_scope="function")
async def redis_clean(redis_server: RedisServer) -> AsyncIterator[RedisServer]:
    """The session redis server, running and empty."""
    if not redis_server.is_running:
        redis_server.start()
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    yield redis_server


@pytest_asyncio.fixture(loop_scope="function")
async def nats_clean(nats_server: NatsServer) -> AsyncIterator[NatsServer]:
    """The session nats server, running and without any JetStream stream."""
    if not nats_server.is_running:
        nats_server.start()
    nc = await nats.connect(nats_server.url, allow_reconnect=False, connect_timeout=2)
    try:
        jsm = nc.jsm()
        while streams := await jsm.streams_info():
            for info in streams:
                await jsm.delete_stream(info.config.name or "")
    finally:
        await nc.close()
    yield nats_server


# ------------------------------------------------------------------- timings
@pytest.fixture(scope="session")
def server_timings(pytestconfig: pytest.Config) -> dict[str, float]:
    """Record durations (seconds) here; they are printed in the terminal summary."""
    return pytestconfig.stash.setdefault(_TIMINGS_KEY, {})


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    missing = config.stash.get(_MISSING_KEY, set())
    if missing:
        terminalreporter.section("INTEGRATION TESTS NOT RUN", red=True, bold=True)
        for name in sorted(missing):
            terminalreporter.write_line(
                f"!!! {name} is not installed: tests needing it were "
                f"{'FAILED (CI is set)' if _ci_enabled() else 'SKIPPED'} !!!",
                red=True,
                bold=True,
            )
    timings = config.stash.get(_TIMINGS_KEY, {})
    if timings:
        terminalreporter.section("server fault timings")
        for name, seconds in timings.items():
            terminalreporter.write_line(f"{name}: {seconds * 1000:.0f} ms")


def _print_asyncio_tasks(signum: int, frame: FrameType | None) -> None:
    """`kill -USR1 <pytest pid>` writes where every task of a hung test waits to a file
    (pytest captures stderr), named in the first line of stderr at session end."""
    import asyncio
    import tempfile

    with tempfile.NamedTemporaryFile("w", prefix="asyncio-tasks-", suffix=".txt", delete=False) as out:
        loop = asyncio._get_running_loop()
        if loop is None:
            out.write("no running event loop\n")
            return
        for task in asyncio.all_tasks(loop):
            task.print_stack(file=out)


signal.signal(signal.SIGUSR1, _print_asyncio_tasks)
