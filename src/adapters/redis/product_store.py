"""Redis catalog of the reference Product Service: products, reservations and the outbox, atomically."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from adapters.nats.streams import MAX_AGE_S
from adapters.redis.client import LuaScript, RedisClient, text, texts, translated
from adapters.redis.decoded import DecodedSnapshots
from adapters.redis.keys import Keyspace
from adapters.redis.outbox import OUTBOX_APPEND, RedisOutbox, outbox_args
from adapters.redis.tracking import TrackedValues
from adapters.wire.converter import dumps
from adapters.wire.http_json import product_to_wire
from application.ports import CommitResult, ProductChange
from domain.errors import StoreUnavailable
from domain.events import Envelope
from domain.products import Product

_CREATE = LuaScript(
    OUTBOX_APPEND
    + """
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
redis.call('SET', KEYS[4], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[2])
outbox_append(KEYS[1], KEYS[2], KEYS[3], 3)
return 1
"""
)
"""KEYS: the 3 outbox keys, the product, the id set. ARGV: product JSON, id, outbox pairs."""

_COMMIT = LuaScript(
    OUTBOX_APPEND
    + """
local changes = tonumber(ARGV[3])
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then
  return 'already_reserved'
end
local fields = {'version', 'name', 'status', 'quantityAvailable', 'currentPrice', 'basePrice', 'currency'}
for i = 1, changes do
  local current = redis.call('GET', KEYS[4 + 2 * i])
  if not current then return 'conflict' end
  local readable, stored = pcall(cjson.decode, current)
  if not readable or type(stored) ~= 'table' then return 'conflict' end
  local expected = cjson.decode(ARGV[1 + 3 * i])
  for _, field in ipairs(fields) do
    if stored[field] ~= expected[field] then return 'conflict' end
  end
end
for i = 1, changes do
  redis.call('SET', KEYS[5 + 2 * i], ARGV[2 + 3 * i])
  redis.call('SADD', KEYS[5], ARGV[3 + 3 * i])
end
if ARGV[1] == '1' then redis.call('SET', KEYS[4], '1', 'EX', ARGV[4 + 3 * changes]) end
outbox_append(KEYS[1], KEYS[2], KEYS[3], 5 + 3 * changes)
return 'committed'
"""
)
"""KEYS: the 3 outbox keys, the order's reservation marker, the id set, then per change the
`before` and the `after` product keys. ARGV: reserving (1/0), order id, change count, then per
change the `before` JSON, the `after` JSON and id, the reservation's TTL in seconds, then the
outbox pairs. Checks first, writes after: a conflict or a known reservation stores nothing.

A product is current when every field a change can set equals `before`'s (version, name,
status, stock, prices, currency), not its version alone: a reservation planned on top of
another one of its batch names that one's `after` as its `before`, and when that commit
conflicted, a PATCH may have written the same version number (soak, session 6: a PATCH's prices
lost to such a chained reservation). `updatedAt` is left out: its text may differ for the same
instant (`...:41Z`, `...:41.000Z`), and a soak livelocked on that."""

RESERVATION_TTL_S = int(MAX_AGE_S) + 24 * 3600
"""A reservation marker outlives every copy of its order.created that JetStream may still deliver
(the stream keeps a message MAX_AGE_S); kept forever, one per order, they would only grow."""


class RedisProductStore:
    def __init__(
        self, client: RedisClient, keys: Keyspace, outbox: RedisOutbox, tracked: TrackedValues | None = None
    ) -> None:
        self.client = client
        self.keys = keys
        self.outbox = outbox
        self.tracked = tracked
        """Products read lately, kept while Redis reports no write to them (a details request or
        an order's pricing of an unchanged product costs no round trip)."""
        self._unavailable = "The product store is unavailable; try again shortly"
        self._snapshots = DecodedSnapshots()
        """A product read again unchanged (a details request, an order's pricing) is not decoded again."""

    async def get(self, product_id: str) -> Product | None:
        return (await self.get_many([product_id])).get(product_id)

    async def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]:
        ids = list(dict.fromkeys(product_ids))
        if not ids:
            return {}
        raws: dict[str, str] = {}
        asked = ids
        if self.tracked is not None:
            kept = {pid: raw for pid in ids if (raw := self.tracked.get(self.keys.product(pid))) is not None}
            raws.update(kept)
            asked = [pid for pid in ids if pid not in kept]
        if asked:
            stamp = self.tracked.stamp() if self.tracked is not None else 0
            with translated(StoreUnavailable, self._unavailable):
                values = await self.client.batched.execute("MGET", *(self.keys.product(pid) for pid in asked))
            for pid, raw in zip(asked, values, strict=True):
                if raw is not None:
                    raws[pid] = text(raw)
                    if self.tracked is not None:
                        self.tracked.put(self.keys.product(pid), raws[pid], stamp)
        return {pid: self._decoded(pid, raws[pid]) for pid in ids if pid in raws}

    async def create(self, product: Product, outbox: Sequence[Envelope]) -> bool:
        keys = [*self.outbox.keys.outbox, self.keys.product(product.id), self.keys.products]
        args = [dumps(product_to_wire(product)).decode(), product.id, *outbox_args(outbox)]
        with translated(StoreUnavailable, self._unavailable), self._written([product.id]):
            created = bool(await self.client.run(_CREATE, keys, args))
        if created:
            self.outbox.appended(outbox)
        return created

    async def commit(
        self,
        changes: Sequence[ProductChange],
        outbox: Sequence[Envelope],
        reservation_for: str | None = None,
    ) -> CommitResult:
        marker = self.keys.reservation(reservation_for or "-")
        keys = [*self.outbox.keys.outbox, marker, self.keys.products]
        args: list[str | int] = [
            "0" if reservation_for is None else "1",
            reservation_for or "",
            len(changes),
        ]
        for change in changes:
            keys += [self.keys.product(change.before.id), self.keys.product(change.after.id)]
            args += [
                dumps(product_to_wire(change.before)).decode(),
                dumps(product_to_wire(change.after)).decode(),
                change.after.id,
            ]
        args.append(RESERVATION_TTL_S)
        args += outbox_args(outbox)
        with translated(StoreUnavailable, self._unavailable), self._written([c.after.id for c in changes]):
            outcome = CommitResult(await self.client.run(_COMMIT, keys, args))
        if outcome is CommitResult.COMMITTED:
            self.outbox.appended(outbox)
        return outcome

    async def all_ids(self) -> list[str]:
        with translated(StoreUnavailable, self._unavailable):
            return sorted(texts(await self.client.batched.execute("SMEMBERS", self.keys.products)))

    @contextlib.contextmanager
    def _written(self, product_ids: Sequence[str]) -> Iterator[None]:
        """Kept values of what a write touches are dropped once it is done, or failed (it may
        have run): a read after it never waits for Redis's report of it."""
        try:
            yield
        finally:
            if self.tracked is not None:
                self.tracked.forget([self.keys.product(pid) for pid in product_ids])

    def _decoded(self, product_id: str, raw: str) -> Product:
        try:
            return self._snapshots.decode(product_id, raw)
        except Exception as error:
            raise StoreUnavailable(
                "A stored product record cannot be read", {"cause": type(error).__name__}
            ) from error
