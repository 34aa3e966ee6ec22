"""The Redis client of one service: one connection pool from REDIS_URL, Lua scripts, error translation."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import attrs
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from domain.errors import DependencyUnavailable

log = logging.getLogger(__name__)

SOCKET_TIMEOUT_S = 1.0
"""Connect and read timeouts: an outage becomes a fast 503, not a hung request."""
HEALTH_CHECK_INTERVAL_S = 15
MAX_CONNECTIONS = 64
PING_TIMEOUT_S = 2.0


@attrs.frozen
class LuaScript:
    """A server-side script, run by its SHA1 and loaded again when the server has forgotten it."""

    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()


class AutoPipeline:
    """Plain commands issued during one event-loop turn leave together, in one pipeline.

    Concurrent consumers and requests each ask for a key or two; sent one by one, every
    command pays a pool checkout, a write and a read. Gathered, a turn's commands pay that
    once (the same idea as ioredis' auto-pipelining). The wait is one loop turn at most; a
    command's error reaches its own caller, a connection failure every caller of the batch.
    Scripts go through `RedisClient.run`, which adds the NOSCRIPT fallback; not for transactions.
    """

    def __init__(self, redis: Callable[[], Redis]) -> None:
        self._redis = redis
        self._gathering: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def execute(self, *command: Any) -> Any:
        if self._gathering is not None:  # a batch is gathering this turn: join it
            waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._gathering.append((command, waiter))
            return await waiter
        followers: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._gathering = followers
        try:
            await asyncio.sleep(0)  # the rest of this loop turn: what is issued in it joins
        except asyncio.CancelledError:
            self._gathering = None
            self._spawn(followers)
            raise
        self._gathering = None
        if not followers:  # alone: the plain command, no pipeline, no task
            return await self._redis().execute_command(*command)  # type: ignore[no-untyped-call]
        own: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._spawn([(command, own), *followers])
        return await own

    def _spawn(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        """Send in a task of its own: a caller that gives up does not take the batch with it."""
        batch = [(command, waiter) for command, waiter in batch if not waiter.done()]
        if batch:
            task = asyncio.ensure_future(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            redis = self._redis()
            if len(batch) == 1:
                [(command, _)] = batch
                results: list[Any] = [await redis.execute_command(*command)]  # type: ignore[no-untyped-call]
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
        self.batched = AutoPipeline(lambda: self.redis)
        """Plain commands through the auto-pipeline (see AutoPipeline)."""

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            pool = BlockingConnectionPool.from_url(self.url, **self._options)
            self._redis = Redis(connection_pool=pool)
        return self._redis

    async def run(self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """EVALSHA through the auto-pipeline: concurrent scripts share a round trip too."""
        try:
            return await self.batched.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # a restarted server has an empty script cache; EVAL runs and caches it again
            return await self.redis.eval(script.source, len(keys), *keys, *args)

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
