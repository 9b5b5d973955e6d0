"""The Redis cache and bus, against the real servers: two ``open_store``s in one test are
two switch processes; a refused port and a socket that never answers are a Redis that is
down and one that hangs.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
import trio

from switch.store import (
    Database,
    Decision,
    Deduper,
    OrderUpdates,
    PriceBook,
    PriceBookCache,
    PriceBookLoader,
    QueryError,
    RateLimiter,
    ServerUrls,
    Store,
    StoreUnavailable,
    open_store,
)
from tests.storage import unique_name

REFUSED_REDIS = "redis://127.0.0.1:1/0"

_CURRENT_PRICES = """
SELECT s.id, i.grade_code, i.unit_price_mfen_per_l
FROM {table} s JOIN price_set_items i ON i.price_set_id = s.id
WHERE s.station_id = $1 AND s.status = 'applied'
"""


@pytest.fixture
async def peer(store: Store, database_url: str, servers: ServerUrls) -> AsyncIterator[Store]:
    """A second switch process: its own loop, pool and client, on the same namespace."""
    async with open_store(
        database_url, servers.redis_url, namespace=store.redis.prefix, max_size=2
    ) as opened:
        yield opened


@pytest.fixture
async def redisless(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A switch whose Redis refuses connections."""
    namespace = f"test:{unique_name(request.node.name)}:"
    async with open_store(database_url, REFUSED_REDIS, namespace=namespace, max_size=2) as opened:
        yield opened


def new_station() -> str:
    return f"ST{secrets.token_hex(4)}"


async def set_prices(db: Database, station_id: str, prices: Mapping[str, int]) -> int:
    """Put a new price set in force, as the pricing service does: supersede, then apply."""
    async with db.transaction() as tx:
        await tx.executemany(
            "INSERT INTO grades (code, name, fuel) VALUES ($1, $1, 'gasoline') "
            "ON CONFLICT DO NOTHING",
            [(grade,) for grade in prices],
        )
        await tx.execute(
            "INSERT INTO stations (id, name, lat_e6, lon_e6) VALUES ($1, $1, 31230000, 121470000) "
            "ON CONFLICT DO NOTHING",
            station_id,
        )
        await tx.execute(
            "UPDATE price_sets SET status = 'superseded' WHERE station_id = $1 "
            "AND status = 'applied'",
            station_id,
        )
        set_id = await tx.fetchval(
            "INSERT INTO price_sets (station_id, status, created_by, applied_at) "
            "VALUES ($1, 'applied', 'test', now()) RETURNING id",
            station_id,
        )
        await tx.executemany(
            "INSERT INTO price_set_items (price_set_id, grade_code, unit_price_mfen_per_l) "
            "VALUES ($1, $2, $3)",
            [(set_id, grade, price) for grade, price in prices.items()],
        )
    return int(set_id)


