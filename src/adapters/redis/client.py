"""The Redis client of one service: one connection pool from REDIS_URL, Lua scripts, error translation."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import attrs
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from adapters.redis.held import HeldConnection
from adapters.redis.packing import pack_with_hiredis
from domain.errors import DependencyUnavailable

log = logging.getLogger(__name__)

SOCKET_TIMEOUT_S = 1.0
"""Connect and read timeouts: an outage becomes a fast 503, not a hung request."""
HEALTH_CHECK_INTERVAL_S = 15
MAX_CONNECTIONS = 64
PING_TIMEOUT_S = 2.0
PROMPT_SENDS_IN_FLIGHT = 2
"""Sends the prompt lane may have out at once: the two writes of one order go out together."""

_PROMPT: contextvars.ContextVar[bool] = contextvars.ContextVar("redis_prompt_lane", default=False)


@contextlib.contextmanager
def prompt_lane(prompt: bool = True) -> Iterator[None]:
    """Redis commands issued inside, and in tasks started inside, take the prompt lane
    (`prompt=False`: the background one again, for work a request leaves running).

    For work somebody is waiting on (an HTTP request): its commands do not queue behind a
    batch of background commands (event consumers, the outbox relay) that is out, whose round
    trip, and then the parsing of its replies, would come first.
    """
    token = _PROMPT.set(prompt)
    try:
        yield
    finally:
        _PROMPT.reset(token)


@attrs.frozen
class LuaScript:
    """A server-side script, run by its SHA1 and loaded again when the server has forgotten it."""

    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()


class Commands(Protocol):
    """What the auto-pipeline sends through: redis-py's client, or one connection of it held."""

    async def execute_command(self, *command: Any) -> Any: ...

    def pipeline(self, transaction: bool = ...) -> Any: ...


