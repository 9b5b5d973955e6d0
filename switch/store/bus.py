"""Redis as a bus: rate-limit counters, de-duplication keys and order status updates.

Each may lose its Redis at any moment without losing money state: a rate limiter fails
open or closed as configured, a de-duplication key that cannot be checked counts as new
(the durable idempotency keys in PostgreSQL are the real guard), and order updates are
hints that a reader re-checks against PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import orjson
import structlog

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
    """

    def __init__(self, redis: Redis, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._redis = redis
        self._guard = RedisGuard("orders", timeout_s)
        self._counts = dict.fromkeys(["published", "unpublished"], 0)

    @staticmethod
    def channel(order_id: str) -> str:
        return f"orders:{order_id}"

    def statistics(self) -> dict[str, int]:
        return {**self._counts, "redis_errors": self._guard.errors}

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

    async def subscribe(self, order_id: str) -> OrderSubscription:
        """Raises StoreUnavailable when Redis cannot subscribe (poll PostgreSQL then)."""
        channel = self.channel(order_id)
        subscription = await self._guard(self._redis.subscribe, channel)
        return OrderSubscription(subscription, channel)


class OrderSubscription:
    """One order's updates as decoded dicts: ``async with`` closes it, ``async for`` reads.

    Raises StoreUnavailable when the connection breaks (updates may have been missed:
    re-read the order, then subscribe again).
    """

    def __init__(self, subscription: Subscription, channel: str) -> None:
        self._subscription = subscription
        self._channel = channel
        self._closed = False

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
            await self._subscription.aclose()
