"""Redis outbox: envelopes in a HASH, their order in a ZSET scored by a sequence, oldest first."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from adapters.outbox_feed import AppendedEntries
from adapters.redis.client import LuaScript, RedisClient, translated
from adapters.redis.keys import Keyspace
from adapters.wire.event_json import decode, encode
from domain.errors import StoreUnavailable, UndecodableEvent
from domain.events import Envelope

log = logging.getLogger(__name__)

OUTBOX_APPEND = """
local function outbox_append(entries, queue, sequence, first)
  for i = first, #ARGV, 2 do
    redis.call('HSET', entries, ARGV[i], ARGV[i + 1])
    redis.call('ZADD', queue, 'NX', redis.call('INCR', sequence), ARGV[i])
  end
end
"""
"""A Lua function for the scripts that store state with its events: ARGV[first..] holds
(envelope id, envelope JSON) pairs. An id stored before keeps its place, as in the twin."""

_ADD = LuaScript(OUTBOX_APPEND + "outbox_append(KEYS[1], KEYS[2], KEYS[3], 1)")

_PENDING = LuaScript("""
local ids = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)
local found = {}
for _, id in ipairs(ids) do
  local body = redis.call('HGET', KEYS[1], id)
  if body then table.insert(found, body) end
end
return found
""")

_REMOVE = LuaScript("""
redis.call('ZREM', KEYS[2], unpack(ARGV))
redis.call('HDEL', KEYS[1], unpack(ARGV))
""")
"""KEYS: the 3 outbox keys. ARGV: envelope ids. One atomic step, as a MULTI would be, but a
single command that rides the auto-pipeline with the rest instead of a round trip of its own."""
REMOVE_CHUNK = 1000
"""Ids per script call: Lua's unpack has a stack limit (LUAI_MAXCSTACK, 8000)."""


def outbox_args(envelopes: Sequence[Envelope]) -> list[str]:
    """The (id, JSON) pairs `OUTBOX_APPEND` reads."""
    args: list[str] = []
    for envelope in envelopes:
        args += [envelope.id, encode(envelope).decode()]
    return args


class RedisOutbox:
    """The Outbox port; the stores append to it inside their own atomic scripts."""

    def __init__(self, client: RedisClient, keys: Keyspace) -> None:
        self.client = client
        self.keys = keys
        self._unavailable = "The outbox store is unavailable; try again shortly"
        self._appended = AppendedEntries()

    def appended(self, envelopes: Sequence[Envelope]) -> None:
        """Told by a store whose script just appended `envelopes` (and stored their cause)."""
        self._appended.note(envelopes)

    def take_appended(self) -> list[Envelope]:
        return self._appended.take()

    async def add(self, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return
        with translated(StoreUnavailable, self._unavailable):
            await self.client.run(_ADD, self.keys.outbox, outbox_args(envelopes))
        self.appended(envelopes)

    async def pending(self, limit: int) -> list[Envelope]:
        if limit <= 0:
            return []
        with translated(StoreUnavailable, self._unavailable):
            bodies: list[str] = await self.client.run(_PENDING, self.keys.outbox, [limit])
        pending = []
        for body in bodies:
            try:
                pending.append(decode(body.encode()))
            except UndecodableEvent as error:
                log.error("outbox entry cannot be decoded, left in place: %s", error.message)
        return pending

    async def remove(self, envelope_ids: Sequence[str]) -> None:
        if not envelope_ids:
            return
        with translated(StoreUnavailable, self._unavailable):
            for start in range(0, len(envelope_ids), REMOVE_CHUNK):
                chunk = list(envelope_ids[start : start + REMOVE_CHUNK])
                await self.client.run(_REMOVE, self.keys.outbox, chunk)

    async def count(self) -> int:
        with translated(StoreUnavailable, self._unavailable):
            return int(await self.client.batched.execute("ZCARD", self.keys.outbox_queue))
