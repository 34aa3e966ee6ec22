"""Redis product cache: `product:<id>` JSON with a TTL, newest version wins, an index of active ids."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal

from adapters.redis.client import LuaScript, RedisClient, text, translated
from adapters.redis.decoded import DecodedSnapshots
from adapters.redis.keys import Keyspace
from adapters.wire.converter import dumps, format_timestamp
from adapters.wire.http_json import product_to_wire
from application.ports import CachePut, StockChange
from domain.errors import CacheUnavailable
from domain.events import PriceChanged
from domain.products import Product, ProductStatus

log = logging.getLogger(__name__)

_STORE_ONE = """
local function read_versioned(key)
  local raw = redis.call('GET', key)
  if not raw then return nil, nil end
  local readable, stored = pcall(cjson.decode, raw)
  if readable and type(stored) == 'table' and tonumber(stored['version']) then return raw, stored end
  return nil, nil
end

local function store_entry(key, index, json, ttl, active, id, now_ms)
  if json then redis.call('SET', key, json, 'PX', ttl) else redis.call('PEXPIRE', key, ttl) end
  if active then
    if not now_ms then
      local now = redis.call('TIME')
      now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    end
    redis.call('ZADD', index, now_ms + tonumber(ttl), id)
  else
    redis.call('ZREM', index, id)
  end
  return now_ms
end
"""
"""What every cache script shares. `read_versioned`: the stored text and its decoded table, or
nothing when absent or unreadable (an unreadable entry is overwritten rather than blocking every
newer version until it expires). `store_entry`: the entry with its TTL (or, `json` nil, the TTL
alone, renewed), and the active index kept in step (scored by when the entry expires, the server's
clock read once per script)."""

_PUT_ONE = (
    _STORE_ONE
    + """
local function put_one(key, index, version, json, ttl, active, id, partial, now_ms)
  local _, stored = read_versioned(key)
  if stored then
    local stored_version = tonumber(stored['version'])
    local completes = stored_version == version and stored['partial'] == true and partial == '0'
    local not_stored = nil
    if stored_version > version and stored['partial'] == true and partial == '0' then
      not_stored = 2
    elseif stored_version > version or (stored_version == version and not completes) then
      not_stored = 0
    end
    if not_stored and stored_version == version then  -- told about it all the same: it lives on (SET EX)
      return not_stored, store_entry(key, index, nil, ttl, stored['status'] == 'ACTIVE', id, now_ms)
    elseif not_stored then  -- a newer version no answer reaches (forged or not) leaves with its TTL
      return not_stored, now_ms
    end
    local price_version = stored['priceVersion'] or (stored['partial'] ~= true and stored_version)
    if partial == '1' and price_version then  -- a partial snapshot changes no price
      json = string.sub(json, 1, -2) .. ',"priceVersion":' .. tonumber(price_version) .. '}'
    end
  end
  return 1, store_entry(key, index, json, ttl, active == '1', id, now_ms)
end
"""
)

_PUT = LuaScript(
    _PUT_ONE
    + """
