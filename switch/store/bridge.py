"""The one place where asyncio lives: a trio-asyncio loop, the asyncpg pool, the redis client.

asyncpg and redis-py are asyncio libraries; the switch is trio. ``open_store`` opens a
single trio-asyncio loop for the life of the store, creates the pool and the client
inside it, and closes them inside it again (they are bound to that loop). Every call
from trio goes through ``_Aio.run``, which runs the asyncio coroutine on that loop
(trio cancellation cancels it; asyncpg then cancels the query on the server) and maps
asyncpg/redis exceptions to the store's own (:mod:`switch.store.errors`). Nothing
outside this module imports asyncio, asyncpg or redis.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions
import structlog
import trio
import trio_asyncio

from ops.process import leaves

from .errors import (
    CacheError,
    QueryError,
    StoreError,
    StoreUnavailable,
    UniqueViolation,
)

log = structlog.get_logger("store")
T = TypeVar("T")
Row = Mapping[str, Any]

_PG_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # includes InternalClientError after a dropped connection
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)
_REDIS_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


_DRIVER_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, *_PG_UNAVAILABLE)


def map_postgres_error(exc: BaseException) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, asyncpg.PostgresError) and not isinstance(exc, _PG_UNAVAILABLE):
        error = UniqueViolation if isinstance(exc, asyncpg.UniqueViolationError) else QueryError
        return error(
            getattr(exc, "message", None) or type(exc).__name__,
            getattr(exc, "sqlstate", None),
            getattr(exc, "detail", None),
        )
    if isinstance(exc, _PG_UNAVAILABLE):
        return StoreUnavailable(f"PostgreSQL unavailable: {type(exc).__name__}: {exc}")
    return QueryError(f"{type(exc).__name__}: {exc}")


def map_redis_error(exc: BaseException) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, _REDIS_UNAVAILABLE):
        return StoreUnavailable(f"Redis unavailable: {type(exc).__name__}: {exc}")
    return CacheError(f"{type(exc).__name__}: {exc}")


class _Aio:
    """Runs asyncio coroutines on the store's loop from trio, mapping their errors.

    It also keeps how long a call takes, from trio's side (queueing on the store's loop and
    for a pooled connection included), smoothed: the switch's admission control sheds new
    orders when the store falls behind, before journal commits start to time out."""

    LATENCY_ALPHA = 0.05  # weight of one call in the smoothed latency

    def __init__(self, loop: trio_asyncio.TrioEventLoop, mapper: Callable[..., StoreError]) -> None:
        self.loop = loop
        self.mapper = mapper
        self.in_flight = 0
        self.latency_s = 0.0

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        self.in_flight += 1
        try:
            result: T = await self.loop.run_aio_coroutine(fn(*args, **kwargs))
        except Exception as exc:
            raise self.mapper(exc) from exc
        finally:
            self.in_flight -= 1
            took = time.perf_counter() - started
            self.latency_s += self.LATENCY_ALPHA * (took - self.latency_s)
        return result


class _Direct:
    """``_Aio``'s stand-in for code already running on the store's loop (``atomic``): the
    statement is awaited there and then, its errors mapped the same way."""

    def __init__(self, mapper: Callable[..., StoreError]) -> None:
        self.mapper = mapper

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            raise self.mapper(exc) from exc


@dataclass(frozen=True, slots=True)
class _Raised:
    """An error of ``atomic``'s function, carried past the loop's error mapping unchanged."""

    error: Exception


class _Queries:
    """The query methods shared by the pool and a transaction's connection."""

    _aio: _Aio | _Direct
    _target: Any  # asyncpg.Pool or asyncpg.Connection

    async def execute(self, sql: str, *args: Any) -> str:
        status: str = await self._aio.run(self._target.execute, sql, *args)
        return status

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        await self._aio.run(self._target.executemany, sql, list(args))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        rows: list[Row] = await self._aio.run(self._target.fetch, sql, *args)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self._aio.run(self._target.fetchrow, sql, *args)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._aio.run(self._target.fetchval, sql, *args)

    async def copy_records(
        self, table: str, records: Iterable[Sequence[Any]], columns: Sequence[str]
    ) -> str:
        status: str = await self._aio.run(
            self._target.copy_records_to_table, table, records=records, columns=list(columns)
        )
        return status


