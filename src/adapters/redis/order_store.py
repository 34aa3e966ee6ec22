"""Redis order store: orders, their product/flag/time indexes and idempotency keys, with the outbox."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar, cast

import attrs

from adapters.redis.client import LuaScript, RedisClient, text, texts, translated
from adapters.redis.keys import Keyspace
from adapters.redis.outbox import OUTBOX_APPEND, RedisOutbox, outbox_args
from adapters.wire.converter import dumps, loads
from adapters.wire.http_json import RESPONSES, order_to_wire
from application.ports import IdempotencyRecord
from domain.errors import StoreUnavailable
from domain.events import Envelope
from domain.orders import Order, OrderFlag

T = TypeVar("T")

_ADD = LuaScript(
    OUTBOX_APPEND
    + """
local products, flags = tonumber(ARGV[4]), tonumber(ARGV[5])
local first_flag_key = 7 + products
if ARGV[1] ~= '' then
  local earlier = redis.call('GET', KEYS[first_flag_key + flags])
  if earlier then return earlier end
  redis.call('SET', KEYS[first_flag_key + flags], ARGV[1], 'EX', ARGV[7 + flags])
end
redis.call('SET', KEYS[4], ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[6], ARGV[3])
for i = 7, 6 + products do redis.call('SADD', KEYS[i], ARGV[3]) end
for i = 1, flags do
  redis.call('SADD', KEYS[6], ARGV[6 + i])
  redis.call('SADD', KEYS[first_flag_key + i - 1], ARGV[3])
end
outbox_append(KEYS[1], KEYS[2], KEYS[3], 8 + flags)
return false
"""
)
"""KEYS: the 3 outbox keys, the order, the time index, the order's flags, one index per product,
one index per flag, [the idempotency key]. ARGV: idempotency record JSON or '', order JSON,
order id, product count, flag count, score, the flags, the idempotency TTL in seconds, then the
outbox (id, JSON) pairs.
One script is one atomic step: the idempotency check and every write happen together or not at
all, so two concurrent requests with one key store one order."""

_MEMBERS_OF_EACH = LuaScript("""
local members = {}
for i, key in ipairs(KEYS) do members[i] = redis.call('SMEMBERS', key) end
return members
""")
"""KEYS: sets. The members of each, in one call."""

IDEMPOTENCY_TTL_S = 24 * 3600
"""How long an Idempotency-Key is remembered: a client retries within minutes, and a day is
the usual promise (kept forever, one key per order would only grow)."""

_ADD_FLAG = LuaScript("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local added = redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
return added
""")
"""KEYS: the order, its flags, the flag's index. ARGV: flag, order id. The flags live in a SET
beside the order rather than rewritten into its JSON, because Lua's cjson would re-encode the
exact Decimal amounts as doubles."""


def _record_to_json(record: IdempotencyRecord) -> str:
    return dumps({"key": record.key, "fingerprint": record.fingerprint, "orderId": record.order_id}).decode()


def _record_from_json(raw: str) -> IdempotencyRecord:
    wire = loads(raw)
    return IdempotencyRecord(wire["key"], wire["fingerprint"], wire["orderId"])


def _order_from_json(raw: str) -> Order:
    return RESPONSES.structure(loads(raw), Order)


def _created_score(order: Order) -> int:
    """Microseconds since the epoch: exact in a ZSET score; equal scores sort by id, as the twin does."""
    return round(order.created_at.timestamp() * 1_000_000)


