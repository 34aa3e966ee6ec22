"""Values of Redis keys kept in this process for as long as Redis says they are unchanged.

Redis's client-side caching (CLIENT TRACKING, broadcasting mode): a tracking connection asks Redis
to report every write to a key under a prefix, redirected to a second connection subscribed to
`__redis__:invalidate`. A value read here is kept until such a report names its key, so a hot
key read again costs no round trip, while a write by any client (another instance, a script, an
operator) drops it here within the report's delivery.

What keeps it honest:
- a value is kept only if no report for its key (nor a flush) arrived after its read began (`stamp`);
- this process's own writes drop their keys at once when they complete (`forget`), so a read after
  a write here never waits for the report;
- nothing is kept or served unless both connections are up and Redis confirms, every
  `CHECK_EVERY_S`, that the tracking still reports to the subscriber (`CLIENT TRACKINGINFO`); any
  failure forgets everything and serves nothing until tracking is set up again.

Single Redis (or a primary) only: on a Redis Cluster each node reports its own keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from adapters.tasks import cancel_and_wait

log = logging.getLogger(__name__)

INVALIDATIONS = "__redis__:invalidate"
CHECK_EVERY_S = 1.0
"""How often Redis is asked whether the tracking still reports here (and the connections answer)."""
SOCKET_TIMEOUT_S = 2.0
RETRY_AFTER_S = (0.1, 0.2, 0.5, 1.0, 2.0)
"""Pauses before setting the tracking up again after a failure, the last one repeated."""
KEPT = 10_000
"""Values kept at most (the oldest go first)."""


class KeptValues:
    """Values read lately, by key, with the bookkeeping that keeps a stale one out; served and
    kept only while `live` (the tracking says writes are reported)."""

    def __init__(self, *, kept: int = KEPT) -> None:
        self.kept = kept
        self.live = False
        self._values: dict[str, str] = {}
        self._generation = 0
        """Counts reports (and flushes): a read is stamped with it when it begins."""
        self._reported_at: dict[str, int] = {}
        """The generation of the latest report per key (the newest `kept`), for reads still out."""
        self._floor = 0
        """Reads stamped before this are never kept: a flush, or reports forgotten for room."""
        self.hits = 0
        self.reports = 0

    def get(self, key: str) -> str | None:
        if not self.live:
            return None
        value = self._values.get(key)
        if value is not None:
            self.hits += 1
        return value

    def stamp(self) -> int:
        """Taken before a read whose values may then be `put`."""
        return self._generation

    def put(self, key: str, value: str, stamp: int) -> None:
        """Keep `value`, read from Redis by a read that began at `stamp`, unless its key was
        reported (or everything flushed) since then, or tracking is down."""
        if not self.live or stamp < self._floor or self._reported_at.get(key, -1) > stamp:
            return
        if key not in self._values and len(self._values) >= self.kept:
            del self._values[next(iter(self._values))]
        self._values[key] = value

    def forget(self, keys: Iterable[str]) -> None:
        """Keys written: reported by Redis, or written by this process (or maybe: a failed write)."""
        self._generation += 1
        for key in keys:
            self._values.pop(key, None)
            self._reported_at.pop(key, None)
            self._reported_at[key] = self._generation
        while len(self._reported_at) > self.kept:
            oldest = next(iter(self._reported_at))
            self._floor = max(self._floor, self._reported_at.pop(oldest))

    def forget_all(self) -> None:
        self._generation += 1
        self._floor = self._generation
        self._values.clear()
        self._reported_at.clear()

    def __len__(self) -> int:
        return len(self._values)


class TrackedValues(KeptValues):
    """The values of keys under `prefix` read lately, kept while Redis tracks them for us."""

    def __init__(
        self, url: str, prefix: str, *, kept: int = KEPT, check_every_s: float = CHECK_EVERY_S
    ) -> None:
        super().__init__(kept=kept)
        self.url = url
        self.prefix = prefix
        self.check_every_s = check_every_s
        self._went_live = False
        self._follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._follower is None:
            self._follower = asyncio.create_task(self._follow(), name=f"tracking-{self.prefix}")

    async def stop(self) -> None:
        if self._follower is not None:
            follower, self._follower = self._follower, None
            await cancel_and_wait([follower])
        self._go_dark()

    def _reported(self, keys: list[str] | None) -> None:
        self.reports += 1
        if keys is None:  # FLUSHALL / FLUSHDB
            self.forget_all()
        else:
            self.forget(keys)

    def _go_dark(self) -> None:
        self.live = False
        self.forget_all()

    async def _follow(self) -> None:
        failures = 0
        while True:
            self._went_live = False
            try:
                await self._track()
            except (RedisError, OSError, TrackingLost) as error:
                if self._went_live or failures == 0:
                    log.warning(
                        "redis key tracking of %s lost (nothing kept meanwhile): %r", self.prefix, error
                    )
            except Exception:
                log.exception("redis key tracking of %s failed, nothing kept meanwhile", self.prefix)
            if self._went_live:
                failures = 0
            self._go_dark()
            await asyncio.sleep(RETRY_AFTER_S[min(failures, len(RETRY_AFTER_S) - 1)])
            failures += 1

    async def _track(self) -> None:
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": SOCKET_TIMEOUT_S,
            "retry": Retry(NoBackoff(), 0),  # a reconnect would subscribe anew under another id
            "protocol": 2,  # RESP3 would send the reports as push frames, not as channel messages
        }
        subscriber_client = Redis.from_url(self.url, **options)
        tracker = Redis.from_url(self.url, single_connection_client=True, **options)
        subscriber = subscriber_client.pubsub()
        try:
            await subscriber.execute_command("CLIENT", "ID")
            subscriber_id = int(await subscriber.parse_response(block=True))
            await subscriber.subscribe(INVALIDATIONS)
            await tracker.execute_command(  # type: ignore[no-untyped-call]
                "CLIENT", "TRACKING", "ON", "REDIRECT", subscriber_id, "BCAST", "PREFIX", self.prefix
            )
            await self._confirm(tracker, subscriber_id)
            self.forget_all()  # nothing read before this moment is kept
            self.live = self._went_live = True
            log.info("redis key tracking of %s on", self.prefix)
            await self._read_reports(subscriber, tracker, subscriber_id)
        finally:
            self.live = False
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                await subscriber.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                await tracker.aclose()
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                await subscriber_client.aclose()

    async def _read_reports(self, subscriber: PubSub, tracker: Redis, subscriber_id: int) -> None:
        loop = asyncio.get_running_loop()
        check_due = loop.time() + self.check_every_s
        while True:
            message = await subscriber.get_message(timeout=max(0.0, check_due - loop.time()))
            if message is not None and message.get("type") == "message":
                data = message.get("data")
                self._reported(None if data is None else [str(key) for key in _as_list(data)])
            elif message is not None and message.get("type") == "unsubscribe":
                raise TrackingLost("the invalidation subscription ended")
            if loop.time() >= check_due:
                await self._confirm(tracker, subscriber_id)
                check_due = loop.time() + self.check_every_s

    async def _confirm(self, tracker: Redis, subscriber_id: int) -> None:
        """Redis still tracks for the tracker connection and reports to the subscriber."""
        info = _as_mapping(await tracker.execute_command("CLIENT", "TRACKINGINFO"))  # type: ignore[no-untyped-call]
        flags = {str(flag) for flag in _as_list(info.get("flags", []))}
        redirect = info.get("redirect")
        reporting_here = redirect is not None and int(redirect) == subscriber_id
        if "on" not in flags or "broken_redirect" in flags or not reporting_here:
            raise TrackingLost(f"tracking info {info!r}")


class TrackingLost(Exception):
    """Redis no longer reports writes to the subscriber (or never confirmed it would)."""


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple | set):
        return list(value)
    return [value]


def _as_mapping(value: Any) -> dict[str, Any]:
    """CLIENT TRACKINGINFO as a dict (RESP2 gives a flat list of pairs)."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    items = list(value)
    return {str(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}