class Transaction(_Queries):
    """Queries on one connection inside one transaction (see ``Database.transaction``)."""

    def __init__(self, aio: _Aio | _Direct, connection: Any) -> None:
        self._aio = aio
        self._target = connection


class Database(_Queries):
    """The asyncpg pool, seen from trio."""

    def __init__(self, aio: _Aio, pool: Any, url: str = "") -> None:
        self._aio = aio
        self._bridge = aio
        self._target = pool
        self._pool = pool
        self._url = url

    @asynccontextmanager
    async def dedicated(self, *, max_size: int = 2) -> AsyncIterator[Database]:
        """A second, small pool on the same loop, for a caller that must never wait behind
        everyone else's calls for a connection: the journal writer. Measured at 5,000 pumps
        under a flood of requests, 2,000 calls queued for the shared pool and journal
        commits waited 5 to 30 s in that queue while PostgreSQL itself was idle; every pump
        and order waiting on its journal then timed out."""
        async with _database(self._bridge.loop, self._url, 1, max_size) as db:
            yield db

    def latency_s(self) -> float:
        """Smoothed time of a call as trio sees it (loop and pool queueing included)."""
        return self._bridge.latency_s

    def calls_in_flight(self) -> int:
        return self._bridge.in_flight

    @asynccontextmanager
    async def transaction(self, *, isolation: str = "read_committed") -> AsyncIterator[Transaction]:
        """Commit when the block ends, roll back when it raises (or is cancelled)."""
        aio = self._aio
        connection = await aio.run(self._pool.acquire)
        try:
            tx = connection.transaction(isolation=isolation)
            await aio.run(tx.start)
            try:
                yield Transaction(aio, connection)
            except BaseException:
                # Re-raised below, whatever happens to the rollback: the caller's error (or
                # cancellation) is the one that matters.
                with trio.CancelScope(shield=True), trio.move_on_after(10):
                    try:
                        await aio.run(tx.rollback)
                    except StoreError as exc:
                        log.warning("store.rollback_failed", error=str(exc))
                raise
            await aio.run(tx.commit)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await aio.run(self._pool.release, connection)

    async def atomic(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        isolation: str = "read_committed",
    ) -> T:
        """``await fn(tx, *args)`` in one transaction, run as a whole on the store's loop.

        The same as ``async with db.transaction() as tx: return await fn(tx, *args)``, but
        the statements follow each other without a trip through trio's scheduler each:
        under load that trip, not PostgreSQL, is most of a short transaction's duration,
        and the row locks it takes are held for all of it. ``fn`` must therefore await
        nothing but ``tx``'s queries (no trio, no actors); its own exceptions roll the
        transaction back and reach the caller unchanged, like ``transaction``'s.
        """
        aio = self._aio
        direct = _Direct(aio.mapper)
        pool = self._pool

        async def body() -> T | _Raised:
            try:
                async with (
                    pool.acquire() as connection,
                    connection.transaction(isolation=isolation),
                ):
                    return await fn(Transaction(direct, connection), *args)
            except _DRIVER_ERRORS:
                raise  # acquire, BEGIN or COMMIT failed: mapped by ``aio``
            except Exception as exc:
                return _Raised(exc)

        result = await aio.run(body)
        if isinstance(result, _Raised):
            raise result.error
        return result

    def statistics(self) -> dict[str, int]:
        pool = self._pool
        return {
            "size": pool.get_size(),
            "idle": pool.get_idle_size(),
            "min_size": pool.get_min_size(),
            "max_size": pool.get_max_size(),
        }


class Subscription:
    """Messages on some pub/sub channels, as a trio async iterator of ``(channel, data)``.

    Made by ``Redis.subscribe`` only once the server confirmed every channel, so a message
    published after ``subscribe`` returns is never missed. Iteration ends after ``aclose``;
    a broken connection raises ``StoreUnavailable`` (messages may have been lost).
    """

    def __init__(self, aio: _Aio, pubsub: Any, prefix: str, early: list[Any]) -> None:
        self._aio = aio
        self._pubsub = pubsub
        self._prefix = prefix
        self._early = early  # messages that arrived while the confirmations were read
        self._closed = False

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> tuple[str, bytes]:
        while not self._closed:
            if self._early:
                message = self._early.pop(0)
            else:
                message = await self._aio.run(self._pubsub.get_message, timeout=None)
            if message is not None and message.get("type") == "message":
                channel = message["channel"].decode()
                return channel.removeprefix(self._prefix), message["data"]
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await self._aio.run(self._pubsub.aclose)