class AutoPipeline:
    """Plain commands sent while another send is in flight leave together, in one pipeline.

    Concurrent consumers and requests each ask for a key or two; sent one by one, every
    command pays a pool checkout, a write and a read. Gathered, they pay that once (the idea
    of ioredis' auto-pipelining, with Nagle's trigger): an idle client sends a command at once,
    and what is issued while that send is out waits for it, then leaves as one batch. A lone
    caller never waits; under load the batches grow with the round trip. At most one send is
    in flight (`max_in_flight`, 1 by default), so the commands of a service share one
    connection. A command's error reaches its own caller, a connection failure every caller of
    the batch. Scripts go through it too (RedisClient.run handles NOSCRIPT); transactions do not.
    """

    def __init__(self, redis: Callable[[], Commands], max_in_flight: int = 1) -> None:
        self._redis = redis
        self._max_in_flight = max(max_in_flight, 1)
        self._queued: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._out = 0
        """Sends in flight: lone commands and draining batches."""
        self._sending: set[asyncio.Task[None]] = set()

    async def execute(self, *command: Any) -> Any:
        if self._out >= self._max_in_flight:  # as many sends out as allowed: join the next batch
            waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._queued.append((command, waiter))
            return await waiter
        self._out += 1
        try:
            return await self._redis().execute_command(*command)
        finally:
            self._out -= 1
            self._send_queued()

    def _send_queued(self) -> None:
        """What queued meanwhile leaves now, in a task of its own: its callers are not ours to
        cancel, and a caller that gives up does not take the batch with it."""
        if not self._queued or self._out >= self._max_in_flight:
            return
        self._out += 1
        task = asyncio.ensure_future(self._drain())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _drain(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                batch = [(command, waiter) for command, waiter in batch if not waiter.done()]
                if batch:
                    await self._send(batch)
        finally:
            self._out -= 1
            if self._out == 0:
                for _, waiter in self._queued:  # only on cancellation (shutdown)
                    waiter.cancel()
                self._queued = []

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            redis = self._redis()
            if len(batch) == 1:
                [(command, _)] = batch
                results: list[Any] = [await redis.execute_command(*command)]
            else:
                pipe = redis.pipeline(transaction=False)
                for command, _ in batch:
                    pipe.execute_command(*command)
                results = await pipe.execute(raise_on_error=False)
        except Exception as failure:  # handed to every waiter of the batch
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(failure)
            return
        except BaseException:  # cancelled (shutdown): so are its waiters
            for _, waiter in batch:
                waiter.cancel()
            raise
        for (_, waiter), result in zip(batch, results, strict=True):
            if waiter.done():
                continue
            if isinstance(result, Exception):
                waiter.set_exception(result)
            else:
                waiter.set_result(result)


class RedisClient:
    """One pool per service, created on first use; nothing connects before a command is sent.

    A connection error is retried once at once, on a fresh connection: that is what carries a
    pool over a server restart without failing the first request. Timeouts are not retried.
    A retried write may have run already, so every write is safe to replay: keyed by ids,
    NX, versioned, or guarded by the idempotency key.
    """

    def __init__(
        self,
        url: str,
        *,
        socket_timeout_s: float = SOCKET_TIMEOUT_S,
        health_check_interval_s: int = HEALTH_CHECK_INTERVAL_S,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.url = url
        self._options: dict[str, Any] = {
            "socket_timeout": socket_timeout_s,
            "socket_connect_timeout": socket_timeout_s,
            "timeout": socket_timeout_s,  # waiting for a free connection of the pool
            "health_check_interval": health_check_interval_s,
            "max_connections": max_connections,
            "retry": Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
            "decode_responses": True,
        }
        self._redis: Redis | None = None
        self._held: HeldConnection | None = None
        self._background = AutoPipeline(self._held_connection)
        """One send at a time, on a connection of its own (see HeldConnection)."""
        self._prompt = AutoPipeline(lambda: self.redis, max_in_flight=PROMPT_SENDS_IN_FLIGHT)
        """Up to PROMPT_SENDS_IN_FLIGHT sends, each on a pooled connection."""

    @property
    def batched(self) -> AutoPipeline:
        """Plain commands through the auto-pipeline (see AutoPipeline): the prompt lane's inside
        `prompt_lane()`, else the one every background job shares."""
        return self._prompt if _PROMPT.get() else self._background

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            pool = BlockingConnectionPool.from_url(self.url, **self._options)
            pack_with_hiredis(pool)
            self._redis = Redis(connection_pool=pool)
        return self._redis

    def _held_connection(self) -> HeldConnection:
        if self._held is None:
            self._held = HeldConnection(self.redis)
        return self._held

    async def run(self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """The script on `keys` and `args`, auto-pipelined with whatever else is going out."""
        try:
            return await self.batched.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # a restarted server has an empty script cache; EVAL runs and caches it again
            return await self.batched.execute("EVAL", script.source, len(keys), *keys, *args)

    async def ping(self) -> bool:
        """For readiness: True when the server answers within a couple of seconds."""
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), PING_TIMEOUT_S))
        except (RedisError, OSError, RuntimeError) as error:
            if isinstance(error, RuntimeError) and not closed_transport(error):
                raise
            log.warning("redis ping failed: %s", type(error).__name__)
            return False

    async def close(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            await held.release()
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await redis.aclose(close_connection_pool=True)


def text(value: bytes | str) -> str:
    """Replies are str (decode_responses); redis-py's types also allow bytes."""
    return value.decode() if isinstance(value, bytes) else value


def texts(values: Iterable[bytes | str]) -> list[str]:
    return [text(value) for value in values]


def closed_transport(failure: BaseException) -> bool:
    """uvloop raises RuntimeError("... the handler is closed") for a write on a connection the
    server has just dropped, where asyncio's own loop raises an OSError or nothing
    (MagicStack/uvloop#506): an outage like any other, not a bug of ours."""
    return isinstance(failure, RuntimeError) and "handler is closed" in str(failure)


@contextlib.contextmanager
def translated(error: type[DependencyUnavailable], message: str) -> Iterator[None]:
    """No redis exception leaves an adapter: it becomes the port's own error."""
    try:
        yield
    except (RedisError, OSError) as failure:
        if isinstance(failure, ResponseError):
            # not an outage: the server refused the command (a script bug, OOM, a read-only replica)
            log.error("redis refused a command: %s", failure)
        raise error(message, {"cause": type(failure).__name__}) from failure
    except RuntimeError as failure:
        if not closed_transport(failure):
            raise
        raise error(message, {"cause": "ConnectionClosed"}) from failure