local stored = put_one(KEYS[1], KEYS[2], tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], nil)
return stored
"""
)
"""KEYS: the product's key, the active index. ARGV: version, JSON, TTL ms, active (1/0), id,
partial (1/0): a partial entry (`"partial": true` in its JSON) yields to a whole one of its version.
Returns 1 when stored, 0 when not, 2 when not because a newer partial entry is there (a whole
snapshot only: `CachePut.PATCHED_PAST`); stored or of the same version, the entry's TTL starts
again (an entry newer than every answer, such as a forged version, is not kept alive by them). A partial
snapshot stored over an entry takes on its `priceVersion` (see `_PATCH_ONE`).
An unreadable entry is overwritten rather than blocking every newer version until it expires.
The active index is a sorted set scored by when each entry expires (the server's clock), so
listing the live ones needs no look at every product key."""

_PUT_MANY = LuaScript(
    _PUT_ONE
    + """
local index, ttl, partial, now_ms, stored = KEYS[#KEYS], ARGV[1], ARGV[2], nil, 0
for i = 1, #KEYS - 1 do
  local at, one = 2 + (i - 1) * 4, 0
  local version, json, active, id = tonumber(ARGV[at + 1]), ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  one, now_ms = put_one(KEYS[i], index, version, json, ttl, active, id, partial, now_ms)
  if one == 1 then stored = stored + 1 end
end
return stored
"""
)
"""`_PUT` of several products in one call, the server's clock read once. KEYS: the products' keys,
then the active index. ARGV: TTL ms, partial (1/0), then version, JSON, active, id of each."""

_PATCH_ONE = (
    _STORE_ONE
    + """
local function patchable(stored, version)
  local stored_version = tonumber(stored['version'])
  return stored_version == version - 1 or (stored_version == version and stored['partial'] == true)
end

local function patch_text(key, index, ttl, id, raw, stored, replacements, price_version, now_ms)
  if string.sub(raw, -1) ~= '}' then return now_ms end
  local json, count = raw, 0
  for r = 1, #replacements, 2 do
    json, count = string.gsub(json, replacements[r], replacements[r + 1])
    if count ~= 1 then return now_ms end
  end
  if stored['partial'] ~= true then json = string.sub(json, 1, -2) .. ',"partial":true}' end
  if price_version and stored['priceVersion'] then
    json, count = string.gsub(json, '"priceVersion":%d+', '"priceVersion":' .. price_version)
    if count ~= 1 then return now_ms end
  elseif price_version then
    json = string.sub(json, 1, -2) .. ',"priceVersion":' .. price_version .. '}'
  end
  return store_entry(key, index, json, ttl, stored['status'] == 'ACTIVE', id, now_ms)
end
"""
)
"""What both patch scripts share. `patchable`: the stored version is the one just before the
change's, or the change's own in a partial entry (a PATCH of price and stock publishes both
events at one version: the second one completes what the first one patched). `patch_text`: each
(pattern, replacement) pair of
`replacements` must match the stored text exactly once, else the entry is left alone; the result
is stored as a partial entry (it yields to the whole snapshot of its version) and the active index
follows its status. The fields are replaced in the stored text, which we wrote (compact JSON,
flat, one key each; a `"` inside a string is escaped, so the patterns only meet keys): the
untouched fields keep their exact text, where cjson would re-encode every number as a double.
`price_version` (or nil: left as it is) is stored as `priceVersion`, the version whose price change
the entry's prices are from; a whole snapshot's is its own version. A partial entry without one
(patched over a partial entry without one) has prices of an unknown version."""

_PATCH_PRICES = LuaScript(
    _PATCH_ONE
    + """
local index, ttl, now_ms = KEYS[#KEYS], ARGV[1], nil
local newer = {}
for i = 1, #KEYS - 1 do
  local at = 2 + (i - 1) * 4
  local version, current_price, base_price, id = tonumber(ARGV[at]), ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  newer[i] = ''
  local raw, stored = read_versioned(KEYS[i])
  if raw then
    local stored_version = tonumber(stored['version'])
    if patchable(stored, version) then
      now_ms = patch_text(KEYS[i], index, ttl, id, raw, stored, {
        '"currentPrice":[-+.%deE]+', '"currentPrice":' .. current_price,
        '"basePrice":[-+.%deE]+', '"basePrice":' .. base_price,
        '"version":%d+', '"version":' .. version,
      }, version, now_ms)
    elseif stored_version > version and stored['partial'] == true
        and not ((tonumber(stored['priceVersion']) or 0) >= version) then
      newer[i] = 'partial'
    elseif stored_version > version then
      newer[i] = string.match(raw, '"currentPrice":([-+.%deE]+)') or ''
    end
  end
end
return newer
"""
)
"""KEYS: the products' keys, then the active index. ARGV: TTL ms, then version, current price,
base price and id of each change. A price change over the version just before it, read and
written in one step (`_PATCH_ONE`): no snapshot crosses the wire either way. Returns, per change,
the current price of a newer cached version, as stored, 'partial' when that version is a partial
entry whose price may predate this change (its `priceVersion` is older, or unknown), or ''."""

_PATCH_STOCK = LuaScript(
    _PATCH_ONE
    + """
local index, ttl, now_ms = KEYS[#KEYS], ARGV[1], nil
local behind = {}
for i = 1, #KEYS - 1 do
  local at = 2 + (i - 1) * 5
  local version, quantity, updated_at, id = tonumber(ARGV[at]), ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  local available = ARGV[at + 4]
  behind[i] = 0
  local raw, stored = read_versioned(KEYS[i])
  if raw then
    local stored_version = tonumber(stored['version'])
    local agrees = (stored['status'] == 'ACTIVE' and tonumber(quantity) > 0) == (available == '1')
    if patchable(stored, version) and not agrees then
      behind[i] = 1  -- more changed than the stock (the status): the whole snapshot is needed
    elseif patchable(stored, version) then
      now_ms = patch_text(KEYS[i], index, ttl, id, raw, stored, {
        '"quantityAvailable":%d+', '"quantityAvailable":' .. quantity,
        '"updatedAt":"[^"]*"', '"updatedAt":"' .. updated_at .. '"',
        '"version":%d+', '"version":' .. version,
      }, stored['partial'] ~= true and stored_version or nil, now_ms)
    elseif stored_version < version - 1 then
      behind[i] = 1
    end
  end
end
return behind
"""
)
"""KEYS: the products' keys, then the active index. ARGV: TTL ms, then version, stock,
`updatedAt` (as the wire writes it), id and available (1/0) of each change. `_PATCH_PRICES` for a
stock change: read and written in one step, the three fields replaced in the stored text.
Returns, per change, 1 when the whole snapshot is needed: the product is cached more than one
version behind it, or the change's `available` disagrees with the cached status and the new
stock (the status changed too, and a stock patch would stamp the old one with the new version),
else 0."""

_ACTIVE_IDS = LuaScript("""
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
return redis.call('ZRANGE', KEYS[1], 0, -1)
""")
"""Members whose entry has expired are pruned in the same step as the listing."""


_PUT_OUTCOMES = {0: CachePut.KEPT, 1: CachePut.STORED, 2: CachePut.PATCHED_PAST}


class RedisProductCache:
    def __init__(self, client: RedisClient, keys: Keyspace, ttl_s: float) -> None:
        self.client = client
        self.keys = keys
        self.ttl_ms = max(int(ttl_s * 1000), 1)
        self._unavailable = "The product cache is unavailable"
        self._decoded = DecodedSnapshots()

    async def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]:
        ids = list(dict.fromkeys(product_ids))
        if not ids:
            return {}
        with translated(CacheUnavailable, self._unavailable):
            values = await self.client.batched.execute(
                "MGET", *(self.keys.cached_product(pid) for pid in ids)
            )
        found = {}
        for product_id, value in zip(ids, values, strict=True):
            if value is None:
                continue
            try:
                found[product_id] = self._decoded.decode(product_id, text(value))
            except Exception as error:  # an unreadable entry is a miss, and the next put replaces it
                log.warning("cached product %s unreadable: %s", product_id, error)
        return found

    async def put(self, product: Product, *, partial: bool = False) -> CachePut:
        keys, args = self._put_call(product, partial)
        with translated(CacheUnavailable, self._unavailable):
            outcome = int(await self.client.run(_PUT, keys, args))
        return _PUT_OUTCOMES[outcome]

    async def put_many(self, products: Sequence[Product], *, partial: bool = False) -> None:
        if not products:
            return
        keys: list[str] = []
        args: list[str | int] = [self.ttl_ms, "1" if partial else "0"]
        for product in products:
            product_keys, (version, json, _, active, product_id, _) = self._put_call(product, partial)
            keys.append(product_keys[0])
            args += [version, json, active, product_id]
        keys.append(self.keys.active_products)
        with translated(CacheUnavailable, self._unavailable):
            await self.client.run(_PUT_MANY, keys, args)

    async def patch_prices(self, changes: Sequence[PriceChanged]) -> dict[str, Decimal | None]:
        if not changes:
            return {}
        keys = [self.keys.cached_product(change.product_id) for change in changes]
        keys.append(self.keys.active_products)
        args: list[str | int] = [self.ttl_ms]
        for change in changes:
            args += [change.version, f"{change.new_price:f}", f"{change.base_price:f}", change.product_id]
        with translated(CacheUnavailable, self._unavailable):
            newer = await self.client.run(_PATCH_PRICES, keys, args)
        found: dict[str, Decimal | None] = {}
        for change, price in zip(changes, newer, strict=True):
            if not price:
                continue
            if text(price) == "partial":
                found[change.product_id] = None
                continue
            try:
                found[change.product_id] = Decimal(text(price))
            except ArithmeticError:  # an unreadable entry is a miss, as for get_many
                log.warning("cached product %s has an unreadable price", change.product_id)
        return found

    async def patch_stock(self, changes: Sequence[StockChange]) -> set[str]:
        if not changes:
            return set()
        keys = [self.keys.cached_product(change.product_id) for change in changes]
        keys.append(self.keys.active_products)
        args: list[str | int] = [self.ttl_ms]
        for change in changes:
            args += [
                change.version,
                change.quantity_available,
                format_timestamp(change.updated_at),
                change.product_id,
                "1" if change.available else "0",
            ]
        with translated(CacheUnavailable, self._unavailable):
            behind = await self.client.run(_PATCH_STOCK, keys, args)
        return {change.product_id for change, flag in zip(changes, behind, strict=True) if flag}

    def _put_call(self, product: Product, partial: bool) -> tuple[list[str], list[str | int]]:
        wire = product_to_wire(product)
        if partial:
            wire["partial"] = True  # read back by the script only; the converter ignores it
        args: list[str | int] = [
            product.version,
            dumps(wire).decode(),
            self.ttl_ms,
            "1" if product.status is ProductStatus.ACTIVE else "0",
            product.id,
            "1" if partial else "0",
        ]
        return [self.keys.cached_product(product.id), self.keys.active_products], args

    async def active_ids(self) -> list[str]:
        with translated(CacheUnavailable, self._unavailable):
            live: list[str] = await self.client.run(_ACTIVE_IDS, [self.keys.active_products], [])
        return live
