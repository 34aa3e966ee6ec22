"""One pooled connection held for the auto-pipeline's sends, without redis-py's per-command checkout.

redis-py 8 wraps every `execute_command` in a pool checkout (a condition, a lock, a readiness
check of the socket), a release, and observability hooks; on this VM they cost more than the
round trip itself (a lone MGET: ~80-90 us through the pool, ~50 us on a held connection). The
auto-pipeline sends one thing at a time, so one connection serves it: taken from the pool once
and kept. A connection error is retried once at once on a fresh connection, as the client's
`Retry(retries=1)` does; redis-py drops the connection itself on any other failure (a timeout,
a cancelled read), so no late reply is ever read as the next command's.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError


class HeldConnection:
    """Commands and pipelines on one held connection; its callers never overlap."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._connection: Connection | None = None

    async def execute_command(self, *command: Any) -> Any:
        [reply] = await self.execute_many([command], raise_on_error=True)
        return reply

    async def execute_many(self, commands: list[tuple[Any, ...]], *, raise_on_error: bool) -> list[Any]:
        """The replies in order, written together and read back; with `raise_on_error` False a
        command the server refused has its error in its place (the connection is still good)."""
        connection = await self._held()
        try:
            return await self._round_trip(connection, commands, raise_on_error)
        except RedisConnectionError:
            # the server restarted or dropped us: redis-py has closed the socket, and the
            # same connection object connects afresh on its next send
            return await self._round_trip(connection, commands, raise_on_error)

    def pipeline(self, transaction: bool = False) -> HeldPipeline:
        """Commands gathered, then sent as one write (never a MULTI transaction)."""
        if transaction:
            raise ValueError("a held connection sends no transactions")
        return HeldPipeline(self)

    async def release(self) -> None:
        """Back to the pool (before the pool is closed)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._redis.connection_pool.release(connection)

    async def _held(self) -> Connection:
        if self._connection is None:
            self._connection = await self._redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        return self._connection

    async def _round_trip(
        self, connection: Connection, commands: list[tuple[Any, ...]], raise_on_error: bool
    ) -> list[Any]:
        await connection.send_packed_command(connection.pack_commands(commands))
        replies: list[Any] = []
        for command in commands:  # every reply is read, so the next send finds none left over
            try:
                replies.append(await self._redis.parse_response(connection, command[0]))
            except ResponseError as refused:
                replies.append(refused)
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, ResponseError):
                    raise reply
        return replies


class HeldPipeline:
    """The part of redis-py's Pipeline the auto-pipeline uses, on the held connection."""

    def __init__(self, held: HeldConnection) -> None:
        self._held = held
        self._commands: list[tuple[Any, ...]] = []

    def execute_command(self, *command: Any) -> None:
        self._commands.append(command)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        return await self._held.execute_many(self._commands, raise_on_error=raise_on_error)
