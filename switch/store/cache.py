"""Price books cached in process memory and Redis, and the guard every Redis helper uses.

Redis is a cache and a bus, never a store of record.

Everything here may lose its Redis at any moment without losing money state: price
books are reloaded from PostgreSQL, a rate limiter fails open or closed as configured,
a de-duplication key that cannot be checked counts as new (the durable idempotency keys
in PostgreSQL are the real guard), and order updates are hints that a reader re-checks
against PostgreSQL. Every Redis call gets a short deadline of its own, so that a Redis
that hangs costs a caller no more than one that refuses connections.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, NoReturn, ParamSpec, TypeVar

import orjson
import structlog
import trio

from .bridge import Redis
from .errors import StoreError, StoreUnavailable

log = structlog.get_logger("store")

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_TIMEOUT_S = 0.5
_GENERATION_TTL_S = 86_400.0  # only a name: when it lapses, the next reader makes a new one


class RedisGuard:
    """Redis calls with a deadline (redis-py's own socket timeout is 5 s), counting the

    failures and logging only the transitions: a dead Redis would otherwise log at
    request rate.
    """

    __slots__ = ("_failing", "component", "errors", "timeout_s")

    def __init__(self, component: str, timeout_s: float) -> None:
        self.component = component
        self.timeout_s = timeout_s
        self.errors = 0
        self._failing = False

    async def __call__(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        with trio.move_on_after(self.timeout_s):
            try:
                result = await fn(*args, **kwargs)
            except StoreError as exc:
                self.failed(exc)
                raise
            if self._failing:
                self._failing = False
                log.info("cache.redis_recovered", component=self.component)
            return result
        error = StoreUnavailable(f"Redis did not answer within {self.timeout_s} s")
        self.failed(error)
        raise error

    def failed(self, exc: StoreError) -> None:
        self.errors += 1
        if not self._failing:
            self._failing = True
            log.warning("cache.redis_failing", component=self.component, error=str(exc))


@dataclass(frozen=True, slots=True)
class PriceBook:
    """The prices in force at one station: grade code -> milli-fen per litre (integers)."""

    station_id: str
    price_set_id: int
    prices: Mapping[str, int]

    def __post_init__(self) -> None:
        if type(self.price_set_id) is not int:
            raise TypeError(f"price_set_id must be an int, not {self.price_set_id!r}")
        for grade, price in self.prices.items():
            if not isinstance(grade, str) or type(price) is not int or price <= 0:
                raise ValueError(f"bad price {grade!r}: {price!r} (positive int required)")
        object.__setattr__(self, "prices", MappingProxyType(dict(self.prices)))

    def to_json(self) -> bytes:
        prices = dict(self.prices)
        return orjson.dumps(
            {"station": self.station_id, "set": self.price_set_id, "prices": prices}
        )

    @classmethod
    def from_json(cls, data: bytes) -> PriceBook:
        """Raises ValueError for anything but what ``to_json`` writes."""
        try:
            raw = orjson.loads(data)
            return cls(str(raw["station"]), raw["set"], dict(raw["prices"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a price book: {exc}") from exc


PriceBookLoader = Callable[[str], Awaitable[PriceBook | None]]
_Source = Literal["l2", "loader"]


class _Flight:
    """One load in progress for a station, shared by every caller that missed meanwhile."""

    __slots__ = ("done", "error", "outcome")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.outcome: tuple[PriceBook | None, _Source] | None = None
        self.error: Exception | None = None


class PriceBookCache:
    """Price books per station: process memory (L1), then Redis (L2), then ``loader``.

    Invalidation is by pub/sub, which is at-most-once, so L1 is used only while this
    instance's listener (``run``) is subscribed: when the subscription breaks, L1 is
    emptied and stays unused until the listener is back. ``l1_ttl_s`` bounds what a lost
    message (a half-open connection) can cost.

    A loader that read PostgreSQL just before a price change can finish after the
    invalidation. So that it cannot put the old prices back, L2 entries are named by a
    random generation token per station; ``invalidate`` deletes the token, and the late
    writer writes under a name nobody reads any more. In process, a generation counter
    stops a load that overlapped any invalidation from filling L1.
    """

    CHANNEL = "pricebook:invalidate"

    def __init__(
        self,
        redis: Redis,
        loader: PriceBookLoader,
        *,
        l1_ttl_s: float = 10.0,
        l2_ttl_s: float = 300.0,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry_max_s: float = 5.0,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._redis = redis
        self._loader = loader
        self._l1_ttl_s = l1_ttl_s
        self._l2_ttl_s = l2_ttl_s
        self._retry_max_s = retry_max_s
        self._clock = clock
        self._guard = RedisGuard("pricebook", timeout_s)
        self._l1: dict[str, tuple[PriceBook, float]] = {}  # station -> (book, expires at)
        self._flights: dict[str, _Flight] = {}
        self._generation = 0
        self._listening = False
        names = "hits_l1 hits_l2 misses loads coalesced invalidations invalidations_heard"
        self._counts = dict.fromkeys(names.split(), 0)

    @property
    def listening(self) -> bool:
        """Whether invalidations reach this instance now (and so whether L1 is used)."""
        return self._listening

    def statistics(self) -> dict[str, int]:
        """Counters since creation. ``misses``: gets answered by a load, their own or one

        they shared (``coalesced``: gets that waited for another caller's load);
        ``loads``: loader calls; ``invalidations``: ``invalidate`` calls here;
        ``invalidations_heard``: messages the listener applied; ``redis_errors``: Redis
        calls that failed or timed out.
        """
        return {**self._counts, "redis_errors": self._guard.errors, "l1_size": len(self._l1)}

    async def get(self, station_id: str) -> PriceBook | None:
        """The station's price book, or None when it has none in force (not cached).

        Errors from Redis never reach the caller; errors from ``loader`` do.
        """
        entry = self._l1.get(station_id)
        if entry is not None:
            if self._clock() < entry[1]:
                self._counts["hits_l1"] += 1
                return entry[0]
            del self._l1[station_id]
        while True:
            flight = self._flights.get(station_id)
            if flight is None:
                flight = self._flights[station_id] = _Flight()
                try:
                    flight.outcome = await self._fetch(station_id)
                except Exception as exc:
                    flight.error = exc
                    raise
                finally:
                    del self._flights[station_id]
                    flight.done.set()
            else:
                self._counts["coalesced"] += 1
                await flight.done.wait()
                if flight.error is not None:
                    raise flight.error
            if flight.outcome is not None:
                book, source = flight.outcome
                self._counts["hits_l2" if source == "l2" else "misses"] += 1
                return book
            # The caller that led that load was cancelled: lead another one.

    async def invalidate(self, station_id: str) -> None:
        """Call after committing new prices. Raises StoreUnavailable when Redis could not

        be told: retry then, as other processes keep the old prices until it is done (or
        until their TTLs run out).
        """
        self._drop(station_id)
        self._counts["invalidations"] += 1
        key = _generation_key(station_id)
        token = await self._guard(self._redis.get, key)
        stale = [key] if token is None else [key, _book_key(station_id, token.decode())]
        await self._guard(self._redis.delete, *stale)
        await self._guard(self._redis.publish, self.CHANNEL, station_id)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Listen for invalidations for ever, resubscribing with backoff when Redis fails.

        ``task_status.started()`` comes once subscribed, or after the first attempt failed:
        a switch must start without its Redis (without L1, then).
        """
        started = False
        delay = 0.05
        while True:
            try:
                subscription = await self._guard(self._redis.subscribe, self.CHANNEL)
            except StoreError:
                pass  # counted by the guard
            else:
                try:
                    self._listening = True
                    self._generation += 1
                    if not started:
                        task_status.started()
                        started = True
                    delay = 0.05
                    async for _channel, data in subscription:
                        self._heard(data)
                except StoreError as exc:
                    self._guard.failed(exc)
                finally:
                    self._listening = False
                    self._generation += 1
                    self._l1.clear()
                    await subscription.aclose()
            if not started:
                task_status.started()
                started = True
            await trio.sleep(delay)
            delay = min(delay * 2, self._retry_max_s)

    def _heard(self, data: bytes) -> None:
        self._drop(data.decode(errors="replace"))
        self._counts["invalidations_heard"] += 1

    def _drop(self, station_id: str) -> None:
        self._l1.pop(station_id, None)
        self._generation += 1

    async def _fetch(self, station_id: str) -> tuple[PriceBook | None, _Source]:
        generation = self._generation if self._listening else None
        token = await self._token(station_id)
        book = None if token is None else await self._read(station_id, token)
        source: _Source = "l2"
        if book is None:
            source = "loader"
            self._counts["loads"] += 1
            book = await self._loader(station_id)
            if book is not None and book.station_id != station_id:
                raise ValueError(f"loader returned {book.station_id}'s prices for {station_id}")
            if book is not None and token is not None:
                with contextlib.suppress(StoreError):  # counted by the guard
                    key = _book_key(station_id, token)
                    await self._guard(self._redis.set, key, book.to_json(), ttl_s=self._l2_ttl_s)
        if book is not None and self._listening and generation == self._generation:
            self._l1[station_id] = (book, self._clock() + self._l1_ttl_s)
        return book, source

    async def _token(self, station_id: str) -> str | None:
        """The station's L2 generation token (made if missing); None if Redis failed."""
        key, mine = _generation_key(station_id), secrets.token_hex(8)
        try:
            found = await self._guard(self._redis.get, key)
            if found is None:
                ttl_s = _GENERATION_TTL_S
                if await self._guard(self._redis.set, key, mine, ttl_s=ttl_s, only_new=True):
                    return mine
                found = await self._guard(self._redis.get, key)
        except StoreError:
            return None
        return None if found is None else found.decode()

    async def _read(self, station_id: str, token: str) -> PriceBook | None:
        try:
            data = await self._guard(self._redis.get, _book_key(station_id, token))
            book = None if data is None else PriceBook.from_json(data)
        except StoreError:
            return None
        except ValueError as exc:
            log.warning("cache.pricebook_unreadable", station_id=station_id, error=str(exc))
            return None
        return book if book is None or book.station_id == station_id else None


def _generation_key(station_id: str) -> str:
    return f"pricebook:gen:{station_id}"


def _book_key(station_id: str, token: str) -> str:
    return f"pricebook:book:{station_id}:{token}"