class Redis:
    """The redis-py client, seen from trio. Keys and channels are namespaced with ``prefix``

    so that several switches (or test modules) can share one server.
    """

    def __init__(self, aio: _Aio, client: Any, prefix: str) -> None:
        self._aio = aio
        self._client = client
        self.prefix = prefix

    def key(self, name: str) -> str:
        return self.prefix + name

    async def ping(self) -> bool:
        return bool(await self._aio.run(self._client.ping))

    async def get(self, name: str) -> bytes | None:
        value: bytes | None = await self._aio.run(self._client.get, self.key(name))
        return value

    async def set(
        self, name: str, value: bytes | str, *, ttl_s: float | None = None, only_new: bool = False
    ) -> bool:
        if ttl_s is not None and not ttl_s > 0:
            raise ValueError(f"ttl_s must be positive, not {ttl_s!r}")
        px = None if ttl_s is None else max(1, int(ttl_s * 1000))
        result = await self._aio.run(self._client.set, self.key(name), value, px=px, nx=only_new)
        return bool(result)

    async def delete(self, *names: str) -> int:
        count: int = await self._aio.run(self._client.delete, *(self.key(n) for n in names))
        return count

    async def incr_window(self, name: str, window_s: float) -> int:
        """INCR a counter and set its expiry when it is new, atomically (MULTI/EXEC)."""

        async def run() -> int:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.incr(self.key(name))
                pipe.pexpire(self.key(name), max(1, int(window_s * 1000)), nx=True)
                count, _ = await pipe.execute()
                return int(count)

        return await self._aio.run(run)

    async def publish(self, channel: str, data: bytes | str) -> int:
        receivers: int = await self._aio.run(self._client.publish, self.key(channel), data)
        return receivers

    async def channels(self, prefix: str) -> frozenset[str]:
        """The pub/sub channels starting with ``prefix`` that have a subscriber now, on any
        connection (``PUBSUB CHANNELS``), named without this client's namespace."""
        full = self.key(prefix)
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in full) + "*"
        names: list[bytes] = await self._aio.run(self._client.pubsub_channels, pattern)
        return frozenset(n.decode().removeprefix(self.prefix) for n in names)

    async def subscribe(self, *channels: str) -> Subscription:
        """Subscribe and wait for the server's confirmation of every channel (redis-py
        returns as soon as SUBSCRIBE is written, and a PUBLISH could still beat it)."""
        pubsub = self._client.pubsub()
        names = {self.key(c) for c in channels}
        early: list[Any] = []

        async def run() -> None:
            await pubsub.subscribe(*names)
            waiting = set(names)
            while waiting:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    waiting.discard(message["channel"].decode())
                else:
                    early.append(message)

        subscribed = False
        try:
            await self._aio.run(run)
            subscribed = True
        finally:
            if not subscribed:  # failed or cancelled: give the connection back
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await self._aio.run(pubsub.aclose)
        return Subscription(self._aio, pubsub, self.prefix, early)

    async def flush_namespace(self) -> int:
        """Delete every key under this namespace (tests and resets)."""

        async def run() -> int:
            deleted = 0
            pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix) + "*"  # glob-escaped
            async for key in self._client.scan_iter(match=pattern, count=500):
                deleted += await self._client.delete(key)
            return deleted

        return await self._aio.run(run)


@dataclass(frozen=True, slots=True)
class Store:
    db: Database
    redis: Redis


