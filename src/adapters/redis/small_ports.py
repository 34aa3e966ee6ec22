"""Redis processed-event ids (a key with a TTL each) and leases (SET NX PX with a holder token)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from adapters.redis.client import LuaScript, RedisClient, translated
from adapters.redis.keys import Keyspace
from domain.errors import StoreUnavailable

_ACQUIRE = LuaScript("""
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return redis.call('GET', KEYS[1]) == ARGV[1] and 1 or 0
""")
"""SET NX PX, and also True when the holder is already this very token: a replay of an acquire
whose reply was lost on a broken connection must not lock its own caller out."""

_RELEASE = LuaScript("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")
"""Delete the lease only while it is still ours: once it expired another holder may have it."""


_REMEMBER_ALL = LuaScript("""
for _, key in ipairs(KEYS) do redis.call('SET', key, '1', 'PX', ARGV[1]) end
return #KEYS
""")
"""KEYS: the processed-event keys. ARGV: their TTL in ms. One command from the client for a batch."""


def _milliseconds(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


class RedisProcessedEvents:
    def __init__(self, client: RedisClient, keys: Keyspace, ttl_s: float) -> None:
        self.client = client
        self.keys = keys
        self.ttl_ms = _milliseconds(ttl_s)
        self._unavailable = "The processed-events store is unavailable"

    async def seen(self, event_id: str) -> bool:
        with translated(StoreUnavailable, self._unavailable):
            return bool(await self.client.batched.execute("EXISTS", self.keys.processed_event(event_id)))

    async def seen_among(self, event_ids: Sequence[str]) -> set[str]:
        ids = list(event_ids)
        if not ids:
            return set()
        with translated(StoreUnavailable, self._unavailable):
            found = await self.client.batched.execute("MGET", *map(self.keys.processed_event, ids))
        return {event_id for event_id, value in zip(ids, found, strict=True) if value is not None}

    async def remember_all(self, event_ids: Sequence[str]) -> None:
        keys = [self.keys.processed_event(event_id) for event_id in dict.fromkeys(event_ids)]
        if not keys:
            return
        with translated(StoreUnavailable, self._unavailable):
            await self.client.run(_REMEMBER_ALL, keys, [self.ttl_ms])

    async def remember(self, event_id: str) -> None:
        with translated(StoreUnavailable, self._unavailable):
            await self.client.batched.execute(
                "SET", self.keys.processed_event(event_id), "1", "PX", self.ttl_ms
            )


class RedisLock:
    """A lease shared by every instance using the same Redis; each acquire gets a fresh token."""

    def __init__(self, client: RedisClient, keys: Keyspace) -> None:
        self.client = client
        self.keys = keys
        self._tokens: dict[str, str] = {}
        self._unavailable = "The lock store is unavailable"

    async def acquire(self, name: str, ttl_s: float) -> bool:
        token = uuid.uuid4().hex
        with translated(StoreUnavailable, self._unavailable):
            taken = await self.client.run(_ACQUIRE, [self.keys.lock(name)], [token, _milliseconds(ttl_s)])
        if taken:
            self._tokens[name] = token
        return bool(taken)

    async def release(self, name: str) -> None:
        token = self._tokens.pop(name, None)
        if token is None:
            return
        with translated(StoreUnavailable, self._unavailable):
            await self.client.run(_RELEASE, [self.keys.lock(name)], [token])