def loader_for(db: Database, table: str = "price_sets") -> PriceBookLoader:
    """The production query: the price set in force at the station, from PostgreSQL."""

    async def load(station_id: str) -> PriceBook | None:
        rows = await db.fetch(_CURRENT_PRICES.format(table=table), station_id)
        if not rows:
            return None
        prices = {row["grade_code"]: row["unit_price_mfen_per_l"] for row in rows}
        return PriceBook(station_id, rows[0]["id"], prices)

    return load


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for what a listener or another task does; bounded, so a bug fails, never hangs."""
    for _ in range(2500):  # a few seconds; the condition normally holds within milliseconds
        if predicate():
            return
        await trio.sleep(0.002)
    pytest.fail("the condition never came true")


# -- PriceBook ----------------------------------------------------------------------------


def test_price_book_holds_positive_integers_only() -> None:
    book = PriceBook("S1", 7, {"92": 7_350_000, "0#": 6_900_000})
    assert book.prices == {"92": 7_350_000, "0#": 6_900_000}
    for bad in (7.35, True, 0, -1, "7350000"):
        prices: dict[str, Any] = {"92": bad}
        with pytest.raises(ValueError, match="positive int"):
            PriceBook("S1", 7, prices)
    set_id: Any = 7.0
    with pytest.raises(TypeError):
        PriceBook("S1", set_id, {"92": 7_350_000})


def test_price_book_is_read_only_and_round_trips_through_json() -> None:
    source = {"92": 7_350_000}
    book = PriceBook("S1", 7, source)
    source["92"] = 1
    assert book.prices["92"] == 7_350_000  # a copy, not the caller's dict
    with pytest.raises(TypeError):
        book.prices["92"] = 1  # type: ignore[index]
    assert PriceBook.from_json(book.to_json()) == book
    floats = b'{"station": "S1", "set": 7, "prices": {"92": 7.35}}'
    for junk in (b"not json", b"[]", b"{}", floats):
        with pytest.raises(ValueError, match="not a price book"):
            PriceBook.from_json(junk)


# -- PriceBookCache -----------------------------------------------------------------------


async def test_first_get_loads_then_memory_serves(store: Store) -> None:
    station = new_station()
    set_id = await set_prices(store.db, station, {"92": 7_350_000, "95": 7_820_000})
    cache = PriceBookCache(store.redis, loader_for(store.db))
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        assert cache.listening
        first = await cache.get(station)
        second = await cache.get(station)
        nursery.cancel_scope.cancel()
    assert first == second == PriceBook(station, set_id, {"92": 7_350_000, "95": 7_820_000})
    stats = cache.statistics()
    assert (stats["misses"], stats["loads"], stats["hits_l1"], stats["hits_l2"]) == (1, 1, 1, 0)
    assert stats["redis_errors"] == 0


async def test_another_process_is_served_from_redis(store: Store, peer: Store) -> None:
    station = new_station()
    set_id = await set_prices(store.db, station, {"92": 7_350_000})
    await PriceBookCache(store.redis, loader_for(store.db)).get(station)
    theirs = PriceBookCache(peer.redis, loader_for(peer.db))
    book = await theirs.get(station)
    assert book == PriceBook(station, set_id, {"92": 7_350_000})
    assert (theirs.statistics()["hits_l2"], theirs.statistics()["loads"]) == (1, 0)


async def test_without_its_listener_a_cache_never_uses_memory(store: Store) -> None:
    station = new_station()
    await set_prices(store.db, station, {"92": 7_350_000})
    cache = PriceBookCache(store.redis, loader_for(store.db))
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        await cache.get(station)
        assert cache.statistics()["l1_size"] == 1
        nursery.cancel_scope.cancel()
    # Invalidations can no longer reach it, so memory is emptied and left unused.
    assert not cache.listening
    assert cache.statistics()["l1_size"] == 0
    await cache.get(station)
    await cache.get(station)
    stats = cache.statistics()
    assert (stats["loads"], stats["hits_l1"], stats["hits_l2"], stats["l1_size"]) == (1, 0, 2, 0)


async def test_concurrent_misses_call_the_loader_once(store: Store) -> None:
    station = new_station()
    await set_prices(store.db, station, {"92": 7_350_000})
    load, release = loader_for(store.db), trio.Event()

    async def gated(station_id: str) -> PriceBook | None:
        await release.wait()
        return await load(station_id)

    cache = PriceBookCache(store.redis, gated)
    books: list[PriceBook | None] = []

    async def get() -> None:
        books.append(await cache.get(station))

    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        async with trio.open_nursery() as callers:
            for _ in range(10):
                callers.start_soon(get)
            await until(lambda: cache.statistics()["coalesced"] == 9)
            release.set()
        await get()
        nursery.cancel_scope.cancel()
    assert len(books) == 11 and len({id(book) for book in books}) == 1
    stats = cache.statistics()
    assert (stats["loads"], stats["misses"], stats["hits_l1"]) == (1, 10, 1)


async def test_a_waiter_takes_over_when_the_leading_caller_is_cancelled(store: Store) -> None:
    station = new_station()
    set_id = await set_prices(store.db, station, {"92": 7_350_000})
    load, release, calls = loader_for(store.db), trio.Event(), [0]

    async def gated(station_id: str) -> PriceBook | None:
        calls[0] += 1
        await release.wait()
        return await load(station_id)

    cache = PriceBookCache(store.redis, gated)
    leader_scope = trio.CancelScope()
    books: list[PriceBook | None] = []

    async def leader() -> None:
        with leader_scope:
            await cache.get(station)

    async def waiter() -> None:
        books.append(await cache.get(station))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader)
        await until(lambda: calls[0] == 1)
        nursery.start_soon(waiter)
        await until(lambda: cache.statistics()["coalesced"] == 1)
        leader_scope.cancel()
        await until(lambda: calls[0] == 2)
        release.set()
    assert leader_scope.cancelled_caught
    assert books == [PriceBook(station, set_id, {"92": 7_350_000})]
    assert (cache.statistics()["loads"], cache.statistics()["misses"]) == (2, 1)


async def test_loader_errors_reach_the_caller_and_are_not_cached(store: Store) -> None:
    station = new_station()
    await set_prices(store.db, station, {"92": 7_350_000})
    view = unique_name("current_prices")
    cache = PriceBookCache(store.redis, loader_for(store.db, table=view))
    with pytest.raises(QueryError, match="does not exist"):
        await cache.get(station)
    await store.db.execute(f"CREATE VIEW {view} AS SELECT * FROM price_sets")
    book = await cache.get(station)
    assert book is not None and book.prices == {"92": 7_350_000}
    assert cache.statistics()["loads"] == 2


async def test_a_station_without_prices_is_not_cached(store: Store) -> None:
    station = new_station()
    cache = PriceBookCache(store.redis, loader_for(store.db))
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        assert await cache.get(station) is None
        set_id = await set_prices(store.db, station, {"92": 7_350_000})
        book = await cache.get(station)  # no invalidation needed
        nursery.cancel_scope.cancel()
    assert book is not None and book.price_set_id == set_id


async def test_memory_entries_expire(store: Store) -> None:
    station = new_station()
    await set_prices(store.db, station, {"92": 7_350_000})
    now = [0.0]
    cache = PriceBookCache(store.redis, loader_for(store.db), l1_ttl_s=10, clock=lambda: now[0])
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        await cache.get(station)
        now[0] = 9.9
        await cache.get(station)
        now[0] = 10.0
        await cache.get(station)
        await cache.get(station)
        nursery.cancel_scope.cancel()
    stats = cache.statistics()
    assert (stats["loads"], stats["hits_l1"], stats["hits_l2"]) == (1, 2, 1)


async def test_a_price_change_reaches_another_process(store: Store, peer: Store) -> None:
    station = new_station()
    await set_prices(store.db, station, {"92": 7_350_000})
    mine = PriceBookCache(store.redis, loader_for(store.db))
    theirs = PriceBookCache(peer.redis, loader_for(peer.db))
    async with trio.open_nursery() as nursery:
        await nursery.start(mine.run)
        await nursery.start(theirs.run)
        for cache in (mine, theirs, mine, theirs):
            await cache.get(station)
        assert mine.statistics()["hits_l1"] == theirs.statistics()["hits_l1"] == 1
        new_set = await set_prices(store.db, station, {"92": 7_410_000})
        await mine.invalidate(station)
        await until(lambda: theirs.statistics()["invalidations_heard"] == 1)
        for cache in (mine, theirs):
            book = await cache.get(station)
            assert book == PriceBook(station, new_set, {"92": 7_410_000})
        nursery.cancel_scope.cancel()
    assert mine.statistics()["invalidations"] == 1
    assert (mine.statistics()["loads"], theirs.statistics()["loads"]) == (2, 0)


async def test_a_load_overlapping_a_price_change_leaves_nothing_stale(
    store: Store, peer: Store
) -> None:
    station = new_station()
    old_set = await set_prices(store.db, station, {"92": 7_350_000})
    load, read, release = loader_for(store.db), trio.Event(), trio.Event()

    async def slow(station_id: str) -> PriceBook | None:
        book = await load(station_id)
        read.set()
        await release.wait()
        return book

    cache = PriceBookCache(store.redis, slow)
    other = PriceBookCache(peer.redis, loader_for(peer.db))
    books: list[PriceBook | None] = []

    async def get() -> None:
        books.append(await cache.get(station))

    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        nursery.start_soon(get)
        await read.wait()  # the old prices are read; now they change
        new_set = await set_prices(peer.db, station, {"92": 7_410_000})
        await other.invalidate(station)
        await until(lambda: cache.statistics()["invalidations_heard"] == 1)
        release.set()
        await until(lambda: bool(books))
        await get()
        nursery.cancel_scope.cancel()
    # The get that overlapped the change may answer either; nothing after it may be old,
    # neither in this process's memory nor in Redis.
    assert books[0] is not None and books[0].price_set_id == old_set
    assert books[1] is not None and books[1].price_set_id == new_set
    assert cache.statistics()["loads"] == 2
    third = PriceBookCache(peer.redis, loader_for(peer.db))
    book = await third.get(station)
    assert book is not None and book.price_set_id == new_set
    assert third.statistics()["hits_l2"] == 1


async def test_get_falls_back_to_the_loader_without_redis(redisless: Store) -> None:
    station = new_station()
    set_id = await set_prices(redisless.db, station, {"92": 7_350_000})
    cache = PriceBookCache(redisless.redis, loader_for(redisless.db))
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)  # starts, though it cannot subscribe
        assert not cache.listening
        books = [await cache.get(station), await cache.get(station)]
        with pytest.raises(StoreUnavailable):
            await cache.invalidate(station)
        nursery.cancel_scope.cancel()
    assert books == [PriceBook(station, set_id, {"92": 7_350_000})] * 2
    stats = cache.statistics()
    assert (stats["loads"], stats["misses"], stats["hits_l1"], stats["hits_l2"]) == (2, 2, 0, 0)
    assert stats["redis_errors"] >= 4  # subscribe, two lookups, the invalidation


async def test_get_falls_back_to_the_loader_when_redis_never_answers(
    database_url: str, store: Store
) -> None:
    station = new_station()
    await set_prices(store.db, station, {"92": 7_350_000})
    with trio.socket.socket() as silent:  # accepts connections into its backlog, never reads
        await silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        async with open_store(
            database_url, f"redis://127.0.0.1:{port}/0", namespace="test:silent:", max_size=2
        ) as hung:
            cache = PriceBookCache(hung.redis, loader_for(hung.db), timeout_s=0.05)
            async with trio.open_nursery() as nursery:
                await nursery.start(cache.run)
                assert not cache.listening
                book = await cache.get(station)
                nursery.cancel_scope.cancel()
    assert book is not None and book.prices == {"92": 7_350_000}
    assert cache.statistics()["loads"] == 1
    assert cache.statistics()["redis_errors"] >= 2


# -- RateLimiter --------------------------------------------------------------------------


async def test_rate_limiter_counts_hits_from_every_process(store: Store, peer: Store) -> None:
    mine, theirs = RateLimiter(store.redis), RateLimiter(peer.redis)
    decisions = [await limiter.hit("card:1", 3, 60) for limiter in (mine, theirs, mine, theirs)]
    assert decisions == [
        Decision(True, 1, 3),
        Decision(True, 2, 3),
        Decision(True, 3, 3),
        Decision(False, 4, 3),
    ]
    assert await mine.hit("card:2", 3, 60) == Decision(True, 1, 3)  # per key
    assert await mine.hit("card:1", 3, 30) == Decision(True, 1, 3)  # and per window
    assert mine.statistics() == {
        "allowed": 4,
        "denied": 0,
        "failed_open": 0,
        "failed_closed": 0,
        "redis_errors": 0,
    }
    assert (theirs.statistics()["allowed"], theirs.statistics()["denied"]) == (1, 1)


async def test_rate_limiter_window_ends(store: Store) -> None:
    limiter = RateLimiter(store.redis)
    assert (await limiter.hit("card:1", 1, 0.25)).allowed
    assert not (await limiter.hit("card:1", 1, 0.25)).allowed
    await trio.sleep(0.3)  # Redis expires the counter; nothing here measures time
    assert await limiter.hit("card:1", 1, 0.25) == Decision(True, 1, 1)


async def test_rate_limiter_fails_open_or_closed_without_redis(redisless: Store) -> None:
    lenient, strict = RateLimiter(redisless.redis), RateLimiter(redisless.redis, fail_open=False)
    assert await lenient.hit("card:1", 3, 60) == Decision(True, 0, 3, degraded=True)
    assert await strict.hit("card:1", 3, 60) == Decision(False, 0, 3, degraded=True)
    assert lenient.statistics()["failed_open"] == 1
    assert lenient.statistics()["redis_errors"] == 1
    assert strict.statistics()["failed_closed"] == 1


async def test_rate_limiter_rejects_nonsense(store: Store) -> None:
    limiter = RateLimiter(store.redis)
    with pytest.raises(ValueError):
        await limiter.hit("card:1", -1, 60)
    with pytest.raises(ValueError):
        await limiter.hit("card:1", 3, 0)


# -- Deduper ------------------------------------------------------------------------------


async def test_deduper_reports_a_key_first_seen_once_until_it_expires(
    store: Store, peer: Store
) -> None:
    mine, theirs = Deduper(store.redis), Deduper(peer.redis)
    assert await mine.first_seen("notify:T1", 0.25)
    assert not await theirs.first_seen("notify:T1", 0.25)
    assert not await mine.first_seen("notify:T1", 0.25)
    assert await mine.first_seen("notify:T2", 0.25)
    await trio.sleep(0.3)  # Redis expires the key; nothing here measures time
    assert await theirs.first_seen("notify:T1", 0.25)
    assert mine.statistics() == {"first": 2, "duplicates": 1, "assumed_new": 0, "redis_errors": 0}


async def test_deduper_assumes_new_without_redis(redisless: Store) -> None:
    deduper = Deduper(redisless.redis)
    assert await deduper.first_seen("notify:T1", 60)
    assert await deduper.first_seen("notify:T1", 60)
    assert deduper.statistics() == {
        "first": 0,
        "duplicates": 0,
        "assumed_new": 2,
        "redis_errors": 2,
    }


# -- OrderUpdates -------------------------------------------------------------------------


async def test_order_updates_reach_a_subscriber_in_another_process(
    store: Store, peer: Store
) -> None:
    updates, publisher = OrderUpdates(store.redis), OrderUpdates(peer.redis)
    received: list[dict[str, Any]] = []
    async with await updates.subscribe("O1") as subscription:
        assert await publisher.publish("O1", {"state": "authorized", "held_fen": 30_000}) == 1
        assert await publisher.publish("O2", {"state": "authorized"}) == 0
        assert await publisher.publish("O1", {"state": "fueling"}) == 1
        async for update in subscription:
            received.append(update)
            if len(received) == 2:
                break
    assert received == [{"state": "authorized", "held_fen": 30_000}, {"state": "fueling"}]
    with pytest.raises(StopAsyncIteration):
        await anext(subscription)  # closed on leaving the block
    assert publisher.statistics() == {
        "published": 3,
        "unpublished": 0,
        "unwatched": 0,
        "watched_here": 0,
        "redis_errors": 0,
    }


async def test_order_subscription_skips_unreadable_messages(store: Store) -> None:
    updates = OrderUpdates(store.redis)
    async with await updates.subscribe("O1") as subscription:
        await store.redis.publish(OrderUpdates.channel("O1"), b"\xff not json")
        await store.redis.publish(OrderUpdates.channel("O1"), b"[1, 2]")
        await updates.publish("O1", {"state": "paid"})
        assert await anext(subscription) == {"state": "paid"}


async def test_order_updates_without_redis(redisless: Store) -> None:
    updates = OrderUpdates(redisless.redis)
    assert await updates.publish("O1", {"state": "paid"}) == 0
    with pytest.raises(StoreUnavailable):
        await updates.subscribe("O1")
    assert updates.statistics() == {
        "published": 0,
        "unpublished": 1,
        "unwatched": 0,
        "watched_here": 0,
        "redis_errors": 2,
    }
    # Redis cannot tell who listens: every order counts as watched.
    assert await updates.watched("O1") is True


async def test_watched_counts_subscriptions_here_at_once_and_elsewhere_by_refresh(
    store: Store, peer: Store
) -> None:
    here = OrderUpdates(store.redis, refresh_s=0.0)  # asks Redis on every call
    elsewhere = OrderUpdates(peer.redis)
    assert await here.watched("O1") is False
    subscription = await here.subscribe("O1")
    assert await here.watched("O1") is True
    assert here.statistics()["watched_here"] == 1
    await subscription.aclose()
    await subscription.aclose()  # closing twice forgets it once
    assert here.statistics()["watched_here"] == 0
    async with await elsewhere.subscribe("O2"):
        assert await here.watched("O2") is True  # another process's subscriber
        assert await here.watched("O3") is False
    assert await here.watched("O2") is False
    # Refreshed at most every refresh_s: a subscription elsewhere shows up late, while one
    # made here counts at once.
    slow = OrderUpdates(store.redis, refresh_s=3600.0)
    assert await slow.watched("O4") is False
    async with await elsewhere.subscribe("O4"):
        assert await slow.watched("O4") is False
        async with await slow.subscribe("O4"):
            assert await slow.watched("O4") is True