class _BatchingLoop(trio_asyncio.TrioEventLoop):  # type: ignore[misc]  # untyped base
    """trio-asyncio's loop, running every asyncio callback that is ready at once.

    The stock loop takes one callback per turn of trio's scheduler (its queue's
    ``receive`` is a checkpoint even when a callback is waiting). A database call is a
    handful of callbacks (send, data received, future done, release), so with 5,000 pump
    actors and the HTTP server runnable, every callback waited for a whole round of them:
    measured at 5,000 pumps under load, the store's calls completed at a few per second,
    2,000 queued, and PostgreSQL sat idle. Here, after the callback trio hands over, the
    ones already queued run too (at most ``BATCH``), without a trip through the scheduler
    each. Order is unchanged: the same queue, first in first out.
    """

    BATCH = 256

    async def _main_loop_one(self, no_wait: bool = False) -> None:
        await super()._main_loop_one(no_wait)
        for _ in range(self.BATCH):
            if self._stopped.is_set():
                return
            try:
                await super()._main_loop_one(no_wait=True)
            except trio.WouldBlock:
                return


@asynccontextmanager
async def _open_loop() -> AsyncIterator[trio_asyncio.TrioEventLoop]:
    """trio-asyncio's loop runs its body inside nurseries, so whatever leaves it arrives
    wrapped in (nested) exception groups. A single ordinary error is unwrapped, so that
    callers can write ``except StoreUnavailable``; anything else passes unchanged.

    The loop is made a :class:`_BatchingLoop` (same state, one method more efficient)
    before anything is scheduled on it."""
    try:
        async with trio_asyncio.open_loop() as loop:
            loop.__class__ = _BatchingLoop
            yield loop
    except BaseExceptionGroup as group:
        found = leaves(group)
        if len(found) == 1 and isinstance(found[0], Exception):
            raise found[0] from found[0].__cause__
        raise


async def _keep_session(connection: Any) -> None:
    """Pool release without asyncpg's reset query: its ``Connection.reset`` runs ``SELECT
    pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` after *every* pooled query,
    a second round trip (and a second transaction) for each one. The switch keeps no session
    state (no SET, LISTEN, cursors or session advisory locks; the migration lock is
    transaction-scoped), so there is nothing to reset. asyncpg still rolls back a transaction
    left open (a cancelled query) before calling this."""


@asynccontextmanager
async def _database(
    loop: trio_asyncio.TrioEventLoop, url: str, min_size: int, max_size: int
) -> AsyncIterator[Database]:
    aio = _Aio(loop, map_postgres_error)
    pool = await aio.run(
        asyncpg.create_pool,
        url,
        min_size=min_size,
        max_size=max_size,
        server_settings={"synchronous_commit": "on", "application_name": "fuelswitch"},
        reset=_keep_session,
    )
    try:
        yield Database(aio, pool, url)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await aio.run(pool.close)


@asynccontextmanager
async def _redis(
    loop: trio_asyncio.TrioEventLoop, url: str, namespace: str
) -> AsyncIterator[Redis]:
    aio = _Aio(loop, map_redis_error)
    client = aioredis.Redis.from_url(
        url, health_check_interval=30, socket_connect_timeout=5, socket_keepalive=True
    )
    try:
        yield Redis(aio, client, namespace)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await aio.run(client.aclose)


@asynccontextmanager
async def open_store(
    database_url: str,
    redis_url: str,
    *,
    namespace: str = "fuelswitch:",
    min_size: int = 1,
    max_size: int = 10,
) -> AsyncIterator[Store]:
    """Open the loop, the pool and the client; close them again (shielded) on the way out."""
    async with (
        _open_loop() as loop,
        _database(loop, database_url, min_size, max_size) as db,
        _redis(loop, redis_url, namespace) as rd,
    ):
        yield Store(db, rd)


@asynccontextmanager
async def open_database(
    url: str, *, min_size: int = 1, max_size: int = 10
) -> AsyncIterator[Database]:
    """PostgreSQL alone (administration commands, benchmarks)."""
    async with _open_loop() as loop, _database(loop, url, min_size, max_size) as db:
        yield db


async def connect_once(database_url: str, sql: str, *args: Any) -> Any:
    """Run one statement on a fresh connection (administration: create/drop databases)."""
    async with _open_loop() as loop:
        aio = _Aio(loop, map_postgres_error)
        connection = await aio.run(asyncpg.connect, database_url)
        try:
            return await aio.run(connection.fetchval, sql, *args)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await aio.run(connection.close)