class RedisOrderStore:
    def __init__(self, client: RedisClient, keys: Keyspace, outbox: RedisOutbox) -> None:
        self.client = client
        self.keys = keys
        self.outbox = outbox
        self._unavailable = "The order store is unavailable; try again shortly"

    async def add(
        self, order: Order, outbox: Sequence[Envelope], idempotency: IdempotencyRecord | None
    ) -> IdempotencyRecord | None:
        flags = [str(flag) for flag in order.flags]
        keys = [
            *self.outbox.keys.outbox,
            self.keys.order(order.id),
            self.keys.orders_by_time,
            self.keys.order_flags(order.id),
            *(self.keys.orders_holding(pid) for pid in order.product_ids),
            *(self.keys.orders_flagged(flag) for flag in flags),
        ]
        if idempotency is not None:
            keys.append(self.keys.idempotency(idempotency.key))
        args: list[str | int] = [
            "" if idempotency is None else _record_to_json(idempotency),
            dumps(order_to_wire(order)).decode(),
            order.id,
            len(order.product_ids),
            len(flags),
            _created_score(order),
            *flags,
            IDEMPOTENCY_TTL_S,
            *outbox_args(outbox),
        ]
        with translated(StoreUnavailable, self._unavailable):
            earlier = await self.client.run(_ADD, keys, args)
        if earlier is not None:
            return self._decoded(_record_from_json, earlier)
        self.outbox.appended(outbox)
        return None

    async def get(self, order_id: str) -> Order | None:
        with translated(StoreUnavailable, self._unavailable):
            async with self.client.redis.pipeline(transaction=True) as transaction:
                transaction.get(self.keys.order(order_id))
                transaction.smembers(self.keys.order_flags(order_id))
                raw, added_flags = await transaction.execute()
        if raw is None:
            return None

        def with_added_flags(raw: str) -> Order:
            order = _order_from_json(raw)
            flags = {*order.flags, *(OrderFlag(text(f)) for f in added_flags)}
            return attrs.evolve(order, flags=tuple(sorted(flags)))

        return self._decoded(with_added_flags, text(raw))

    async def idempotency_record(self, key: str) -> IdempotencyRecord | None:
        with translated(StoreUnavailable, self._unavailable):
            raw = await self.client.batched.execute("GET", self.keys.idempotency(key))
        return None if raw is None else self._decoded(_record_from_json, text(raw))

    async def ids_holding(self, product_id: str) -> list[str]:
        with translated(StoreUnavailable, self._unavailable):
            return sorted(
                texts(await self.client.batched.execute("SMEMBERS", self.keys.orders_holding(product_id)))
            )

    async def ids_holding_each(self, product_ids: Sequence[str]) -> dict[str, list[str]]:
        ids = list(dict.fromkeys(product_ids))
        if not ids:
            return {}
        keys = [self.keys.orders_holding(product_id) for product_id in ids]
        with translated(StoreUnavailable, self._unavailable):
            members = await self.client.run(_MEMBERS_OF_EACH, keys, [])
        return {product_id: sorted(texts(found)) for product_id, found in zip(ids, members, strict=True)}

    async def ids_flagged(self, flag: OrderFlag) -> list[str]:
        with translated(StoreUnavailable, self._unavailable):
            return sorted(
                texts(await self.client.batched.execute("SMEMBERS", self.keys.orders_flagged(str(flag))))
            )

    async def recent_ids(self, limit: int) -> list[str]:
        """The newest `limit`, oldest of them first (all of them for 0, as the twin's slice does)."""
        with translated(StoreUnavailable, self._unavailable):
            ids = await self.client.batched.execute("ZRANGE", self.keys.orders_by_time, -limit, -1)
        return texts(cast("list[str]", ids))

    async def newest_of(self, order_ids: Sequence[str], limit: int) -> list[str]:
        ids = list(dict.fromkeys(order_ids))
        if not ids:
            return []
        with translated(StoreUnavailable, self._unavailable):
            scores = await self.client.batched.execute("ZMSCORE", self.keys.orders_by_time, *ids)
        known = sorted(
            (float(score), order_id) for order_id, score in zip(ids, scores, strict=True) if score is not None
        )
        return [order_id for _, order_id in known[-limit:]]

    async def add_flag(self, order_id: str, flag: OrderFlag) -> bool:
        keys = [
            self.keys.order(order_id),
            self.keys.order_flags(order_id),
            self.keys.orders_flagged(str(flag)),
        ]
        with translated(StoreUnavailable, self._unavailable):
            return bool(await self.client.run(_ADD_FLAG, keys, [str(flag), order_id]))

    def _decoded(self, parse: Callable[[str], T], raw: str) -> T:
        try:
            return parse(raw)
        except Exception as error:
            raise StoreUnavailable(
                "A stored order record cannot be read", {"cause": type(error).__name__}
            ) from error
