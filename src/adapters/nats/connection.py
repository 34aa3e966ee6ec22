"""One NATS connection: connects in the background, reconnects forever, logs what happens to it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

import attrs
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, JetStreamManager

from adapters.broker import DEFAULT_MAX_PAYLOAD_BYTES
from adapters.nats.streams import ensure_streams
from domain.errors import EventBusUnavailable

log = logging.getLogger(__name__)

NATS_FAILURES: tuple[type[Exception], ...] = (nats.errors.Error, OSError, ValueError)
"""What nats-py raises when the server is away or answers oddly (TimeoutError is an OSError)."""
BUS_FAILURES: tuple[type[Exception], ...] = (EventBusUnavailable, *NATS_FAILURES)

CONNECT_TIMEOUT_S = 2
RECONNECT_WAIT_S = 1
PING_INTERVAL_S = 20
API_TIMEOUT_S = 2.0
STREAMS_RETRY_MAX_S = 10.0


def described(error: BaseException) -> str:
    """repr() of an error, but a JetStream API error with what the server said (its repr is bare)."""
    if isinstance(error, nats.js.errors.APIError):
        return f"{type(error).__name__}({error.description!r}, code={error.code}, err_code={error.err_code})"
    return repr(error)


def servers_of(urls: str) -> list[str]:
    """`nats://a:4222, nats://b:4222` -> the server list of one cluster."""
    return [url.strip() for url in urls.split(",") if url.strip()]


def where(servers: list[str]) -> str:
    """The servers as logs may show them: host and port only, never credentials."""
    return ",".join(f"{urlsplit(url).hostname}:{urlsplit(url).port or 4222}" for url in servers)


@attrs.define(eq=False)
class NatsConnection:
    """The client, whether it is connected now, and a generation counting (re)connections.

    nats-py reconnects by itself, but closes the client for good on some server errors; then
    a new client is opened (`incarnation` counts them: subscriptions of an older one are dead).
    """

    servers: list[str]
    stream_replicas: int = 1
    client_name: str | None = None
    generation: int = 0
    incarnation: int = 0
    _client: Client | None = None
    _js: JetStreamContext | None = None
    _connected: asyncio.Event = attrs.field(factory=asyncio.Event)
    _streams_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)
    _tasks: set[asyncio.Task[None]] = attrs.field(factory=set)
    _closing: bool = False
    _last_error: str | None = None

    @property
    def is_connected(self) -> bool:
        return self._client is not None and self._client.is_connected and self._connected.is_set()

    async def open(self, wait_s: float) -> None:
        """Start connecting; wait up to `wait_s` for it, then go on connecting in the background."""
        if self._client is not None:
            return
        self._closing = False
        self._new_client()
        try:
            await asyncio.wait_for(asyncio.shield(self._connected.wait()), wait_s)
        except TimeoutError:
            log.warning("NATS not reachable at %s yet; still trying in the background", where(self.servers))

    async def close(self) -> None:
        self._closing = True
        self._connected.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        client, self._client, self._js = self._client, None, None
        if client is None:
            return
        if client.is_connected:
            with contextlib.suppress(*NATS_FAILURES):
                await client.flush(timeout=1)
        with contextlib.suppress(*NATS_FAILURES):
            await client.close()
        log.info("NATS connection closed")

    @property
    def max_payload(self) -> int:
        """The largest message, headers included, the server takes (its INFO says; 1 MiB by default)."""
        return self._client.max_payload if self._client is not None else DEFAULT_MAX_PAYLOAD_BYTES

    def jetstream(self) -> JetStreamContext:
        """The JetStream context while connected; EventBusUnavailable otherwise."""
        if self._js is None or not self.is_connected:
            raise EventBusUnavailable("The event bus (NATS) is not connected")
        return self._js

    def client(self) -> Client:
        """The core client while connected; EventBusUnavailable otherwise."""
        if self._client is None or not self.is_connected:
            raise EventBusUnavailable("The event bus (NATS) is not connected")
        return self._client

    def manager(self, timeout_s: float) -> JetStreamManager:
        if self._client is None or not self.is_connected:
            raise EventBusUnavailable("The event bus (NATS) is not connected")
        return self._client.jsm(timeout=timeout_s)

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def ensure_streams(self) -> None:
        """Create the missing streams now; EventBusUnavailable when JetStream does not answer."""
        async with self._streams_lock:
            try:
                await ensure_streams(self.manager(API_TIMEOUT_S), self.stream_replicas)
            except NATS_FAILURES as error:
                raise EventBusUnavailable(
                    f"JetStream streams could not be ensured: {described(error)}"
                ) from error

    # ----------------------------------------------------------------- internals
    def _new_client(self) -> None:
        self.incarnation += 1
        self._client = client = Client()
        self._js = client.jetstream(timeout=API_TIMEOUT_S)
        self._spawn(self._connect(client), "nats-connect")

    async def _reopen(self) -> None:
        await asyncio.sleep(RECONNECT_WAIT_S)
        if not self._closing:
            log.warning("NATS: opening a new connection to %s", where(self.servers))
            self._new_client()

    async def _connect(self, client: Client) -> None:
        try:
            await self._connect_once(client)
        except Exception:  # not retried by nats-py (a bad URL, say): say so rather than hang quietly
            log.exception("NATS connection to %s failed for good", where(self.servers))

    async def _connect_once(self, client: Client) -> None:
        # With max_reconnect_attempts=-1 even the first connect() retries until a server answers.
        await client.connect(
            servers=self.servers,
            name=self.client_name,
            connect_timeout=CONNECT_TIMEOUT_S,
            reconnect_time_wait=RECONNECT_WAIT_S,
            max_reconnect_attempts=-1,
            ping_interval=PING_INTERVAL_S,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            closed_cb=self._on_closed,
        )
        self._last_error = None
        log.info("NATS connected to %s", _connected_to(client))
        await self._ensure_streams_until_done(first_try_only=True)
        self._mark_connected()

    def _mark_connected(self) -> None:
        self.generation += 1
        self._connected.set()

    async def _ensure_streams_until_done(self, first_try_only: bool = False) -> None:
        delay = 0.5
        while not self._closing:
            try:
                await ensure_streams(self._manager_now(), self.stream_replicas)
            except NATS_FAILURES as error:
                log.warning("JetStream streams not ensured yet: %s", described(error))
                if first_try_only:
                    self._spawn(self._ensure_streams_until_done(), "nats-streams")
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, STREAMS_RETRY_MAX_S)
                continue
            return

    def _manager_now(self) -> JetStreamManager:
        if self._client is None:
            raise nats.errors.ConnectionClosedError
        return self._client.jsm(timeout=API_TIMEOUT_S)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_error(self, error: Exception) -> None:
        text = repr(error)
        if text != self._last_error:  # a server that stays away is logged once, not every second
            self._last_error = text
            log.warning("NATS connection error: %s", text)

    async def _on_disconnected(self) -> None:
        self._connected.clear()
        if not self._closing:
            log.warning("NATS disconnected; reconnecting")

    async def _on_reconnected(self) -> None:
        self._last_error = None
        log.info("NATS reconnected to %s", _connected_to(self._client))
        self._mark_connected()
        self._spawn(self._ensure_streams_until_done(), "nats-streams")

    async def _on_closed(self) -> None:
        self._connected.clear()
        if not self._closing:
            log.error("NATS connection closed unexpectedly; a new one opens in %ss", RECONNECT_WAIT_S)
            self._spawn(self._reopen(), "nats-reopen")


def _connected_to(client: Client | None) -> str:
    url = client.connected_url if client is not None else None
    return f"{url.hostname}:{url.port}" if url is not None else "?"
