"""Redis as a bus: rate-limit counters, de-duplication keys and order status updates.

Each may lose its Redis at any moment without losing money state: a rate limiter fails
open or closed as configured, a de-duplication key that cannot be checked counts as new
(the durable idempotency keys in PostgreSQL are the real guard), and order updates are
hints that a reader re-checks against PostgreSQL.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import orjson
import structlog
import trio

from .bridge import Redis, Subscription
from .cache import DEFAULT_TIMEOUT_S, RedisGuard
from .errors import StoreError

log = structlog.get_logger("store")


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    count: int  # hits in the current window, this one included; 0 when degraded
    limit: int
    degraded: bool = False  # Redis did not answer: the fail-open/closed policy decided


class RateLimiter:
    """Fixed-window counters in Redis, shared by every switch process.

    The window starts at a key's first hit. When Redis cannot count, ``fail_open``
    decides: letting traffic through (the default) trades protection for availability.
    """

    def __init__(
        self, redis: Redis, *, fail_open: bool = True, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self._redis = redis
        self._fail_open = fail_open
        self._guard = RedisGuard("ratelimit", timeout_s)
        self._counts = dict.fromkeys(["allowed", "denied", "failed_open", "failed_closed"], 0)

    def statistics(self) -> dict[str, int]:
        return {**self._counts, "redis_errors": self._guard.errors}

    async def hit(self, key: str, limit: int, window_s: float) -> Decision:
        if limit < 0 or window_s <= 0:
            raise ValueError(f"limit {limit} must not be negative, window {window_s} s positive")
        # The window is part of the name: one key counted under two windows would share
        # a counter whose expiry only the first hit chose.
        name = f"ratelimit:{key}:{round(window_s * 1000)}"
        try:
            count = await self._guard(self._redis.incr_window, name, window_s)
        except StoreError:
            self._counts["failed_open" if self._fail_open else "failed_closed"] += 1
            return Decision(self._fail_open, 0, limit, degraded=True)
        allowed = count <= limit
        self._counts["allowed" if allowed else "denied"] += 1
        return Decision(allowed, count, limit)


class Deduper:
    """Short-lived keys that tell whether a message (a callback, a retry) was seen before.

    Only ever an optimisation: when Redis cannot answer, the message counts as new, as
    suppressing a first delivery would lose it, while a duplicate is caught downstream
    by the idempotency keys in PostgreSQL.
    """

    def __init__(self, redis: Redis, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._redis = redis
        self._guard = RedisGuard("dedup", timeout_s)
        self._counts = dict.fromkeys(["first", "duplicates", "assumed_new"], 0)

    def statistics(self) -> dict[str, int]:
        return {**self._counts, "redis_errors": self._guard.errors}

    async def first_seen(self, key: str, ttl_s: float) -> bool:
        if ttl_s <= 0:
            raise ValueError(f"ttl {ttl_s} s must be positive")
        try:
            first = await self._guard(
                self._redis.set, f"dedup:{key}", b"1", ttl_s=ttl_s, only_new=True
            )
        except StoreError:
            self._counts["assumed_new"] += 1
            return True
        self._counts["first" if first else "duplicates"] += 1
        return first


class OrderUpdates:
    """The bus for order status updates (the HTTP API's server-sent events).

    Updates are hints: the order's state is in PostgreSQL, so a publish that Redis did
    not take is counted and reported as 0 receivers, never raised. Subscribe first, then
    read the order's state: ``subscribe`` returns only once the subscription is live.

    Most orders are never watched (the mini-program follows an order only while it is on
    screen), so :meth:`watched` tells a publisher whether anyone listens before it builds and
    sends the view. Subscriptions made through this object are counted here, exactly and at
    once (before Redis confirms them: a publisher that decides after that publishes); those of
    other processes are seen through ``PUBSUB CHANNELS``, read at most every ``refresh_s``.
    A reader elsewhere may thus miss an update published in the first ``refresh_s`` after it
    subscribed, which is why an event stream re-reads the order once shortly after it started
    (:mod:`switch.api.events`). When Redis cannot tell, every order counts as watched.
    """

    def __init__(
        self, redis: Redis, *, timeout_s: float = DEFAULT_TIMEOUT_S, refresh_s: float = 0.1
    ) -> None:
        self._redis = redis
        self._guard = RedisGuard("orders", timeout_s)
        self._counts = dict.fromkeys(["published", "unpublished", "unwatched"], 0)
        self._local: Counter[str] = Counter()  # order id -> live subscriptions made here
        self._remote: frozenset[str] = frozenset()  # channels with a subscriber anywhere
        self._refreshed_at = -math.inf
        self._refresh_s = refresh_s
        self._refreshing: trio.Event | None = None
        self._remote_known = False  # the last refresh worked

    @staticmethod
    def channel(order_id: str) -> str:
        return f"orders:{order_id}"

    def statistics(self) -> dict[str, int]:
        return {
            **self._counts,
            "watched_here": len(self._local),
            "redis_errors": self._guard.errors,
        }

    async def watched(self, order_id: str) -> bool:
        """Whether a subscriber may be waiting for this order's updates."""
        if self._local[order_id] > 0:
            return True
        if trio.current_time() - self._refreshed_at >= self._refresh_s:
            await self._refresh()
        return not self._remote_known or self.channel(order_id) in self._remote

    async def _refresh(self) -> None:
        if self._refreshing is not None:  # one refresh at a time; the others wait for it
            await self._refreshing.wait()
            return
        self._refreshing = done = trio.Event()
        started = trio.current_time()
        try:
            self._remote = await self._guard(self._redis.channels, "orders:")
            self._remote_known = True
        except StoreError:
            self._remote_known = False
        finally:
            self._refreshed_at = started
            self._refreshing = None
            done.set()

    async def publish(self, order_id: str, update: Mapping[str, Any]) -> int:
        """How many subscribers (in any process) received the update; 0 if Redis failed."""
        data = orjson.dumps(dict(update))
        try:
            receivers = await self._guard(self._redis.publish, self.channel(order_id), data)
        except StoreError:
            self._counts["unpublished"] += 1
            return 0
        self._counts["published"] += 1
        return receivers

    def skipped(self) -> None:
        """A publisher skipped an update nobody watched (counted for the statistics)."""
        self._counts["unwatched"] += 1

    async def subscribe(self, order_id: str) -> OrderSubscription:
        """Raises StoreUnavailable when Redis cannot subscribe (poll PostgreSQL then)."""
        channel = self.channel(order_id)
        self._local[order_id] += 1  # before Redis has it: see the class docstring
        subscribed = False
        try:
            subscription = await self._guard(self._redis.subscribe, channel)
            subscribed = True
        finally:
            if not subscribed:  # refused, or cancelled: nobody will close it
                self._forget(order_id)
        return OrderSubscription(subscription, channel, lambda: self._forget(order_id))

    def _forget(self, order_id: str) -> None:
        self._local[order_id] -= 1
        if self._local[order_id] <= 0:
            del self._local[order_id]


class OrderSubscription:
    """One order's updates as decoded dicts: ``async with`` closes it, ``async for`` reads.

    Raises StoreUnavailable when the connection breaks (updates may have been missed:
    re-read the order, then subscribe again).
    """

    def __init__(
        self,
        subscription: Subscription,
        channel: str,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._subscription = subscription
        self._channel = channel
        self._closed = False
        self._on_close = on_close

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while not self._closed:
            channel, data = await self._subscription.__anext__()
            if channel != self._channel:
                continue
            try:
                update = orjson.loads(data)
            except orjson.JSONDecodeError:
                update = None
            if isinstance(update, dict):
                return update
            log.warning("cache.order_update_unreadable", channel=self._channel, data=data[:200])
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._on_close is not None:
                self._on_close()
            await self._subscription.aclose()
